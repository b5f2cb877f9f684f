//! PUNCH relays (flag 8) are rate limited per requesting host and per target host: each relay
//! makes the tracker send a datagram to a third party and that party send SYNs, so without the
//! first limit anyone could aim the tracker at a peer, and without the second many requesters
//! together could.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::host::Host;

/// Token buckets per host. Bounded: the table is cleared when it grows past `MAX_BUCKETS`,
/// which at worst grants a fresh burst to each host.
struct Buckets(HashMap<Host, (f64, Instant)>);

const MAX_BUCKETS: usize = 65_536;

/// A bucket untouched for this long is full again whatever the rate, so forgetting it changes
/// nothing.
const IDLE: Duration = Duration::from_secs(10);

impl Buckets {
    /// Tokens `host`'s bucket holds now, at `rate` per second up to a burst of twice as many.
    fn refill(&mut self, host: Host, rate: u32, now: Instant) -> &mut f64 {
        if self.0.len() >= MAX_BUCKETS && !self.0.contains_key(&host) {
            self.0.clear();
        }
        let burst = f64::from(rate) * 2.0;
        let (tokens, last) = self.0.entry(host).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * f64::from(rate))
            .min(burst);
        *last = now;
        tokens
    }
}

/// Why a relay is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Requester,
    Target,
}

pub(crate) struct PunchLimiter {
    requesters: Buckets,
    targets: Buckets,
}

impl PunchLimiter {
    pub(crate) fn new() -> Self {
        PunchLimiter {
            requesters: Buckets(HashMap::new()),
            targets: Buckets(HashMap::new()),
        }
    }

    /// Whether `requester` may have one more relay to `target` now, each at `rate` per second
    /// with a burst of twice as many. A refused relay costs neither bucket.
    pub(crate) fn allow(
        &mut self,
        requester: Host,
        target: Host,
        rate: u32,
        now: Instant,
    ) -> Result<(), Refusal> {
        if *self.requesters.refill(requester, rate, now) < 1.0 {
            return Err(Refusal::Requester);
        }
        let target_tokens = self.targets.refill(target, rate, now);
        if *target_tokens < 1.0 {
            return Err(Refusal::Target);
        }
        *target_tokens -= 1.0;
        *self.requesters.refill(requester, rate, now) -= 1.0;
        Ok(())
    }

    /// Drops the buckets of hosts quiet for a while, so the tables hold recent hosts only.
    pub(crate) fn forget_idle(&mut self, now: Instant) {
        for table in [&mut self.requesters, &mut self.targets] {
            table
                .0
                .retain(|_, (_, last)| now.saturating_duration_since(*last) < IDLE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        Host::of(s.parse().unwrap())
    }

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate() {
        let mut limiter = PunchLimiter::new();
        let (ip, target) = (host("203.0.113.5"), host("198.51.100.1"));
        let t0 = Instant::now();
        let allowed = |l: &mut PunchLimiter, from: Host, to: Host, n: usize, at: Instant| {
            (0..n).filter(|_| l.allow(from, to, 10, at).is_ok()).count()
        };
        assert_eq!(allowed(&mut limiter, ip, target, 25, t0), 20);
        assert_eq!(
            limiter.allow(ip, host("198.51.100.2"), 10, t0),
            Err(Refusal::Requester)
        );
        let later = t0 + Duration::from_millis(500);
        let other_target = host("198.51.100.3");
        assert_eq!(allowed(&mut limiter, ip, other_target, 10, later), 5);
    }

    /// Many requesters cannot together aim more than the rate at one target.
    #[test]
    fn one_target_gets_the_rate_whoever_asks() {
        let mut limiter = PunchLimiter::new();
        let target = host("198.51.100.1");
        let t0 = Instant::now();
        let allowed = (0..40)
            .filter(|i| {
                limiter
                    .allow(host(&format!("203.0.113.{i}")), target, 10, t0)
                    .is_ok()
            })
            .count();
        assert_eq!(allowed, 20);
        assert_eq!(
            limiter.allow(host("203.0.113.99"), target, 10, t0),
            Err(Refusal::Target)
        );
        // The refused relays cost the requesters nothing.
        let fresh = host("203.0.113.30");
        assert_eq!(
            (0..25)
                .filter(|i| limiter
                    .allow(fresh, host(&format!("192.0.2.{i}")), 10, t0)
                    .is_ok())
                .count(),
            20
        );
    }

    /// An IPv6 /64 is one requester: rotating addresses inside it buys nothing.
    #[test]
    fn an_ipv6_64_shares_one_bucket() {
        let mut limiter = PunchLimiter::new();
        let t0 = Instant::now();
        let allowed = (0..40)
            .filter(|i| {
                let from = host(&format!("2001:db8::{i:x}"));
                let to = host(&format!("2001:db8:1:{i:x}::1"));
                limiter.allow(from, to, 10, t0).is_ok()
            })
            .count();
        assert_eq!(allowed, 20);
    }
}

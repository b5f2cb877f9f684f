//! PUNCH relays (flag 8) are rate limited per source IP: each relay makes the tracker send a
//! datagram to a third party, so an unlimited flag 8 would let anyone aim the tracker at a peer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Token buckets per source IP for flag 8. Bounded: the table is cleared when it grows past
/// `MAX_BUCKETS`, which at worst grants a fresh burst to each source.
pub(crate) struct PunchLimiter {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

const MAX_BUCKETS: usize = 65_536;

/// A bucket untouched for this long is full again whatever the rate, so forgetting it changes
/// nothing.
const IDLE: Duration = Duration::from_secs(10);

impl PunchLimiter {
    pub(crate) fn new() -> Self {
        PunchLimiter {
            buckets: HashMap::new(),
        }
    }

    /// Whether `ip` may have one more relay now, at `rate` per second with a burst of twice as
    /// many.
    pub(crate) fn allow(&mut self, ip: IpAddr, rate: u32, now: Instant) -> bool {
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&ip) {
            self.buckets.clear();
        }
        let burst = f64::from(rate) * 2.0;
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * f64::from(rate))
            .min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops the buckets of sources quiet for a while, so the table holds recent sources only.
    pub(crate) fn forget_idle(&mut self, now: Instant) {
        self.buckets
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate() {
        let mut limiter = PunchLimiter::new();
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!((0..25).filter(|_| limiter.allow(ip, 10, t0)).count(), 20);
        let other: IpAddr = "203.0.113.6".parse().unwrap();
        assert!(limiter.allow(other, 10, t0), "buckets are per IP");
        let later = t0 + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| limiter.allow(ip, 10, later)).count(), 5);
    }
}

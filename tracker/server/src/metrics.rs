//! What the UDP front end counts for `/metrics`: requests per flag, errors per code, answers
//! withheld by the anti-amplification and rate rules. Plain atomics, so the request logic stays
//! free of any metrics library and counting costs a relaxed add per datagram.

use std::sync::atomic::{AtomicU64, Ordering};

use tracker_proto::{ConnStats, ErrorCode};

/// Flags 1-10; index 0 counts datagrams that did not parse.
const FLAGS: usize = 11;

/// Why an answer was not sent as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// COOKIE_REQUIRED was sent instead (protocol.txt §1.6).
    Cookie,
    /// Nothing was sent: even the error would have amplified.
    Silent,
    /// 1203 RATE_LIMITED was sent instead (§1.8).
    Rate,
}

#[derive(Default)]
pub struct Counters {
    requests: [AtomicU64; FLAGS],
    errors: [AtomicU64; ErrorCode::ALL.len()],
    cookie: AtomicU64,
    silent: AtomicU64,
    rate: AtomicU64,
    /// Sums of what heartbeats report (flag 9's `conns=` and `failed=`, seed 003's stats).
    conns: AtomicU64,
    failed_conns: AtomicU64,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// (flag, count) for flags 1-10, then (0, malformed datagrams).
    pub requests: Vec<(u8, u64)>,
    /// Every code with its count (zeros included, so series exist from the start).
    pub errors: Vec<(ErrorCode, u64)>,
    pub withheld: Vec<(Withheld, u64)>,
    /// Sums of the connection figures heartbeats reported: (open, failed).
    pub connections: (u64, u64),
}

impl Counters {
    /// A parsed request of `flag`, or `None` for a datagram that did not parse.
    pub fn request(&self, flag: Option<u8>) {
        let i = flag.map_or(0, usize::from).min(FLAGS - 1);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|&c| c == code) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
        if code == ErrorCode::RateLimited {
            self.withheld(Withheld::Rate);
        }
    }

    /// Adds the connection figures of an answered heartbeat (saturating: a peer sending huge
    /// numbers pins a sum, never wraps it).
    pub fn connections(&self, stats: &ConnStats) {
        let add = |c: &AtomicU64, n: Option<u32>| {
            if let Some(n) = n {
                let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_add(u64::from(n)))
                });
            }
        };
        add(&self.conns, stats.conns);
        add(&self.failed_conns, stats.failed);
    }

    pub fn withheld(&self, why: Withheld) {
        let counter = match why {
            Withheld::Cookie => &self.cookie,
            Withheld::Silent => &self.silent,
            Withheld::Rate => &self.rate,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut requests: Vec<(u8, u64)> = (1..FLAGS)
            .map(|f| (f as u8, load(&self.requests[f])))
            .collect();
        requests.push((0, load(&self.requests[0])));
        CountersSnapshot {
            requests,
            errors: ErrorCode::ALL
                .iter()
                .zip(&self.errors)
                .map(|(&code, c)| (code, load(c)))
                .collect(),
            withheld: vec![
                (Withheld::Cookie, load(&self.cookie)),
                (Withheld::Silent, load(&self.silent)),
                (Withheld::Rate, load(&self.rate)),
            ],
            connections: (load(&self.conns), load(&self.failed_conns)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_where_they_belong() {
        let c = Counters::default();
        c.request(Some(6));
        c.request(Some(6));
        c.request(None);
        c.request(Some(200));
        c.error(ErrorCode::RateLimited);
        c.withheld(Withheld::Cookie);
        c.connections(&ConnStats {
            conns: Some(3),
            failed: Some(u32::MAX),
        });
        c.connections(&ConnStats {
            conns: None,
            failed: Some(1),
        });
        let s = c.snapshot();
        assert_eq!(s.connections, (3, u64::from(u32::MAX) + 1));
        assert_eq!(s.requests[5], (6, 2));
        assert_eq!(s.requests[9], (10, 1));
        assert_eq!(s.requests[10], (0, 1));
        assert!(s.errors.contains(&(ErrorCode::RateLimited, 1)));
        assert_eq!(
            s.withheld,
            vec![
                (Withheld::Cookie, 1),
                (Withheld::Silent, 0),
                (Withheld::Rate, 1)
            ]
        );
    }
}

//! Byte-rate limits: per process (`--upload-limit`, `--download-limit`) and per connection
//! (`--upload-rate`), shared by every connection that books bytes on them.
//!
//! Each limit is a GCRA meter (virtual time): booking `n` bytes moves the limit's "theoretical
//! arrival time" forward by `n / rate`; the caller waits until that time is at most `BURST`
//! ahead of now. That is a token bucket of `BURST` worth of bytes without a timer, exact over
//! any interval, and fair between connections because every booking queues behind the ones
//! before it.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How far ahead of its rate a limit lets traffic run: short enough that a rate shows within a
/// second, long enough that a 128 KiB chunk run at 1 MB/s is not split into sleeps.
const BURST: Duration = Duration::from_millis(250);

/// One byte-rate limit; `None` rate means unlimited.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: Option<u64>,
    tat: Mutex<Option<Instant>>,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (`None` or 0: unlimited).
    pub fn new(bytes_per_sec: Option<u64>) -> RateLimit {
        RateLimit {
            bytes_per_sec: bytes_per_sec.filter(|r| *r > 0),
            tat: Mutex::new(None),
        }
    }

    pub fn unlimited() -> RateLimit {
        RateLimit::new(None)
    }

    /// Bytes per second, `None` when unlimited.
    pub fn rate(&self) -> Option<u64> {
        self.bytes_per_sec
    }

    /// Books `n` bytes at `now`; the instant the caller may send (or take) them, if later than now.
    pub fn book(&self, n: u64, now: Instant) -> Option<Instant> {
        let rate = self.bytes_per_sec?;
        let cost = Duration::from_secs_f64(n as f64 / rate as f64);
        let mut tat = self.tat.lock();
        let next = tat.map_or(now, |t| t.max(now)) + cost;
        *tat = Some(next);
        let allowed = next.checked_sub(BURST).unwrap_or(now);
        (allowed > now).then_some(allowed)
    }
}

/// Books `n` bytes at `now` on every limit of `limits`; the instant all of them allow it, if
/// later than now.
pub fn book_all(limits: &[std::sync::Arc<RateLimit>], n: u64, now: Instant) -> Option<Instant> {
    limits.iter().filter_map(|l| l.book(n, now)).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let l = RateLimit::unlimited();
        assert_eq!(l.book(u64::MAX, Instant::now()), None);
        assert_eq!(RateLimit::new(Some(0)).rate(), None);
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let l = RateLimit::new(Some(1_000_000));
        let t0 = Instant::now();
        // 250 ms of burst go at once.
        assert_eq!(l.book(250_000, t0), None);
        // The next 500 KB may go only once the meter is within the burst of its rate: 0.5 s.
        let at = l.book(500_000, t0).expect("must wait");
        let waited = at - t0;
        assert!(
            (waited.as_secs_f64() - 0.5).abs() < 1e-3,
            "waited {waited:?}"
        );
        // Over 10 s at the limit, bookings are let through at the rate.
        let mut now = at;
        for _ in 0..100 {
            if let Some(t) = l.book(100_000, now) {
                now = t;
            }
        }
        let rate = 10_750_000.0 / (now - t0 + BURST).as_secs_f64();
        assert!((rate - 1e6).abs() / 1e6 < 0.01, "rate {rate}");
    }

    #[test]
    fn an_idle_limit_does_not_save_up_more_than_the_burst() {
        let l = RateLimit::new(Some(1_000_000));
        let t0 = Instant::now();
        assert_eq!(l.book(100_000, t0), None);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(l.book(250_000, later), None);
        assert!(
            l.book(100_000, later).is_some(),
            "a minute idle is no credit"
        );
    }
}

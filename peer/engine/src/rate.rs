//! The one rate meter: downloads, uploads and the console all turn cumulative byte counters
//! into bytes per second the same way.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Rate over a sliding window of cumulative byte counters.
///
/// The engine only counts bytes; the meter samples the counter and reports the slope over the
/// last `window`, so a stalled transfer drops to zero within the window instead of showing a
/// lifetime average. Samples older than the window are dropped, so memory stays bounded
/// however long the session runs.
#[derive(Debug, Clone)]
pub struct RateMeter {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records the cumulative counter `total` as of `now`; returns whether it moved since the
    /// previous sample (always true for the first one).
    pub fn record(&mut self, now: Instant, total: u64) -> bool {
        let moved = self.samples.back().is_none_or(|&(_, last)| last != total);
        self.samples.push_back((now, total));
        // Keep one sample at or before the window's start so the slope covers the whole window.
        while self.samples.len() > 2 {
            match self.samples.get(1) {
                Some(&(t, _)) if now.saturating_duration_since(t) >= self.window => {
                    self.samples.pop_front();
                }
                _ => break,
            }
        }
        moved
    }

    /// Bytes per second between the oldest kept sample and the newest; zero with fewer than two.
    pub fn rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                b1.saturating_sub(b0) as f64 / (t1 - t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_meter_forgets_old_samples() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(Duration::from_secs(5));
        assert_eq!(meter.rate(), 0.0);
        for s in 0..=10u64 {
            assert!(meter.record(t0 + Duration::from_secs(s), s * 1000));
        }
        assert!((meter.rate() - 1000.0).abs() < 1e-6);
        // A stall: the counter stops; after a full window the rate is zero.
        for s in 11..=16u64 {
            assert!(!meter.record(t0 + Duration::from_secs(s), 10_000));
        }
        assert_eq!(meter.rate(), 0.0);
        assert!(meter.samples.len() <= 7);
    }
}

//! Progress while `peer share` hashes what it shares, on stderr: a large file or directory
//! takes seconds to hash (about a second per GiB on two cores) before anything else happens.
//! On a terminal, a bar redrawn in place (percent, bytes, rate, ETA); otherwise a line at every
//! tenth and at least every 10 s. Shares below [`SHOWN_FROM`] hash too quickly to need either.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use peer_engine::share::HashProgress;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::units::format_bytes;

/// Smallest share whose hashing is shown.
const SHOWN_FROM: u64 = 64 << 20;

/// How often the progress is sampled.
const PERIOD: Duration = Duration::from_millis(200);

/// Longest silence between two plain lines.
const LINE_EVERY: Duration = Duration::from_secs(10);

const BAR_TEMPLATE: &str = "hashing {prefix} [{bar:24}] {percent:>3}%  {binary_bytes:>10} / {binary_total_bytes:<10} {binary_bytes_per_sec} ETA {eta}";

/// The progress display of one share being hashed; [`Hashing::finish`] ends it.
pub struct Hashing {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Hashing {
    /// Starts showing how far hashing `name` has got.
    pub fn start(name: String, progress: Arc<HashProgress>) -> Hashing {
        let stop = CancellationToken::new();
        let task = tokio::spawn(show(name, progress, stop.clone()));
        Hashing { stop, task }
    }

    /// Ends the display (the share was hashed, or failed).
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn show(name: String, progress: Arc<HashProgress>, stop: CancellationToken) {
    let total = loop {
        // Checked once more after the stop: a share hashed within one period still gets
        // its line.
        let stopped = stop.is_cancelled();
        let total = progress.total.load(Ordering::Relaxed);
        if total > 0 {
            break total;
        }
        if stopped {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(PERIOD) => {}
        }
    };
    if total < SHOWN_FROM {
        return;
    }
    let hashed = || progress.hashed.load(Ordering::Relaxed).min(total);
    if io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name);
        loop {
            bar.set_position(hashed());
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
        bar.finish_and_clear();
        return;
    }
    let mut lines = Lines::new(total);
    loop {
        let done = stop.is_cancelled();
        if let Some(line) = lines.update(Instant::now(), hashed()) {
            let _ = writeln!(io::stderr(), "hashing {name}: {line}");
        }
        if done {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
}

/// When a plain progress line is due: at the start, at every tenth, at the end and after
/// [`LINE_EVERY`] of silence.
struct Lines {
    total: u64,
    /// Tenths already reported; `None` before the first line.
    tenth: Option<u64>,
    last: Option<Instant>,
}

impl Lines {
    fn new(total: u64) -> Lines {
        Lines {
            total,
            tenth: None,
            last: None,
        }
    }

    fn update(&mut self, now: Instant, hashed: u64) -> Option<String> {
        let tenth = hashed.saturating_mul(10) / self.total.max(1);
        let quiet = self
            .last
            .is_none_or(|t| now.duration_since(t) >= LINE_EVERY);
        if self.tenth.is_some_and(|t| t >= tenth) && !quiet {
            return None;
        }
        if self.tenth == Some(10) {
            return None;
        }
        self.tenth = Some(tenth);
        self.last = Some(now);
        Some(format!(
            "{}% ({} of {})",
            hashed * 100 / self.total.max(1),
            format_bytes(hashed),
            format_bytes(self.total)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_at_the_start_every_tenth_the_end_and_after_silence() {
        let t0 = Instant::now();
        let mut l = Lines::new(1000);
        assert_eq!(l.update(t0, 0).as_deref(), Some("0% (0 B of 1000 B)"));
        assert_eq!(l.update(t0, 50), None);
        assert!(l.update(t0, 100).unwrap().starts_with("10%"));
        assert_eq!(l.update(t0 + Duration::from_secs(5), 150), None);
        assert!(l
            .update(t0 + Duration::from_secs(11), 160)
            .unwrap()
            .starts_with("16%"));
        assert!(l
            .update(t0 + Duration::from_secs(12), 1000)
            .unwrap()
            .starts_with("100%"));
        assert_eq!(l.update(t0 + Duration::from_secs(30), 1000), None);
    }
}

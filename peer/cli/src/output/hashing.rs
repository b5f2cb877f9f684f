//! Progress while `peer share` hashes what it shares: the only step of sharing whose length
//! grows with the size (a 100 GiB file hashes for about a minute), which printed nothing
//! until it ended. On a terminal, a bar on stderr with percent, bytes, rate and ETA; otherwise a
//! plain line every few seconds. A share hashed within a second shows nothing.

use std::future::Future;
use std::io::{self, IsTerminal};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use peer_engine::metrics::metrics;

use super::live;
use super::units::{format_bytes, format_duration, format_rate};

/// Nothing is shown for hashing that ends sooner.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// How often the bar is redrawn.
const BAR_PERIOD: Duration = Duration::from_millis(200);

/// How often a plain line is printed.
const LINE_PERIOD: Duration = Duration::from_secs(2);

const BAR_TEMPLATE: &str =
    "hashing {prefix} [{bar:24}] {percent:>3}%  {binary_bytes:>10} / {binary_total_bytes:<10} {binary_bytes_per_sec} ETA {eta}";

/// Runs `work` (which hashes `path`) and shows how far the hashing has got meanwhile.
pub async fn while_hashing<T>(path: &Path, work: impl Future<Output = T>) -> T {
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let total = size_of(path);
    let counter = &metrics().share_bytes_hashed;
    let base = counter.get();
    let started = Instant::now();
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return out,
        () = tokio::time::sleep(QUIET_FOR) => {}
    }
    let hashed = || counter.get().saturating_sub(base);
    if io::stderr().is_terminal() {
        let bar = live::bars().add(ProgressBar::new(total));
        if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label);
        let mut tick = tokio::time::interval(BAR_PERIOD);
        loop {
            tokio::select! {
                out = &mut work => {
                    bar.finish_and_clear();
                    return out;
                }
                _ = tick.tick() => bar.set_position(hashed().min(total)),
            }
        }
    }
    let mut tick = tokio::time::interval(LINE_PERIOD);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => eprintln!("{}", line(&label, hashed(), total, started.elapsed())),
        }
    }
}

/// `hashing NAME: 42% (1.2 GiB of 2.9 GiB, 1.1 GiB/s, 2s left)`.
fn line(label: &str, hashed: u64, total: u64, elapsed: Duration) -> String {
    let rate = hashed as f64 / elapsed.as_secs_f64().max(0.001);
    let percent = (hashed.min(total) * 100).checked_div(total).unwrap_or(100);
    let left = if rate > 0.0 {
        format_duration(Duration::from_secs_f64(
            total.saturating_sub(hashed) as f64 / rate,
        ))
    } else {
        "?".to_string()
    };
    format!(
        "hashing {label}: {percent}% ({} of {}, {}, {left} left)",
        format_bytes(hashed),
        format_bytes(total),
        format_rate(rate)
    )
}

/// Bytes of the regular files at `path` (a file, or a directory's files at any depth), not
/// following links: what hashing it reads. Unreadable entries count as empty; sharing reports
/// them itself.
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path).map_or(0, |entries| {
        entries.flatten().map(|e| size_of(&e.path())).sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_how_far_and_how_long_is_left() {
        let l = line("big.iso", 1 << 30, 4 << 30, Duration::from_secs(1));
        assert!(
            l.starts_with("hashing big.iso: 25% (1.00 GiB of 4.00 GiB, "),
            "{l}"
        );
        assert!(l.ends_with("3s left)"), "{l}");
    }
}

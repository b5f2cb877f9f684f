//! Live progress of `peer get` while it works, on stderr (stdout keeps the summaries scripts
//! read). On a terminal, bars redrawn in place as transmission-cli's progress line: one per file
//! and one for the total when there are several, with percent, bytes, rate, ETA and peers; log
//! lines are printed above them ([`LogWriter`]). Otherwise (a pipe, a log file) the console's
//! progress lines ([`ProgressTicker`]): when a download starts, at every tenth, at least every
//! 10 s.

use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use peer_engine::download::Progress;
use peer_engine::name::ShareName;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::table::{eta, FileState, FileStats};
use super::ticker::ProgressTicker;
use super::units::{format_duration, format_rate};

/// The bars being drawn, once there are any: where log lines must go around.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// How often bars are redrawn.
const BAR_PERIOD: Duration = Duration::from_millis(200);

/// How often the engine is sampled for progress lines (as the console does).
const LINE_PERIOD: Duration = Duration::from_secs(1);

const WAITING_TEMPLATE: &str = "{prefix:24!} {msg}";
const BAR_TEMPLATE: &str =
    "{prefix:24!} [{bar:24}] {percent:>3}%  {binary_bytes:>10} / {binary_total_bytes:<10} {msg}";

/// The bars on stderr, which log lines written through [`LogWriter`] go around.
pub fn bars() -> &'static MultiProgress {
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// True when `peer get` draws bars: stderr is a terminal.
pub fn bars_wanted() -> bool {
    io::stderr().is_terminal()
}

/// The `env_logger` target of `peer get` on a terminal: a log line is written with the bars
/// cleared and drawn again below it, instead of through them.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match BARS.get() {
            Some(bars) => bars.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Shows the progress of `files` until [`Live::finish`].
pub struct Live {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Live {
    pub fn start(files: Vec<(ShareName, watch::Receiver<Progress>)>) -> Live {
        let stop = CancellationToken::new();
        let task = if bars_wanted() {
            tokio::spawn(draw_bars(files, stop.clone()))
        } else {
            tokio::spawn(print_lines(files, stop.clone()))
        };
        Live { stop, task }
    }

    /// Draws the last state (bars stay on screen, finished or not) and stops.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn draw_bars(files: Vec<(ShareName, watch::Receiver<Progress>)>, stop: CancellationToken) {
    let multi = bars();
    let styles = Styles {
        bar: ProgressStyle::with_template(BAR_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        waiting: ProgressStyle::with_template(WAITING_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    };
    let bar = |prefix: String| {
        multi.add(
            ProgressBar::new(0)
                .with_style(styles.waiting.clone())
                .with_prefix(prefix),
        )
    };
    let bars: Vec<ProgressBar> = files
        .iter()
        .map(|(name, _)| bar(name.to_string()))
        .collect();
    let total = (files.len() > 1).then(|| bar(format!("total ({} files)", files.len())));
    let mut tick = tokio::time::interval(BAR_PERIOD);
    loop {
        let last = tokio::select! {
            () = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        // The total as one more download: sizes, verified bytes, rates and peers added up.
        let mut sum = Progress {
            done: true,
            ..Progress::default()
        };
        let mut held = 0;
        for ((_, progress), bar) in files.iter().zip(&bars) {
            let p = progress.borrow().clone();
            show(bar, &p, &styles);
            sum.size += p.size;
            held += held_bytes(&p);
            if !p.done {
                sum.done = false;
                sum.rate += p.rate;
                sum.swarm.peers += p.swarm.peers;
            }
        }
        if let Some(total) = &total {
            if total.length() != Some(sum.size) {
                total.set_style(styles.bar.clone());
                total.set_length(sum.size);
            }
            total.set_position(held);
            if sum.size == 0 && !sum.done {
                total.set_message("asking the tracker and peers");
            } else {
                total.set_message(rate_eta_peers(&sum, held));
            }
        }
        if last {
            for bar in bars.iter().chain(&total) {
                bar.abandon();
            }
            return;
        }
    }
}

/// A bar, and what stands in for it while the size is not known yet.
struct Styles {
    bar: ProgressStyle,
    waiting: ProgressStyle,
}

/// Sets `bar` to what `p` says of one file.
fn show(bar: &ProgressBar, p: &Progress, styles: &Styles) {
    if !p.done && p.total == 0 && p.size == 0 {
        bar.set_message("asking the tracker and peers");
        return;
    }
    if bar.length() != Some(p.size) {
        bar.set_style(styles.bar.clone());
        bar.set_length(p.size);
    }
    let held = held_bytes(p);
    bar.set_position(held);
    bar.set_message(rate_eta_peers(p, held));
}

/// `1.2 MiB/s  ETA 45s  3 peers`.
fn rate_eta_peers(p: &Progress, held: u64) -> String {
    if p.done {
        return "done".to_owned();
    }
    let eta =
        eta(p.size.saturating_sub(held), p.rate).map_or_else(|| "?".to_owned(), format_duration);
    let peers = p.swarm.peers;
    format!(
        "{:>11}  ETA {eta:<7}  {peers} peer{}",
        format_rate(p.rate),
        if peers == 1 { "" } else { "s" }
    )
}

/// Verified bytes on disk (earlier runs included), the last chunk at its real length.
fn held_bytes(p: &Progress) -> u64 {
    if p.done || (p.total > 0 && p.have >= p.total) {
        return p.size;
    }
    if p.total == 0 {
        return 0;
    }
    (u64::from(p.have) * u64::from(p.chunk_size)).min(p.size)
}

async fn print_lines(files: Vec<(ShareName, watch::Receiver<Progress>)>, stop: CancellationToken) {
    let mut ticker = ProgressTicker::new();
    let mut tick = tokio::time::interval(LINE_PERIOD);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Running downloads only: the summary line on stdout says how each one ended.
        let running: Vec<FileStats> = files
            .iter()
            .filter_map(|(name, progress)| {
                let p = progress.borrow();
                (p.total > 0 && !p.done)
                    .then(|| FileStats::of_download(name, &p, FileState::Downloading))
            })
            .collect();
        for line in ticker.update(Instant::now(), &running) {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(have: u32, total: u32, size: u64, done: bool) -> Progress {
        Progress {
            have,
            total,
            size,
            chunk_size: 2048,
            done,
            ..Progress::default()
        }
    }

    #[test]
    fn held_bytes_count_the_short_last_chunk_once() {
        assert_eq!(held_bytes(&progress(0, 3, 5000, false)), 0);
        assert_eq!(held_bytes(&progress(2, 3, 5000, false)), 4096);
        assert_eq!(held_bytes(&progress(3, 3, 5000, true)), 5000);
        // Before the tracker answered, nothing is known.
        assert_eq!(held_bytes(&progress(0, 0, 0, false)), 0);
        // An empty file is complete once done.
        assert_eq!(held_bytes(&progress(0, 0, 0, true)), 0);
    }

    #[test]
    fn messages_say_rate_eta_and_peers() {
        let mut p = progress(512, 2048, 4 * 1024 * 1024, false);
        p.rate = 1024.0 * 1024.0;
        p.swarm.peers = 1;
        let held = held_bytes(&p);
        assert_eq!(rate_eta_peers(&p, held), "  1.0 MiB/s  ETA 3s       1 peer");
        p.rate = 0.0;
        p.swarm.peers = 2;
        assert!(rate_eta_peers(&p, held).contains("ETA ?"));
        assert!(rate_eta_peers(&p, held).ends_with("2 peers"));
        assert_eq!(rate_eta_peers(&progress(4, 4, 1, true), 1), "done");
    }
}

//! Transfer statistics as people are used to reading them: a per-file table shaped like
//! `transmission-remote -l` and session totals shaped like `transmission-remote -st`.
//!
//! Everything here is pure: the engine hands over byte counters and rates, this module turns
//! them into ETAs and aligned text. The console, `peer status` and the demo all print through
//! these functions, so the figures look the same everywhere.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use peer_engine::download::Progress;
use peer_engine::name::ShareName;
use peer_engine::share::LocalFile;
use peer_engine::storage::FileProgress;
use peer_engine::swarm::SwarmStats;

use super::units::{format_bytes, format_duration, format_rate};

/// What a file is doing right now, as the `Status` column shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Chunks are still missing and the engine is fetching them.
    Downloading,
    /// Every chunk is verified; the file is served to others.
    Seeding,
    /// Every chunk is verified, but no daemon serves the directory right now.
    Idle,
    /// Chunks are missing and nothing is fetching them; the resume record keeps the verified ones.
    Stopped,
    /// The download stopped on an error; resume state is kept on disk.
    Failed(String),
}

impl FileState {
    /// The word shown in the `Status` column and in `--json` output.
    pub fn label(&self) -> &str {
        match self {
            FileState::Downloading => "Downloading",
            FileState::Seeding => "Seeding",
            FileState::Idle => "Idle",
            FileState::Stopped => "Stopped",
            FileState::Failed(_) => "Failed",
        }
    }
}

/// One file's figures at one instant; the engine fills it in, the formatters read it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStats {
    pub name: ShareName,
    /// File size in bytes.
    pub size: u64,
    /// Chunk size in bytes (the last chunk may be shorter).
    pub chunk_size: u64,
    /// Verified chunks on disk.
    pub chunks_have: u64,
    pub chunks_total: u64,
    /// Verified payload bytes received from peers in this session.
    pub downloaded: u64,
    /// Payload bytes sent to peers in this session.
    pub uploaded: u64,
    /// Bytes per second over the recent window.
    pub down_rate: f64,
    pub up_rate: f64,
    /// Who we exchange chunks with for this file right now (connections, downloading from,
    /// uploading to, peers that delivered chunks).
    pub swarm: SwarmStats,
    pub state: FileState,
    /// A directory's files and how much of each is verified; empty for a single file.
    pub files: Arc<[FileProgress]>,
}

impl FileStats {
    /// A file as the share directory shows it on disk: complete ones in `complete_state`
    /// (seeding when a daemon serves the directory, idle otherwise), unfinished downloads
    /// stopped with the chunks their resume record lists.
    pub fn from_disk(file: LocalFile, complete_state: &FileState) -> FileStats {
        FileStats {
            name: file.name,
            size: file.size,
            chunk_size: u64::from(file.chunk_size),
            chunks_have: file.chunks_have,
            chunks_total: file.chunks_total,
            downloaded: 0,
            uploaded: 0,
            down_rate: 0.0,
            up_rate: 0.0,
            swarm: SwarmStats::default(),
            state: if file.complete {
                complete_state.clone()
            } else {
                FileState::Stopped
            },
            files: file.files.into(),
        }
    }

    /// A download as its engine progress shows it; rate and swarm count only while it runs.
    pub fn of_download(name: &ShareName, p: &Progress, state: FileState) -> FileStats {
        let running = state == FileState::Downloading;
        FileStats {
            name: name.clone(),
            size: p.size,
            chunk_size: u64::from(p.chunk_size),
            chunks_have: u64::from(p.have),
            chunks_total: u64::from(p.total),
            downloaded: p.bytes,
            uploaded: p.swarm.uploaded,
            down_rate: if running { p.rate } else { 0.0 },
            up_rate: if running { p.up_rate } else { 0.0 },
            swarm: if running {
                p.swarm.clone()
            } else {
                SwarmStats::default()
            },
            state,
            files: p.files.clone(),
        }
    }

    /// Bytes held on disk, counting the last chunk by its real (shorter) length.
    pub fn have_bytes(&self) -> u64 {
        if self.chunks_total == 0 || self.chunks_have >= self.chunks_total {
            return self.size;
        }
        (self.chunks_have * self.chunk_size).min(self.size)
    }

    /// Percentage of verified chunks; an empty file counts as complete.
    pub fn percent_done(&self) -> f64 {
        if self.chunks_total == 0 {
            100.0
        } else {
            self.chunks_have as f64 * 100.0 / self.chunks_total as f64
        }
    }

    /// Remaining time at the current download rate, `None` when it cannot be estimated.
    pub fn eta(&self) -> Option<Duration> {
        eta(self.size.saturating_sub(self.have_bytes()), self.down_rate)
    }
}

/// Session totals, as `transmission-remote -st` shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStats {
    pub uploaded: u64,
    pub downloaded: u64,
    pub duration: Duration,
}

/// Upload/download ratio; `None` while nothing was downloaded (transmission prints "None").
pub fn ratio(uploaded: u64, downloaded: u64) -> Option<f64> {
    (downloaded > 0).then(|| uploaded as f64 / downloaded as f64)
}

/// Time to move `remaining` bytes at `rate` bytes/s; zero when nothing remains, `None` when
/// the rate is zero (a stalled transfer has no honest estimate).
pub fn eta(remaining: u64, rate: f64) -> Option<Duration> {
    if remaining == 0 {
        return Some(Duration::ZERO);
    }
    // NaN (no sample yet) counts as stalled too.
    if rate.is_nan() || rate < 1.0 {
        return None;
    }
    Some(Duration::from_secs_f64(remaining as f64 / rate).max(Duration::from_secs(1)))
}

fn format_eta(stats: &FileStats) -> String {
    match (&stats.state, stats.eta()) {
        (FileState::Seeding | FileState::Idle, _) => "Done".to_owned(),
        (_, Some(eta)) if eta.is_zero() => "Done".to_owned(),
        (FileState::Failed(_) | FileState::Stopped, _) | (_, None) => "Unknown".to_owned(),
        (_, Some(eta)) => format_duration(eta),
    }
}

fn format_ratio(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) => format!("{r:.2}"),
        None => "None".to_owned(),
    }
}

/// The per-file table (`transmission-remote -l`): one row per file, then a `Sum:` row.
pub fn format_file_table(files: &[FileStats]) -> String {
    let name_width = files
        .iter()
        .map(|f| f.name.as_str().chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_width$}  {:>6}  {:>10}  {:>13}  {:>8}  {:>12}  {:>12}  {:>5}  {:>5}  {:>4}  {:>4}  Status",
        "Name", "Done", "Have", "Chunks", "ETA", "Up", "Down", "Ratio", "Peers", "From", "To"
    );
    let (mut have, mut up, mut down) = (0u64, 0f64, 0f64);
    for f in files {
        have += f.have_bytes();
        up += f.up_rate;
        down += f.down_rate;
        let status = match &f.state {
            FileState::Failed(why) => format!("Failed: {why}"),
            other => other.label().to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<name_width$}  {:>5.1}%  {:>10}  {:>13}  {:>8}  {:>12}  {:>12}  {:>5}  {:>5}  {:>4}  {:>4}  {status}",
            f.name.as_str(),
            // Floor, so a file one chunk short never shows 100.0%.
            (f.percent_done() * 10.0).floor() / 10.0,
            format_bytes(f.have_bytes()),
            format!("{}/{}", f.chunks_have, f.chunks_total),
            format_eta(f),
            format_rate(f.up_rate),
            format_rate(f.down_rate),
            format_ratio(ratio(f.uploaded, f.downloaded)),
            f.swarm.peers,
            f.swarm.downloading_from,
            f.swarm.uploading_to,
        );
    }
    let _ = writeln!(
        out,
        "{:<name_width$}  {:>6}  {:>10}  {:>13}  {:>8}  {:>12}  {:>12}",
        "Sum:",
        "",
        format_bytes(have),
        "",
        "",
        format_rate(up),
        format_rate(down)
    );
    for f in files.iter().filter(|f| !f.files.is_empty()) {
        out.push_str(&format_directory(f));
    }
    out
}

/// Files shown by name under a directory's summary line: those partly verified.
const PARTIAL_FILES_SHOWN: usize = 5;

/// `album/: 412/1001 files complete, 1.2 MiB of 1.4 MiB`, then the files partly there.
fn format_directory(f: &FileStats) -> String {
    let done = f.files.iter().filter(|p| p.is_complete()).count();
    let have: u64 = f.files.iter().map(|p| p.have).sum();
    let mut out = format!(
        "{}/: {done}/{} files complete, {} of {}\n",
        f.name,
        f.files.len(),
        format_bytes(have),
        format_bytes(f.size)
    );
    let partial: Vec<&FileProgress> = f
        .files
        .iter()
        .filter(|p| p.have > 0 && !p.is_complete())
        .collect();
    for p in partial.iter().take(PARTIAL_FILES_SHOWN) {
        let _ = writeln!(
            out,
            "  {}  {:.1}%  {} of {}",
            p.path,
            p.have as f64 * 100.0 / p.length as f64,
            format_bytes(p.have),
            format_bytes(p.length)
        );
    }
    if partial.len() > PARTIAL_FILES_SHOWN {
        let _ = writeln!(
            out,
            "  ... and {} more partly there",
            partial.len() - PARTIAL_FILES_SHOWN
        );
    }
    out
}

/// One line per file for live progress:
/// `name  42.0%  84/200 chunks  down 1.2 MiB/s  up 0 B/s  ETA 3s  3 peers (from 2, to 1)`.
pub fn format_progress_line(f: &FileStats) -> String {
    format!(
        "{}  {:.1}%  {}/{} chunks  down {}  up {}  ETA {}  {} peer{} (from {}, to {})",
        f.name,
        (f.percent_done() * 10.0).floor() / 10.0,
        f.chunks_have,
        f.chunks_total,
        format_rate(f.down_rate),
        format_rate(f.up_rate),
        format_eta(f),
        f.swarm.peers,
        if f.swarm.peers == 1 { "" } else { "s" },
        f.swarm.downloading_from,
        f.swarm.uploading_to,
    )
}

/// Session totals (`transmission-remote -st`).
pub fn format_session(session: &SessionStats) -> String {
    format!(
        "CURRENT SESSION\n  Uploaded:   {}\n  Downloaded: {}\n  Ratio:      {}\n  Duration:   {} ({} seconds)\n",
        format_bytes(session.uploaded),
        format_bytes(session.downloaded),
        format_ratio(ratio(session.uploaded, session.downloaded)),
        format_duration(session.duration),
        session.duration.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(have: u64, total: u64, down_rate: f64) -> FileStats {
        FileStats {
            name: ShareName::new("movie.bin").unwrap(),
            size: total * 2048 - 100,
            chunk_size: 2048,
            chunks_have: have,
            chunks_total: total,
            downloaded: have * 2048,
            uploaded: 1024,
            down_rate,
            up_rate: 0.0,
            swarm: SwarmStats {
                peers: 3,
                ..SwarmStats::default()
            },
            state: if have == total {
                FileState::Seeding
            } else {
                FileState::Downloading
            },
            files: Default::default(),
        }
    }

    #[test]
    fn eta_is_unknown_when_stalled_and_done_when_complete() {
        assert_eq!(eta(0, 0.0), Some(Duration::ZERO));
        assert_eq!(eta(10, 0.0), None);
        assert_eq!(eta(10, f64::NAN), None);
        assert_eq!(eta(4096, 1024.0), Some(Duration::from_secs(4)));
        assert_eq!(eta(1, 1e9), Some(Duration::from_secs(1)));
    }

    #[test]
    fn ratio_is_none_before_any_download() {
        assert_eq!(ratio(10, 0), None);
        assert_eq!(ratio(5, 10), Some(0.5));
    }

    #[test]
    fn last_chunk_counts_its_real_length() {
        let f = file(10, 10, 0.0);
        assert_eq!(f.have_bytes(), f.size);
        assert_eq!(file(1, 10, 0.0).have_bytes(), 2048);
        let empty = FileStats {
            size: 0,
            chunks_total: 0,
            chunks_have: 0,
            ..f
        };
        assert_eq!(empty.percent_done(), 100.0);
        assert_eq!(empty.have_bytes(), 0);
    }

    #[test]
    fn table_has_a_row_per_file_and_a_sum() {
        let files = [file(5, 10, 2048.0), file(10, 10, 0.0)];
        let table = format_file_table(&files);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[0].starts_with("Name") && lines[0].ends_with("Status"),
            "{table}"
        );
        assert!(
            lines[1].contains(" 50.0%") && lines[1].contains("5/10"),
            "{table}"
        );
        assert!(
            lines[1].contains("Downloading") && lines[1].contains("2.0 KiB/s"),
            "{table}"
        );
        assert!(lines[1].contains("0.10"), "ratio 1024/10240: {table}");
        assert!(
            lines[2].contains("100.0%") && lines[2].contains("Done"),
            "{table}"
        );
        assert!(
            lines[3].starts_with("Sum:") && lines[3].contains("2.0 KiB/s"),
            "{table}"
        );
    }

    #[test]
    fn one_chunk_short_never_shows_complete() {
        let line = format_progress_line(&file(1999, 2000, 0.0));
        assert!(
            line.contains("99.9%") && line.contains("ETA Unknown"),
            "{line}"
        );
    }

    #[test]
    fn session_totals_show_ratio_and_duration() {
        let text = format_session(&SessionStats {
            uploaded: 3 * 1024 * 1024,
            downloaded: 2 * 1024 * 1024,
            duration: Duration::from_secs(125),
        });
        assert!(text.contains("Uploaded:   3.0 MiB"), "{text}");
        assert!(text.contains("Ratio:      1.50"), "{text}");
        assert!(text.contains("Duration:   2m 05s (125 seconds)"), "{text}");
    }
}

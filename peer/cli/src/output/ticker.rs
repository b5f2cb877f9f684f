//! Progress of downloads as lines: above the console's prompt, and from `peer get` when its
//! output is not a terminal.
//!
//! A redrawn bar would fight the line editor for the cursor (and means nothing in a log file),
//! so progress is a line per step: one when a download starts, one each time it crosses a tenth
//! of the file or at least every [`QUIET_PERIOD`] while it runs (so a slow download still shows
//! its rate and ETA), and one when it completes or fails. The caller samples the engine once a
//! second and hands the snapshot to [`ProgressTicker::update`], which is pure so its choices are
//! tested directly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use peer_engine::name::ShareName;

use super::table::{format_progress_line, FileState, FileStats};
use super::units::{format_bytes, format_duration};

/// Longest silence while a download runs.
pub const QUIET_PERIOD: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Seen {
    started: Instant,
    last_line: Instant,
    /// Tenths of the file already reported (0..=10).
    tenth: u64,
    state: FileState,
}

/// Remembers what was last said about each file.
#[derive(Debug, Default)]
pub struct ProgressTicker {
    seen: HashMap<ShareName, Seen>,
}

impl ProgressTicker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines to print for snapshot `files` taken at `now`. Files seeding from the start
    /// (shared, not downloaded in this session) never produce lines: their progress is not news.
    pub fn update(&mut self, now: Instant, files: &[FileStats]) -> Vec<String> {
        let mut lines = Vec::new();
        for f in files {
            // An empty file is complete: all ten tenths.
            let tenth = (f.chunks_have * 10)
                .checked_div(f.chunks_total)
                .unwrap_or(10);
            let Some(seen) = self.seen.get_mut(&f.name) else {
                match f.state {
                    FileState::Downloading => {
                        lines.push(format!("started: {}", format_progress_line(f)));
                    }
                    // Fetched between two samples: still news, unlike a file shared from disk.
                    FileState::Seeding if f.downloaded > 0 => lines.push(format!(
                        "complete: {} ({}, {} chunks verified); now seeding",
                        f.name,
                        format_bytes(f.size),
                        f.chunks_total
                    )),
                    _ => {}
                }
                self.seen.insert(
                    f.name.clone(),
                    Seen {
                        started: now,
                        last_line: now,
                        tenth,
                        state: f.state.clone(),
                    },
                );
                continue;
            };
            match (&seen.state, &f.state) {
                (FileState::Downloading, FileState::Seeding) => {
                    let took = now.saturating_duration_since(seen.started);
                    let average = f.downloaded as f64 / took.as_secs_f64().max(1.0);
                    lines.push(format!(
                        "complete: {} ({}, {} chunks verified, {} at {}/s average); now seeding",
                        f.name,
                        format_bytes(f.size),
                        f.chunks_total,
                        format_duration(took),
                        format_bytes(average as u64),
                    ));
                }
                (FileState::Downloading, FileState::Failed(why)) => {
                    lines.push(format!(
                        "failed: {} at {}/{} chunks: {why} (verified chunks are kept; download it again to resume)",
                        f.name, f.chunks_have, f.chunks_total
                    ));
                }
                (FileState::Downloading, FileState::Downloading)
                    if tenth > seen.tenth
                        || now.saturating_duration_since(seen.last_line) >= QUIET_PERIOD =>
                {
                    lines.push(format_progress_line(f));
                    seen.last_line = now;
                }
                (FileState::Failed(_), FileState::Downloading) => {
                    lines.push(format!("resumed: {}", format_progress_line(f)));
                    seen.last_line = now;
                }
                _ => {}
            }
            seen.tenth = tenth;
            seen.state = f.state.clone();
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(have: u64, state: FileState) -> Vec<FileStats> {
        vec![FileStats {
            name: ShareName::new("a.bin").unwrap(),
            size: 100 * 2048,
            chunk_size: 2048,
            chunks_have: have,
            chunks_total: 100,
            downloaded: have * 2048,
            uploaded: 0,
            down_rate: 4096.0,
            up_rate: 0.0,
            swarm: peer_engine::swarm::SwarmStats {
                peers: 2,
                ..Default::default()
            },
            state,
            files: Default::default(),
        }]
    }

    #[test]
    fn reports_start_tenths_and_completion() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut ticker = ProgressTicker::new();
        let lines = ticker.update(t0, &snapshot(0, FileState::Downloading));
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("started: a.bin  0.0%  0/100 chunks"),
            "{lines:?}"
        );
        assert!(ticker
            .update(s(1), &snapshot(5, FileState::Downloading))
            .is_empty());
        let lines = ticker.update(s(2), &snapshot(12, FileState::Downloading));
        assert!(lines[0].starts_with("a.bin  12.0%  12/100"), "{lines:?}");
        assert!(ticker
            .update(s(3), &snapshot(13, FileState::Downloading))
            .is_empty());
        let lines = ticker.update(s(13), &snapshot(14, FileState::Downloading));
        assert_eq!(lines.len(), 1, "a quiet period forces a line");
        let lines = ticker.update(s(14), &snapshot(100, FileState::Seeding));
        assert!(
            lines[0].starts_with("complete: a.bin (200.0 KiB, 100 chunks verified, 14s"),
            "{lines:?}"
        );
        assert!(ticker
            .update(s(30), &snapshot(100, FileState::Seeding))
            .is_empty());
    }

    #[test]
    fn shared_files_are_silent_and_failures_are_reported() {
        let t0 = Instant::now();
        let mut ticker = ProgressTicker::new();
        let mut shared = snapshot(100, FileState::Seeding);
        shared[0].downloaded = 0;
        assert!(ticker.update(t0, &shared).is_empty());
        let lines = ProgressTicker::new().update(t0, &snapshot(100, FileState::Seeding));
        assert!(
            lines[0].starts_with("complete: a.bin (200.0 KiB, 100 chunks verified)"),
            "{lines:?}"
        );
        let mut ticker = ProgressTicker::new();
        ticker.update(t0, &snapshot(3, FileState::Downloading));
        let lines = ticker.update(t0, &snapshot(3, FileState::Failed("no peers".into())));
        assert!(
            lines[0].contains("failed: a.bin at 3/100 chunks: no peers"),
            "{lines:?}"
        );
        let lines = ticker.update(t0, &snapshot(3, FileState::Downloading));
        assert!(lines[0].starts_with("resumed: "), "{lines:?}");
    }
}

//! How the tracker's answers are shown: aligned text for people, JSON for scripts
//! (`--json`). The console and the subcommands print through the same functions.

use std::fmt::Write as _;

use serde_json::{json, Value};
use tracker_proto::{FileSummary, ListedFile, PeerChunks, PeerEntry, SwarmStats};

use super::table::{FileState, FileStats};
use super::units::format_bytes;

/// Flag 6: the catalogue.
pub fn files_text(total: u32, files: &[ListedFile]) -> String {
    if files.is_empty() {
        return "the tracker lists no files".to_owned();
    }
    let width = files
        .iter()
        .map(|f| f.name.as_str().chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:>10}  {:>8}  {:>7}  {:>8}  {:>9}  {:>10}  {:>10}\n",
        "Name", "Size", "Chunks", "Seeders", "Leechers", "Completed", "Up", "Down"
    );
    for f in files {
        // A tracker without the figures (protocol.txt §1.3) shows dashes.
        let (completed, up, down) = match &f.stats {
            Some(s) => (
                s.completed.to_string(),
                format_bytes(s.up),
                format_bytes(s.down),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:>10}  {:>8}  {:>7}  {:>8}  {completed:>9}  {up:>10}  {down:>10}",
            f.name.as_str(),
            format_bytes(f.size),
            f.chunks,
            f.seeders,
            f.leechers
        );
    }
    let _ = write!(out, "{total} file{}", if total == 1 { "" } else { "s" });
    out
}

pub fn files_json(total: u32, files: &[ListedFile]) -> Value {
    json!({
        "total": total,
        "files": files.iter().map(|f| json!({
            "name": f.name.as_str(),
            "size": f.size,
            "chunks": f.chunks,
            "seeders": f.seeders,
            "leechers": f.leechers,
            "completed": f.stats.map(|s| s.completed),
            "up": f.stats.map(|s| s.up),
            "down": f.stats.map(|s| s.down),
        })).collect::<Vec<_>>(),
    })
}

/// Flag 7 (and the header of a peer list, which has no figures).
pub fn summary_text(file: &FileSummary) -> String {
    let info = &file.info;
    let mut out = format!(
        "{}: {} in {} chunks of {} bytes, {} seeder{}, {} leecher{}\n  id {}",
        info.name().as_str(),
        format_bytes(info.size()),
        info.chunks(),
        info.chunk_size(),
        file.seeders,
        if file.seeders == 1 { "" } else { "s" },
        file.leechers,
        if file.leechers == 1 { "" } else { "s" },
        info.id(),
    );
    if let Some(stats) = &file.stats {
        out.push('\n');
        out.push_str(&figures_text(stats));
    }
    out
}

/// The swarm's figures (protocol.txt §1.2) in one line.
fn figures_text(stats: &SwarmStats) -> String {
    format!(
        "  downloads completed {}, peers reported {} up ({} bytes), {} down ({} bytes)",
        stats.completed,
        format_bytes(stats.up),
        stats.up,
        format_bytes(stats.down),
        stats.down
    )
}

pub fn summary_json(file: &FileSummary) -> Value {
    let info = &file.info;
    json!({
        "name": info.name().as_str(),
        "size": info.size(),
        "chunk_size": info.chunk_size(),
        "chunks": info.chunks(),
        "id": info.id().to_string(),
        "seeders": file.seeders,
        "leechers": file.leechers,
        "completed": file.stats.map(|s| s.completed),
        "up": file.stats.map(|s| s.up),
        "down": file.stats.map(|s| s.down),
    })
}

fn chunks_text(chunks: &PeerChunks, total: u32) -> String {
    match chunks {
        PeerChunks::Seeder => format!("seeder ({total}/{total} chunks)"),
        PeerChunks::Ranges(ranges) => format!("chunks {ranges} ({}/{total})", ranges.count()),
        PeerChunks::Count(n) => format!("{n}/{total} chunks"),
    }
}

/// Flags 1 and 2: the file and who holds what.
pub fn peers_text(file: &FileSummary, peers: &[PeerEntry]) -> String {
    let mut out = summary_text(file);
    if peers.is_empty() {
        out.push_str("\n  no peers hold it right now");
    }
    for p in peers {
        let _ = write!(
            out,
            "\n  {:<21}  {}",
            p.addr,
            chunks_text(&p.chunks, file.info.chunks())
        );
    }
    out
}

pub fn peers_json(file: &FileSummary, peers: &[PeerEntry]) -> Value {
    let mut value = summary_json(file);
    value["peers"] = peers
        .iter()
        .map(|p| {
            let chunks = match &p.chunks {
                PeerChunks::Seeder => json!("all"),
                PeerChunks::Ranges(ranges) => json!(ranges.to_string()),
                PeerChunks::Count(n) => json!(n),
            };
            json!({ "addr": p.addr.to_string(), "chunks": chunks })
        })
        .collect();
    value
}

/// Local files for `peer status --json`.
pub fn local_json(files: &[FileStats]) -> Value {
    Value::Array(
        files
            .iter()
            .map(|f| {
                json!({
                    "name": f.name.as_str(),
                    "size": f.size,
                    "chunks_have": f.chunks_have,
                    "chunks_total": f.chunks_total,
                    "percent_done": f.percent_done(),
                    "downloaded": f.downloaded,
                    "uploaded": f.uploaded,
                    "down_rate": f.down_rate,
                    "up_rate": f.up_rate,
                    "peers": f.swarm.peers,
                    "downloading_from": f.swarm.downloading_from,
                    "uploading_to": f.swarm.uploading_to,
                    "sources": f.swarm.sources,
                    "state": f.state.label().to_ascii_lowercase(),
                    "error": match &f.state {
                        FileState::Failed(why) => Some(why.as_str()),
                        _ => None,
                    },
                    "directory": !f.files.is_empty(),
                    "files_done": f.files.iter().filter(|p| p.is_complete()).count(),
                    "files_total": f.files.len(),
                    "files": f.files.iter().map(|p| json!({
                        "path": p.path.to_string(),
                        "length": p.length,
                        "have": p.have,
                        "complete": p.is_complete(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

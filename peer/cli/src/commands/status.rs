//! `peer status`: what the share directory holds, read from disk, and whether a daemon serves it.

use std::net::SocketAddr;

use peer_engine::share::ShareDir;

use super::Format;
use crate::output::show;
use crate::output::table::{format_file_table, FileState, FileStats};

/// The text or JSON `peer status` prints for `dir`, served by the daemon at `daemon` if any.
pub fn status(dir: &ShareDir, daemon: Option<SocketAddr>, format: Format) -> String {
    let state = if daemon.is_some() {
        FileState::Seeding
    } else {
        FileState::Idle
    };
    let files: Vec<FileStats> = dir
        .inventory()
        .into_iter()
        .map(|f| FileStats::from_disk(f, &state))
        .collect();
    match format {
        Format::Json => serde_json::json!({
            "dir": dir.root().display().to_string(),
            "daemon": daemon.map(|a| a.to_string()),
            "files": show::local_json(&files),
        })
        .to_string(),
        Format::Text => {
            let served = match daemon {
                Some(addr) => format!("served by the daemon announced at {addr}"),
                None => "no daemon serves it (start one with `peer daemon`)".to_owned(),
            };
            let mut out = format!("{}: {served}\n", dir.root().display());
            if files.is_empty() {
                out.push_str("no files yet: `peer share FILE` or `peer get NAME`");
            } else {
                out.push_str(format_file_table(&files).trim_end());
            }
            out
        }
    }
}

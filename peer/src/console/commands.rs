//! The requests behind menu choices 2, 6 and 7 and the one-shot subcommands `peer list`,
//! `peer query` and `peer status`: one function each, returning what to print (text or JSON),
//! so the console and scripts cannot drift apart.

use tracker::client::ClientError;
use tracker::proto::ErrorCode;
use tracker::TrackerClient;

use super::local::local_files;
use super::show;
use crate::stats::{format_file_table, FileState};
use crate::store::{check_name, ShareDir};

/// How an answer is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Turns a tracker failure about `name` into advice: an unknown file is the common case and
/// deserves a hint, not a protocol error code.
fn about(name: &str, e: ClientError) -> anyhow::Error {
    match e.code() {
        Some(ErrorCode::FileNotFound) => {
            anyhow::anyhow!("the tracker does not know a file named {name} (6 or `peer list` shows the files it knows)")
        }
        _ => e.into(),
    }
}

fn render(format: Format, text: String, json: impl FnOnce() -> serde_json::Value) -> String {
    match format {
        Format::Text => text,
        Format::Json => json().to_string(),
    }
}

/// Flag 6: the tracker's catalogue.
pub async fn list(tracker: &TrackerClient, format: Format) -> anyhow::Result<String> {
    let files = tracker.list_files().await?;
    let total = u32::try_from(files.len()).unwrap_or(u32::MAX);
    Ok(render(format, show::files_text(total, &files), || {
        show::files_json(total, &files)
    }))
}

/// Flag 7: one file's description and swarm counts.
pub async fn query(tracker: &TrackerClient, name: &str, format: Format) -> anyhow::Result<String> {
    let file = check_name(name.trim())?;
    let summary = tracker
        .query(&file)
        .await
        .map_err(|e| about(file.as_str(), e))?;
    Ok(render(format, show::summary_text(&summary), || {
        show::summary_json(&summary)
    }))
}

/// Flag 2: a fresh peer list.
pub async fn refresh(
    tracker: &TrackerClient,
    name: &str,
    format: Format,
) -> anyhow::Result<String> {
    let file = check_name(name.trim())?;
    let swarm = tracker
        .refresh(&file)
        .await
        .map_err(|e| about(file.as_str(), e))?;
    Ok(render(
        format,
        show::peers_text(&swarm.file, &swarm.peers),
        || show::peers_json(&swarm.file, &swarm.peers),
    ))
}

/// `peer status`: what the share directory holds, read from disk, and whether a daemon serves it.
pub fn status(dir: &ShareDir, daemon: Option<std::net::SocketAddr>, format: Format) -> String {
    let state = if daemon.is_some() {
        FileState::Seeding
    } else {
        FileState::Idle
    };
    let files = local_files(dir, state);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_files_get_a_hint() {
        let reply = tracker::proto::ErrorReply::new(ErrorCode::FileNotFound, "no such file");
        let e = about("a.bin", ClientError::Tracker(reply));
        assert!(
            e.to_string().contains("does not know a file named a.bin"),
            "{e}"
        );
        let reply = tracker::proto::ErrorReply::new(ErrorCode::BadRequest, "x");
        let e = about("a.bin", ClientError::Tracker(reply));
        assert!(e.to_string().starts_with("tracker answered"), "{e}");
    }
}

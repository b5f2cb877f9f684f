//! The tracker requests behind menu choices 2, 6 and 7 and the one-shot subcommands
//! `peer peers`, `peer list` and `peer query`: one function each, returning what to print
//! (text or JSON), so the console and scripts cannot drift apart.

use peer_engine::name::ShareName;
use tracker_proto::client::ClientError;
use tracker_proto::ErrorCode;
use tracker_proto::TrackerClient;

use super::{render, Format};
use crate::output::show;

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

/// Flag 6: the tracker's catalogue.
pub async fn list(tracker: &TrackerClient, format: Format) -> anyhow::Result<String> {
    let files = tracker.list_files().await?;
    let total = u32::try_from(files.len()).unwrap_or(u32::MAX);
    Ok(render(format, show::files_text(total, &files), || {
        show::files_json(total, &files)
    }))
}

/// Flag 7: one file's description and swarm counts.
pub async fn query(
    tracker: &TrackerClient,
    name: &ShareName,
    format: Format,
) -> anyhow::Result<String> {
    let summary = tracker
        .query(name.file_name())
        .await
        .map_err(|e| about(name.as_str(), e))?;
    Ok(render(format, show::summary_text(&summary), || {
        show::summary_json(&summary)
    }))
}

/// Flag 2: a fresh peer list.
pub async fn refresh(
    tracker: &TrackerClient,
    name: &ShareName,
    format: Format,
) -> anyhow::Result<String> {
    let swarm = tracker
        .refresh(name.file_name())
        .await
        .map_err(|e| about(name.as_str(), e))?;
    Ok(render(
        format,
        show::peers_text(&swarm.file, &swarm.peers),
        || show::peers_json(&swarm.file, &swarm.peers),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_files_get_a_hint() {
        let reply = tracker_proto::ErrorReply::new(ErrorCode::FileNotFound, "no such file");
        let e = about("a.bin", ClientError::Tracker(reply));
        assert!(
            e.to_string().contains("does not know a file named a.bin"),
            "{e}"
        );
        let reply = tracker_proto::ErrorReply::new(ErrorCode::BadRequest, "x");
        let e = about("a.bin", ClientError::Tracker(reply));
        assert!(e.to_string().starts_with("tracker answered"), "{e}");
    }
}

//! Publishing a file or a directory: hash it, ask the tracker to list it (flag 4), and only then record it as
//! shared, so a name the swarm already uses for other content is refused (1004 HASH_MISMATCH)
//! without leaving anything behind. Also what a peer tells the tracker about its transfers
//! (protocol.txt §1.2): the announce events and byte counters of a file, all sent from here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Duration;

use futures::future::join_all;
use tracker_proto::client::ClientError;
use tracker_proto::{AnnounceEvent, TrackerClient, Transfer};
use tracker_proto::{ErrorCode as TrackerCode, FileInfo, FileInfoError};

use crate::magnet::Magnet;
use crate::manifest::Manifest;
use crate::metainfo::{Info, Layout, Metainfo};
use crate::name::ShareName;
use crate::share::{ShareDir, StoreError};
use crate::swarm::registry::{Moved, Swarms};
use crate::swarm::Swarm;

/// How long stopping waits for the tracker to take the last counters of every file.
const STOP_REPORTS: Duration = Duration::from_secs(5);

/// Why a file could not be shared.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Info(#[from] FileInfoError),
    #[error("the tracker already lists a different file named {name} (1004 HASH_MISMATCH); rename yours to share it")]
    HashMismatch { name: ShareName },
    #[error(transparent)]
    Tracker(#[from] ClientError),
}

/// The tracker's description of a file we hold.
pub fn file_info(name: &ShareName, manifest: &Manifest) -> Result<FileInfo, ShareError> {
    Ok(FileInfo::new(
        name.file_name().clone(),
        manifest.size(),
        manifest.chunk_size(),
        manifest.id(),
    )?)
}

/// Announces a complete file of the share directory (flag 4) as served at `announce`.
pub async fn announce(
    tracker: &TrackerClient,
    name: &ShareName,
    manifest: &Manifest,
    announce: SocketAddr,
) -> Result<(), ShareError> {
    let info = file_info(name, manifest)?;
    match tracker.share(&info, announce).await {
        Err(e) if e.code() == Some(TrackerCode::HashMismatch) => {
            Err(ShareError::HashMismatch { name: name.clone() })
        }
        r => Ok(r?),
    }
}

/// Shares the file at `path` where it lies, in chunks of `chunk_size` bytes (`None`: the size
/// picked for its size), recording it in `dir` once the tracker accepted it; returns its name
/// and manifest.
pub async fn share(
    dir: &Arc<ShareDir>,
    tracker: &TrackerClient,
    path: &Path,
    chunk_size: Option<u32>,
    announce_at: SocketAddr,
) -> Result<(ShareName, Arc<Manifest>), ShareError> {
    let (d, p) = (dir.clone(), path.to_owned());
    let staged = tokio::task::spawn_blocking(move || d.stage(&p, chunk_size))
        .await
        .map_err(|e| StoreError::Io {
            path: path.to_owned(),
            error: std::io::Error::other(e),
        })??;
    announce(tracker, &staged.name, &staged.manifest, announce_at).await?;
    Ok(dir.commit(staged)?)
}

/// The metainfo of the complete file `name` (what `peer share` writes as `NAME.p2p`), naming
/// `trackers` as its tiers.
pub fn metainfo(name: &ShareName, manifest: &Manifest, trackers: Vec<Vec<String>>) -> Metainfo {
    Metainfo {
        trackers,
        info: Info {
            name: name.clone(),
            piece_length: manifest.chunk_size(),
            id: manifest.id(),
            layout: match manifest.files() {
                Some(files) => Layout::Files(files.to_vec()),
                None => Layout::Single {
                    length: manifest.size(),
                },
            },
        },
        created_by: Some(format!("peer {}", env!("CARGO_PKG_VERSION"))),
        creation_date: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok()),
        comment: None,
    }
}

/// The magnet link of `metainfo`: its id, name and every tracker of every tier, in order (a
/// link has no tiers: its `tr=` list is one, protocol.txt §6.3).
pub fn magnet(metainfo: &Metainfo) -> Magnet {
    let mut trackers: Vec<String> = Vec::new();
    for t in metainfo.trackers.iter().flatten() {
        if !trackers.contains(t) {
            trackers.push(t.clone());
        }
    }
    Magnet {
        id: metainfo.info.id,
        name: Some(metainfo.info.name.clone()),
        trackers,
    }
}

/// Writes `metainfo` as `DIR/NAME.p2p` (replacing an older one, durably) and returns its path.
/// `.p2p` names are never served, so the file stays beside what it describes.
pub fn write_metainfo(dir: &ShareDir, metainfo: &Metainfo) -> Result<PathBuf, StoreError> {
    let file_name = metainfo.file_name();
    let dest = dir.root().join(&file_name);
    let tmp = dir.state_dir().join(format!("{file_name}.tmp"));
    let bytes = metainfo.encode();
    crate::share::write_file(&tmp, &dest, &bytes)?;
    Ok(dest)
}

/// `event=started` with zero counters: what a download sends as it joins (the counters of
/// every later report of the file count from here).
pub fn started() -> Transfer {
    Transfer {
        event: Some(AnnounceEvent::Started),
        up: Some(0),
        down: Some(0),
        left: None,
    }
}

/// The counters of `swarm` (bytes sent and verified since it began), with `event` and `left`.
pub fn transfer_of(swarm: &Swarm, event: Option<AnnounceEvent>, left: Option<u64>) -> Transfer {
    let stats = swarm.stats();
    Transfer {
        event,
        up: Some(stats.uploaded),
        down: Some(stats.downloaded),
        left,
    }
}

/// Tells the tracker the download of `info` in `swarm` is complete (flag 4 with
/// `event=completed`), before we seed it. A failure is logged: the file is ours either way,
/// and the daemon announces it again.
pub async fn announce_completed(
    tracker: &TrackerClient,
    info: &FileInfo,
    swarm: &Swarm,
    announce: SocketAddr,
) {
    let done = transfer_of(swarm, Some(AnnounceEvent::Completed), Some(0));
    if let Err(e) = tracker.share_reporting(info, announce, done).await {
        log::warn!(
            "{}: telling the tracker the download completed: {e}",
            info.name()
        );
    }
}

/// Leaves the swarm of `name` (flag 5 with `event=stopped` and what this process moved of
/// it), as a withdrawal does.
pub async fn leave(
    tracker: &TrackerClient,
    name: &ShareName,
    moved: Option<Moved>,
    announce: SocketAddr,
) -> Result<(), ClientError> {
    let counters = moved.map_or_else(Transfer::default, |m| Transfer {
        up: Some(m.up),
        down: Some(m.down),
        ..Transfer::default()
    });
    tracker
        .leave_reporting(Some(name.file_name()), announce, counters)
        .await
}

/// Stops every swarm with the tracker: flag 5 with `event=stopped` and the counters of each
/// file this process moved bytes of (at most [`STOP_REPORTS`] for all of them), then flag 5
/// without a file, which leaves the rest.
pub async fn stop_all(tracker: &TrackerClient, swarms: &Swarms, announce: SocketAddr) {
    let moved: Vec<_> = swarms.moved().into_iter().collect();
    let reports = join_all(
        moved
            .iter()
            .map(|(name, m)| leave(tracker, name, Some(*m), announce)),
    );
    match tokio::time::timeout(STOP_REPORTS, reports).await {
        Ok(results) => {
            for ((name, _), result) in moved.iter().zip(results) {
                if let Err(e) = result {
                    log::warn!("{name}: telling the tracker what we moved: {e}");
                }
            }
        }
        Err(_) => log::warn!("the tracker did not take our last counters in time"),
    }
    if let Err(e) = tracker
        .leave_reporting(None, announce, Transfer::default())
        .await
    {
        log::warn!("telling the tracker we leave: {e}");
    }
}

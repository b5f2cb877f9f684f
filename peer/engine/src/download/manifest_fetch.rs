//! Getting a download's manifest: from the first peer whose copy matches the file id the
//! tracker published, page by page straight to disk, so a liar costs one connection and a huge
//! manifest never sits in memory.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::manifest::{chunk_count, FileId, Manifest};
use crate::name::ShareName;
use crate::share::StoreError;
use crate::wire::{Frame, MAX_MANIFEST_HASHES};

use super::fetch::{open, PeerError};
use super::peer_set::PeerSet;
use super::{Context, DownloadError};

/// Manifest pages requested ahead of the one being read: a long manifest costs a few round
/// trips, not one per page.
const PAGES_AHEAD: u32 = 8;

/// The file as the tracker describes it: what the manifest must match.
pub(super) struct Expected {
    pub size: u64,
    pub chunk_size: u32,
    pub id: FileId,
}

/// Gets the manifest from the first peer whose copy matches `want.id`; peers that lie are marked.
pub(super) async fn fetch_manifest(
    ctx: &Context,
    name: &ShareName,
    want: &Expected,
    peers: &mut PeerSet,
) -> Result<Manifest, DownloadError> {
    let mut tried = 0;
    let mut last = String::from("no peer listed");
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(s) = ctx.tracker.refresh(name.file_name()).await {
                peers.learn(&s.peers);
            }
        }
        for addr in peers.candidates(usize::MAX) {
            tried += 1;
            match manifest_from(ctx, addr, name, want).await {
                Ok(m) => return Ok(m),
                Err(PeerError::Hostile(why)) => {
                    log::warn!("{addr}: dropped for {name}: {why}");
                    last = format!("{addr}: {why}");
                    peers.hostile.insert(addr);
                }
                Err(e) => {
                    log::info!("{addr}: no manifest for {name}: {e}");
                    last = format!("{addr}: {e}");
                    peers.failed(addr);
                }
            }
        }
    }
    Err(DownloadError::NoManifest {
        name: name.clone(),
        id: want.id,
        tried,
        last,
    })
}

async fn manifest_from(
    ctx: &Context,
    addr: SocketAddr,
    name: &ShareName,
    want: &Expected,
) -> Result<Manifest, PeerError> {
    let (mut conn, _) = open(
        ctx.dialer.as_deref(),
        addr,
        name,
        want.id,
        ctx.peer_id,
        ctx.config.connect_timeout,
    )
    .await?;
    let count = u32::try_from(chunk_count(want.size, want.chunk_size))
        .map_err(|_| PeerError::Hostile("file too large".into()))?;
    let local = |e: StoreError| PeerError::Write(io::Error::other(e));
    let mut sink = ctx
        .dir
        .manifest_sink(name, want.size, want.chunk_size)
        .map_err(local)?;
    let ahead = PAGES_AHEAD * MAX_MANIFEST_HASHES;
    let mut asked = 0u32;
    let mut start = 0u32;
    while start < count {
        while asked < count && asked - start < ahead {
            let n = (count - asked).min(MAX_MANIFEST_HASHES);
            conn.queue(&Frame::GetManifest {
                start: asked,
                count: n,
            });
            asked += n;
        }
        conn.flush().await?;
        let n = (count - start).min(MAX_MANIFEST_HASHES);
        loop {
            match conn.read_frame_within(ctx.config.stall_timeout).await? {
                Frame::Manifest {
                    start: s,
                    hashes: h,
                } if s == start && h.len() == n as usize => {
                    sink.push(&h).map_err(PeerError::Write)?;
                    break;
                }
                Frame::Manifest { .. } => {
                    return Err(PeerError::Hostile("MANIFEST for another range".into()))
                }
                Frame::Have(_) => {}
                Frame::Error { code, message } => return Err(PeerError::Remote(code, message)),
                _ => {
                    return Err(PeerError::Hostile(
                        "unexpected frame while fetching the manifest".into(),
                    ))
                }
            }
        }
        start += n;
    }
    sink.finish(want.id)
        .map_err(local)?
        .ok_or_else(|| PeerError::Hostile(format!("manifest does not match {}", want.id)))
}

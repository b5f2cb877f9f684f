//! Getting a download's manifest: from the first peer whose copy matches the file id the
//! tracker published, page by page straight to disk, so a liar costs one connection and a huge
//! manifest never sits in memory. The connection serves only that and closes; chunks come over
//! the swarm's connections once the manifest is known.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::bitfield::Bitfield;
use crate::connection::Connection;
use crate::manifest::{chunk_count, directory_id, FileId, Manifest};
use crate::metainfo::{FileEntry, Layout};
use crate::name::ShareName;
use crate::share::StoreError;
use crate::swarm::{initiate, PeerError};
use crate::wire::{Frame, MAX_MANIFEST_HASHES};

use super::peer_set::PeerSet;
use super::{dial, Context, DownloadError};

/// Manifest pages requested ahead of the one being read: a long manifest costs a few round
/// trips, not one per page.
const PAGES_AHEAD: u32 = 8;

/// Rounds of asking every listed peer before giving up, a tracker refresh between two.
const ROUNDS: u32 = 3;

/// The file as the tracker describes it: what the manifest must match.
pub(super) struct Expected {
    pub size: u64,
    pub chunk_size: u32,
    pub id: FileId,
    pub shape: Shape,
}

/// What the share is made of, as far as the downloader knows before the manifest.
#[derive(Debug, Clone)]
pub(super) enum Shape {
    /// Only the tracker's listing is known: a manifest that is not a single file's is a
    /// directory's only with the layout its sender gives, checked against the id.
    Unknown,
    Single,
    /// A metainfo gave this directory layout.
    Files(Arc<[FileEntry]>),
}

/// Gets the manifest from the first peer whose copy matches `want.id`; peers that lie are marked.
pub(super) async fn fetch_manifest(
    ctx: &Context,
    name: &ShareName,
    want: &Expected,
    peers: &mut PeerSet,
) -> Result<Manifest, DownloadError> {
    first_peer_giving(ctx, name, peers, "manifest", |addr| {
        manifest_from(ctx, addr, name, want)
    })
    .await
    .map_err(|NoneGave { tried, last }| DownloadError::NoManifest {
        name: name.clone(),
        id: want.id,
        tried,
        last,
    })
}

/// Why no peer gave what was asked: how many were asked, and the last one's failure.
pub(super) struct NoneGave {
    pub tried: usize,
    pub last: String,
}

/// Asks every listed peer in turn, `ROUNDS` times with a tracker refresh between two, until one
/// gives what `fetch` gets from it (`what` names it in the log); a peer that lies is marked and
/// not asked again, one that fails may be asked in the next round, which waits for it.
pub(super) async fn first_peer_giving<T, Fut>(
    ctx: &Context,
    name: &ShareName,
    peers: &mut PeerSet,
    what: &str,
    mut fetch: impl FnMut(SocketAddr) -> Fut,
) -> Result<T, NoneGave>
where
    Fut: Future<Output = Result<T, PeerError>>,
{
    let mut tried = 0;
    let mut last = String::from("no peer listed");
    for round in 0..ROUNDS {
        if round > 0 {
            let pause = tokio::time::Instant::now() + Duration::from_secs(1);
            let retry = peers.next_retry().map(tokio::time::Instant::from_std);
            tokio::time::sleep_until(retry.map_or(pause, |r| r.max(pause))).await;
            if let Ok(s) = ctx.tracker.refresh(name.file_name()).await {
                peers.learn(&s.peers);
            }
        }
        let none = Default::default();
        for addr in peers.candidates(usize::MAX, &none, |a| ctx.local.is_own(a)) {
            tried += 1;
            match fetch(addr).await {
                Ok(got) => return Ok(got),
                Err(PeerError::Hostile(why)) => {
                    log::warn!("{addr}: dropped for {name}: {why}");
                    last = format!("{addr}: {why}");
                    peers.hostile.insert(addr);
                }
                Err(e) => {
                    log::info!("{addr}: no {what} for {name}: {e}");
                    last = format!("{addr}: {e}");
                    peers.failed(addr);
                }
            }
        }
    }
    Err(NoneGave { tried, last })
}

/// Opens a connection of our own to `addr` for `name` (content `id`, `count` chunks) that only
/// fetches what a download needs before its swarm (manifest, metainfo): HANDSHAKE, then the
/// BITFIELD of a peer holding nothing, after which the other side answers.
pub(super) async fn side_connection(
    ctx: &Context,
    addr: SocketAddr,
    name: &ShareName,
    id: FileId,
    count: u32,
) -> Result<Connection, PeerError> {
    let limit = ctx.config.connect_timeout;
    let stream = match ctx.dialer.as_deref() {
        Some(d) => d
            .connect(name.file_name(), addr)
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?,
        None => dial(addr, limit).await?,
    };
    let hello = ctx.local.hello(name, id);
    let (mut conn, _) = initiate(Connection::new(stream), &hello, limit).await?;
    conn.queue(&Frame::Bitfield(Bytes::copy_from_slice(
        Bitfield::empty(count).as_wire(),
    )));
    Ok(conn)
}

async fn manifest_from(
    ctx: &Context,
    addr: SocketAddr,
    name: &ShareName,
    want: &Expected,
) -> Result<Manifest, PeerError> {
    let count = u32::try_from(chunk_count(want.size, want.chunk_size))
        .map_err(|_| PeerError::Hostile("file too large".into()))?;
    let mut conn = side_connection(ctx, addr, name, want.id, count).await?;
    let local = |e: StoreError| PeerError::Write(e.to_string());
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
            match conn
                .read_frame_within(ctx.local.config.stall_timeout)
                .await
                .map_err(PeerError::hostile_if_garbage)?
            {
                Frame::Manifest {
                    start: s,
                    hashes: h,
                } if s == start && h.len() == n as usize => {
                    sink.push(&h)
                        .map_err(|e: io::Error| PeerError::Write(e.to_string()))?;
                    break;
                }
                Frame::Manifest { .. } => {
                    return Err(PeerError::Hostile("MANIFEST for another range".into()))
                }
                // What a swarm connection says besides: harmless here.
                Frame::Have(_)
                | Frame::Choke
                | Frame::Unchoke
                | Frame::Interested
                | Frame::NotInterested
                | Frame::KeepAlive => {}
                Frame::Error { code, message } => return Err(PeerError::Remote(code, message)),
                other => {
                    return Err(PeerError::Hostile(format!(
                        "unexpected {} while fetching the manifest",
                        other.name()
                    )))
                }
            }
        }
        start += n;
    }
    let files = match &want.shape {
        Shape::Files(files) => Some(files.clone()),
        Shape::Single => None,
        Shape::Unknown if sink.digest() == want.id => None,
        Shape::Unknown => Some(layout_over(ctx, &mut conn, name, want, sink.digest()).await?),
    };
    sink.finish(want.id, files)
        .map_err(local)?
        .ok_or_else(|| PeerError::Hostile(format!("manifest does not match {}", want.id)))
}

/// The layout of the directory whose manifest (of SHA-256 `digest`) a peer just sent for a
/// share known only by the tracker's listing: its `info` dictionary, asked over the same
/// connection, must list files that with this manifest give the listed id (protocol.txt §2.1).
async fn layout_over(
    ctx: &Context,
    conn: &mut Connection,
    name: &ShareName,
    want: &Expected,
    digest: FileId,
) -> Result<Arc<[FileEntry]>, PeerError> {
    let lie = || PeerError::Hostile(format!("manifest does not match {}", want.id));
    let info = super::metainfo_fetch::info_over(ctx, conn, name, want)
        .await
        .map_err(|e| match e {
            PeerError::Hostile(why) => {
                PeerError::Hostile(format!("manifest does not match {} and {why}", want.id))
            }
            other => other,
        })?;
    match info.layout {
        Layout::Files(files) if directory_id(&digest, &files) == want.id => Ok(files.into()),
        _ => Err(lie()),
    }
}

//! Downloading one file from every peer that has it, verifying each chunk before it is written.
//!
//! Shaped like rqbit's engine: one task per peer connection ([`fetch`]), each keeping a window
//! of requests in flight and asking a shared [`picker`] what to fetch next; the download's loop
//! ([`run`]) keeps the connections going, using [`peer_set`] to choose whom to connect to. A peer
//! that fails or stalls gives its chunks back and the tracker is asked again (flag 2); a peer
//! that sends a chunk or manifest that does not verify, or garbage, is dropped for this file for
//! good. Verified chunks are made durable and reported to the tracker in batches (flag 3 range
//! lists), so the downloader becomes a source while it runs.

mod fetch;
mod manifest_fetch;
mod peer_set;
mod picker;
mod run;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::watch;
use tracker_proto::client::ClientError;
use tracker_proto::ErrorCode as TrackerCode;
use tracker_proto::TrackerClient;

use crate::manifest::{FileId, MAX_CHUNK_SIZE};
use crate::name::ShareName;
use crate::reach::Dialer;
use crate::share::{ShareDir, StoreError};
use crate::wire::PeerId;
use manifest_fetch::{fetch_manifest, Expected};
use peer_set::PeerSet;
use run::{Run, Shared};

/// Knobs of the downloader; the defaults suit both loopback and the Internet.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    /// Peers fetched from at once, per file.
    pub max_peers: usize,
    /// Chunks in flight per peer connection.
    pub window: u32,
    /// Chunks per REQUEST (consecutive run).
    pub run_len: u32,
    /// Time to establish a TCP connection and get the peer's HANDSHAKE.
    pub connect_timeout: Duration,
    /// A peer with requests outstanding that sends nothing for this long is dropped.
    pub stall_timeout: Duration,
    /// How often verified chunks are made durable and reported to the tracker.
    pub report_interval: Duration,
    /// Give up when no peer delivered anything for this long (resume state is kept).
    pub give_up_after: Duration,
    /// Attempts per peer address before it is left alone for this download.
    pub attempts_per_peer: u32,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            max_peers: 8,
            window: 512,
            run_len: 32,
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(15),
            report_interval: Duration::from_secs(1),
            give_up_after: Duration::from_secs(60),
            attempts_per_peer: 3,
        }
    }
}

/// What a running download looks like; published through a `watch` channel for the console.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Verified chunks, including those from an earlier run.
    pub have: u32,
    pub total: u32,
    pub size: u64,
    /// Chunk bytes received and verified in this run.
    pub bytes: u64,
    /// Bytes per second over the last few seconds.
    pub rate: f64,
    /// Peers currently connected for this file.
    pub peers: usize,
    pub done: bool,
}

/// What a finished download did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: ShareName,
    pub id: FileId,
    pub size: u64,
    /// Chunks that were already verified on disk from an earlier run.
    pub resumed: u32,
    /// Chunks received and verified in this run (an endgame duplicate counts twice).
    pub fetched: u32,
    /// Chunk bytes fetched per peer.
    pub per_peer: HashMap<SocketAddr, u64>,
    pub elapsed: Duration,
}

/// Why a download stopped. Verified chunks stay on disk for the next attempt.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Tracker(#[from] ClientError),
    #[error("the tracker does not know a file named {0}")]
    NotOnTracker(ShareName),
    #[error("{0}: chunk size {1} is larger than this peer supports ({MAX_CHUNK_SIZE})")]
    Unsupported(ShareName, u32),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{name}: no peer gave a manifest matching {id} ({tried} tried; last: {last})")]
    NoManifest {
        name: ShareName,
        id: FileId,
        tried: usize,
        last: String,
    },
    #[error("{name}: no peer delivered anything for {secs} s; {have}/{total} chunks verified and kept for a later resume")]
    Stalled {
        name: ShareName,
        have: u32,
        total: u32,
        secs: u64,
    },
    #[error("{name}: writing {path}: {error}")]
    Write {
        name: ShareName,
        path: String,
        error: io::Error,
    },
}

/// Everything a download needs from its surroundings.
#[derive(Clone)]
pub struct Context {
    pub dir: Arc<ShareDir>,
    pub tracker: Arc<TrackerClient>,
    /// Address reported to the tracker with flag 3 (where our server serves this directory).
    /// A watch, because STUN refresh may move it mid-download: a report under the old address
    /// would move this peer's rows back there (the tracker's key rule).
    pub announce: watch::Receiver<SocketAddr>,
    pub config: DownloadConfig,
    pub peer_id: PeerId,
    /// Reaches peers behind NATs (direct connect, then hole punching); without it peers are
    /// only connected to directly.
    pub dialer: Option<Arc<Dialer>>,
}

/// Connects straight to a peer's serving address (when no [`Dialer`] with hole punching is set).
pub async fn dial(addr: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {addr} timed out"),
        )),
    }
}

/// Runs blocking share-directory work (hashing, fsync, opening files) off the async workers.
async fn blocking<T: Send + 'static>(
    name: &ShareName,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Io {
            path: name.as_str().into(),
            error: io::Error::other(e),
        })?
}

/// Downloads `name` into the context's share directory, publishing progress on `progress`.
pub async fn download(
    ctx: &Context,
    name: &ShareName,
    progress: &watch::Sender<Progress>,
) -> Result<Outcome, DownloadError> {
    let started = Instant::now();
    let swarm = match ctx.tracker.peers(name.file_name()).await {
        Ok(s) => s,
        Err(e) if e.code() == Some(TrackerCode::FileNotFound) => {
            return Err(DownloadError::NotOnTracker(name.clone()))
        }
        Err(e) => return Err(e.into()),
    };
    let info = &swarm.file.info;
    let want = Expected {
        size: info.size(),
        chunk_size: info.chunk_size(),
        id: info.id(),
    };
    if want.chunk_size > MAX_CHUNK_SIZE {
        return Err(DownloadError::Unsupported(name.clone(), want.chunk_size));
    }
    progress.send_replace(Progress {
        total: info.chunks(),
        size: want.size,
        ..Progress::default()
    });

    if ctx.dir.complete_path(name).exists() {
        let (dir, n) = (ctx.dir.clone(), name.clone());
        let have = blocking(name, move || dir.complete_manifest(&n)).await?;
        if have.id() != want.id {
            return Err(StoreError::NameTaken {
                name: name.clone(),
                dir: ctx.dir.root().to_owned(),
                have: have.id(),
                want: want.id,
            }
            .into());
        }
        progress.send_modify(|p| {
            p.have = p.total;
            p.done = true;
        });
        return Ok(Outcome {
            name: name.clone(),
            id: want.id,
            size: want.size,
            resumed: info.chunks(),
            fetched: 0,
            per_peer: HashMap::new(),
            elapsed: started.elapsed(),
        });
    }

    let mut peers = PeerSet::new(*ctx.announce.borrow(), ctx.config.attempts_per_peer);
    peers.learn(&swarm.peers);
    let manifest = match ctx.dir.partial_manifest(name).filter(|m| m.id() == want.id) {
        Some(m) => Arc::new(m),
        None => Arc::new(fetch_manifest(ctx, name, &want, &mut peers).await?),
    };
    let (dir, n, m) = (ctx.dir.clone(), name.clone(), manifest.clone());
    let partial = Arc::new(blocking(name, move || dir.open_partial(&n, m)).await?);
    let resumed = partial.have_count();
    if resumed > 0 {
        log::info!(
            "{name}: resuming with {resumed}/{} chunks verified",
            manifest.chunk_count()
        );
    }
    let shared = Arc::new(Shared::new(ctx, name.clone(), want.id, partial.clone()));
    let run = Run {
        ctx,
        shared: &shared,
        progress,
    };
    let result = run.drive(&mut peers).await;
    // Whatever happened, what was verified is made durable and reported.
    run.persist_and_report().await;
    result?;

    let fetched = shared.fetched_chunks.load(Ordering::Relaxed);
    let dir = ctx.dir.clone();
    blocking(name, move || dir.finish(&partial)).await?;
    progress.send_modify(|p| p.done = true);
    Ok(Outcome {
        name: name.clone(),
        id: want.id,
        size: want.size,
        resumed,
        fetched,
        per_peer: peers.delivered,
        elapsed: started.elapsed(),
    })
}

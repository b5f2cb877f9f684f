//! Downloading one file: join its swarm at the tracker, get the manifest from a peer and check it
//! against the file id, then let the file's [`Swarm`] fetch, verify and write every chunk while
//! this module's loop ([`run`]) keeps connections going: it dials peers the tracker lists
//! ([`peer_set`]), asks the tracker again on its interval (sooner while starved), makes verified
//! chunks durable and reports them (flag 3) about once a second, publishes progress, and gives
//! up when nothing arrives for too long. Peers that connect to us for the file are sources too:
//! the swarm does not care who opened a connection.

mod manifest_fetch;
mod metainfo_fetch;
mod peer_set;
mod report;
mod run;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::watch;
use tracker_proto::client::ClientError;
use tracker_proto::ErrorCode as TrackerCode;
use tracker_proto::TrackerClient;

use crate::manifest::{FileId, Manifest, MAX_CHUNK_SIZE};
use crate::metainfo::{Info, Layout};
use crate::name::ShareName;
use crate::reach::Dialer;
use crate::share::{Finish, ShareDir, StoreError};
use crate::storage::FileProgress;
use crate::swarm::budget::ConnectionBudget;
use crate::swarm::registry::Swarms;
use crate::swarm::{LocalPeer, Swarm, SwarmStats};
use manifest_fetch::{fetch_manifest, Expected, Shape};
use peer_set::PeerSet;

/// Knobs of the downloader; the defaults suit both loopback and the Internet.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    /// Time to establish a TCP connection and get the peer's HANDSHAKE.
    pub connect_timeout: Duration,
    /// How often verified chunks are made durable and reported to the tracker.
    pub report_interval: Duration,
    /// Give up when no peer delivered anything for this long (resume state is kept).
    pub give_up_after: Duration,
    /// Failed connection attempts per peer address before it is left alone for a while.
    pub attempts_per_peer: u32,
    /// Read the complete file back and verify every chunk again before it takes its name.
    /// Off by default: every chunk is verified before it is written, and a second pass costs
    /// as much CPU as the first (libtorrent and rqbit do not make it either).
    pub recheck: bool,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            connect_timeout: Duration::from_secs(10),
            report_interval: Duration::from_secs(1),
            give_up_after: Duration::from_secs(60),
            attempts_per_peer: 3,
            recheck: false,
        }
    }
}

/// What the user named the download by, beyond its name: what the tracker's listing and the
/// peers must then match before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A name only (`peer get NAME`): whatever the tracker lists under it.
    Listed,
    /// A content id (a magnet link): the metainfo is fetched from peers and checked against it.
    Id(FileId),
    /// A whole `info` dictionary (a `.p2p` file).
    Info(Info),
}

impl Expect {
    fn id(&self) -> Option<FileId> {
        match self {
            Expect::Listed => None,
            Expect::Id(id) => Some(*id),
            Expect::Info(info) => Some(info.id),
        }
    }
}

/// Checks a metainfo's `info` against the tracker's listing of `name`; what it says the share
/// is made of then binds the manifest (a directory's layout is part of its id).
fn accept_info(info: &Info, name: &ShareName, want: &mut Expected) -> Result<(), DownloadError> {
    metainfo_fetch::check(info, name, want).map_err(|why| DownloadError::MetainfoMismatch {
        name: name.clone(),
        why,
    })?;
    want.shape = match &info.layout {
        Layout::Single { .. } => Shape::Single,
        Layout::Files(files) => Shape::Files(files.clone().into()),
    };
    Ok(())
}

/// What a running download looks like; published through a `watch` channel for the console.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Verified chunks, including those from an earlier run.
    pub have: u32,
    pub total: u32,
    pub size: u64,
    /// Bytes per chunk (the last one may be shorter); 0 until the tracker answered.
    pub chunk_size: u32,
    /// Chunk bytes received and verified in this run.
    pub bytes: u64,
    /// Bytes per second received over the last few seconds.
    pub rate: f64,
    /// Bytes per second uploaded to the swarm over the last few seconds (a leecher serves the
    /// chunks it has verified).
    pub up_rate: f64,
    /// Who we exchange chunks with.
    pub swarm: SwarmStats,
    /// A directory's files and how much of each is verified; empty for a single file.
    pub files: Arc<[FileProgress]>,
    pub done: bool,
}

/// The per-file progress of a complete share.
fn all_done(manifest: &Manifest) -> Arc<[FileProgress]> {
    let files = manifest.files().map(|f| &f[..]).unwrap_or_default();
    files
        .iter()
        .filter(|f| !f.folder)
        .map(|f| FileProgress {
            path: f.path.clone(),
            length: f.length,
            have: f.length,
        })
        .collect()
}

/// What a finished download did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: ShareName,
    pub id: FileId,
    pub size: u64,
    /// Chunks that were already verified on disk from an earlier run.
    pub resumed: u32,
    /// Chunks received and verified in this run, each counted once.
    pub fetched: u32,
    /// Chunks received again after another peer had delivered them (endgame duplicates).
    pub duplicates: u32,
    /// Verified chunk bytes per peer (by the address it serves on).
    pub per_peer: HashMap<SocketAddr, u64>,
    /// Chunk bytes we uploaded to the swarm while downloading.
    pub uploaded: u64,
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
    #[error("the tracker lists {name} as {listed}, but the metainfo or magnet link names {want}: another file under that name")]
    OtherContent {
        name: ShareName,
        listed: FileId,
        want: FileId,
    },
    #[error("{name}: {why}")]
    MetainfoMismatch { name: ShareName, why: String },
    #[error("{name}: no peer gave a metainfo matching {id} ({tried} tried; last: {last})")]
    NoMetainfo {
        name: ShareName,
        id: FileId,
        tried: usize,
        last: String,
    },
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
        error: String,
    },
}

/// Everything a download needs from its surroundings.
#[derive(Clone)]
pub struct Context {
    pub dir: Arc<ShareDir>,
    pub tracker: Arc<TrackerClient>,
    /// Who we are on the wire and the process-wide limits; its announce address is what flag 3
    /// reports name (a watch, because STUN refresh may move it mid-download: a report under the
    /// old address would move this peer's rows back there).
    pub local: Arc<LocalPeer>,
    /// The swarms of our server, if this process serves: the download's swarm goes there so
    /// peers that connect to us for the file become sources. `None` beside a daemon, which
    /// serves what we record.
    pub swarms: Option<Arc<Swarms>>,
    /// Connection slots, shared with our server when there is one.
    pub budget: Arc<ConnectionBudget>,
    pub config: DownloadConfig,
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
    download_expecting(ctx, name, &Expect::Listed, progress).await
}

/// Downloads `name`, which must be the content `expect` names (protocol.txt §6): the tracker's
/// listing, the metainfo peers hand over and the manifest are all checked against it before
/// anything is written.
pub async fn download_expecting(
    ctx: &Context,
    name: &ShareName,
    expect: &Expect,
    progress: &watch::Sender<Progress>,
) -> Result<Outcome, DownloadError> {
    let started = Instant::now();
    // Joining (flag 1 with our address) lists us at once, so leechers that start together find
    // each other before anyone holds a chunk.
    let announce = *ctx.local.announce.borrow();
    let joined =
        ctx.tracker
            .join_reporting(name.file_name(), announce, false, crate::publish::started());
    let swarm_list = match joined.await {
        Ok(s) => s,
        Err(e) if e.code() == Some(TrackerCode::FileNotFound) => {
            return Err(DownloadError::NotOnTracker(name.clone()))
        }
        Err(e) => return Err(e.into()),
    };
    let listed_at = Instant::now();
    let info = &swarm_list.file.info;
    let mut want = Expected {
        size: info.size(),
        chunk_size: info.chunk_size(),
        id: info.id(),
        shape: Shape::Unknown,
    };
    if want.chunk_size > MAX_CHUNK_SIZE {
        return Err(DownloadError::Unsupported(name.clone(), want.chunk_size));
    }
    if let Some(id) = expect.id().filter(|id| *id != want.id) {
        return Err(DownloadError::OtherContent {
            name: name.clone(),
            listed: want.id,
            want: id,
        });
    }
    let mut peers = PeerSet::new(ctx.config.attempts_per_peer);
    peers.learn(&swarm_list.peers);
    // A metainfo file is checked before anything else; a magnet link's dictionary is fetched
    // below, only when there is something to download.
    if let Expect::Info(given) = expect {
        accept_info(given, name, &mut want)?;
    }
    progress.send_replace(Progress {
        total: info.chunks(),
        size: want.size,
        chunk_size: want.chunk_size,
        ..Progress::default()
    });

    if ctx.dir.has_complete(name) {
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
            p.files = all_done(&have);
            p.done = true;
        });
        return Ok(Outcome {
            name: name.clone(),
            id: want.id,
            size: want.size,
            resumed: info.chunks(),
            fetched: 0,
            duplicates: 0,
            per_peer: HashMap::new(),
            uploaded: 0,
            elapsed: started.elapsed(),
        });
    }

    if let Expect::Id(_) = expect {
        let fetched =
            metainfo_fetch::fetch_info(ctx, name, &want, info.chunks(), &mut peers).await?;
        accept_info(&fetched, name, &mut want)?;
    }
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
    let swarm = Swarm::downloading(name.clone(), partial.clone(), ctx.local.clone());
    if let Some(swarms) = &ctx.swarms {
        swarms.insert_download(swarm.clone());
    }
    let result = run::Run {
        ctx,
        swarm: &swarm,
        partial: &partial,
        progress,
        peers: &mut peers,
    }
    .drive(swarm_list.interval, swarm_list.min_interval, listed_at)
    .await;
    if result.is_err() {
        swarm.close();
        if let Some(swarms) = &ctx.swarms {
            swarms.release(&swarm);
        }
    }
    result?;

    let dir = ctx.dir.clone();
    let p = partial.clone();
    let check = if ctx.config.recheck {
        Finish::Recheck
    } else {
        Finish::Verified
    };
    blocking(name, move || dir.finish(&p, check)).await?;
    swarm.finish_download();
    let at = *ctx.local.announce.borrow();
    crate::publish::announce_completed(&ctx.tracker, info, &swarm, at).await;
    progress.send_modify(|p| {
        p.files = all_done(&manifest);
        p.done = true;
    });
    let stats = swarm.stats();
    Ok(Outcome {
        name: name.clone(),
        id: want.id,
        size: want.size,
        resumed,
        fetched: stats.chunks_new,
        duplicates: stats.chunks_again,
        per_peer: swarm.delivered(),
        uploaded: stats.uploaded,
        elapsed: started.elapsed(),
    })
}

//! Downloading one file from every peer that has it, verifying each chunk before it is written.
//!
//! Shaped like rqbit's engine: one task per peer connection, each keeping a window of requests in
//! flight and asking a shared `Scheduler` what to fetch next. The scheduler hands out runs of
//! consecutive chunks (so the seeder reads, and we write, with one syscall per run), picking the
//! rarest chunks among connected peers with random ties; the very first chunk is a random one from
//! a random peer, as the seed protocol does. A peer that fails or stalls gives its chunks back and
//! the tracker is asked again (flag 2); a peer that sends a chunk or manifest that does not verify,
//! or garbage, is dropped for this file for good. Verified chunks are made durable and reported to
//! the tracker in batches (flag 3 range lists), so the downloader becomes a source while it runs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracker::client::ClientError;
use tracker::proto::{ChunkRanges, ErrorCode as TrackerCode, FileName, PeerEntry};
use tracker::TrackerClient;

use crate::connection::{ConnError, Connection};
use crate::manifest::{ChunkHash, FileId, Manifest, MAX_CHUNK_SIZE};
use crate::punch::Dialer;
use crate::store::{check_name, NameError, PartialFile, ShareDir, StoreError};
use crate::wire::{
    bits, ErrorCode, Frame, MAX_MANIFEST_HASHES, MAX_REQUEST_CHUNKS, PEER_ID_LEN, VERSION,
};

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
    pub name: String,
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
    pub name: String,
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
    Name(#[from] NameError),
    #[error(transparent)]
    Tracker(#[from] ClientError),
    #[error("the tracker does not know a file named {0}")]
    NotOnTracker(String),
    #[error("{0}: chunk size {1} is larger than this peer supports ({MAX_CHUNK_SIZE})")]
    Unsupported(String, u32),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{name}: no peer gave a manifest matching {id} ({tried} tried; last: {last})")]
    NoManifest {
        name: String,
        id: FileId,
        tried: usize,
        last: String,
    },
    #[error("{name}: no peer delivered anything for {secs} s; {have}/{total} chunks verified and kept for a later resume")]
    Stalled {
        name: String,
        have: u32,
        total: u32,
        secs: u64,
    },
    #[error("{name}: writing {path}: {error}")]
    Write {
        name: String,
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
    pub peer_id: [u8; PEER_ID_LEN],
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

/// Downloads `name` into the context's share directory, publishing progress on `progress`.
pub async fn download(
    ctx: &Context,
    name: &str,
    progress: &watch::Sender<Progress>,
) -> Result<Outcome, DownloadError> {
    let started = Instant::now();
    let file_name = check_name(name)?;
    let swarm = match ctx.tracker.peers(&file_name).await {
        Ok(s) => s,
        Err(e) if e.code() == Some(TrackerCode::FileNotFound) => {
            return Err(DownloadError::NotOnTracker(name.to_owned()))
        }
        Err(e) => return Err(e.into()),
    };
    let info = &swarm.file.info;
    let (size, chunk_size, id) = (info.size(), info.chunk_size(), info.id());
    if chunk_size > MAX_CHUNK_SIZE {
        return Err(DownloadError::Unsupported(name.to_owned(), chunk_size));
    }
    progress.send_replace(Progress {
        name: name.to_owned(),
        total: info.chunks(),
        size,
        ..Progress::default()
    });

    if ctx.dir.complete_path(name).exists() {
        let dir = ctx.dir.clone();
        let n = name.to_owned();
        let have = tokio::task::spawn_blocking(move || dir.complete_manifest(&n))
            .await
            .map_err(|e| StoreError::Io {
                path: name.into(),
                error: io::Error::other(e),
            })??;
        if have.id() != id {
            return Err(StoreError::NameTaken {
                name: name.to_owned(),
                dir: ctx.dir.root().to_owned(),
                have: have.id(),
                want: id,
            }
            .into());
        }
        progress.send_modify(|p| {
            p.have = p.total;
            p.done = true;
        });
        return Ok(Outcome {
            name: name.to_owned(),
            id,
            size,
            resumed: info.chunks(),
            fetched: 0,
            per_peer: HashMap::new(),
            elapsed: started.elapsed(),
        });
    }

    let mut peers = Peers::new(*ctx.announce.borrow());
    peers.learn(&swarm.peers);
    let manifest = match ctx.dir.partial_manifest(name).filter(|m| m.id() == id) {
        Some(m) => Arc::new(m),
        None => Arc::new(fetch_manifest(ctx, name, size, chunk_size, id, &mut peers).await?),
    };
    let partial = {
        let dir = ctx.dir.clone();
        let (n, m) = (name.to_owned(), manifest.clone());
        tokio::task::spawn_blocking(move || dir.open_partial(&n, m))
            .await
            .map_err(|e| StoreError::Io {
                path: name.into(),
                error: io::Error::other(e),
            })??
    };
    let partial = Arc::new(partial);
    let resumed = partial.have_count();
    if resumed > 0 {
        log::info!(
            "{name}: resuming with {resumed}/{} chunks verified",
            manifest.chunk_count()
        );
    }
    let shared = Arc::new(Shared {
        name: name.to_owned(),
        id,
        partial: partial.clone(),
        sched: Mutex::new(Scheduler::new(&partial)),
        config: ctx.config.clone(),
        peer_id: ctx.peer_id,
        dialer: ctx.dialer.clone(),
        fetched: Default::default(),
        fetched_chunks: Default::default(),
    });

    let run = Run {
        ctx,
        file_name: &file_name,
        shared: &shared,
        progress,
    };
    let result = run.drive(&mut peers).await;
    // Whatever happened, what was verified is made durable and reported.
    run.persist_and_report().await;
    result?;

    let dir = ctx.dir.clone();
    let fetched = shared
        .fetched_chunks
        .load(std::sync::atomic::Ordering::Relaxed);
    tokio::task::spawn_blocking(move || dir.finish(&partial))
        .await
        .map_err(|e| StoreError::Io {
            path: name.into(),
            error: io::Error::other(e),
        })??;
    progress.send_modify(|p| p.done = true);
    Ok(Outcome {
        name: name.to_owned(),
        id,
        size,
        resumed,
        fetched,
        per_peer: peers.delivered,
        elapsed: started.elapsed(),
    })
}

/// Gets the manifest from the first peer whose copy matches `id`; peers that lie are marked.
async fn fetch_manifest(
    ctx: &Context,
    name: &str,
    size: u64,
    chunk_size: u32,
    id: FileId,
    peers: &mut Peers,
) -> Result<Manifest, DownloadError> {
    let mut tried = 0;
    let mut last = String::from("no peer listed");
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(s) = ctx.tracker.refresh(&check_name(name)?).await {
                peers.learn(&s.peers);
            }
        }
        for addr in peers.candidates(usize::MAX) {
            tried += 1;
            match manifest_from(ctx, addr, name, size, chunk_size, id).await {
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
        name: name.to_owned(),
        id,
        tried,
        last,
    })
}

async fn manifest_from(
    ctx: &Context,
    addr: SocketAddr,
    name: &str,
    size: u64,
    chunk_size: u32,
    id: FileId,
) -> Result<Manifest, PeerError> {
    let (mut conn, _) = open(
        ctx.dialer.as_deref(),
        addr,
        name,
        id,
        ctx.peer_id,
        ctx.config.connect_timeout,
    )
    .await?;
    let count = crate::manifest::chunk_count(size, chunk_size);
    let count = u32::try_from(count).map_err(|_| PeerError::Hostile("file too large".into()))?;
    let local = |e: StoreError| PeerError::Write(io::Error::other(e));
    let mut sink = ctx
        .dir
        .manifest_sink(name, size, chunk_size)
        .map_err(local)?;
    // Pages are requested a few ahead, so a long manifest costs a few round trips, not one per page.
    let ahead = 8 * MAX_MANIFEST_HASHES;
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
    sink.finish(id)
        .map_err(local)?
        .ok_or_else(|| PeerError::Hostile(format!("manifest does not match {id}")))
}

/// Why one peer connection ended.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("peer answered error {0:?}: {1}")]
    Remote(ErrorCode, String),
    #[error("misbehaved: {0}")]
    Hostile(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("writing the download: {0}")]
    Write(io::Error),
}

impl From<io::Error> for PeerError {
    fn from(e: io::Error) -> Self {
        PeerError::Conn(ConnError::Io(e))
    }
}

/// Connects, exchanges HANDSHAKEs and returns the connection with the peer's BITFIELD.
async fn open(
    dialer: Option<&Dialer>,
    addr: SocketAddr,
    name: &str,
    id: FileId,
    peer_id: [u8; PEER_ID_LEN],
    limit: Duration,
) -> Result<(Connection, Vec<u8>), PeerError> {
    let stream = match dialer {
        Some(d) => {
            let file = check_name(name).map_err(|e| PeerError::Unreachable(e.to_string()))?;
            d.connect(&file, addr)
                .await
                .map_err(|e| PeerError::Unreachable(e.to_string()))?
        }
        None => dial(addr, limit).await?,
    };
    let mut conn = Connection::new(stream);
    conn.queue(&Frame::Handshake {
        version: VERSION,
        peer_id,
        file_id: id,
        name: name.to_owned(),
    });
    conn.flush().await?;
    match conn
        .read_frame_within(limit)
        .await
        .map_err(hostile_if_garbage)?
    {
        Frame::Handshake {
            version,
            file_id,
            name: n,
            ..
        } => {
            if version != VERSION {
                return Err(PeerError::Remote(
                    ErrorCode::UnsupportedVersion,
                    format!("version {version}"),
                ));
            }
            if file_id != id || n != name {
                return Err(PeerError::Hostile(format!(
                    "handshake for {n} {file_id}, asked for {name} {id}"
                )));
            }
        }
        Frame::Error { code, message } => return Err(PeerError::Remote(code, message)),
        _ => return Err(PeerError::Hostile("expected HANDSHAKE".into())),
    }
    match conn
        .read_frame_within(limit)
        .await
        .map_err(hostile_if_garbage)?
    {
        Frame::Bitfield(b) => Ok((conn, b.to_vec())),
        Frame::Error { code, message } => Err(PeerError::Remote(code, message)),
        _ => Err(PeerError::Hostile("expected BITFIELD".into())),
    }
}

fn hostile_if_garbage(e: ConnError) -> PeerError {
    match e {
        ConnError::Wire(w) => PeerError::Hostile(w.to_string()),
        other => PeerError::Conn(other),
    }
}

/// The peers of one download and what we know about each.
struct Peers {
    me: SocketAddr,
    known: Vec<SocketAddr>,
    active: HashSet<SocketAddr>,
    hostile: HashSet<SocketAddr>,
    failures: HashMap<SocketAddr, u32>,
    delivered: HashMap<SocketAddr, u64>,
}

impl Peers {
    fn new(me: SocketAddr) -> Self {
        Peers {
            me,
            known: Vec::new(),
            active: HashSet::new(),
            hostile: HashSet::new(),
            failures: HashMap::new(),
            delivered: HashMap::new(),
        }
    }

    fn learn(&mut self, entries: &[PeerEntry]) {
        for e in entries {
            if e.addr != self.me && !self.known.contains(&e.addr) {
                self.known.push(e.addr);
            }
        }
    }

    fn failed(&mut self, addr: SocketAddr) {
        *self.failures.entry(addr).or_default() += 1;
    }

    /// Up to `n` peers worth connecting to now, in random order.
    fn candidates(&self, n: usize) -> Vec<SocketAddr> {
        let mut c: Vec<SocketAddr> = self
            .known
            .iter()
            .copied()
            .filter(|a| !self.active.contains(a) && !self.hostile.contains(a))
            .filter(|a| self.failures.get(a).copied().unwrap_or(0) < 3)
            .collect();
        c.shuffle(&mut rand::rng());
        c.truncate(n);
        c
    }
}

/// State shared by every connection of one download.
struct Shared {
    name: String,
    id: FileId,
    partial: Arc<PartialFile>,
    sched: Mutex<Scheduler>,
    config: DownloadConfig,
    peer_id: [u8; PEER_ID_LEN],
    dialer: Option<Arc<Dialer>>,
    fetched: std::sync::atomic::AtomicU64,
    fetched_chunks: std::sync::atomic::AtomicU32,
}

impl Shared {
    fn sched(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One download's main loop and its bookkeeping.
struct Run<'a> {
    ctx: &'a Context,
    file_name: &'a FileName,
    shared: &'a Arc<Shared>,
    progress: &'a watch::Sender<Progress>,
}

impl Run<'_> {
    async fn drive(&self, peers: &mut Peers) -> Result<(), DownloadError> {
        let cfg = &self.ctx.config;
        let name = &self.shared.name;
        let mut tasks: JoinSet<(SocketAddr, Result<(), PeerError>, u64)> = JoinSet::new();
        let mut report = tokio::time::interval(cfg.report_interval);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut rate = RateMeter::new();
        let mut last_progress = Instant::now();
        let mut last_refresh = Instant::now();
        let mut need_refresh = false;
        loop {
            if self.shared.partial.is_complete() {
                // Connections notice completion within their idle poll; collect what each delivered.
                let drain = async {
                    while let Some(joined) = tasks.join_next().await {
                        if let Ok((addr, _, got)) = joined {
                            *peers.delivered.entry(addr).or_default() += got;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                tasks.shutdown().await;
                self.publish(&mut rate, 0);
                return Ok(());
            }
            for addr in peers.candidates(cfg.max_peers.saturating_sub(peers.active.len())) {
                peers.active.insert(addr);
                let shared = self.shared.clone();
                tasks.spawn(async move {
                    let mut got = 0u64;
                    let r = fetch_from(&shared, addr, &mut got).await;
                    (addr, r, got)
                });
            }
            if (need_refresh || peers.active.is_empty())
                && last_refresh.elapsed() >= Duration::from_secs(1)
            {
                last_refresh = Instant::now();
                need_refresh = false;
                match self.ctx.tracker.refresh(self.file_name).await {
                    Ok(s) => {
                        peers.learn(&s.peers);
                        // Peers that failed before get another chance once the tracker lists them again.
                        if peers.candidates(1).is_empty() && peers.active.is_empty() {
                            peers.failures.clear();
                        }
                    }
                    Err(e) => log::warn!("{name}: refreshing the peer list: {e}"),
                }
                continue;
            }
            tokio::select! {
                Some(joined) = tasks.join_next() => {
                    let Ok((addr, result, got)) = joined else { continue };
                    peers.active.remove(&addr);
                    *peers.delivered.entry(addr).or_default() += got;
                    if got > 0 {
                        last_progress = Instant::now();
                    }
                    match result {
                        Ok(()) => {}
                        Err(PeerError::Hostile(why)) => {
                            log::warn!("{addr}: dropped for {name}: {why}");
                            peers.hostile.insert(addr);
                        }
                        Err(PeerError::Write(e)) => {
                            return Err(DownloadError::Write { name: name.clone(), path: self.ctx.dir.part_path(name).display().to_string(), error: e });
                        }
                        Err(e) => {
                            log::info!("{addr}: {name}: {e}");
                            if got == 0 {
                                peers.failed(addr);
                            }
                            need_refresh = true;
                        }
                    }
                }
                _ = report.tick() => self.persist_and_report().await,
                _ = tick.tick() => {
                    if self.publish(&mut rate, peers.active.len()) {
                        last_progress = Instant::now();
                    }
                    if last_progress.elapsed() > cfg.give_up_after {
                        tasks.shutdown().await;
                        let p = &self.shared.partial;
                        return Err(DownloadError::Stalled { name: name.clone(), have: p.have_count(), total: p.manifest().chunk_count(), secs: cfg.give_up_after.as_secs() });
                    }
                    if peers.active.is_empty() {
                        need_refresh = true;
                    }
                }
            }
        }
    }

    /// Publishes progress; true when bytes arrived since the last call.
    fn publish(&self, rate: &mut RateMeter, peers: usize) -> bool {
        let bytes = self
            .shared
            .fetched
            .load(std::sync::atomic::Ordering::Relaxed);
        let moved = rate.sample(bytes);
        let have = self.shared.partial.have_count();
        self.progress.send_modify(|p| {
            p.have = have;
            p.bytes = bytes;
            p.rate = rate.rate();
            p.peers = peers;
        });
        moved
    }

    /// Makes verified chunks durable, then tells the tracker about them (never the other way
    /// round, so the tracker never lists a chunk we could lose).
    async fn persist_and_report(&self) {
        let partial = self.shared.partial.clone();
        let newly = match tokio::task::spawn_blocking(move || partial.persist()).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                log::warn!("{}: saving the resume record: {e}", self.shared.name);
                return;
            }
            Err(_) => return,
        };
        let Some(ranges) = ChunkRanges::from_indices(newly) else {
            return;
        };
        let announce = *self.ctx.announce.borrow();
        if let Err(e) = self
            .ctx
            .tracker
            .report_chunks(self.file_name, &ranges, announce)
            .await
        {
            log::warn!("{}: reporting chunks to the tracker: {e}", self.shared.name);
        }
    }
}

/// Bytes per second over a sliding window of a few seconds.
struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    fn new() -> Self {
        RateMeter {
            samples: VecDeque::new(),
        }
    }

    fn sample(&mut self, total: u64) -> bool {
        let moved = self.samples.back().is_none_or(|&(_, b)| b != total);
        let now = Instant::now();
        self.samples.push_back((now, total));
        while self.samples.len() > 2
            && now.duration_since(self.samples[0].0) > Duration::from_secs(3)
        {
            self.samples.pop_front();
        }
        moved
    }

    fn rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                (b1 - b0) as f64 / (t1 - t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// Fetches chunks from one peer until the file is complete, the peer has nothing more we need,
/// or the connection fails. `got` counts verified bytes received, also on failure.
async fn fetch_from(shared: &Shared, addr: SocketAddr, got: &mut u64) -> Result<(), PeerError> {
    let cfg = &shared.config;
    let manifest = shared.partial.manifest().clone();
    let total = manifest.chunk_count();
    let (mut conn, mut peer_bits) = open(
        shared.dialer.as_deref(),
        addr,
        &shared.name,
        shared.id,
        shared.peer_id,
        cfg.connect_timeout,
    )
    .await?;
    if !bits::well_formed(&peer_bits, total) {
        return Err(PeerError::Hostile(format!(
            "BITFIELD of {} bytes for {total} chunks",
            peer_bits.len()
        )));
    }
    shared.sched().add_peer(&peer_bits);
    let mut inflight: VecDeque<(u32, u32)> = VecDeque::new();
    let result = exchange(
        shared,
        &manifest,
        &mut conn,
        &mut peer_bits,
        &mut inflight,
        got,
    )
    .await;
    let mut s = shared.sched();
    s.remove_peer(&peer_bits);
    for &(first, count) in &inflight {
        s.release(first, count);
    }
    result
}

async fn exchange(
    shared: &Shared,
    manifest: &Manifest,
    conn: &mut Connection,
    peer_bits: &mut [u8],
    inflight: &mut VecDeque<(u32, u32)>,
    got: &mut u64,
) -> Result<(), PeerError> {
    let cfg = &shared.config;
    let total = manifest.chunk_count();
    let run_len = cfg.run_len.clamp(1, MAX_REQUEST_CHUNKS);
    let mut outstanding = 0u32;
    // Consecutive verified chunks not yet written: one positioned write per run.
    let mut pending: Vec<u8> =
        Vec::with_capacity(run_len as usize * manifest.chunk_size() as usize);
    let mut pending_first = 0u32;
    let mut pending_next = 0u32;
    let mut expected: Vec<ChunkHash> = Vec::new();
    let mut expected_start = 0u32;
    loop {
        while outstanding < cfg.window {
            let Some((first, count)) = shared.sched().pick(peer_bits, run_len) else {
                break;
            };
            conn.queue(&Frame::Request {
                index: first,
                count,
            });
            inflight.push_back((first, count));
            outstanding += count;
        }
        if inflight.is_empty() {
            if shared.partial.is_complete() {
                return Ok(());
            }
            // Endgame: everything is claimed; ask this idle peer too for chunks others still owe,
            // so one slow or stalled peer does not hold up the end of the download.
            if let Some((first, count)) = shared.sched().endgame(peer_bits, run_len) {
                conn.queue(&Frame::Request {
                    index: first,
                    count,
                });
                inflight.push_back((first, count));
                outstanding += count;
                continue;
            }
            // Nothing this peer has is missing: wait for HAVEs or released chunks.
            conn.flush().await?;
            match tokio::time::timeout(Duration::from_millis(500), conn.read_frame()).await {
                Err(_) => continue,
                Ok(f) => {
                    on_idle_frame(shared, f.map_err(hostile_if_garbage)?, peer_bits, total)?;
                    continue;
                }
            }
        }
        conn.flush().await?;
        let frame = conn
            .read_frame_within(cfg.stall_timeout)
            .await
            .map_err(hostile_if_garbage)?;
        let mut next = Some(frame);
        while let Some(frame) = next {
            match frame {
                Frame::Chunk { index, data } => {
                    let Some(&(first, count)) = inflight.front() else {
                        return Err(PeerError::Hostile(format!("unrequested CHUNK {index}")));
                    };
                    if index != first {
                        return Err(PeerError::Hostile(format!(
                            "CHUNK {index} out of order, expected {first}"
                        )));
                    }
                    if !(expected_start..expected_start + expected.len() as u32).contains(&index) {
                        // One read of the hashes of the rest of this request, not one per chunk.
                        expected = manifest.hashes(index, count).map_err(PeerError::Write)?;
                        expected_start = index;
                    }
                    if !manifest.matches(index, &data, &expected[(index - expected_start) as usize])
                    {
                        return Err(PeerError::Hostile(format!(
                            "chunk {index} does not match the manifest"
                        )));
                    }
                    if pending.is_empty() {
                        pending_first = index;
                    } else if pending_next != index {
                        write_pending(shared, &mut pending, pending_first)?;
                        pending_first = index;
                    }
                    pending.extend_from_slice(&data);
                    pending_next = index + 1;
                    *got += data.len() as u64;
                    shared
                        .fetched
                        .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    shared
                        .fetched_chunks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    outstanding -= 1;
                    advance(inflight, first, count, 1);
                }
                Frame::Reject { index, count: n } => {
                    let Some(&(first, count)) = inflight.front() else {
                        return Err(PeerError::Hostile("unrequested REJECT".into()));
                    };
                    if index != first || n > count {
                        return Err(PeerError::Hostile(format!(
                            "REJECT {index}+{n} out of order"
                        )));
                    }
                    let mut s = shared.sched();
                    s.release(index, n);
                    for i in index..index + n {
                        if bits::get(peer_bits, i) {
                            s.forget_one(i);
                            clear_bit(peer_bits, i);
                        }
                    }
                    drop(s);
                    outstanding -= n;
                    advance(inflight, first, count, n);
                }
                other => on_idle_frame(shared, other, peer_bits, total)?,
            }
            next = conn.buffered_frame().map_err(hostile_if_garbage)?;
        }
        if !pending.is_empty() {
            write_pending(shared, &mut pending, pending_first)?;
        }
    }
}

fn advance(inflight: &mut VecDeque<(u32, u32)>, first: u32, count: u32, by: u32) {
    if by >= count {
        inflight.pop_front();
    } else if let Some(front) = inflight.front_mut() {
        *front = (first + by, count - by);
    }
}

fn write_pending(shared: &Shared, pending: &mut Vec<u8>, first: u32) -> Result<(), PeerError> {
    shared
        .partial
        .write_verified(first, pending)
        .map_err(PeerError::Write)?;
    let n = pending
        .len()
        .div_ceil(shared.partial.manifest().chunk_size() as usize) as u32;
    shared.sched().mark_have(first, n);
    pending.clear();
    Ok(())
}

fn clear_bit(field: &mut [u8], i: u32) {
    if let Some(b) = field.get_mut(i as usize / 8) {
        *b &= !(0x80 >> (i % 8));
    }
}

/// Frames that may arrive at any time: HAVE updates the peer's field; anything else is wrong.
fn on_idle_frame(
    shared: &Shared,
    frame: Frame,
    peer_bits: &mut [u8],
    total: u32,
) -> Result<(), PeerError> {
    match frame {
        Frame::Have(list) => {
            let mut s = shared.sched();
            for i in list {
                if i >= total {
                    return Err(PeerError::Hostile(format!(
                        "HAVE {i} beyond {total} chunks"
                    )));
                }
                if !bits::get(peer_bits, i) {
                    bits::set(peer_bits, i);
                    s.add_one(i);
                }
            }
            Ok(())
        }
        Frame::Error { code, message } => Err(PeerError::Remote(code, message)),
        Frame::Chunk { index, .. } => Err(PeerError::Hostile(format!("unrequested CHUNK {index}"))),
        _ => Err(PeerError::Hostile("unexpected frame".into())),
    }
}

/// Chunk states of the scheduler.
const MISSING: u8 = 0;
const REQUESTED: u8 = 1;
const HAVE: u8 = 2;

/// Chunks per scheduling block: the unit of locality and of the rarest-first scan.
const BLOCK: u32 = 64;

/// Blocks examined per pick: rarest-first over a random sample keeps picks cheap on huge files
/// while still favouring rare chunks (the usual approximation of rarest-first).
const SAMPLE_BLOCKS: usize = 256;

/// Which chunk to fetch from whom: rarest first among connected peers, random ties, runs of
/// consecutive chunks, the first chunk random.
struct Scheduler {
    state: Vec<u8>,
    avail: Vec<u16>,
    /// Missing, unrequested chunks per block.
    open: Vec<u32>,
    first_pick: bool,
}

impl Scheduler {
    fn new(partial: &PartialFile) -> Self {
        Self::with_have(partial.manifest().chunk_count(), &partial.have_bits())
    }

    /// A scheduler for `n` chunks of which those set in `have` are already verified.
    fn with_have(n: u32, have: &[u8]) -> Self {
        let state: Vec<u8> = (0..n)
            .map(|i| if bits::get(have, i) { HAVE } else { MISSING })
            .collect();
        let blocks = n.div_ceil(BLOCK) as usize;
        let mut open = vec![0u32; blocks];
        for (i, s) in state.iter().enumerate() {
            if *s == MISSING {
                open[i / BLOCK as usize] += 1;
            }
        }
        Scheduler {
            state,
            avail: vec![0; n as usize],
            open,
            first_pick: state_empty(have),
        }
    }

    fn add_peer(&mut self, field: &[u8]) {
        for i in 0..self.avail.len() as u32 {
            if bits::get(field, i) {
                self.add_one(i);
            }
        }
    }

    fn remove_peer(&mut self, field: &[u8]) {
        for i in 0..self.avail.len() as u32 {
            if bits::get(field, i) {
                self.forget_one(i);
            }
        }
    }

    fn add_one(&mut self, i: u32) {
        if let Some(a) = self.avail.get_mut(i as usize) {
            *a = a.saturating_add(1);
        }
    }

    fn forget_one(&mut self, i: u32) {
        if let Some(a) = self.avail.get_mut(i as usize) {
            *a = a.saturating_sub(1);
        }
    }

    fn set_state(&mut self, i: u32, to: u8) {
        let s = &mut self.state[i as usize];
        let b = (i / BLOCK) as usize;
        if *s == MISSING && to != MISSING {
            self.open[b] -= 1;
        } else if *s != MISSING && to == MISSING {
            self.open[b] += 1;
        }
        *s = to;
    }

    /// Chunks `first..first+count` go back to the pool (their peer failed or rejected them).
    fn release(&mut self, first: u32, count: u32) {
        for i in first..first.saturating_add(count).min(self.state.len() as u32) {
            if self.state[i as usize] == REQUESTED {
                self.set_state(i, MISSING);
            }
        }
    }

    fn mark_have(&mut self, first: u32, count: u32) {
        for i in first..first.saturating_add(count).min(self.state.len() as u32) {
            self.set_state(i, HAVE);
        }
    }

    fn candidate(&self, field: &[u8], i: u32) -> bool {
        self.state[i as usize] == MISSING && bits::get(field, i)
    }

    /// In the endgame (no chunk left unclaimed), a run of chunks claimed by other peers that a
    /// peer with `field` also has, picked at random; `None` while unclaimed chunks remain.
    fn endgame(&self, field: &[u8], run_len: u32) -> Option<(u32, u32)> {
        if self.open.iter().any(|&o| o > 0) {
            return None;
        }
        let owed = |i: u32| self.state[i as usize] == REQUESTED && bits::get(field, i);
        let options: Vec<u32> = (0..self.state.len() as u32).filter(|&i| owed(i)).collect();
        let first = *options.get(rand::rng().random_range(0..options.len().max(1)))?;
        let count = (first..)
            .take(run_len as usize)
            .take_while(|&i| (i as usize) < self.state.len() && owed(i))
            .count();
        Some((first, count as u32))
    }

    /// Claims the next run (first chunk, count) to request from a peer with `field`.
    fn pick(&mut self, field: &[u8], run_len: u32) -> Option<(u32, u32)> {
        let n = self.state.len() as u32;
        let blocks = self.open.len();
        if blocks == 0 {
            return None;
        }
        let mut rng = rand::rng();
        if self.first_pick {
            self.first_pick = false;
            let options: Vec<u32> = (0..n).filter(|&i| self.candidate(field, i)).collect();
            if let Some(&i) = options.get(rng.random_range(0..options.len().max(1))) {
                self.set_state(i, REQUESTED);
                return Some((i, 1));
            }
            return None;
        }
        let start = rng.random_range(0..blocks);
        let mut best: Option<(u16, u32)> = None;
        let mut seen = 0;
        for k in 0..blocks {
            let b = (start + k) % blocks;
            if self.open[b] == 0 {
                continue;
            }
            let lo = b as u32 * BLOCK;
            let hi = (lo + BLOCK).min(n);
            let Some(i) = (lo..hi).find(|&i| self.candidate(field, i)) else {
                continue;
            };
            let rarity = self.avail[i as usize];
            if best.is_none_or(|(r, _)| rarity < r) {
                best = Some((rarity, i));
            }
            seen += 1;
            if rarity <= 1 || seen >= SAMPLE_BLOCKS {
                break;
            }
        }
        let (_, first) = best?;
        let mut count = 0;
        while count < run_len && first + count < n && self.candidate(field, first + count) {
            self.set_state(first + count, REQUESTED);
            count += 1;
        }
        Some((first, count))
    }
}

/// True when no chunk is verified yet (the seed's "first chunk at random" applies).
fn state_empty(have: &[u8]) -> bool {
    have.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::full_bitfield;

    fn field(n: u32, set: impl Fn(u32) -> bool) -> Vec<u8> {
        let mut f = vec![0u8; bits::len_for(n)];
        (0..n)
            .filter(|&i| set(i))
            .for_each(|i| bits::set(&mut f, i));
        f
    }

    #[test]
    fn first_pick_is_one_random_chunk_then_runs_of_the_rarest() {
        let n = 1000;
        let mut s = Scheduler::with_have(n, &vec![0; bits::len_for(n)]);
        let seeder = full_bitfield(n);
        // A second peer holds the upper half, so the lower half is rarer.
        let partial = field(n, |i| i >= 500);
        s.add_peer(&seeder);
        s.add_peer(&partial);
        let (first, count) = s.pick(&seeder, 32).unwrap();
        assert_eq!(count, 1, "the first request is a single chunk");
        assert!(first < n);
        for _ in 0..10 {
            let (first, count) = s.pick(&seeder, 32).unwrap();
            // A run starts at a rarest chunk (it may run on past the rare ones).
            assert!(
                first < 500,
                "run {first}+{count} does not start among the rarest"
            );
            assert!((1..=32).contains(&count));
        }
        // The partial peer is only ever given chunks it has.
        let (first, _) = s.pick(&partial, 32).unwrap();
        assert!(first >= 500);
    }

    #[test]
    fn released_chunks_return_and_endgame_shares_the_last_ones() {
        let n = 100;
        let mut s = Scheduler::with_have(n, &field(n, |i| i < 50));
        let all = full_bitfield(n);
        s.add_peer(&all);
        let mut claimed = Vec::new();
        while let Some(run) = s.pick(&all, 64) {
            claimed.push(run);
        }
        assert_eq!(
            claimed.iter().map(|r| r.1).sum::<u32>(),
            50,
            "exactly the missing chunks"
        );
        let (first, count) = claimed[0];
        // Everything is claimed: an idle peer may ask for chunks another peer still owes.
        let (e_first, e_count) = s.endgame(&all, 64).unwrap();
        assert!(e_first >= 50 && e_count >= 1);
        s.release(first, count);
        assert!(
            s.endgame(&all, 64).is_none(),
            "no endgame while chunks are unclaimed"
        );
        let mut again = 0;
        while let Some((f, c)) = s.pick(&all, 64) {
            assert!(
                f >= first && f + c <= first + count,
                "{f}+{c} was not released"
            );
            again += c;
        }
        assert_eq!(again, count, "released chunks are handed out again, once");
        s.mark_have(50, 50);
        assert!(s.pick(&all, 64).is_none() && s.endgame(&all, 64).is_none());
    }
}

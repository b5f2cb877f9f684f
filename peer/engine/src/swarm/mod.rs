//! One file's swarm as this peer takes part in it: the connections to other peers of the file,
//! each carrying chunks both ways (protocol.txt §2.4), what we hold, who we upload to.
//!
//! A [`Swarm`] exists for every file this process serves or downloads. The server hands it the
//! connections other peers open ([`registry`]), the downloader the ones it opens; both kinds are
//! the same to the swarm: a task per connection ([`peer`]) serves the other side's requests and,
//! while we download, requests what it has and we lack, so a peer that connects to us becomes a
//! source for us too. The swarm keeps what those tasks share: which chunks we hold
//! ([`holdings`], with the log of chunks verified since the swarm opened, which every
//! connection forwards as HAVE), the [`picker`] that hands out chunks to request, and the
//! [`choker`] that decides whom we upload to ([`slots`] carries its decisions out). Rates are
//! bounded by [`limit`]s shared by the whole process.

pub mod budget;
pub mod choker;
mod handshake;
mod have_log;
mod holdings;
pub mod limit;
mod link;
mod peer;
mod picker;
pub mod registry;
mod serving;
mod slots;
mod storing;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bitfield::Bitfield;
use crate::connection::Connection;
use crate::manifest::{FileId, Manifest};
use crate::metainfo::{Info, Layout};
use crate::name::ShareName;
use crate::share::PartialFile;
use crate::storage::Storage;
use crate::wire::{Frame, PeerId, METAINFO_PIECE};
use choker::{Choker, LinkId, DEFAULT_SLOTS};
use have_log::HaveLog;
use holdings::Holdings;
use limit::RateLimit;
use link::Link;
use picker::Picker;
use slots::rechoke_periodically;

pub use handshake::{initiate, Hello, Remote};
pub use peer::PeerError;

/// Knobs of every swarm of a process; the defaults suit loopback and the Internet alike.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Connections per file, ours and theirs together.
    pub max_peers: usize,
    /// Regular upload slots per file (the choker adds one optimistic slot).
    pub upload_slots: usize,
    /// Upload limit per connection in bytes per second (`None`: as fast as the peer reads).
    pub upload_rate: Option<u64>,
    /// Most chunks we keep requested from one peer (fewer from a slow one).
    pub window: u32,
    /// Chunks per REQUEST (a run of consecutive chunks).
    pub run_len: u32,
    /// A peer with requests of ours outstanding that sends nothing for this long is dropped.
    pub stall_timeout: Duration,
    /// A connection on which nothing arrives for this long is closed (peers send KEEPALIVE).
    pub idle_timeout: Duration,
    /// We send KEEPALIVE after this long without sending anything.
    pub keepalive: Duration,
    /// A peer that takes none of our bytes for this long is closed.
    pub write_timeout: Duration,
    /// Time a peer has to complete its HANDSHAKE (and BITFIELD).
    pub handshake_timeout: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            max_peers: 40,
            upload_slots: DEFAULT_SLOTS,
            upload_rate: None,
            window: 1024,
            run_len: 128,
            stall_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(90),
            keepalive: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Upload counters the console and statistics read while the peer runs.
#[derive(Debug, Default)]
pub struct UploadStats {
    bytes: AtomicU64,
    per_file: Mutex<HashMap<ShareName, u64>>,
}

impl UploadStats {
    /// Chunk bytes sent since start.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Chunk bytes sent per file since start.
    pub fn per_file(&self) -> HashMap<ShareName, u64> {
        self.per_file.lock().clone()
    }

    fn add(&self, name: &ShareName, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        *self.per_file.lock().entry(name.clone()).or_default() += n;
    }
}

/// What every swarm of this process shares: who we are on the wire and the process-wide limits.
#[derive(Debug)]
pub struct LocalPeer {
    pub peer_id: PeerId,
    /// The address we announce (a watch: STUN refresh may move it), sent in our HANDSHAKEs.
    pub announce: watch::Receiver<SocketAddr>,
    /// Addresses that are ours (the listener, what we announce): never dialled.
    pub own_addrs: Mutex<HashSet<SocketAddr>>,
    pub config: SwarmConfig,
    /// `--upload-limit`: all uploads of the process together (shared by answers in flight).
    pub upload: Arc<RateLimit>,
    /// `--download-limit`: all downloads of the process together.
    pub download: RateLimit,
    pub uploads: Arc<UploadStats>,
    /// Chunk bytes received and verified by the whole process.
    pub downloaded: AtomicU64,
}

impl LocalPeer {
    pub fn new(
        announce: watch::Receiver<SocketAddr>,
        config: SwarmConfig,
        upload_limit: Option<u64>,
        download_limit: Option<u64>,
    ) -> LocalPeer {
        LocalPeer {
            peer_id: PeerId::random(),
            announce,
            own_addrs: Mutex::new(HashSet::new()),
            config,
            upload: Arc::new(RateLimit::new(upload_limit)),
            download: RateLimit::new(download_limit),
            uploads: Arc::new(UploadStats::default()),
            downloaded: AtomicU64::new(0),
        }
    }

    /// Our HANDSHAKE greeting for a file.
    pub fn hello(&self, name: &ShareName, id: FileId) -> Hello {
        Hello {
            peer_id: self.peer_id,
            name: name.clone(),
            id,
            listen: Some(*self.announce.borrow()),
        }
    }

    /// True for an address that is this peer's own (dialling it would reach ourselves).
    pub fn is_own(&self, addr: SocketAddr) -> bool {
        addr == *self.announce.borrow() || self.own_addrs.lock().contains(&addr)
    }
}

/// What the connections of one swarm share.
#[derive(Debug)]
struct State {
    holdings: Holdings,
    /// Chunks verified since the swarm opened, in order: forwarded to every peer as HAVE.
    haves: HaveLog,
    picker: Option<Picker>,
    links: HashMap<LinkId, Arc<Link>>,
    next_link: LinkId,
    choker: Choker,
    /// Peers dropped for lying or sending bad data: never served or asked again here.
    banned: HashSet<PeerId>,
    banned_addrs: HashSet<SocketAddr>,
    /// Verified chunk bytes each peer delivered, by the address it is reached at.
    delivered: HashMap<SocketAddr, u64>,
    /// A write of a verified chunk failed: the download cannot go on.
    write_error: Option<String>,
}

/// A file's swarm. Shared (`Arc`) by its connections, the server and the downloader.
#[derive(Debug)]
pub struct Swarm {
    name: ShareName,
    manifest: Arc<Manifest>,
    /// The bencoded `info` dictionary peers fetch with GET_METAINFO, made when first asked for.
    info: OnceLock<Bytes>,
    /// Where chunks are read for serving: the complete file or directory, or the `.part`
    /// being written.
    file: Arc<Storage>,
    /// Every chunk read is checked against the manifest before it is sent: the file is shared
    /// in place, where its owner may change it at any moment.
    check_reads: bool,
    local: Arc<LocalPeer>,
    state: Mutex<State>,
    have_seq: watch::Sender<usize>,
    /// Cancelled when the swarm closes: every connection ends.
    stop: CancellationToken,
    /// Chunk bytes sent to the swarm's peers.
    uploaded: AtomicU64,
    /// Chunk bytes received and verified from the swarm's peers.
    downloaded: AtomicU64,
    /// Chunks verified from peers: first deliveries, and again (endgame duplicates).
    chunks_new: AtomicU32,
    chunks_again: AtomicU32,
}

/// What the console and statistics show of a swarm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwarmStats {
    /// Connections open for the file.
    pub peers: usize,
    /// Peers that unchoked us and have chunks we want.
    pub downloading_from: usize,
    /// Peers we unchoked that want chunks we have.
    pub uploading_to: usize,
    /// Distinct peers that delivered at least one verified chunk.
    pub sources: usize,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Chunks peers delivered first / after another peer had (endgame duplicates).
    pub chunks_new: u32,
    pub chunks_again: u32,
}

impl Swarm {
    fn new(
        name: ShareName,
        manifest: Arc<Manifest>,
        file: Arc<Storage>,
        holdings: Holdings,
        local: Arc<LocalPeer>,
        check_reads: bool,
    ) -> Arc<Swarm> {
        let picker = match &holdings {
            Holdings::Downloading(p) => Some(p.with_have(Picker::new)),
            _ => None,
        };
        let swarm = Arc::new(Swarm {
            name,
            manifest,
            info: OnceLock::new(),
            file,
            check_reads,
            state: Mutex::new(State {
                holdings,
                haves: HaveLog::default(),
                picker,
                links: HashMap::new(),
                next_link: 0,
                choker: Choker::new(local.config.upload_slots),
                banned: HashSet::new(),
                banned_addrs: HashSet::new(),
                delivered: HashMap::new(),
                write_error: None,
            }),
            local,
            have_seq: watch::channel(0).0,
            stop: CancellationToken::new(),
            uploaded: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            chunks_new: AtomicU32::new(0),
            chunks_again: AtomicU32::new(0),
        });
        tokio::spawn(rechoke_periodically(Arc::downgrade(&swarm)));
        swarm
    }

    /// A swarm serving a complete file; `in_place` for one shared where it lies (its chunks
    /// are checked as they are read).
    pub fn seeding(
        name: ShareName,
        manifest: Arc<Manifest>,
        file: Storage,
        local: Arc<LocalPeer>,
        in_place: bool,
    ) -> Arc<Swarm> {
        Swarm::new(
            name,
            manifest,
            Arc::new(file),
            Holdings::All,
            local,
            in_place,
        )
    }

    /// A swarm serving the verified part of another process's download (`have` from its record).
    pub fn mirroring(
        name: ShareName,
        manifest: Arc<Manifest>,
        file: Storage,
        have: Bitfield,
        local: Arc<LocalPeer>,
    ) -> Arc<Swarm> {
        Swarm::new(
            name,
            manifest,
            Arc::new(file),
            Holdings::Recorded(have),
            local,
            false,
        )
    }

    /// A swarm for our own download into `partial`, serving from the same `.part`.
    pub fn downloading(
        name: ShareName,
        partial: Arc<PartialFile>,
        local: Arc<LocalPeer>,
    ) -> Arc<Swarm> {
        let manifest = partial.manifest().clone();
        Swarm::new(
            name,
            manifest,
            partial.storage().clone(),
            Holdings::Downloading(partial),
            local,
            false,
        )
    }

    pub fn name(&self) -> &ShareName {
        &self.name
    }

    pub fn id(&self) -> FileId {
        self.manifest.id()
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub fn local(&self) -> &Arc<LocalPeer> {
        &self.local
    }

    /// What the metainfo's `info` dictionary says of this swarm's content.
    pub fn info(&self) -> Info {
        Info {
            name: self.name.clone(),
            piece_length: self.manifest.chunk_size(),
            id: self.manifest.id(),
            layout: match self.manifest.files() {
                Some(files) => Layout::Files(files.to_vec()),
                None => Layout::Single {
                    length: self.manifest.size(),
                },
            },
        }
    }

    /// The answer to GET_METAINFO `piece` (protocol.txt §2.6).
    fn metainfo_piece(&self, piece: u32) -> Frame {
        let info = self.info.get_or_init(|| Bytes::from(self.info().encode()));
        let start = (piece as usize)
            .saturating_mul(METAINFO_PIECE)
            .min(info.len());
        let end = start.saturating_add(METAINFO_PIECE).min(info.len());
        Frame::Metainfo {
            piece,
            total: info.len() as u32,
            data: info.slice(start..end),
        }
    }

    /// Closes every connection of the swarm.
    pub fn close(&self) {
        self.stop.cancel();
    }

    pub fn is_closed(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// True when `peer` (or the address it is reached at) was dropped for bad behaviour.
    pub fn is_banned(&self, peer: Option<PeerId>, addr: SocketAddr) -> bool {
        let state = self.state.lock();
        state.banned_addrs.contains(&addr) || peer.is_some_and(|p| state.banned.contains(&p))
    }

    fn ban(&self, peer: PeerId, addrs: &[SocketAddr]) {
        let mut state = self.state.lock();
        state.banned.insert(peer);
        state.banned_addrs.extend(addrs.iter().copied());
    }

    /// Connections open now.
    pub fn link_count(&self) -> usize {
        self.state.lock().links.len()
    }

    /// Serving addresses of the peers connected now (as they announce them, with an
    /// unspecified IP replaced by the connection's), so the downloader does not dial them too.
    pub fn connected_addrs(&self) -> HashSet<SocketAddr> {
        self.state
            .lock()
            .links
            .values()
            .flat_map(|l| [Some(l.addr), l.listen])
            .flatten()
            .collect()
    }

    /// Verified chunk bytes delivered per peer address since the swarm opened.
    pub fn delivered(&self) -> HashMap<SocketAddr, u64> {
        self.state.lock().delivered.clone()
    }

    /// True when some connected peer holds a chunk we still miss.
    pub fn has_useful_peer(&self) -> bool {
        self.state.lock().links.values().any(|l| l.we_interested())
    }

    pub fn stats(&self) -> SwarmStats {
        let state = self.state.lock();
        let links = state.links.values();
        SwarmStats {
            peers: state.links.len(),
            downloading_from: links.clone().filter(|l| l.downloading_from()).count(),
            uploading_to: links.filter(|l| l.uploading_to()).count(),
            sources: state.delivered.values().filter(|b| **b > 0).count(),
            uploaded: self.uploaded.load(Ordering::Relaxed),
            downloaded: self.downloaded.load(Ordering::Relaxed),
            chunks_new: self.chunks_new.load(Ordering::Relaxed),
            chunks_again: self.chunks_again.load(Ordering::Relaxed),
        }
    }

    /// Registers a connection that completed its handshake, unless the file's connection limit
    /// is reached or it duplicates one we have with the same peer (protocol.txt §2.4: of two
    /// connections between the same peers, the one whose initiator has the smaller PEER_ID
    /// stays; of two opened by the same side, the newer). Returns the new link, or why it must
    /// be refused.
    fn register(
        &self,
        remote: &Remote,
        addr: SocketAddr,
        initiated: bool,
    ) -> Result<Arc<Link>, Refusal> {
        if remote.peer_id == self.local.peer_id {
            return Err(Refusal::Ourselves);
        }
        if self.is_banned(Some(remote.peer_id), addr) {
            return Err(Refusal::Banned);
        }
        let mut state = self.state.lock();
        let our_id = self.local.peer_id;
        let initiator = |initiated: bool| if initiated { our_id } else { remote.peer_id };
        // The same peer id from another IP is not the same peer: ids are visible to anyone we
        // talk to, and a stranger must not be able to push out our connection to a peer.
        if let Some(existing) = state
            .links
            .values()
            .find(|l| l.remote == remote.peer_id && ip_of(l.addr) == ip_of(addr))
            .cloned()
        {
            // Both opened by the same side: the older one is being replaced (its peer
            // reconnected before we noticed it gone), so the newer stays.
            let keep_new = initiated == existing.initiated
                || initiator(initiated) < initiator(existing.initiated);
            if !keep_new {
                return Err(Refusal::Duplicate);
            }
            existing.replace();
        } else if state.links.len() >= self.local.config.max_peers {
            return Err(Refusal::Full);
        }
        let id = state.next_link;
        state.next_link += 1;
        let listen = remote.listen.map(|l| {
            if l.ip().is_unspecified() {
                SocketAddr::new(addr.ip(), l.port())
            } else {
                l
            }
        });
        let link = Arc::new(Link::new(id, remote.peer_id, addr, listen, initiated));
        state.links.insert(id, link.clone());
        state.haves.join(id);
        Ok(link)
    }

    fn unregister(&self, link: &Link) {
        let mut state = self.state.lock();
        state.links.remove(&link.id);
        state.haves.leave(link.id);
    }

    /// Runs a connection whose handshake is done until it ends: the task of [`peer`].
    pub async fn run_link(
        self: &Arc<Swarm>,
        conn: Connection,
        remote: Remote,
        addr: SocketAddr,
        initiated: bool,
    ) -> Result<LinkOutcome, PeerError> {
        peer::run(self.clone(), conn, remote, addr, initiated).await
    }

    /// One line on where the swarm stands, for logs when a download makes no progress.
    pub fn describe(&self) -> String {
        let state = self.state.lock();
        let links: Vec<String> = state
            .links
            .values()
            .map(|l| {
                format!(
                    "{}{}{}",
                    l.listen.unwrap_or(l.addr),
                    if l.downloading_from() {
                        " (from)"
                    } else if l.we_interested() {
                        " (choked us)"
                    } else {
                        ""
                    },
                    if l.uploading_to() { " (to)" } else { "" }
                )
            })
            .collect();
        format!(
            "{:?}; {} connections: {}",
            state.picker,
            links.len(),
            links.join(", ")
        )
    }
}

/// Why the swarm refused a connection after its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("connected to itself")]
    Ourselves,
    #[error("already connected to this peer")]
    Duplicate,
    #[error("too many connections for this file")]
    Full,
    #[error("dropped for misbehaving")]
    Banned,
}

/// How a connection ended when it ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkOutcome {
    /// Verified chunk bytes the peer delivered.
    pub delivered: u64,
}

/// The IP a connection's address counts against in per-IP limits.
pub fn ip_of(addr: SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

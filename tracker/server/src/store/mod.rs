//! Swarm state: which peers hold which chunks of which file, within global caps and each host's
//! share of them.
//!
//! The protocol speaks of rows `(filename, chunk, ip, port)`; storing them as rows would cost a
//! heap entry per chunk (half a million per peer for a 1 GiB file). Instead each file keeps, per
//! peer, either a "seeder" mark (no memory beyond the entry) or a bitfield of the chunks it holds
//! (one bit per chunk), and each peer keeps one last-seen time. [`SwarmStore`] is the interface
//! the server uses; [`MemoryStore`] is the in-memory implementation, built on the per-file
//! swarm structures of `swarm`, and [`RedisStore`] keeps the same state in Redis, shared by
//! every tracker on it.

mod kept;
mod memory;
mod quota;
mod redis;
mod swarm;

use std::net::SocketAddr;
use std::time::Instant;

use thiserror::Error;
use tracker_proto::{
    ChunkRanges, ErrorCode, FileInfo, FileName, FileSummary, ListedFile, PageBody, PeerEntry,
    PeerKey, Transfer,
};

pub use memory::{MemoryStore, Restored, SnapshotError};
pub use quota::Quotas;
pub use redis::{redacted, RedisConfig, RedisStore};
pub use swarm::MAX_LISTED_RANGES_BYTES;

use crate::host::Host;

/// Bounds that keep the tracker's memory finite whatever peers send (protocol.txt §1.9).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_files: usize,
    /// Serving addresses (peers) across all swarms: bounds the peer table, whose entries cost
    /// memory of their own beside their rows.
    pub max_peers: usize,
    pub max_peers_per_file: usize,
    /// Rows (a peer in a file's swarm) across all files: bounds memory whatever the mix.
    pub max_rows: usize,
    /// Bytes of partial-peer bitfields across all files.
    pub max_bitfield_bytes: usize,
    /// The share of each cap one host may hold, in percent ([`Quotas`]).
    pub ip_share_percent: u32,
}

impl Default for Limits {
    /// One host may hold 10 % of each cap: ten hosts are needed to fill the tracker, and one
    /// host may still share 10,000 files and run 10,000 peers, 1,000 of them in one swarm.
    fn default() -> Self {
        Limits {
            max_files: 100_000,
            max_peers: 100_000,
            max_peers_per_file: 10_000,
            max_rows: 1_000_000,
            max_bitfield_bytes: 512 << 20,
            ip_share_percent: 10,
        }
    }
}

/// Who is announcing: the serving address rows are filed under (already checked against the
/// datagram's source by the server), the identity key and where to reach its UDP socket.
#[derive(Debug, Clone, Copy)]
pub struct Announcer {
    pub addr: SocketAddr,
    pub key: Option<PeerKey>,
    /// The datagram's source: its host is charged for the rows.
    pub source: SocketAddr,
    /// The socket PUNCH notices for this peer go to from now on; `None` keeps the one the
    /// peer has (`punch=keep`: a one-shot command beside the daemon that listens).
    pub udp: Option<SocketAddr>,
}

impl Announcer {
    /// The host the announcement comes from, which quotas charge (not `addr`'s, which
    /// `--trust-ip-field` lets a host choose).
    pub fn host(&self) -> Host {
        Host::of(self.source.ip())
    }
}

/// Why the store refused a change or lookup.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("no such file: {0}")]
    FileNotFound(FileName),
    #[error("no such peer: {0}")]
    PeerNotFound(SocketAddr),
    #[error("chunk {chunk} does not exist: the file has {chunks} chunks")]
    ChunkOutOfRange { chunk: u32, chunks: u32 },
    #[error("{0} is tracked with another size, chunk size or id")]
    HashMismatch(FileName),
    #[error("tracker limit reached: {0}")]
    Capacity(&'static str),
    #[error("this IP's share of the tracker is used up: {0} (tracker --ip-share)")]
    HostQuota(&'static str),
    #[error("{0} was announced with a key this request does not carry")]
    Forbidden(SocketAddr),
    /// A transfer report that cannot be counted (protocol.txt §1.2): 1110 BAD_FIELD.
    #[error("{0}")]
    Counters(String),
    /// The backend could not be reached or answered nonsense; the text says what to look at.
    #[error("the tracker's store is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::FileNotFound(_) => ErrorCode::FileNotFound,
            StoreError::PeerNotFound(_) => ErrorCode::PeerNotFound,
            StoreError::ChunkOutOfRange { .. } => ErrorCode::ChunkNotAvailable,
            StoreError::HashMismatch(_) => ErrorCode::HashMismatch,
            StoreError::Capacity(_) | StoreError::HostQuota(_) => ErrorCode::CapacityExceeded,
            StoreError::Forbidden(_) => ErrorCode::Forbidden,
            StoreError::Counters(_) => ErrorCode::BadField,
            StoreError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

/// One page of a listing: `next` is the offset to ask for next, if anything is left.
#[derive(Debug)]
pub struct Page<T> {
    pub head: T,
    pub next: Option<u32>,
}

/// Where the peers of a listing (flags 1 and 2) go, one page of them.
pub trait PeerSink {
    /// Offered each listed peer in turn, with the file's counts: `false` when the entry does
    /// not fit the answer, which ends the page there.
    fn push(&mut self, file: &FileSummary, peer: &PeerEntry) -> bool;

    /// The page of text being filled for `file`'s header, if this sink fills one: a store may
    /// then keep its lines while the swarm stays as it is, and give them to a later page
    /// ([`PageBody::reuse`]) instead of offering the peers again. `None`: entries only.
    fn page(&mut self, _file: &FileSummary) -> Option<&mut PageBody> {
        None
    }
}

/// A closure is a sink of entries only.
impl<F: FnMut(&FileSummary, &PeerEntry) -> bool> PeerSink for F {
    fn push(&mut self, file: &FileSummary, peer: &PeerEntry) -> bool {
        self(file, peer)
    }
}

/// Like [`PeerSink`], for the catalogue (flag 6).
pub trait FileSink {
    /// Offered each catalogue line in turn: `false` when it does not fit, which ends the page.
    fn push(&mut self, file: &ListedFile) -> bool;

    /// The page of text being filled, if this sink fills one with every line it is offered
    /// (a sink that passes some over, by a name pattern, has no page a store may keep).
    fn page(&mut self) -> Option<&mut PageBody> {
        None
    }
}

impl<F: FnMut(&ListedFile) -> bool> FileSink for F {
    fn push(&mut self, file: &ListedFile) -> bool {
        self(file)
    }
}

/// One store operation of a request, with the trust rules of `Tracker::handle` already applied
/// (an [`Announcer`]'s address is one its source may use). `transfer` is what an announcement
/// reports of the file (protocol.txt §1.2): checked before the operation changes anything
/// (a counter that went backwards refuses the whole request), added to the swarm's figures
/// after (before the row goes, for flag 5).
pub enum Op<'a> {
    /// Flag 4: `who` seeds `info` (creating the file if new).
    Share {
        who: Announcer,
        info: &'a FileInfo,
        transfer: &'a Transfer,
    },
    /// Flag 3: `who` holds `chunks` of `file`.
    Report {
        who: Announcer,
        file: &'a FileName,
        chunks: &'a ChunkRanges,
        transfer: &'a Transfer,
    },
    /// Flag 5: `who` leaves `file`'s swarm, or every swarm. Leaving what one is not in is fine;
    /// leaving as a peer whose key one does not carry is not.
    Exit {
        who: Announcer,
        file: Option<&'a FileName>,
        transfer: &'a Transfer,
    },
    /// Flag 9: refresh (and maybe move) `who`; answers [`Done::Alive`].
    Heartbeat { who: Announcer },
    /// Flags 1 and 2: `join` (an address given) first joins `file`'s swarm holding no chunk
    /// yet, or keeps what it holds there, and is refreshed like any announcement; then the
    /// swarm is listed from `offset`, leaving out the joiner (offsets still count it, so pages
    /// stay consistent). Peers past the TTL are listed until the next expiry, which runs at
    /// least every second. Answers [`Done::Peers`].
    Peers {
        file: &'a FileName,
        offset: u32,
        join: Option<Announcer>,
        transfer: &'a Transfer,
        sink: Box<dyn PeerSink + 'a>,
    },
    /// Flag 6; answers [`Done::Files`] whose head is the total number of files.
    Files {
        offset: u32,
        sink: Box<dyn FileSink + 'a>,
    },
    /// Flag 7; answers [`Done::File`].
    Query { file: &'a FileName },
    /// Flag 8: the UDP address of `target`, a live member of `file`'s swarm
    /// ([`Done::PunchTo`]).
    PunchTarget {
        file: &'a FileName,
        target: SocketAddr,
    },
}

/// One request's work for the store: its operation, and the key of a request that is not an
/// announcement, whose peer's liveness any verified request refreshes. The UDP return address
/// is left alone then: one-shot commands of a peer share its key but not its socket.
pub struct Task<'a> {
    pub touch: Option<PeerKey>,
    pub op: Op<'a>,
}

/// What an operation answered.
#[derive(Debug)]
pub enum Done {
    Ok,
    Alive(u32),
    Peers(Page<FileSummary>),
    Files(Page<u32>),
    File(FileSummary),
    PunchTo(SocketAddr),
}

/// The swarm state the server reads and changes, shared by every receive thread (and, for a
/// shared backend, by every tracker on it). A receive batch goes to the store at once, so a
/// backend behind a network round trip pays one per batch, not one per request.
pub trait SwarmStore: Send + Sync {
    /// Runs the tasks of one receive batch in order; one result per task.
    fn run(&self, tasks: &mut [Task<'_>], now: Instant) -> Vec<Result<Done, StoreError>>;
    /// Frees the rows of peers silent for longer than the TTL.
    fn expire(&self, now: Instant);
    /// The secret anti-amplification cookies are keyed with, when the backend shares one among
    /// trackers (so a cookie one tracker issued is good at all of them); `None`: each tracker
    /// makes its own.
    fn cookie_secret(&self) -> Option<[u8; 32]> {
        None
    }
}

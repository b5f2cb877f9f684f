//! Swarm state: which peers hold which chunks of which file, within global caps and each host's
//! share of them.
//!
//! The protocol speaks of rows `(filename, chunk, ip, port)`; storing them as rows would cost a
//! heap entry per chunk (half a million per peer for a 1 GiB file). Instead each file keeps, per
//! peer, either a "seeder" mark (no memory beyond the entry) or a bitfield of the chunks it holds
//! (one bit per chunk), and each peer keeps one last-seen time. [`SwarmStore`] is the interface
//! the server uses; [`MemoryStore`] is the in-memory implementation, built on the per-file
//! swarm structures of `swarm`.

mod memory;
mod quota;
mod swarm;

use std::net::SocketAddr;
use std::time::Instant;

use thiserror::Error;
use tracker_proto::{
    ChunkRanges, ErrorCode, FileInfo, FileName, FileSummary, ListedFile, PeerEntry, PeerKey,
};

pub use memory::MemoryStore;
pub use quota::Quotas;
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
        }
    }
}

/// One page of a listing: `next` is the offset to ask for next, if anything is left.
#[derive(Debug)]
pub struct Page<T> {
    pub head: T,
    pub next: Option<u32>,
}

/// The swarm state the server reads and changes. Listing methods offer entries one by one to
/// `fits`, which returns `false` when the entry does not fit the answer; the page ends there.
pub trait SwarmStore: Send {
    /// Flag 4: `who` seeds `info` (creating the file if new).
    fn share(&mut self, who: Announcer, info: &FileInfo, now: Instant) -> Result<(), StoreError>;
    /// Flag 3: `who` holds `chunks` of `file`.
    fn report(
        &mut self,
        who: Announcer,
        file: &FileName,
        chunks: &ChunkRanges,
        now: Instant,
    ) -> Result<(), StoreError>;
    /// Flags 1 and 2 with an address: `who` joins `file`'s swarm holding no chunk yet, or
    /// keeps what it holds there; either way it is refreshed like any announcement.
    fn join(&mut self, who: Announcer, file: &FileName, now: Instant) -> Result<(), StoreError>;
    /// Flag 5: `who` leaves `file`'s swarm, or every swarm. Leaving what one is not in is fine;
    /// leaving as a peer whose key one does not carry is not.
    fn exit(
        &mut self,
        who: Announcer,
        file: Option<&FileName>,
        now: Instant,
    ) -> Result<(), StoreError>;
    /// Flag 9: refresh (and maybe move) `who`; returns the number of swarms it is in.
    fn heartbeat(&mut self, who: Announcer, now: Instant) -> Result<u32, StoreError>;
    /// Any other request carrying a key: refresh that peer's liveness. The UDP return address
    /// is left alone: one-shot commands of a peer share its key but not its long-lived socket.
    fn touch_key(&mut self, key: &PeerKey, now: Instant);
    /// Flags 1 and 2. Peers past the TTL are listed until the next [`SwarmStore::expire`]: the
    /// server runs it at least every second, which spares a liveness lookup per listed peer.
    /// `asker`, the address of a peer asking about its own swarm, is left out of the listing
    /// (offsets still count it, so pages stay consistent).
    fn peers(
        &self,
        file: &FileName,
        offset: u32,
        asker: Option<SocketAddr>,
        fits: &mut dyn FnMut(&PeerEntry) -> bool,
    ) -> Result<Page<FileSummary>, StoreError>;
    /// Flag 6: `head` is the total number of files.
    fn files(&self, offset: u32, fits: &mut dyn FnMut(&ListedFile) -> bool) -> Page<u32>;
    /// Flag 7.
    fn query(&self, file: &FileName) -> Result<FileSummary, StoreError>;
    /// Flag 8: the UDP address of `target`, a live member of `file`'s swarm.
    fn punch_target(
        &self,
        file: &FileName,
        target: SocketAddr,
        now: Instant,
    ) -> Result<SocketAddr, StoreError>;
    /// Frees the rows of peers silent for longer than the TTL.
    fn expire(&mut self, now: Instant);
}

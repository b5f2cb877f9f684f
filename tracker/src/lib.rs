//! The UDP tracker of the p2p file-sharing system: the text protocol codec ([`proto`]), the
//! swarm store, the UDP server and the async client peers use ([`client`]).

#[cfg(target_os = "linux")]
pub mod batch;
pub mod client;
pub mod cookie;
pub mod proto;
pub mod server;
pub mod store;

pub use client::{ClientConfig, ClientError, Swarm, TrackerClient};
pub use proto::{
    ChunkRanges, FileId, FileInfo, FileName, FileSummary, ListedFile, PeerChunks, PeerEntry,
    PeerKey, PunchNotice,
};

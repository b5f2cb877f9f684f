//! What a peer needs to talk to a tracker: the text protocol (protocol.txt §1) as pure parse and
//! format, and the async client. It must never depend on the tracker server, and it opens no
//! socket but the client's own UDP socket.
//!
//! Requests ([`Request`]) and everything the tracker sends ([`TrackerMessage`]) are typed values;
//! `parse` turns bytes into a value or a [`ParseError`] that names the [`ErrorCode`] to answer
//! with, and `Display` writes the exact wire text. Values shared with peers (file names, chunk
//! ranges, file descriptions) live in [`types`] and are re-exported here. [`client`] is the
//! request/response client with retries and cookies ([`TrackerClient`]).

pub mod client;
mod error;
mod page;
mod pattern;
mod render;
mod reporting;
mod request;
mod response;
mod token;
mod transfer;
pub mod types;

pub use client::{ClientConfig, ClientError, Swarm, TrackerClient};
pub use error::{ErrorCode, ParseError};
pub use page::{PageBody, PeersHeader};
pub use pattern::{NamePattern, PatternError, MAX_PATTERN_BYTES};
pub use render::PageLine;
pub use request::{Request, RequestKind, MAX_REQUEST_BYTES};
pub use response::{
    Ack, ErrorReply, PunchNotice, RelayOffer, Response, ResponseKind, TrackerMessage,
    MAX_DATAGRAM_BYTES,
};
pub use transfer::{AnnounceEvent, ConnStats, SwarmStats, Transfer, MAX_COUNTER};
pub use types::{
    is_unicast, parse_peer_addr, AddrError, AnnounceIntervals, ChunkRanges, ChunkRangesError,
    Cookie, FileId, FileIdError, FileInfo, FileInfoError, FileName, FileNameError, FileSummary,
    ListedFile, PeerChunks, PeerEntry, PeerKey, DEFAULT_CHUNK_SIZE, DEFAULT_PEER_PORT, MAX_CHUNKS,
    MAX_CHUNK_SIZE, MAX_NAME_BYTES,
};

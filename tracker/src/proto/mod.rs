//! The tracker's text protocol (protocol.txt §1): pure parse and format, no I/O.
//!
//! Requests ([`Request`]) and everything the tracker sends ([`TrackerMessage`]) are typed values;
//! `parse` turns bytes into a value or a [`ParseError`] that names the [`ErrorCode`] to answer
//! with, and `Display` writes the exact wire text. Values shared with peers (file names, chunk
//! ranges, file descriptions) live in [`types`] and are re-exported here.

mod error;
mod request;
mod response;
mod token;
pub mod types;

pub use error::{ErrorCode, ParseError};
pub use request::{Request, RequestKind, MAX_REQUEST_BYTES};
pub use response::{
    Ack, ErrorReply, PageBody, PunchNotice, Response, ResponseKind, TrackerMessage,
    MAX_DATAGRAM_BYTES,
};
pub use types::{
    parse_peer_addr, AddrError, ChunkRanges, ChunkRangesError, Cookie, FileId, FileIdError,
    FileInfo, FileInfoError, FileName, FileNameError, FileSummary, ListedFile, PeerChunks,
    PeerEntry, PeerKey, DEFAULT_CHUNK_SIZE, DEFAULT_PEER_PORT, MAX_CHUNKS, MAX_CHUNK_SIZE,
    MAX_NAME_BYTES,
};

//! The peer wire protocol (protocol.txt §2) as pure values: bytes in, a [`Frame`] or a
//! [`WireError`] out ([`decode`]), and back ([`encode`]). No I/O here; [`crate::connection`]
//! moves frames over sockets.
//!
//! Parsing is two-phase as in mini-redis: [`Frame::check`] looks at a buffer and says whether a
//! whole frame is there (without allocating), then [`Frame::parse`] builds the value from exactly
//! that frame. Every frame type has its own length bound, checked from the 5-byte header, so a
//! peer cannot make us buffer more than the largest legal frame of the type it announces (and
//! before the handshake, more than a HANDSHAKE).

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use tracker_proto::{FileName, FileNameError};

use crate::manifest::{ChunkHash, FileId, MAX_CHUNK_SIZE};

pub use encode::{chunk_frames, encode_chunk, CHUNK_HEADER};

/// First bytes of every HANDSHAKE: tells a stray client (HTTP, a port scanner) apart at once.
pub const MAGIC: [u8; 4] = *b"P2PW";

/// Version this implementation speaks. A peer answering another version gets ERROR 2002.
pub const VERSION: u8 = 2;

/// Most chunks one REQUEST may ask for.
pub const MAX_REQUEST_CHUNKS: u32 = 64;

/// Most hashes one MANIFEST frame carries (and one GET_MANIFEST may ask for): 128 KiB.
pub const MAX_MANIFEST_HASHES: u32 = 4096;

/// Bytes of the info dictionary one METAINFO frame carries (BEP 9's 16 KiB pieces).
pub const METAINFO_PIECE: usize = 16 * 1024;

/// Most chunk indices in one HAVE frame.
pub const MAX_HAVE_INDICES: usize = 16 * 1024;

/// Most chunks of a file (protocol.txt §1.1), so the longest BITFIELD is 512 KiB.
pub const MAX_CHUNKS: u32 = 1 << 22;

/// Longest ERROR message, in bytes.
pub const MAX_ERROR_LEN: usize = 1024;

/// Bytes of the random id a peer picks per process.
pub const PEER_ID_LEN: usize = 16;

/// Largest value of the length prefix of any frame: a CHUNK of the largest chunk size.
pub const MAX_FRAME_LEN: u32 = 1 + 4 + MAX_CHUNK_SIZE;

/// The random id a peer picks per process. It tells the two ends of a connection apart, settles
/// which of two connections between the same peers stays (protocol.txt §2.4), and lets a peer
/// notice it dialled itself; it is no identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; PEER_ID_LEN]);

impl PeerId {
    pub fn random() -> PeerId {
        PeerId(rand::random())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", hex::encode(&self.0[..4]))
    }
}

/// Consecutive chunks `first .. first + count`: what one REQUEST asks for and one REJECT
/// turns down. `count` is 1..=[`MAX_REQUEST_CHUNKS`] when it comes off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRun {
    pub first: u32,
    pub count: u32,
}

impl ChunkRun {
    pub fn new(first: u32, count: u32) -> ChunkRun {
        ChunkRun { first, count }
    }

    /// One past the last chunk of the run (saturating, so a hostile run cannot wrap).
    pub fn end(&self) -> u32 {
        self.first.saturating_add(self.count)
    }

    /// The run's chunk indices.
    pub fn indices(&self) -> std::ops::Range<u32> {
        self.first..self.end()
    }

    /// The run without its first `n` chunks (empty when `n >= count`).
    pub fn skip(&self, n: u32) -> ChunkRun {
        let n = n.min(self.count);
        ChunkRun::new(self.first + n, self.count - n)
    }
}

/// Frame type bytes.
mod ty {
    pub const HANDSHAKE: u8 = 0x01;
    pub const BITFIELD: u8 = 0x02;
    pub const HAVE: u8 = 0x03;
    pub const GET_MANIFEST: u8 = 0x04;
    pub const MANIFEST: u8 = 0x05;
    pub const REQUEST: u8 = 0x06;
    pub const CHUNK: u8 = 0x07;
    pub const REJECT: u8 = 0x08;
    pub const ERROR: u8 = 0x09;
    pub const CHOKE: u8 = 0x0a;
    pub const UNCHOKE: u8 = 0x0b;
    pub const INTERESTED: u8 = 0x0c;
    pub const NOT_INTERESTED: u8 = 0x0d;
    pub const KEEPALIVE: u8 = 0x0e;
    pub const GET_METAINFO: u8 = 0x0f;
    pub const METAINFO: u8 = 0x10;
}

/// Codes of the ERROR frame; the 100x ones mean what the tracker's codes of the same number mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    FileNotFound,
    HashMismatch,
    ConnectionRefused,
    BadFrame,
    UnsupportedVersion,
    TooManyRequests,
    Duplicate,
    Other(u16),
}

impl ErrorCode {
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::FileNotFound => 1002,
            ErrorCode::HashMismatch => 1004,
            ErrorCode::ConnectionRefused => 1005,
            ErrorCode::BadFrame => 2001,
            ErrorCode::UnsupportedVersion => 2002,
            ErrorCode::TooManyRequests => 2003,
            ErrorCode::Duplicate => 2004,
            ErrorCode::Other(c) => c,
        }
    }

    pub fn from_u16(code: u16) -> Self {
        match code {
            1002 => ErrorCode::FileNotFound,
            1004 => ErrorCode::HashMismatch,
            1005 => ErrorCode::ConnectionRefused,
            2001 => ErrorCode::BadFrame,
            2002 => ErrorCode::UnsupportedVersion,
            2003 => ErrorCode::TooManyRequests,
            2004 => ErrorCode::Duplicate,
            c => ErrorCode::Other(c),
        }
    }
}

/// One message of the peer protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame in each direction: who I am, which file this connection is about, and where
    /// I serve (the address I announce to the tracker; an unspecified IP means "the IP this
    /// connection comes from"), if anywhere.
    Handshake {
        version: u8,
        peer_id: PeerId,
        file_id: FileId,
        name: FileName,
        listen: Option<SocketAddr>,
    },
    /// Which chunks the sender has verified, bit i = byte i/8, mask 0x80 >> (i % 8).
    Bitfield(Bytes),
    /// Chunks the sender verified since its BITFIELD.
    Have(Vec<u32>),
    /// Asks for `count` manifest hashes from chunk `start`.
    GetManifest { start: u32, count: u32 },
    /// Manifest hashes from chunk `start`.
    Manifest { start: u32, hashes: Vec<ChunkHash> },
    /// Asks for a run of chunks, answered by that many chunks in CHUNK/REJECT frames, in order.
    Request(ChunkRun),
    /// The raw bytes of one chunk.
    Chunk { index: u32, data: Bytes },
    /// The sender does not have these chunks, or chokes the receiver; the connection stays up.
    Reject(ChunkRun),
    /// Fatal error; the sender closes the connection after it.
    Error { code: ErrorCode, message: String },
    /// The sender will answer the receiver's later REQUESTs with REJECT until UNCHOKE.
    Choke,
    /// The sender serves the receiver's REQUESTs again.
    Unchoke,
    /// The sender lacks chunks the receiver has and would request them if unchoked.
    Interested,
    /// The sender needs nothing the receiver has.
    NotInterested,
    /// Nothing to say; keeps a quiet connection from being taken for a dead one.
    KeepAlive,
    /// Asks for piece `piece` (bytes `piece * METAINFO_PIECE ..`) of the file's bencoded
    /// `info` dictionary (protocol.txt §2.6, as BEP 9's `request`).
    GetMetainfo { piece: u32 },
    /// Piece `piece` of the `info` dictionary, `total` bytes long in all (0: the sender has
    /// none); `data` is empty for a piece past the end.
    Metainfo { piece: u32, total: u32, data: Bytes },
}

/// Why bytes are not a valid frame. Every variant is the peer's fault and ends the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of type 0x{kind:02x} with length {len}, outside its bounds")]
    BadLength { kind: u8, len: u32 },
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("{0} frame has a malformed payload")]
    Malformed(&'static str),
    #[error("handshake without the protocol magic")]
    BadMagic,
    #[error("handshake names no valid file: {0}")]
    BadName(FileNameError),
    #[error("a {0} frame where only a HANDSHAKE may come")]
    NotHandshake(&'static str),
}

impl Frame {
    /// The frame's name as protocol.txt writes it (for logs and error messages).
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Handshake { .. } => "HANDSHAKE",
            Frame::Bitfield(_) => "BITFIELD",
            Frame::Have(_) => "HAVE",
            Frame::GetManifest { .. } => "GET_MANIFEST",
            Frame::Manifest { .. } => "MANIFEST",
            Frame::Request(_) => "REQUEST",
            Frame::Chunk { .. } => "CHUNK",
            Frame::Reject(_) => "REJECT",
            Frame::Error { .. } => "ERROR",
            Frame::Choke => "CHOKE",
            Frame::Unchoke => "UNCHOKE",
            Frame::Interested => "INTERESTED",
            Frame::NotInterested => "NOT_INTERESTED",
            Frame::KeepAlive => "KEEPALIVE",
            Frame::GetMetainfo { .. } => "GET_METAINFO",
            Frame::Metainfo { .. } => "METAINFO",
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

//! The peer wire protocol (protocol.txt §2) as pure values: bytes in, a [`Frame`] or a
//! [`WireError`] out, and back. No I/O here; [`crate::connection`] moves frames over sockets.
//!
//! Parsing is two-phase as in mini-redis: [`Frame::check`] looks at a buffer and says whether a
//! whole frame is there (without allocating), then [`Frame::parse`] builds the value from exactly
//! that frame. Frames are bounded by [`MAX_FRAME_LEN`] so a peer cannot make us buffer unbounded
//! data by announcing a huge length.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tracker_proto::{FileName, FileNameError};

use crate::manifest::{ChunkHash, FileId, HASH_LEN, MAX_CHUNK_SIZE};

/// First bytes of every HANDSHAKE: tells a stray client (HTTP, a port scanner) apart at once.
pub const MAGIC: [u8; 4] = *b"P2PW";

/// Version this implementation speaks. A peer answering another version gets ERROR 2002.
pub const VERSION: u8 = 1;

/// Largest value of the length prefix: one maximal chunk plus its index and type byte, with room.
pub const MAX_FRAME_LEN: u32 = MAX_CHUNK_SIZE + 64;

/// Most chunks one REQUEST may ask for.
pub const MAX_REQUEST_CHUNKS: u32 = 64;

/// Most hashes one MANIFEST frame carries (and one GET_MANIFEST may ask for): 128 KiB.
pub const MAX_MANIFEST_HASHES: u32 = 4096;

/// Longest ERROR message, in bytes.
pub const MAX_ERROR_LEN: usize = 1024;

/// Bytes of the random id a peer picks per process.
pub const PEER_ID_LEN: usize = 16;

/// The random id a peer picks per process; it tells the two ends of a connection apart in
/// logs and is no identity (protocol.txt §2.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub [u8; PEER_ID_LEN]);

impl PeerId {
    pub fn random() -> PeerId {
        PeerId(rand::random())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", hex::encode(self.0))
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
            c => ErrorCode::Other(c),
        }
    }
}

/// One message of the peer protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame in each direction: who I am and which file this connection is about.
    Handshake {
        version: u8,
        peer_id: PeerId,
        file_id: FileId,
        name: FileName,
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
    /// The sender does not have these chunks; the connection stays up.
    Reject(ChunkRun),
    /// Fatal error; the sender closes the connection after it.
    Error { code: ErrorCode, message: String },
}

/// Why bytes are not a valid frame. Every variant is the peer's fault and ends the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame length {0} outside 1..={MAX_FRAME_LEN}")]
    BadLength(u32),
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("{0} frame has a malformed payload")]
    Malformed(&'static str),
    #[error("handshake without the protocol magic")]
    BadMagic,
    #[error("handshake names no valid file: {0}")]
    BadName(FileNameError),
}

impl Frame {
    /// Looks at the start of `buf`: `Ok(Some(n))` when its first `n` bytes are one whole frame,
    /// `Ok(None)` when more bytes are needed, an error when the header already shows garbage.
    pub fn check(buf: &[u8]) -> Result<Option<usize>, WireError> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len == 0 || len > MAX_FRAME_LEN {
            return Err(WireError::BadLength(len));
        }
        if !(ty::HANDSHAKE..=ty::ERROR).contains(&buf[4]) {
            return Err(WireError::UnknownType(buf[4]));
        }
        let total = 4 + len as usize;
        Ok((buf.len() >= total).then_some(total))
    }

    /// Parses one whole frame (length prefix included) as delimited by [`Frame::check`].
    pub fn parse(mut frame: Bytes) -> Result<Frame, WireError> {
        if frame.len() < 5 {
            return Err(WireError::BadLength(frame.len().saturating_sub(4) as u32));
        }
        let len = frame.get_u32();
        if len as usize != frame.len() || len == 0 || len > MAX_FRAME_LEN {
            return Err(WireError::BadLength(len));
        }
        let kind = frame.get_u8();
        let mut p = frame;
        match kind {
            ty::HANDSHAKE => {
                const NAME: &str = "HANDSHAKE";
                if p.len() < 4 + 1 + PEER_ID_LEN + HASH_LEN + 1 {
                    return Err(WireError::Malformed(NAME));
                }
                if p[..4] != MAGIC {
                    return Err(WireError::BadMagic);
                }
                p.advance(4);
                let version = p.get_u8();
                let mut peer_id = [0u8; PEER_ID_LEN];
                p.copy_to_slice(&mut peer_id);
                let mut id = [0u8; HASH_LEN];
                p.copy_to_slice(&mut id);
                let name_len = p.get_u8() as usize;
                if name_len == 0 || p.len() != name_len {
                    return Err(WireError::Malformed(NAME));
                }
                let name = std::str::from_utf8(&p).map_err(|_| WireError::Malformed(NAME))?;
                Ok(Frame::Handshake {
                    version,
                    peer_id: PeerId(peer_id),
                    file_id: FileId(id),
                    name: FileName::new(name).map_err(WireError::BadName)?,
                })
            }
            ty::BITFIELD => Ok(Frame::Bitfield(p)),
            ty::HAVE => {
                if p.is_empty() || !p.len().is_multiple_of(4) {
                    return Err(WireError::Malformed("HAVE"));
                }
                Ok(Frame::Have(p.chunks_exact(4).map(be_u32).collect()))
            }
            ty::GET_MANIFEST => {
                let (start, count) = two_u32(&p, "GET_MANIFEST")?;
                if count == 0 || count > MAX_MANIFEST_HASHES {
                    return Err(WireError::Malformed("GET_MANIFEST"));
                }
                Ok(Frame::GetManifest { start, count })
            }
            ty::MANIFEST => {
                let n = p.len().wrapping_sub(4);
                if p.len() < 4
                    || !n.is_multiple_of(HASH_LEN)
                    || n / HASH_LEN > MAX_MANIFEST_HASHES as usize
                {
                    return Err(WireError::Malformed("MANIFEST"));
                }
                let start = p.get_u32();
                let hashes = p
                    .chunks_exact(HASH_LEN)
                    .map(|h| {
                        let mut a = [0u8; HASH_LEN];
                        a.copy_from_slice(h);
                        a
                    })
                    .collect();
                Ok(Frame::Manifest { start, hashes })
            }
            ty::REQUEST => Ok(Frame::Request(chunk_run(&p, "REQUEST")?)),
            ty::CHUNK => {
                if p.len() < 4 {
                    return Err(WireError::Malformed("CHUNK"));
                }
                let index = p.get_u32();
                Ok(Frame::Chunk { index, data: p })
            }
            ty::REJECT => Ok(Frame::Reject(chunk_run(&p, "REJECT")?)),
            ty::ERROR => {
                if p.len() < 2 || p.len() - 2 > MAX_ERROR_LEN {
                    return Err(WireError::Malformed("ERROR"));
                }
                let code = ErrorCode::from_u16(p.get_u16());
                let message = String::from_utf8_lossy(&p).into_owned();
                Ok(Frame::Error { code, message })
            }
            other => Err(WireError::UnknownType(other)),
        }
    }

    /// Appends the encoded frame to `dst`. A message too long for the protocol's limit is
    /// truncated to it, never sent oversized (a [`FileName`] always fits).
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Frame::Handshake {
                version,
                peer_id,
                file_id,
                name,
            } => {
                let name = name.as_str();
                put_header(
                    dst,
                    ty::HANDSHAKE,
                    4 + 1 + PEER_ID_LEN + HASH_LEN + 1 + name.len(),
                );
                dst.put_slice(&MAGIC);
                dst.put_u8(*version);
                dst.put_slice(&peer_id.0);
                dst.put_slice(&file_id.0);
                dst.put_u8(name.len() as u8);
                dst.put_slice(name.as_bytes());
            }
            Frame::Bitfield(bits) => {
                put_header(dst, ty::BITFIELD, bits.len());
                dst.put_slice(bits);
            }
            Frame::Have(indexes) => {
                put_header(dst, ty::HAVE, indexes.len() * 4);
                for i in indexes {
                    dst.put_u32(*i);
                }
            }
            Frame::GetManifest { start, count } => {
                put_header(dst, ty::GET_MANIFEST, 8);
                dst.put_u32(*start);
                dst.put_u32(*count);
            }
            Frame::Manifest { start, hashes } => {
                put_header(dst, ty::MANIFEST, 4 + hashes.len() * HASH_LEN);
                dst.put_u32(*start);
                for h in hashes {
                    dst.put_slice(h);
                }
            }
            Frame::Request(run) => put_run(dst, ty::REQUEST, run),
            Frame::Chunk { index, data } => encode_chunk(dst, *index, data),
            Frame::Reject(run) => put_run(dst, ty::REJECT, run),
            Frame::Error { code, message } => {
                let message = truncate_utf8(message, MAX_ERROR_LEN);
                put_header(dst, ty::ERROR, 2 + message.len());
                dst.put_u16(code.to_u16());
                dst.put_slice(message.as_bytes());
            }
        }
    }
}

/// Appends a CHUNK frame straight from a borrowed slice, so the server copies file bytes once.
pub fn encode_chunk(dst: &mut BytesMut, index: u32, data: &[u8]) {
    put_header(dst, ty::CHUNK, 4 + data.len());
    dst.put_u32(index);
    dst.put_slice(data);
}

fn put_header(dst: &mut BytesMut, kind: u8, payload: usize) {
    dst.reserve(5 + payload);
    dst.put_u32(1 + payload as u32);
    dst.put_u8(kind);
}

fn put_run(dst: &mut BytesMut, kind: u8, run: &ChunkRun) {
    put_header(dst, kind, 8);
    dst.put_u32(run.first);
    dst.put_u32(run.count);
}

/// The payload of REQUEST and REJECT: a run of 1..=[`MAX_REQUEST_CHUNKS`] chunks.
fn chunk_run(p: &[u8], name: &'static str) -> Result<ChunkRun, WireError> {
    let (first, count) = two_u32(p, name)?;
    if count == 0 || count > MAX_REQUEST_CHUNKS {
        return Err(WireError::Malformed(name));
    }
    Ok(ChunkRun::new(first, count))
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn two_u32(p: &[u8], name: &'static str) -> Result<(u32, u32), WireError> {
    if p.len() != 8 {
        return Err(WireError::Malformed(name));
    }
    Ok((be_u32(&p[..4]), be_u32(&p[4..])))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(f: &Frame) -> Bytes {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        b.freeze()
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (
                any::<u8>(),
                any::<[u8; 16]>(),
                any::<[u8; 32]>(),
                "[a-zA-Z0-9._-]{1,60}"
                    .prop_filter_map("a valid file name", |n| FileName::new(&n).ok())
            )
                .prop_map(|(version, peer_id, id, name)| Frame::Handshake {
                    version,
                    peer_id: PeerId(peer_id),
                    file_id: FileId(id),
                    name
                }),
            proptest::collection::vec(any::<u8>(), 0..300)
                .prop_map(|v| Frame::Bitfield(Bytes::from(v))),
            proptest::collection::vec(any::<u32>(), 1..50).prop_map(Frame::Have),
            (any::<u32>(), 1..=MAX_MANIFEST_HASHES)
                .prop_map(|(start, count)| Frame::GetManifest { start, count }),
            (
                any::<u32>(),
                proptest::collection::vec(any::<[u8; 32]>(), 0..20)
            )
                .prop_map(|(start, hashes)| Frame::Manifest { start, hashes }),
            (any::<u32>(), 1..=MAX_REQUEST_CHUNKS)
                .prop_map(|(index, count)| Frame::Request(ChunkRun::new(index, count))),
            (
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..3000)
            )
                .prop_map(|(index, d)| Frame::Chunk {
                    index,
                    data: Bytes::from(d)
                }),
            (any::<u32>(), 1..=MAX_REQUEST_CHUNKS)
                .prop_map(|(index, count)| Frame::Reject(ChunkRun::new(index, count))),
            (any::<u16>(), "[ -~]{0,100}").prop_map(|(c, message)| Frame::Error {
                code: ErrorCode::from_u16(c),
                message
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(frame in arb_frame()) {
            let bytes = encoded(&frame);
            prop_assert_eq!(Frame::check(&bytes), Ok(Some(bytes.len())));
            for cut in 0..bytes.len().min(64) {
                prop_assert_eq!(Frame::check(&bytes[..cut]), Ok(None));
            }
            prop_assert_eq!(Frame::parse(bytes).unwrap(), frame);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some(n)) = Frame::check(&data) {
                let _ = Frame::parse(Bytes::copy_from_slice(&data[..n]));
            }
            let _ = Frame::parse(Bytes::from(data));
        }
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused_from_the_header() {
        let mut huge = (MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
        huge.push(ty::CHUNK);
        assert_eq!(
            Frame::check(&huge),
            Err(WireError::BadLength(MAX_FRAME_LEN + 1))
        );
        assert_eq!(Frame::check(&[0, 0, 0, 0, 1]), Err(WireError::BadLength(0)));
        assert_eq!(
            Frame::check(&[0, 0, 0, 1, 0x7f]),
            Err(WireError::UnknownType(0x7f))
        );
        assert_eq!(
            Frame::check(b"GET / HTTP/1.1\r\n"),
            Err(WireError::BadLength(0x47455420))
        );
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        let parse = |kind: u8, payload: &[u8]| {
            let mut b = BytesMut::new();
            put_header(&mut b, kind, payload.len());
            b.put_slice(payload);
            Frame::parse(b.freeze())
        };
        assert_eq!(
            parse(ty::REQUEST, &[0; 7]),
            Err(WireError::Malformed("REQUEST"))
        );
        assert_eq!(
            parse(ty::REQUEST, &[0, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::Malformed("REQUEST"))
        );
        assert_eq!(parse(ty::HAVE, &[0; 5]), Err(WireError::Malformed("HAVE")));
        assert_eq!(
            parse(ty::MANIFEST, &[0; 5 + 32]),
            Err(WireError::Malformed("MANIFEST"))
        );
        assert_eq!(
            parse(ty::CHUNK, &[0; 3]),
            Err(WireError::Malformed("CHUNK"))
        );
        let mut hs = b"XXXX".to_vec();
        hs.extend_from_slice(&[0; 1 + 16 + 32 + 1 + 1]);
        assert_eq!(parse(ty::HANDSHAKE, &hs), Err(WireError::BadMagic));
        let mut hs = MAGIC.to_vec();
        hs.extend_from_slice(&[1; 1 + 16 + 32]);
        hs.extend_from_slice(&[3, b'a']);
        assert_eq!(
            parse(ty::HANDSHAKE, &hs),
            Err(WireError::Malformed("HANDSHAKE"))
        );
        let mut hs = MAGIC.to_vec();
        hs.extend_from_slice(&[1; 1 + 16 + 32]);
        hs.extend_from_slice(&[3, b'a', b'/', b'b']);
        assert!(matches!(
            parse(ty::HANDSHAKE, &hs),
            Err(WireError::BadName(_))
        ));
    }

    #[test]
    fn chunk_frame_layout_is_byte_exact() {
        let b = encoded(&Frame::Chunk {
            index: 0x01020304,
            data: Bytes::from_static(b"ab"),
        });
        assert_eq!(&b[..], &[0, 0, 0, 7, 0x07, 1, 2, 3, 4, b'a', b'b']);
    }
}

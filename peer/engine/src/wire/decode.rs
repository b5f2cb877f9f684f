//! Bytes to frames: [`Frame::check`] delimits, [`Frame::parse`] builds the value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, Bytes};
use tracker_proto::FileName;

use super::{
    truncate_utf8, ty, ChunkRun, ErrorCode, Frame, PeerId, WireError, MAGIC, MAX_CHUNKS,
    MAX_ERROR_LEN, MAX_HAVE_INDICES, MAX_MANIFEST_HASHES, MAX_REQUEST_CHUNKS, METAINFO_PIECE,
    PEER_ID_LEN,
};
use crate::manifest::{FileId, HASH_LEN, MAX_CHUNK_SIZE};

/// Fixed part of a HANDSHAKE payload before the name: magic, version, peer id, file id, name length.
const HANDSHAKE_HEAD: usize = 4 + 1 + PEER_ID_LEN + HASH_LEN + 1;

/// Smallest and largest LENGTH (type byte included) of each frame type; `None` for unknown types.
fn bounds(kind: u8) -> Option<(u32, u32)> {
    let b =
        |payload_min: usize, payload_max: usize| (1 + payload_min as u32, 1 + payload_max as u32);
    Some(match kind {
        ty::HANDSHAKE => b(HANDSHAKE_HEAD + 1 + 1, HANDSHAKE_HEAD + 255 + 1 + 18),
        ty::BITFIELD => b(0, MAX_CHUNKS as usize / 8),
        ty::HAVE => b(4, 4 * MAX_HAVE_INDICES),
        ty::GET_MANIFEST | ty::REQUEST | ty::REJECT => b(8, 8),
        ty::MANIFEST => b(4, 4 + HASH_LEN * MAX_MANIFEST_HASHES as usize),
        ty::CHUNK => b(4, 4 + MAX_CHUNK_SIZE as usize),
        ty::ERROR => b(2, 2 + MAX_ERROR_LEN),
        ty::CHOKE | ty::UNCHOKE | ty::INTERESTED | ty::NOT_INTERESTED | ty::KEEPALIVE => b(0, 0),
        ty::GET_METAINFO => b(4, 4),
        ty::METAINFO => b(8, 8 + METAINFO_PIECE),
        _ => return None,
    })
}

fn type_name(kind: u8) -> &'static str {
    match kind {
        ty::HANDSHAKE => "HANDSHAKE",
        ty::BITFIELD => "BITFIELD",
        ty::HAVE => "HAVE",
        ty::GET_MANIFEST => "GET_MANIFEST",
        ty::MANIFEST => "MANIFEST",
        ty::REQUEST => "REQUEST",
        ty::CHUNK => "CHUNK",
        ty::REJECT => "REJECT",
        ty::ERROR => "ERROR",
        ty::CHOKE => "CHOKE",
        ty::UNCHOKE => "UNCHOKE",
        ty::INTERESTED => "INTERESTED",
        ty::NOT_INTERESTED => "NOT_INTERESTED",
        ty::KEEPALIVE => "KEEPALIVE",
        ty::GET_METAINFO => "GET_METAINFO",
        ty::METAINFO => "METAINFO",
        _ => "unknown",
    }
}

impl Frame {
    /// Looks at the start of `buf`: `Ok(Some(n))` when its first `n` bytes are one whole frame,
    /// `Ok(None)` when more bytes are needed, an error as soon as the 5-byte header shows a type
    /// that does not exist or a length outside that type's bounds.
    pub fn check(buf: &[u8]) -> Result<Option<usize>, WireError> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let kind = buf[4];
        let (min, max) = bounds(kind).ok_or(WireError::UnknownType(kind))?;
        if len < min || len > max {
            return Err(WireError::BadLength { kind, len });
        }
        let total = 4 + len as usize;
        Ok((buf.len() >= total).then_some(total))
    }

    /// [`Frame::check`] for the first frame of a connection, which must be a HANDSHAKE (or the
    /// ERROR of a peer refusing us): anything else is refused from its header, so nobody gets
    /// a large buffer out of us before saying who they are.
    pub fn check_opening(buf: &[u8]) -> Result<Option<usize>, WireError> {
        match buf.get(4) {
            Some(&kind) if kind != ty::HANDSHAKE && kind != ty::ERROR => {
                Err(WireError::NotHandshake(type_name(kind)))
            }
            _ => Frame::check(buf),
        }
    }

    /// Parses one whole frame (length prefix included) as delimited by [`Frame::check`].
    pub fn parse(mut frame: Bytes) -> Result<Frame, WireError> {
        if frame.len() < 5 {
            return Err(WireError::Malformed("frame header"));
        }
        let len = frame.get_u32();
        let kind = frame.get_u8();
        let (min, max) = bounds(kind).ok_or(WireError::UnknownType(kind))?;
        if len as usize != frame.len() + 1 || len < min || len > max {
            return Err(WireError::BadLength { kind, len });
        }
        let mut p = frame;
        match kind {
            ty::HANDSHAKE => parse_handshake(p),
            ty::BITFIELD => Ok(Frame::Bitfield(p)),
            ty::HAVE => {
                if !p.len().is_multiple_of(4) {
                    return Err(WireError::Malformed("HAVE"));
                }
                Ok(Frame::Have(p.chunks_exact(4).map(be_u32).collect()))
            }
            ty::GET_MANIFEST => {
                let (start, count) = two_u32(&p);
                if count == 0 || count > MAX_MANIFEST_HASHES {
                    return Err(WireError::Malformed("GET_MANIFEST"));
                }
                Ok(Frame::GetManifest { start, count })
            }
            ty::MANIFEST => {
                if !(p.len() - 4).is_multiple_of(HASH_LEN) {
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
                let index = p.get_u32();
                Ok(Frame::Chunk { index, data: p })
            }
            ty::REJECT => Ok(Frame::Reject(chunk_run(&p, "REJECT")?)),
            ty::ERROR => {
                let code = ErrorCode::from_u16(p.get_u16());
                // Lossy decoding may grow a message (a bad byte becomes a 3-byte U+FFFD): bound
                // it again, so what parses is what encodes.
                let lossy = String::from_utf8_lossy(&p);
                let message = truncate_utf8(&lossy, MAX_ERROR_LEN).to_owned();
                Ok(Frame::Error { code, message })
            }
            ty::CHOKE => Ok(Frame::Choke),
            ty::UNCHOKE => Ok(Frame::Unchoke),
            ty::INTERESTED => Ok(Frame::Interested),
            ty::NOT_INTERESTED => Ok(Frame::NotInterested),
            ty::KEEPALIVE => Ok(Frame::KeepAlive),
            ty::GET_METAINFO => Ok(Frame::GetMetainfo { piece: be_u32(&p) }),
            ty::METAINFO => {
                let (piece, total) = two_u32(&p);
                if total as usize > crate::metainfo::MAX_METAINFO_BYTES {
                    return Err(WireError::Malformed("METAINFO"));
                }
                p.advance(8);
                Ok(Frame::Metainfo {
                    piece,
                    total,
                    data: p,
                })
            }
            other => Err(WireError::UnknownType(other)),
        }
    }
}

fn parse_handshake(mut p: Bytes) -> Result<Frame, WireError> {
    const NAME: &str = "HANDSHAKE";
    if p.len() < HANDSHAKE_HEAD {
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
    if name_len == 0 || p.len() < name_len + 1 {
        return Err(WireError::Malformed(NAME));
    }
    let name = std::str::from_utf8(&p[..name_len]).map_err(|_| WireError::Malformed(NAME))?;
    let name = FileName::new(name).map_err(WireError::BadName)?;
    p.advance(name_len);
    let addr_len = p.get_u8() as usize;
    if p.len() != addr_len {
        return Err(WireError::Malformed(NAME));
    }
    let ip = match addr_len {
        0 => None,
        6 => Some(IpAddr::V4(Ipv4Addr::from(p.get_u32()))),
        18 => Some(IpAddr::V6(Ipv6Addr::from(p.get_u128()))),
        _ => return Err(WireError::Malformed(NAME)),
    };
    let listen = match ip {
        Some(ip) => match p.get_u16() {
            0 => return Err(WireError::Malformed(NAME)),
            port => Some(SocketAddr::new(ip, port)),
        },
        None => None,
    };
    Ok(Frame::Handshake {
        version,
        peer_id: PeerId(peer_id),
        file_id: FileId(id),
        name,
        listen,
    })
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The two u32 of an 8-byte payload (its length was checked from the header).
fn two_u32(p: &[u8]) -> (u32, u32) {
    (be_u32(&p[..4]), be_u32(&p[4..8]))
}

/// The payload of REQUEST and REJECT: a run of 1..=[`MAX_REQUEST_CHUNKS`] chunks.
fn chunk_run(p: &[u8], name: &'static str) -> Result<ChunkRun, WireError> {
    let (first, count) = two_u32(p);
    if count == 0 || count > MAX_REQUEST_CHUNKS {
        return Err(WireError::Malformed(name));
    }
    Ok(ChunkRun::new(first, count))
}

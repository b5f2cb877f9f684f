//! Frames to bytes.

use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, BytesMut};

use super::{
    truncate_utf8, ty, ChunkRun, Frame, MAGIC, MAX_ERROR_LEN, METAINFO_PIECE, PEER_ID_LEN,
};
use crate::manifest::HASH_LEN;

impl Frame {
    /// Appends the encoded frame to `dst`. A message too long for the protocol's limit is
    /// truncated to it, never sent oversized (a `FileName` always fits). A HAVE must carry at
    /// most `MAX_HAVE_INDICES` indices; callers split longer lists.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Frame::Handshake {
                version,
                peer_id,
                file_id,
                name,
                listen,
            } => {
                let name = name.as_str();
                let addr_len = match listen {
                    None => 0,
                    Some(SocketAddr::V4(_)) => 6,
                    Some(SocketAddr::V6(_)) => 18,
                };
                put_header(
                    dst,
                    ty::HANDSHAKE,
                    4 + 1 + PEER_ID_LEN + HASH_LEN + 1 + name.len() + 1 + addr_len,
                );
                dst.put_slice(&MAGIC);
                dst.put_u8(*version);
                dst.put_slice(&peer_id.0);
                dst.put_slice(&file_id.0);
                dst.put_u8(name.len() as u8);
                dst.put_slice(name.as_bytes());
                dst.put_u8(addr_len as u8);
                if let Some(addr) = listen {
                    match addr.ip() {
                        IpAddr::V4(ip) => dst.put_slice(&ip.octets()),
                        IpAddr::V6(ip) => dst.put_slice(&ip.octets()),
                    }
                    dst.put_u16(addr.port());
                }
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
            Frame::Choke => put_header(dst, ty::CHOKE, 0),
            Frame::Unchoke => put_header(dst, ty::UNCHOKE, 0),
            Frame::Interested => put_header(dst, ty::INTERESTED, 0),
            Frame::NotInterested => put_header(dst, ty::NOT_INTERESTED, 0),
            Frame::KeepAlive => put_header(dst, ty::KEEPALIVE, 0),
            Frame::GetMetainfo { piece } => {
                put_header(dst, ty::GET_METAINFO, 4);
                dst.put_u32(*piece);
            }
            Frame::Metainfo { piece, total, data } => {
                let data = &data[..data.len().min(METAINFO_PIECE)];
                put_header(dst, ty::METAINFO, 8 + data.len());
                dst.put_u32(*piece);
                dst.put_u32(*total);
                dst.put_slice(data);
            }
        }
    }
}

/// Appends a CHUNK frame straight from a borrowed slice.
pub fn encode_chunk(dst: &mut BytesMut, index: u32, data: &[u8]) {
    put_header(dst, ty::CHUNK, 4 + data.len());
    dst.put_u32(index);
    dst.put_slice(data);
}

/// Bytes of a CHUNK frame before its data: length, type, chunk index.
pub const CHUNK_HEADER: usize = 9;

/// Lays out consecutive CHUNK frames for chunks `first..` of lengths `lens` in `frames`, which
/// must be exactly `CHUNK_HEADER * lens.len() + lens.sum()` bytes long: writes every header and
/// returns the data slots, in order, so a server can read file bytes straight into them.
pub fn chunk_frames<'a>(frames: &'a mut [u8], first: u32, lens: &[usize]) -> Vec<&'a mut [u8]> {
    let mut slots = Vec::with_capacity(lens.len());
    let mut rest = frames;
    for (index, &len) in (first..).zip(lens) {
        let (header, tail) = rest.split_at_mut(CHUNK_HEADER);
        header[..4].copy_from_slice(&(5 + len as u32).to_be_bytes());
        header[4] = ty::CHUNK;
        header[5..].copy_from_slice(&index.to_be_bytes());
        let (slot, tail) = tail.split_at_mut(len);
        slots.push(slot);
        rest = tail;
    }
    slots
}

pub(super) fn put_header(dst: &mut BytesMut, kind: u8, payload: usize) {
    dst.reserve(5 + payload);
    dst.put_u32(1 + payload as u32);
    dst.put_u8(kind);
}

fn put_run(dst: &mut BytesMut, kind: u8, run: &ChunkRun) {
    put_header(dst, kind, 8);
    dst.put_u32(run.first);
    dst.put_u32(run.count);
}

//! Getting a share's `info` dictionary from peers when all we have is its content id (a magnet
//! link), in the manner of BEP 9: GET_METAINFO pieces over a connection of our own, then the
//! dictionary is checked against the id and the tracker's figures before anything is written.
//! A peer whose dictionary does not match is a liar and is not asked again.

use std::net::SocketAddr;

use crate::connection::Connection;
use crate::manifest::FileId;
use crate::metainfo::{Info, MAX_METAINFO_BYTES};
use crate::name::ShareName;
use crate::swarm::PeerError;
use crate::wire::{Frame, METAINFO_PIECE};

use super::manifest_fetch::{first_peer_giving, side_connection, Expected, NoneGave};
use super::peer_set::PeerSet;
use super::{Context, DownloadError};

/// Gets the `info` dictionary of `name` from the first peer whose copy names content `want.id`
/// with the tracker's size and chunk size.
pub(super) async fn fetch_info(
    ctx: &Context,
    name: &ShareName,
    want: &Expected,
    chunks: u32,
    peers: &mut PeerSet,
) -> Result<Info, DownloadError> {
    first_peer_giving(ctx, name, peers, "metainfo", |addr| {
        info_from(ctx, addr, name, want, chunks)
    })
    .await
    .map_err(|NoneGave { tried, last }| DownloadError::NoMetainfo {
        name: name.clone(),
        id: want.id,
        tried,
        last,
    })
}

async fn info_from(
    ctx: &Context,
    addr: SocketAddr,
    name: &ShareName,
    want: &Expected,
    chunks: u32,
) -> Result<Info, PeerError> {
    let mut conn = side_connection(ctx, addr, name, want.id, chunks).await?;
    info_over(ctx, &mut conn, name, want).await
}

/// Gets the `info` dictionary over `conn` (a side connection past its handshake) and checks it
/// against `want`.
pub(super) async fn info_over(
    ctx: &Context,
    conn: &mut Connection,
    name: &ShareName,
    want: &Expected,
) -> Result<Info, PeerError> {
    conn.queue(&Frame::GetMetainfo { piece: 0 });
    conn.flush().await?;
    let mut bytes: Vec<u8> = Vec::new();
    let mut total = None;
    let mut next = 0u32;
    loop {
        let frame = conn
            .read_frame_within(ctx.local.config.stall_timeout)
            .await
            .map_err(PeerError::hostile_if_garbage)?;
        match frame {
            Frame::Metainfo {
                piece,
                total: t,
                data,
            } if piece == next => {
                let size = *total.get_or_insert(t as usize);
                if size == 0 {
                    return Err(PeerError::Unreachable("it has no metainfo".into()));
                }
                if t as usize != size || size > MAX_METAINFO_BYTES {
                    return Err(PeerError::Hostile("inconsistent METAINFO size".into()));
                }
                let expect = (size - bytes.len()).min(METAINFO_PIECE);
                if data.len() != expect {
                    return Err(PeerError::Hostile(
                        "METAINFO piece of the wrong length".into(),
                    ));
                }
                if piece == 0 {
                    // Every other piece at once: a few round trips at most.
                    for p in 1..size.div_ceil(METAINFO_PIECE) as u32 {
                        conn.queue(&Frame::GetMetainfo { piece: p });
                    }
                    conn.flush().await?;
                    bytes.reserve_exact(size);
                }
                bytes.extend_from_slice(&data);
                next += 1;
                if bytes.len() == size {
                    break;
                }
            }
            Frame::Metainfo { .. } => {
                return Err(PeerError::Hostile("METAINFO piece out of order".into()))
            }
            Frame::Have(_)
            | Frame::Choke
            | Frame::Unchoke
            | Frame::Interested
            | Frame::NotInterested
            | Frame::KeepAlive => {}
            Frame::Error { code, message } => return Err(PeerError::Remote(code, message)),
            other => {
                return Err(PeerError::Hostile(format!(
                    "unexpected {} while fetching the metainfo",
                    other.name()
                )))
            }
        }
    }
    let info = Info::parse(&bytes).map_err(|e| PeerError::Hostile(format!("metainfo: {e}")))?;
    check(&info, name, want).map_err(PeerError::Hostile)?;
    Ok(info)
}

/// Checks an `info` dictionary against the share we look for: same name, content id, size and
/// chunk size as the tracker lists.
pub(super) fn check(info: &Info, name: &ShareName, want: &Expected) -> Result<(), String> {
    let id: FileId = info.id;
    if id != want.id {
        return Err(format!("metainfo names {id}, not {}", want.id));
    }
    if info.name != *name {
        return Err(format!("metainfo names {}, not {name}", info.name));
    }
    if (info.total(), info.piece_length) != (want.size, want.chunk_size) {
        return Err(format!(
            "metainfo describes {} bytes in {}-byte chunks; the tracker lists {} in {}",
            info.total(),
            info.piece_length,
            want.size,
            want.chunk_size
        ));
    }
    Ok(())
}

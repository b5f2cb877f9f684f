//! One peer connection of a download: connect and handshake, then keep a window of requests in
//! flight, verify every chunk against the manifest and write runs of them, until the file is
//! complete, the peer has nothing more we need, or the connection fails.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::bitfield::Bitfield;
use crate::connection::{ConnError, Connection};
use crate::manifest::{ChunkHash, FileId, Manifest};
use crate::name::ShareName;
use crate::reach::Dialer;
use crate::wire::{ChunkRun, ErrorCode, Frame, PeerId, MAX_REQUEST_CHUNKS, VERSION};

use super::dial;
use super::run::Shared;

/// Why one peer connection ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum PeerError {
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("peer answered error {0:?}: {1}")]
    Remote(ErrorCode, String),
    #[error("misbehaved: {0}")]
    Hostile(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("writing the download: {0}")]
    Write(io::Error),
}

impl From<io::Error> for PeerError {
    fn from(e: io::Error) -> Self {
        PeerError::Conn(ConnError::Io(e))
    }
}

/// Connects, exchanges HANDSHAKEs and returns the connection with the peer's BITFIELD (as sent:
/// its length is checked by whoever knows the chunk count).
pub(super) async fn open(
    dialer: Option<&Dialer>,
    addr: SocketAddr,
    name: &ShareName,
    id: FileId,
    peer_id: PeerId,
    limit: Duration,
) -> Result<(Connection, bytes::Bytes), PeerError> {
    let stream = match dialer {
        Some(d) => d
            .connect(name.file_name(), addr)
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?,
        None => dial(addr, limit).await?,
    };
    let mut conn = Connection::new(stream);
    conn.queue(&Frame::Handshake {
        version: VERSION,
        peer_id,
        file_id: id,
        name: name.file_name().clone(),
    });
    conn.flush().await?;
    match conn
        .read_frame_within(limit)
        .await
        .map_err(hostile_if_garbage)?
    {
        Frame::Handshake {
            version,
            file_id,
            name: n,
            ..
        } => {
            if version != VERSION {
                return Err(PeerError::Remote(
                    ErrorCode::UnsupportedVersion,
                    format!("version {version}"),
                ));
            }
            if file_id != id || n != *name.file_name() {
                return Err(PeerError::Hostile(format!(
                    "handshake for {n} {file_id}, asked for {name} {id}"
                )));
            }
        }
        Frame::Error { code, message } => return Err(PeerError::Remote(code, message)),
        _ => return Err(PeerError::Hostile("expected HANDSHAKE".into())),
    }
    match conn
        .read_frame_within(limit)
        .await
        .map_err(hostile_if_garbage)?
    {
        Frame::Bitfield(b) => Ok((conn, b)),
        Frame::Error { code, message } => Err(PeerError::Remote(code, message)),
        _ => Err(PeerError::Hostile("expected BITFIELD".into())),
    }
}

/// A malformed frame is the peer's fault, never ours: it is dropped for this file.
pub(super) fn hostile_if_garbage(e: ConnError) -> PeerError {
    match e {
        ConnError::Wire(w) => PeerError::Hostile(w.to_string()),
        other => PeerError::Conn(other),
    }
}

/// Fetches chunks from one peer until the file is complete, the peer has nothing more we need,
/// or the connection fails. `got` counts verified bytes received, also on failure.
pub(super) async fn fetch_from(
    shared: &Shared,
    addr: SocketAddr,
    got: &mut u64,
) -> Result<(), PeerError> {
    let cfg = &shared.config;
    let manifest = shared.partial.manifest().clone();
    let (mut conn, wire_bits) = open(
        shared.dialer.as_deref(),
        addr,
        &shared.name,
        shared.id,
        shared.peer_id,
        cfg.connect_timeout,
    )
    .await?;
    let mut peer_bits = Bitfield::from_wire(&wire_bits, manifest.chunk_count())
        .map_err(|e| PeerError::Hostile(e.to_string()))?;
    shared.picker.lock().add_peer(&peer_bits);
    let mut inflight: VecDeque<ChunkRun> = VecDeque::new();
    let result = exchange(
        shared,
        &manifest,
        &mut conn,
        &mut peer_bits,
        &mut inflight,
        got,
    )
    .await;
    let mut picker = shared.picker.lock();
    picker.remove_peer(&peer_bits);
    for run in &inflight {
        picker.release(*run);
    }
    result
}

/// Verified chunks received in index order but not yet written: written with one positioned
/// write per run of consecutive chunks.
struct Pending {
    bytes: Vec<u8>,
    first: u32,
    next: u32,
}

async fn exchange(
    shared: &Shared,
    manifest: &Manifest,
    conn: &mut Connection,
    peer_bits: &mut Bitfield,
    inflight: &mut VecDeque<ChunkRun>,
    got: &mut u64,
) -> Result<(), PeerError> {
    let cfg = &shared.config;
    let run_len = cfg.run_len.clamp(1, MAX_REQUEST_CHUNKS);
    let mut outstanding = 0u32;
    let mut pending = Pending {
        bytes: Vec::with_capacity(run_len as usize * manifest.chunk_size() as usize),
        first: 0,
        next: 0,
    };
    let mut expected: Vec<ChunkHash> = Vec::new();
    let mut expected_start = 0u32;
    loop {
        while outstanding < cfg.window {
            let Some(run) = shared.picker.lock().pick(peer_bits, run_len) else {
                break;
            };
            conn.queue(&Frame::Request(run));
            inflight.push_back(run);
            outstanding += run.count;
        }
        if inflight.is_empty() {
            if shared.partial.is_complete() {
                return Ok(());
            }
            // Endgame: everything is claimed; ask this idle peer too for chunks others still owe,
            // so one slow or stalled peer does not hold up the end of the download.
            let endgame = shared.picker.lock().endgame(peer_bits, run_len);
            if let Some(run) = endgame {
                conn.queue(&Frame::Request(run));
                inflight.push_back(run);
                outstanding += run.count;
                continue;
            }
            // Nothing this peer has is missing: wait for HAVEs or released chunks.
            conn.flush().await?;
            match tokio::time::timeout(Duration::from_millis(500), conn.read_frame()).await {
                Err(_) => continue,
                Ok(f) => {
                    on_idle_frame(shared, f.map_err(hostile_if_garbage)?, peer_bits)?;
                    continue;
                }
            }
        }
        conn.flush().await?;
        let frame = conn
            .read_frame_within(cfg.stall_timeout)
            .await
            .map_err(hostile_if_garbage)?;
        let mut next = Some(frame);
        while let Some(frame) = next {
            match frame {
                Frame::Chunk { index, data } => {
                    let Some(&run) = inflight.front() else {
                        return Err(PeerError::Hostile(format!("unrequested CHUNK {index}")));
                    };
                    if index != run.first {
                        return Err(PeerError::Hostile(format!(
                            "CHUNK {index} out of order, expected {}",
                            run.first
                        )));
                    }
                    if !(expected_start..expected_start + expected.len() as u32).contains(&index) {
                        // One read of the hashes of the rest of this request, not one per chunk.
                        expected = manifest
                            .hashes(index, run.count)
                            .map_err(PeerError::Write)?;
                        expected_start = index;
                    }
                    if !manifest.matches(index, &data, &expected[(index - expected_start) as usize])
                    {
                        return Err(PeerError::Hostile(format!(
                            "chunk {index} does not match the manifest"
                        )));
                    }
                    if pending.bytes.is_empty() {
                        pending.first = index;
                    } else if pending.next != index {
                        write_pending(shared, &mut pending)?;
                        pending.first = index;
                    }
                    pending.bytes.extend_from_slice(&data);
                    pending.next = index + 1;
                    *got += data.len() as u64;
                    shared
                        .fetched
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    shared.fetched_chunks.fetch_add(1, Ordering::Relaxed);
                    outstanding -= 1;
                    advance(inflight, 1);
                }
                Frame::Reject(rejected) => {
                    let Some(&run) = inflight.front() else {
                        return Err(PeerError::Hostile("unrequested REJECT".into()));
                    };
                    if rejected.first != run.first || rejected.count > run.count {
                        return Err(PeerError::Hostile(format!(
                            "REJECT {}+{} out of order",
                            rejected.first, rejected.count
                        )));
                    }
                    let mut picker = shared.picker.lock();
                    picker.release(rejected);
                    for i in rejected.indices() {
                        if peer_bits.get(i) {
                            picker.forget_one(i);
                            peer_bits.clear(i);
                        }
                    }
                    drop(picker);
                    outstanding -= rejected.count;
                    advance(inflight, rejected.count);
                }
                other => on_idle_frame(shared, other, peer_bits)?,
            }
            next = conn.buffered_frame().map_err(hostile_if_garbage)?;
        }
        if !pending.bytes.is_empty() {
            write_pending(shared, &mut pending)?;
        }
    }
}

/// `by` chunks of the oldest request in flight are accounted for.
fn advance(inflight: &mut VecDeque<ChunkRun>, by: u32) {
    if let Some(front) = inflight.front_mut() {
        *front = front.skip(by);
        if front.count == 0 {
            inflight.pop_front();
        }
    }
}

fn write_pending(shared: &Shared, pending: &mut Pending) -> Result<(), PeerError> {
    shared
        .partial
        .write_verified(pending.first, &pending.bytes)
        .map_err(PeerError::Write)?;
    let n = pending
        .bytes
        .len()
        .div_ceil(shared.partial.manifest().chunk_size() as usize) as u32;
    shared
        .picker
        .lock()
        .mark_have(ChunkRun::new(pending.first, n));
    pending.bytes.clear();
    Ok(())
}

/// Frames that may arrive at any time: HAVE updates the peer's field; anything else is wrong.
fn on_idle_frame(shared: &Shared, frame: Frame, peer_bits: &mut Bitfield) -> Result<(), PeerError> {
    match frame {
        Frame::Have(list) => {
            let total = peer_bits.len();
            let mut picker = shared.picker.lock();
            for i in list {
                if i >= total {
                    return Err(PeerError::Hostile(format!(
                        "HAVE {i} beyond {total} chunks"
                    )));
                }
                if peer_bits.set(i) {
                    picker.add_one(i);
                }
            }
            Ok(())
        }
        Frame::Error { code, message } => Err(PeerError::Remote(code, message)),
        Frame::Chunk { index, .. } => Err(PeerError::Hostile(format!("unrequested CHUNK {index}"))),
        _ => Err(PeerError::Hostile("unexpected frame".into())),
    }
}

//! The TCP server (default port 6881) that hands verified chunks of the share directory to other
//! peers.
//!
//! Shaped like mini-redis' server: an accept loop bounded by a semaphore (most connections at
//! once), one task per connection, every task stops on the shared cancellation token. Each
//! connection is about one file (named in its HANDSHAKE). Requests are answered in order; chunk
//! runs are read with one positioned read and their CHUNK frames leave in large writes. The server
//! stops reading while the client does not consume its answers, so a client can never make it
//! buffer more than about one flush worth of output.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::connection::{ConnError, Connection, FLUSH_THRESHOLD};
use crate::manifest::FileId;
use crate::name::ShareName;
use crate::reach::Incoming;
use crate::share::{Served, ShareDir, StoreError};
use crate::wire::{
    encode_chunk, ChunkRun, ErrorCode, Frame, PeerId, WireError, MAX_MANIFEST_HASHES, VERSION,
};

/// Limits of the server; every one is a guard against a misbehaving or hostile client.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once; more are refused with ERROR 1005.
    pub max_connections: usize,
    /// Time a client has to send its HANDSHAKE.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// How often a connection about a file still downloading checks for new chunks to announce.
    pub have_interval: Duration,
    /// Upload limit per connection in bytes per second (`None`: as fast as the client reads).
    pub upload_rate: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            have_interval: Duration::from_secs(1),
            upload_rate: None,
        }
    }
}

/// Upload counters the console and statistics read while the server runs.
#[derive(Debug, Default)]
pub struct UploadStats {
    bytes: AtomicU64,
    connections: AtomicUsize,
    per_file: Mutex<HashMap<ShareName, u64>>,
}

impl UploadStats {
    /// Chunk bytes sent since start.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Connections open right now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Chunk bytes sent per file since start.
    pub fn per_file(&self) -> HashMap<ShareName, u64> {
        self.per_file.lock().clone()
    }

    fn add(&self, name: &ShareName, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        *self.per_file.lock().entry(name.clone()).or_default() += n;
    }
}

/// Binds a listening socket with SO_REUSEADDR and SO_REUSEPORT, so outgoing connections (hole
/// punching, STUN over TCP) can use the serving port too.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    stun::reusable_tcp_socket(addr)?.listen(1024)
}

/// Serves `dir` on `listener` until `shutdown` is cancelled. Connections opened by hole
/// punching (outgoing, see [`crate::reach`]) arrive through `punch` and are served like accepted
/// ones; an accepted connection a punch of ours is waiting for goes to that punch instead.
pub async fn run(
    listener: TcpListener,
    mut punch: Incoming,
    dir: Arc<ShareDir>,
    config: ServerConfig,
    stats: Arc<UploadStats>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let peer_id = PeerId::random();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a.map(|(stream, addr)| (punch.claim(stream, addr), addr)),
            Some(stream) = punch.punched() => stream.peer_addr().map(|addr| (Some(stream), addr)),
        };
        let (stream, addr) = match accepted {
            Ok((Some(stream), addr)) => {
                backoff = Duration::from_millis(10);
                (stream, addr)
            }
            Ok((None, _)) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let mut conn = Connection::new(stream);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                conn.send_error(ErrorCode::ConnectionRefused, "too many connections")
                    .await;
            });
            continue;
        };
        let (dir, config, stats, shutdown) =
            (dir.clone(), config.clone(), stats.clone(), shutdown.clone());
        tokio::spawn(async move {
            stats.connections.fetch_add(1, Ordering::Relaxed);
            let result = tokio::select! {
                r = serve_connection(&mut conn, &dir, &config, &stats, peer_id) => r,
                _ = shutdown.cancelled() => Ok(()),
            };
            match result {
                Ok(()) | Err(ConnError::Closed) => log::debug!("{addr}: connection closed"),
                Err(e) => log::info!("{addr}: {e}"),
            }
            stats.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

async fn serve_connection(
    conn: &mut Connection,
    dir: &ShareDir,
    config: &ServerConfig,
    stats: &UploadStats,
    peer_id: PeerId,
) -> Result<(), ConnError> {
    let (version, file_id, name) = match conn.read_frame_within(config.handshake_timeout).await {
        Ok(Frame::Handshake {
            version,
            file_id,
            name,
            ..
        }) => (version, file_id, name),
        Ok(_) => {
            conn.send_error(ErrorCode::BadFrame, "expected HANDSHAKE")
                .await;
            return Ok(());
        }
        Err(ConnError::Wire(WireError::BadName(e))) => {
            conn.send_error(ErrorCode::FileNotFound, &format!("bad file name: {e}"))
                .await;
            return Ok(());
        }
        Err(ConnError::Wire(e)) => {
            conn.send_error(ErrorCode::BadFrame, &e.to_string()).await;
            return Err(e.into());
        }
        Err(e) => return Err(e),
    };
    if version != VERSION {
        conn.send_error(
            ErrorCode::UnsupportedVersion,
            &format!("this peer speaks version {VERSION}"),
        )
        .await;
        return Ok(());
    }
    let wire_name = name;
    let name = match ShareName::try_from(wire_name.clone()) {
        Ok(n) => n,
        Err(e) => {
            conn.send_error(ErrorCode::FileNotFound, &e.to_string())
                .await;
            return Ok(());
        }
    };
    let mut served = match dir.served(&name) {
        Ok(s) => s,
        Err(StoreError::NotFound(_)) => {
            conn.send_error(
                ErrorCode::FileNotFound,
                &format!("{name} is not shared here"),
            )
            .await;
            return Ok(());
        }
        Err(e) => {
            log::warn!("cannot serve {name}: {e}");
            conn.send_error(
                ErrorCode::FileNotFound,
                &format!("{name} cannot be read here"),
            )
            .await;
            return Ok(());
        }
    };
    let ours = served.manifest.id();
    if file_id != ours {
        conn.send_error(
            ErrorCode::HashMismatch,
            &format!("{name} here is {ours}, not {file_id}"),
        )
        .await;
        return Ok(());
    }
    conn.queue(&Frame::Handshake {
        version: VERSION,
        peer_id,
        file_id: ours,
        name: wire_name,
    });
    conn.queue(&Frame::Bitfield(Bytes::copy_from_slice(
        served.bitfield().as_wire(),
    )));
    conn.flush().await?;

    let mut ticker = tokio::time::interval(config.have_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle = tokio::time::Instant::now();
    let mut buf = Vec::new();
    let pace_start = tokio::time::Instant::now();
    let mut total_sent = 0u64;
    loop {
        let frame = tokio::select! {
            f = conn.read_frame() => f?,
            _ = ticker.tick() => {
                if served.have.is_some() {
                    refresh_have(conn, dir, &name, &mut served, ours).await?;
                }
                if idle.elapsed() > config.idle_timeout {
                    return Err(ConnError::Timeout(config.idle_timeout));
                }
                continue;
            }
        };
        idle = tokio::time::Instant::now();
        let mut sent = 0u64;
        let mut next = Some(frame);
        // Answer every frame already buffered before writing, so pipelined requests share syscalls.
        while let Some(frame) = next {
            match frame {
                Frame::Request(run) => {
                    sent += answer_request(conn, &served, run, &mut buf).await?;
                }
                Frame::GetManifest { start, count } => {
                    let hashes = served
                        .manifest
                        .hashes(start, count.min(MAX_MANIFEST_HASHES))?;
                    conn.queue(&Frame::Manifest { start, hashes });
                }
                Frame::Error { code, message } => {
                    log::info!("peer reported error {code:?}: {message}");
                    return Ok(());
                }
                Frame::Have(_) | Frame::Bitfield(_) => {}
                other => {
                    conn.send_error(
                        ErrorCode::BadFrame,
                        &format!("unexpected {}", frame_name(&other)),
                    )
                    .await;
                    return Ok(());
                }
            }
            if conn.pending_out() >= FLUSH_THRESHOLD {
                conn.flush().await?;
            }
            next = match conn.buffered_frame() {
                Ok(f) => f,
                Err(e) => {
                    conn.send_error(ErrorCode::BadFrame, &e.to_string()).await;
                    return Err(e);
                }
            };
        }
        conn.flush().await?;
        if sent > 0 {
            stats.add(&name, sent);
            total_sent += sent;
            if let Some(rate) = config.upload_rate.filter(|r| *r > 0) {
                let due = pace_start + Duration::from_secs_f64(total_sent as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
        }
    }
}

fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Handshake { .. } => "HANDSHAKE",
        Frame::Bitfield(_) => "BITFIELD",
        Frame::Have(_) => "HAVE",
        Frame::GetManifest { .. } => "GET_MANIFEST",
        Frame::Manifest { .. } => "MANIFEST",
        Frame::Request(_) => "REQUEST",
        Frame::Chunk { .. } => "CHUNK",
        Frame::Reject(_) => "REJECT",
        Frame::Error { .. } => "ERROR",
    }
}

/// Queues the answer to a REQUEST: CHUNK frames for verified chunks (each run read with one
/// positioned read), REJECT for the others. Returns the chunk bytes queued.
async fn answer_request(
    conn: &mut Connection,
    served: &Served,
    run: ChunkRun,
    buf: &mut Vec<u8>,
) -> Result<u64, ConnError> {
    let total = served.manifest.chunk_count();
    if run.first >= total || run.count > total - run.first {
        conn.send_error(
            ErrorCode::BadFrame,
            &format!("request {}+{} beyond {total} chunks", run.first, run.count),
        )
        .await;
        return Err(ConnError::Closed);
    }
    let end = run.end();
    let mut i = run.first;
    let mut sent = 0u64;
    while i < end {
        let have = served.has(i);
        let mut j = i + 1;
        while j < end && served.has(j) == have {
            j += 1;
        }
        if have {
            let m = &served.manifest;
            let start = m.offset(i);
            let len = (m.offset(j - 1) + m.chunk_len(j - 1) as u64 - start) as usize;
            buf.resize(len, 0);
            // Page-cache reads of at most 64 chunks: cheaper inline than a blocking-pool hop.
            served.file.read_exact_at(buf, start)?;
            let mut pos = 0;
            for k in i..j {
                let l = m.chunk_len(k);
                encode_chunk(conn.out(), k, &buf[pos..pos + l]);
                pos += l;
            }
            sent += len as u64;
        } else {
            conn.queue(&Frame::Reject(ChunkRun::new(i, j - i)));
        }
        i = j;
    }
    Ok(sent)
}

/// For a file still downloading here: re-reads its resume record and announces new chunks.
async fn refresh_have(
    conn: &mut Connection,
    dir: &ShareDir,
    name: &ShareName,
    served: &mut Served,
    id: FileId,
) -> Result<(), ConnError> {
    let Some(old) = served.have.as_ref() else {
        return Ok(());
    };
    let now = match dir.read_record(name, &served.manifest) {
        Some(bits) => Some(bits),
        // The download finished (record gone): if the complete file is this one, it is all there.
        None => match dir.complete_manifest(name) {
            Ok(m) if m.id() == id => None,
            _ => return Ok(()),
        },
    };
    let n = served.manifest.chunk_count();
    let fresh: Vec<u32> = (0..n)
        .filter(|&i| !old.get(i) && now.as_ref().is_none_or(|b| b.get(i)))
        .collect();
    served.have = now;
    if !fresh.is_empty() {
        for batch in fresh.chunks(16 * 1024) {
            conn.queue(&Frame::Have(batch.to_vec()));
        }
        conn.flush().await?;
    }
    Ok(())
}

//! The TCP server (default port 6881): accepts connections, reads the HANDSHAKE that names the
//! file, and hands each connection to that file's swarm ([`crate::swarm`]), where it carries
//! chunks both ways.
//!
//! Shaped like mini-redis' server: an accept loop that never waits on a client, one task per
//! connection, everything stopped by one cancellation token. A connection gets a slot of the
//! process's [`ConnectionBudget`] (in all and per IP) before anything is read from it, and has a
//! few seconds to say which file it wants; until then nothing larger than a HANDSHAKE is
//! buffered for it. Refusals are one ERROR frame written without waiting.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::connection::{ConnError, Connection};
use crate::metrics::metrics;
use crate::name::ShareName;
use crate::reach::Incoming;
use crate::swarm::budget::{ConnectionBudget, ConnectionPermit, OpeningPermit};
use crate::swarm::registry::{FindError, Swarms};
use crate::swarm::{PeerError, Remote};
use crate::wire::{ErrorCode, Frame, WireError, VERSION};

/// Binds the serving socket. A plain bind comes first as a probe: with SO_REUSEPORT alone the
/// kernel would let a second peer process share the port and split the connections between
/// the two without a word. Then the real socket is bound with SO_REUSEADDR and SO_REUSEPORT,
/// so outgoing connections (hole punching, STUN over TCP) can use the serving port too.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let probe = std::net::TcpListener::bind(addr).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                e.kind(),
                format!(
                    "{addr} is already in use (another peer, or another program, serves there)"
                ),
            )
        } else {
            e
        }
    })?;
    let bound = probe.local_addr()?;
    drop(probe);
    stun::reusable_tcp_socket(bound)?.listen(1024)
}

/// Serves on `listener` until `shutdown` is cancelled. Connections opened by hole punching or a
/// relay arrive through `incoming` and are served like accepted ones; an accepted connection a
/// punch of ours waits for goes to that punch instead (see [`crate::reach`]).
pub async fn run(
    listener: TcpListener,
    mut incoming: Incoming,
    swarms: Arc<Swarms>,
    budget: Arc<ConnectionBudget>,
    shutdown: CancellationToken,
) {
    let handshake_timeout = swarms.local().config.handshake_timeout;
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a.map(|(stream, addr)| (incoming.claim(stream, addr), addr)),
            Some(stream) = incoming.punched() => stream.peer_addr().map(|addr| (Some(stream), addr)),
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
        let opening = match budget.try_open(addr.ip()) {
            Ok(p) => {
                metrics().connections_accepted.inc();
                p
            }
            Err(e) => {
                metrics().connections_refused.inc();
                log::debug!("{addr}: refused: {e}");
                refuse_now(&stream, ErrorCode::ConnectionRefused, &e.to_string());
                continue;
            }
        };
        let (swarms, shutdown) = (swarms.clone(), shutdown.clone());
        tokio::spawn(async move {
            let OpeningPermit { permit, evicted } = opening;
            tokio::select! {
                () = serve(stream, addr, &swarms, handshake_timeout, &permit) => {}
                _ = shutdown.cancelled() => {}
                _ = evicted.cancelled() => {
                    log::debug!("{addr}: closed without a handshake: its slot went to a newer connection");
                }
            }
        });
    }
}

/// Writes one ERROR frame if the socket takes it at once, then drops the connection: refusing
/// must cost nothing, whatever the client does.
fn refuse_now(stream: &TcpStream, code: ErrorCode, message: &str) {
    let mut out = BytesMut::new();
    Frame::Error {
        code,
        message: message.to_owned(),
    }
    .encode(&mut out);
    let _ = stream.try_write(&out);
}

/// One accepted connection: its HANDSHAKE, then its life in the swarm of the file it names.
async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    swarms: &Swarms,
    handshake_timeout: Duration,
    permit: &ConnectionPermit,
) {
    let mut conn = Connection::new(stream);
    let (remote, name, file_id) = match conn.read_opening_within(handshake_timeout).await {
        Ok(Frame::Handshake {
            version,
            peer_id,
            file_id,
            name,
            listen,
        }) => {
            if version != VERSION {
                conn.send_error(
                    ErrorCode::UnsupportedVersion,
                    &format!("this peer speaks version {VERSION}"),
                )
                .await;
                return;
            }
            let name = match ShareName::try_from(name) {
                Ok(n) => n,
                Err(e) => {
                    conn.send_error(ErrorCode::FileNotFound, &e.to_string())
                        .await;
                    return;
                }
            };
            permit.established();
            let remote = Remote {
                peer_id,
                listen,
                bitfield: None,
            };
            (remote, name, file_id)
        }
        Ok(Frame::Error { code, message }) => {
            log::debug!("{addr}: opened with error {code:?}: {message}");
            return;
        }
        Ok(other) => {
            conn.send_error(
                ErrorCode::BadFrame,
                &format!("expected HANDSHAKE, got {}", other.name()),
            )
            .await;
            return;
        }
        Err(ConnError::Wire(WireError::BadName(e))) => {
            conn.send_error(ErrorCode::FileNotFound, &format!("bad file name: {e}"))
                .await;
            return;
        }
        Err(ConnError::Wire(e)) => {
            conn.send_error(ErrorCode::BadFrame, &e.to_string()).await;
            return;
        }
        Err(e) => {
            log::debug!("{addr}: no handshake: {e}");
            return;
        }
    };
    let swarm = match swarms.find(&name, file_id).await {
        Ok(s) => s,
        Err(e) => {
            let code = match e {
                FindError::OtherContent(_) => ErrorCode::HashMismatch,
                FindError::NotShared(_) | FindError::Unreadable { .. } => ErrorCode::FileNotFound,
            };
            conn.send_error(code, &e.to_string()).await;
            return;
        }
    };
    match swarm.run_link(conn, remote, addr, false).await {
        Ok(_) => log::debug!("{addr}: {name}: connection closed"),
        Err(PeerError::Conn(ConnError::Closed)) => log::debug!("{addr}: {name}: peer closed"),
        Err(e) => log::info!("{addr}: {name}: {e}"),
    }
    swarms.release(&swarm);
}

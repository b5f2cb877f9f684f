//! One STUN Binding transaction (RFC 8489 §6.2): "what address does the server see me as?"
//!
//! Over UDP the request goes out of a socket the caller owns, because the answer is only true for
//! that socket: a NAT maps each local socket separately. Over TCP the connection is made from a
//! given local address with SO_REUSEADDR and SO_REUSEPORT, so a peer can ask from its serving
//! port 6881 while its listener keeps running there, and announce the mapping of that port.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use log::debug;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::time::{timeout, timeout_at, Instant};

use crate::codec::{
    self, canonical, decode_reply, encode_binding_request, new_transaction_id, BindingSuccess,
    DecodeError, Reply, HEADER_SIZE,
};

/// Timers of a transaction. The defaults are RFC 8489's: over UDP the request is sent at 0, 0.5,
/// 1.5, 3.5, 7.5, 15.5 and 31.5 s and the client gives up at 39.5 s; over TCP it waits 39.5 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingConfig {
    /// Initial retransmission timeout (RTO); it doubles after every request.
    pub rto: Duration,
    /// How many requests go out over UDP in total (Rc); at least one is always sent.
    pub max_requests: u32,
    /// After the last request, wait this many initial RTOs for the answer (Rm).
    pub last_wait_factor: u32,
    /// Over TCP, the time allowed for connecting, sending and receiving the answer (Ti).
    pub tcp_timeout: Duration,
}

impl Default for BindingConfig {
    fn default() -> Self {
        BindingConfig {
            rto: Duration::from_millis(500),
            max_requests: 7,
            last_wait_factor: 16,
            tcp_timeout: Duration::from_millis(39_500),
        }
    }
}

/// Transport of a transaction, for messages and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        })
    }
}

/// The outcome of a successful transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub protocol: Protocol,
    /// The local address the request left from (may be unspecified, `0.0.0.0:port`).
    pub local: SocketAddr,
    pub server: SocketAddr,
    /// What the server said, including `mapped`, our address as the server sees it.
    pub reply: BindingSuccess,
}

impl Binding {
    /// Our address as the server sees it: the public address when we are behind a NAT.
    pub fn mapped(&self) -> SocketAddr {
        self.reply.mapped
    }
}

/// Why a transaction gave no mapped address. Messages carry the underlying error, so `{e}`
/// alone is a complete explanation for logs and users.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("no answer from STUN server {server} over {protocol} after {requests} request(s) in {waited:?}")]
    Timeout {
        server: SocketAddr,
        protocol: Protocol,
        requests: u32,
        waited: Duration,
    },
    #[error("STUN server {server} answered with error {code}: {reason}")]
    ErrorResponse {
        server: SocketAddr,
        code: u16,
        reason: String,
    },
    #[error("malformed reply from STUN server {server}: {error}")]
    Malformed {
        server: SocketAddr,
        error: DecodeError,
    },
    #[error("STUN server {server} answered without a mapped address")]
    NoAddress { server: SocketAddr },
    #[error("cannot talk to STUN server {server} over {protocol}: {error}")]
    Io {
        server: SocketAddr,
        protocol: Protocol,
        error: io::Error,
    },
}

/// Large enough for any sensible Binding response; a longer datagram arrives truncated, fails
/// its length check and is ignored.
const UDP_RECEIVE_BUFFER: usize = 2048;

/// Asks `server` for the mapping of `socket`, retransmitting as RFC 8489 §6.2.1 says.
///
/// While it waits, this reads from `socket`: datagrams that are not the answer (other sources,
/// other transactions, non-STUN) are dropped, so callers should not run another reader on the
/// same socket at the same time. A reply of our transaction that is malformed does not end the
/// wait (it may be forged); if nothing better arrives, the error says what was wrong with it.
pub async fn binding_udp(
    socket: &UdpSocket,
    server: SocketAddr,
    config: &BindingConfig,
) -> Result<Binding, BindingError> {
    let io_error = |error| BindingError::Io {
        server,
        protocol: Protocol::Udp,
        error,
    };
    let local = socket.local_addr().map_err(io_error)?;
    let target = destination_for(local, server);
    let transaction_id = new_transaction_id();
    let request = encode_binding_request(&transaction_id);
    let started = Instant::now();
    let mut buffer = vec![0; UDP_RECEIVE_BUFFER];
    let mut broken_reply: Option<DecodeError> = None;
    let mut wait = config.rto;
    let requests = config.max_requests.max(1);
    for sent in 1..=requests {
        socket.send_to(&request, target).await.map_err(io_error)?;
        if sent == requests {
            wait = config.rto.saturating_mul(config.last_wait_factor);
        }
        let deadline = Instant::now() + wait;
        while let Ok(received) = timeout_at(deadline, socket.recv_from(&mut buffer)).await {
            let (len, from) = match received {
                Ok(received) => received,
                // An ICMP error from an earlier request on a connected socket: the server may
                // come up before the transaction ends, so keep going.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(io_error(e)),
            };
            if canonical(from) != canonical(server) {
                debug!("ignoring {len}-byte datagram from {from} while waiting for {server}");
                continue;
            }
            match decode_reply(&buffer[..len], &transaction_id) {
                Ok(reply) => return outcome(reply, Protocol::Udp, local, server),
                Err(DecodeError::NoAddress) => return Err(BindingError::NoAddress { server }),
                Err(e @ (DecodeError::NotStun | DecodeError::WrongTransaction)) => {
                    debug!("ignoring datagram from {server}: {e}");
                }
                Err(e) => {
                    debug!("broken reply from {server}, still waiting: {e}");
                    broken_reply = Some(e);
                }
            }
        }
        wait = wait.saturating_mul(2);
    }
    Err(match broken_reply {
        Some(error) => BindingError::Malformed { server, error },
        None => BindingError::Timeout {
            server,
            protocol: Protocol::Udp,
            requests,
            waited: started.elapsed(),
        },
    })
}

/// Asks `server` over TCP, connecting from `local` (port 0 for any; an unspecified IP of the
/// other family is switched to the server's). Reliable transport: one request, one wait.
pub async fn binding_tcp(
    local: SocketAddr,
    server: SocketAddr,
    config: &BindingConfig,
) -> Result<Binding, BindingError> {
    let io_error = |error| BindingError::Io {
        server,
        protocol: Protocol::Tcp,
        error,
    };
    let transaction = async {
        let socket = reusable_tcp_socket(local_for(local, server)).map_err(io_error)?;
        let mut stream = socket.connect(server).await.map_err(io_error)?;
        // Closing with a reset instead of a FIN keeps our end out of TIME_WAIT (60 s on Linux):
        // the next transaction, from the same fixed port to the same server, reuses the very
        // same address 4-tuple and would otherwise fail with EADDRNOTAVAIL until it expires.
        stream.set_zero_linger().map_err(io_error)?;
        let local = stream.local_addr().map_err(io_error)?;
        let transaction_id = new_transaction_id();
        stream
            .write_all(&encode_binding_request(&transaction_id))
            .await
            .map_err(io_error)?;
        loop {
            let message = match read_message(&mut stream, codec::MAX_MESSAGE_SIZE).await {
                Ok(message) => message,
                Err(FrameError::Io(e)) => return Err(io_error(e)),
                Err(FrameError::Closed) => {
                    return Err(io_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection before answering",
                    )))
                }
                Err(FrameError::Invalid(error)) => {
                    return Err(BindingError::Malformed { server, error })
                }
            };
            match decode_reply(&message, &transaction_id) {
                Ok(reply) => return outcome(reply, Protocol::Tcp, local, server),
                Err(DecodeError::WrongTransaction) => {
                    debug!("ignoring STUN message of another transaction from {server}");
                }
                Err(DecodeError::NoAddress) => return Err(BindingError::NoAddress { server }),
                Err(error) => return Err(BindingError::Malformed { server, error }),
            }
        }
    };
    match timeout(config.tcp_timeout, transaction).await {
        Ok(result) => result,
        Err(_) => Err(BindingError::Timeout {
            server,
            protocol: Protocol::Tcp,
            requests: 1,
            waited: config.tcp_timeout,
        }),
    }
}

/// A TCP socket bound to `local` with SO_REUSEADDR and SO_REUSEPORT, so that it can share its
/// port with a listener (that also set both) and with other outgoing connections: the way a
/// peer asks STUN, or punches a hole, from its serving port.
pub fn reusable_tcp_socket(local: SocketAddr) -> io::Result<TcpSocket> {
    let socket = match local {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(local)?;
    Ok(socket)
}

/// A dual-stack IPv6 socket reaches an IPv4 server at its IPv4-mapped IPv6 address.
fn destination_for(local: SocketAddr, server: SocketAddr) -> SocketAddr {
    match (local, server) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        _ => server,
    }
}

fn local_for(local: SocketAddr, server: SocketAddr) -> SocketAddr {
    match (local.ip(), server) {
        (IpAddr::V4(ip), SocketAddr::V6(_)) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), local.port())
        }
        (IpAddr::V6(ip), SocketAddr::V4(_)) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), local.port())
        }
        _ => local,
    }
}

fn outcome(
    reply: Reply,
    protocol: Protocol,
    local: SocketAddr,
    server: SocketAddr,
) -> Result<Binding, BindingError> {
    match reply {
        Reply::Success(reply) => Ok(Binding {
            protocol,
            local,
            server,
            reply,
        }),
        Reply::Error { code, reason } => Err(BindingError::ErrorResponse {
            server,
            code,
            reason,
        }),
    }
}

/// Why no message could be read from a STUN TCP stream.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The other side closed the connection (cleanly or mid-message).
    Closed,
    Io(io::Error),
    /// Not STUN framing, or longer than the reader accepts: the stream cannot be resynchronised.
    Invalid(DecodeError),
}

/// Reads one STUN message (RFC 8489 §6.2.2: TCP carries bare messages, the header's length
/// field delimits them) of at most `max` bytes.
pub(crate) async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut message = vec![0; HEADER_SIZE];
    read_exact(reader, &mut message).await?;
    let size = codec::message_size(&message).map_err(FrameError::Invalid)?;
    if size > max {
        return Err(FrameError::Invalid(DecodeError::TooLong { size, max }));
    }
    message.resize(size, 0);
    read_exact(reader, &mut message[HEADER_SIZE..]).await?;
    Ok(message)
}

async fn read_exact<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), FrameError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(FrameError::Closed),
        Err(e) => Err(FrameError::Io(e)),
    }
}

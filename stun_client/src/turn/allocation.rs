//! A TCP allocation on a TURN server (RFC 8656 with RFC 6062), held for a peer nobody can reach
//! directly: peers connect to the relayed address, the server tells us over the control
//! connection (ConnectionAttempt), and we open a data connection that, once bound
//! (ConnectionBind), is a plain byte pipe to that peer.
//!
//! [`TcpAllocation::allocate`] makes the allocation; a background task then owns the control
//! connection: it refreshes the allocation before its lifetime ends, installs and refreshes
//! permissions ([`Permits::permit`]), binds a data connection for every ConnectionAttempt and
//! hands it out through [`TcpAllocation::accept`]. [`TcpAllocation::release`] deletes the
//! allocation (Refresh with lifetime 0); dropping it closes the control connection, which
//! makes the server delete it too. That task is in `allocation/control.rs`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::codec::{
    classify, decode_reply, encode_request, Auth, ControlMessage, TurnReply, TurnRequest,
    TurnSuccess, ALLOCATE,
};
use super::credentials::Credentials;
use super::error::TurnError;
use crate::binding::{read_message, FrameError};
use crate::codec::{new_transaction_id, MAX_MESSAGE_SIZE};

mod control;

use control::{read_control, Control};

/// Timing and bounds of an allocation.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Lifetime asked for in Allocate and Refresh; the server may grant another. Refreshes go
    /// out at half the granted lifetime at the latest, so one lost refresh leaves time for
    /// another.
    pub lifetime: Duration,
    /// Refresh at least this often, so the control connection never idles long enough for a
    /// NAT or firewall in between to forget it (many drop idle TCP after minutes).
    pub keepalive: Duration,
    /// Time one request (connecting included) may take.
    pub transaction_timeout: Duration,
    /// Permissions live 300 s on the server (RFC 8656 §9); they are renewed this often.
    pub permission_refresh: Duration,
    /// A permission nobody asked for again within this time is not renewed.
    pub permission_keep: Duration,
    /// Data connections being bound at once; further ConnectionAttempts are dropped.
    pub max_binding: usize,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            lifetime: Duration::from_secs(600),
            keepalive: Duration::from_secs(60),
            transaction_timeout: Duration::from_secs(10),
            permission_refresh: Duration::from_secs(240),
            permission_keep: Duration::from_secs(600),
            max_binding: 32,
        }
    }
}

/// A peer's connection, relayed by the TURN server: bytes written go to `peer`, bytes read come
/// from it. Nothing but the peer's own bytes flows on it.
#[derive(Debug)]
pub struct RelayedConnection {
    pub stream: TcpStream,
    /// The peer's address as the TURN server sees it (XOR-PEER-ADDRESS).
    pub peer: SocketAddr,
}

/// Permissions of an allocation, shareable with whoever learns which peers are about to
/// connect.
#[derive(Debug, Clone)]
pub struct Permits {
    commands: mpsc::Sender<Command>,
}

impl Permits {
    /// Lets `peers` connect to the relayed address (any port of theirs). Returns once the
    /// server confirmed; an IP permitted recently returns at once.
    pub async fn permit(&self, peers: Vec<IpAddr>) -> Result<(), Arc<TurnError>> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::Permit { peers, done })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn gone() -> Arc<TurnError> {
    Arc::new(TurnError::Io {
        server: SocketAddr::from(([0, 0, 0, 0], 0)),
        error: io::Error::new(io::ErrorKind::NotConnected, "the allocation has ended"),
    })
}

enum Command {
    Permit {
        peers: Vec<IpAddr>,
        done: oneshot::Sender<Result<(), Arc<TurnError>>>,
    },
    Release {
        done: oneshot::Sender<()>,
    },
}

/// A live TCP allocation.
pub struct TcpAllocation {
    server: SocketAddr,
    relayed: SocketAddr,
    mapped: Option<SocketAddr>,
    lifetime: Duration,
    commands: mpsc::Sender<Command>,
    connections: mpsc::Receiver<Result<RelayedConnection, Arc<TurnError>>>,
    ended: Option<Arc<TurnError>>,
    task: JoinHandle<()>,
}

impl Drop for TcpAllocation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What signs requests: the credentials and what the server told us of its realm and nonce.
#[derive(Clone)]
struct AuthState {
    credentials: Option<Credentials>,
    realm: String,
    nonce: String,
    key: Vec<u8>,
}

impl AuthState {
    fn auth(&self) -> Option<Auth<'_>> {
        let credentials = self.credentials.as_ref()?;
        (!self.realm.is_empty()).then_some(Auth {
            username: &credentials.username,
            realm: &self.realm,
            nonce: &self.nonce,
            key: &self.key,
        })
    }

    fn key(&self) -> Option<&[u8]> {
        self.auth().map(|a| a.key)
    }

    /// Takes the realm and nonce of a 401 or 438 answer.
    fn learn(
        &mut self,
        realm: Option<String>,
        nonce: Option<String>,
        server: SocketAddr,
    ) -> Result<(), TurnError> {
        let Some(credentials) = &self.credentials else {
            return Err(TurnError::Unauthorized { server });
        };
        if let Some(realm) = realm {
            if realm != self.realm {
                self.key = credentials.key(&realm).map_err(TurnError::Request)?;
                self.realm = realm;
            }
        }
        if let Some(nonce) = nonce {
            self.nonce = nonce;
        }
        if self.realm.is_empty() {
            return Err(TurnError::Malformed {
                server,
                error: super::codec::TurnCodecError::Missing("REALM"),
            });
        }
        Ok(())
    }
}

/// Error responses one request may get before the answer is final: a 401 (we learn the realm)
/// and a 438 Stale Nonce or two.
const MAX_AUTH_ROUNDS: u32 = 4;

/// Runs one request on a stream nothing else reads (the control connection before the task
/// starts, or a data connection before it is bound), answering 401 and 438 as RFC 8489 asks.
async fn transact(
    stream: &mut TcpStream,
    server: SocketAddr,
    request: &TurnRequest,
    method: u16,
    auth: &mut AuthState,
) -> Result<TurnSuccess, TurnError> {
    let io_error = |error| TurnError::Io { server, error };
    let mut signed = false;
    for _ in 0..MAX_AUTH_ROUNDS {
        let tid = new_transaction_id();
        let bytes =
            encode_request(&tid, request, auth.auth().as_ref()).map_err(TurnError::Request)?;
        signed |= auth.auth().is_some();
        stream.write_all(&bytes).await.map_err(io_error)?;
        let reply = loop {
            let msg = read_message(stream, MAX_MESSAGE_SIZE)
                .await
                .map_err(|e| frame_error(server, e))?;
            match classify(&msg) {
                Ok(ControlMessage::Response(t)) if t == tid => {
                    break decode_reply(&msg, &tid, method, auth.key())
                        .map_err(|error| TurnError::Malformed { server, error })?;
                }
                other => debug!("TURN {server}: skipping {other:?} while waiting for a reply"),
            }
        };
        match reply {
            TurnReply::Success(success) => return Ok(success),
            TurnReply::Error {
                code: 401,
                realm,
                nonce,
                ..
            } if !signed => auth.learn(realm, nonce, server)?,
            TurnReply::Error {
                code: 438,
                realm,
                nonce,
                ..
            } => auth.learn(realm, nonce, server)?,
            TurnReply::Error { code, reason, .. } => {
                return Err(TurnError::from_code(server, code, reason))
            }
        }
    }
    Err(TurnError::Unauthorized { server })
}

fn frame_error(server: SocketAddr, error: FrameError) -> TurnError {
    match error {
        FrameError::Closed => TurnError::Closed { server },
        FrameError::Io(error) => TurnError::Io { server, error },
        FrameError::Invalid(e) => TurnError::Malformed {
            server,
            error: super::codec::TurnCodecError::Malformed(e.to_string()),
        },
    }
}

async fn connect(server: SocketAddr, limit: Duration) -> Result<TcpStream, TurnError> {
    match timeout(limit, TcpStream::connect(server)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(error)) => Err(TurnError::Connect { server, error }),
        Err(_) => Err(TurnError::Timeout {
            server,
            waited: limit,
        }),
    }
}

impl TcpAllocation {
    /// Connects to `server`, allocates a TCP relayed address with `credentials` (none for a
    /// server that asks for none) and starts the task that keeps it.
    pub async fn allocate(
        server: SocketAddr,
        credentials: Option<Credentials>,
        config: TurnConfig,
    ) -> Result<TcpAllocation, TurnError> {
        let mut auth = AuthState {
            credentials,
            realm: String::new(),
            nonce: String::new(),
            key: Vec::new(),
        };
        let limit = config.transaction_timeout;
        let mut stream = connect(server, limit).await?;
        let request = TurnRequest::Allocate {
            lifetime: config.lifetime,
        };
        let granted = timeout(
            limit * MAX_AUTH_ROUNDS,
            transact(&mut stream, server, &request, ALLOCATE, &mut auth),
        )
        .await
        .map_err(|_| TurnError::Timeout {
            server,
            waited: limit * MAX_AUTH_ROUNDS,
        })??;
        let relayed = granted.relayed.ok_or(TurnError::Malformed {
            server,
            error: super::codec::TurnCodecError::Missing("XOR-RELAYED-ADDRESS"),
        })?;
        let lifetime = granted.lifetime.unwrap_or(config.lifetime);
        info!(
            "TURN {server}: allocated relayed address {relayed} for {}s",
            lifetime.as_secs()
        );
        let (commands_tx, commands) = mpsc::channel(64);
        let (connections_tx, connections) = mpsc::channel(16);
        let (read, write) = stream.into_split();
        let (messages_tx, messages) = mpsc::channel(16);
        tokio::spawn(read_control(read, server, messages_tx));
        let control = Control::new(server, config, auth, write, lifetime, connections_tx);
        let task = tokio::spawn(control.run(messages, commands));
        Ok(TcpAllocation {
            server,
            relayed,
            mapped: granted.mapped,
            lifetime,
            commands: commands_tx,
            connections,
            ended: None,
            task,
        })
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The address peers connect to.
    pub fn relayed(&self) -> SocketAddr {
        self.relayed
    }

    /// Our address as the server saw the control connection (XOR-MAPPED-ADDRESS).
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The lifetime granted by the Allocate.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub fn permits(&self) -> Permits {
        Permits {
            commands: self.commands.clone(),
        }
    }

    /// The next peer connection, bound and ready; an error once the allocation has ended (the
    /// server closed the control connection, a refresh failed), and the same error after that.
    pub async fn accept(&mut self) -> Result<RelayedConnection, Arc<TurnError>> {
        if let Some(e) = &self.ended {
            return Err(e.clone());
        }
        match self.connections.recv().await {
            Some(Ok(connection)) => Ok(connection),
            Some(Err(e)) => {
                self.ended = Some(e.clone());
                Err(e)
            }
            None => {
                let e = Arc::new(TurnError::Closed {
                    server: self.server,
                });
                self.ended = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Deletes the allocation on the server (Refresh with lifetime 0), waiting at most one
    /// transaction timeout for the answer.
    pub async fn release(self) {
        let (done, answer) = oneshot::channel();
        if self.commands.send(Command::Release { done }).await.is_ok() {
            let _ = answer.await;
        }
    }
}

//! The task that owns an allocation's control connection once [`TcpAllocation::allocate`] has
//! made it: refreshes, permissions, ConnectionAttempt -> ConnectionBind, release.
//!
//! It is apart from the handle because nothing else touches its state: the handle and
//! [`Permits`] only meet it through the command channel and the channel of bound connections,
//! while its outstanding transactions, permission book and timers are the task's alone.
//!
//! [`TcpAllocation::allocate`]: super::TcpAllocation::allocate
//! [`Permits`]: super::Permits

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{sleep_until, timeout, Instant};

use super::{
    connect, frame_error, transact, AuthState, Command, RelayedConnection, TurnConfig,
    MAX_AUTH_ROUNDS,
};
use crate::binding::read_message;
use crate::codec::{new_transaction_id, MAX_MESSAGE_SIZE};
use crate::turn::codec::{
    classify, decode_reply, encode_request, ControlMessage, TurnReply, TurnRequest, TurnSuccess,
    CONNECTION_BIND, CREATE_PERMISSION, REFRESH,
};
use crate::turn::error::TurnError;
use stun_rs::TransactionId;

/// Reads the control connection in its own task: a read cancelled half-way (as in a select)
/// would lose the framing.
pub(super) async fn read_control(
    mut read: tokio::net::tcp::OwnedReadHalf,
    server: SocketAddr,
    messages: mpsc::Sender<Result<Vec<u8>, TurnError>>,
) {
    loop {
        let result = read_message(&mut read, MAX_MESSAGE_SIZE)
            .await
            .map_err(|e| frame_error(server, e));
        let failed = result.is_err();
        if messages.send(result).await.is_err() || failed {
            return;
        }
    }
}

enum Waiter {
    Permit(Vec<oneshot::Sender<Result<(), Arc<TurnError>>>>),
    Refresh,
    Release(oneshot::Sender<()>),
}

struct Pending {
    request: TurnRequest,
    method: u16,
    sent: Instant,
    rounds: u32,
    waiter: Waiter,
}

pub(super) struct Control {
    server: SocketAddr,
    config: TurnConfig,
    auth: AuthState,
    writer: OwnedWriteHalf,
    pending: HashMap<TransactionId, Pending>,
    /// When each permission was last installed (confirmed by the server).
    installed: HashMap<IpAddr, Instant>,
    /// When each permission was last asked for; only these are renewed.
    wanted: HashMap<IpAddr, Instant>,
    lifetime: Duration,
    connections: mpsc::Sender<Result<RelayedConnection, Arc<TurnError>>>,
    binds: Arc<Semaphore>,
}

/// Most XOR-PEER-ADDRESS attributes put in one CreatePermission.
const PEERS_PER_REQUEST: usize = 64;
/// Most permissions kept; the least recently wanted go first.
const MAX_PERMISSIONS: usize = 1024;

fn refresh_interval(lifetime: Duration, keepalive: Duration) -> Duration {
    (lifetime / 2).min(keepalive).max(Duration::from_secs(1))
}

impl Control {
    /// The task's state for an allocation granted `lifetime`, writing to the control connection
    /// through `writer` and handing bound connections to `connections`.
    pub(super) fn new(
        server: SocketAddr,
        config: TurnConfig,
        auth: AuthState,
        writer: OwnedWriteHalf,
        lifetime: Duration,
        connections: mpsc::Sender<Result<RelayedConnection, Arc<TurnError>>>,
    ) -> Control {
        Control {
            server,
            binds: Arc::new(Semaphore::new(config.max_binding.max(1))),
            config,
            auth,
            writer,
            pending: HashMap::new(),
            installed: HashMap::new(),
            wanted: HashMap::new(),
            lifetime,
            connections,
        }
    }

    pub(super) async fn run(
        mut self,
        mut messages: mpsc::Receiver<Result<Vec<u8>, TurnError>>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut refresh_at =
            Instant::now() + refresh_interval(self.lifetime, self.config.keepalive);
        let mut permissions_at = Instant::now() + self.config.permission_refresh;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let outcome: Result<(), TurnError> = loop {
            tokio::select! {
                message = messages.recv() => match message {
                    Some(Ok(msg)) => if let Err(e) = self.on_message(&msg).await { break Err(e) },
                    Some(Err(e)) => break Err(e),
                    None => break Err(TurnError::Closed { server: self.server }),
                },
                command = commands.recv() => match command {
                    Some(Command::Permit { peers, done }) => self.permit(peers, done).await,
                    Some(Command::Release { done }) => {
                        self.release(done, &mut messages).await;
                        break Ok(());
                    }
                    // Every handle is gone: nobody can accept connections any more.
                    None => break Ok(()),
                },
                _ = sleep_until(refresh_at) => {
                    refresh_at = Instant::now() + refresh_interval(self.lifetime, self.config.keepalive);
                    let request = TurnRequest::Refresh { lifetime: self.config.lifetime };
                    if let Err(e) = self.send(request, REFRESH, Waiter::Refresh, 0).await {
                        break Err(e);
                    }
                }
                _ = sleep_until(permissions_at) => {
                    permissions_at = Instant::now() + self.config.permission_refresh;
                    self.renew_permissions().await;
                }
                _ = tick.tick() => {
                    if let Err(e) = self.expire_pending() { break Err(e) }
                }
            }
        };
        if let Err(e) = outcome {
            warn!("TURN {}: {e}", self.server);
            let e = Arc::new(e);
            for (_, pending) in self.pending.drain() {
                if let Waiter::Permit(waiters) = pending.waiter {
                    for w in waiters {
                        let _ = w.send(Err(e.clone()));
                    }
                }
            }
            let _ = self.connections.send(Err(e)).await;
        }
    }

    async fn send(
        &mut self,
        request: TurnRequest,
        method: u16,
        waiter: Waiter,
        rounds: u32,
    ) -> Result<(), TurnError> {
        let tid = new_transaction_id();
        let bytes = encode_request(&tid, &request, self.auth.auth().as_ref())
            .map_err(TurnError::Request)?;
        self.writer
            .write_all(&bytes)
            .await
            .map_err(|error| TurnError::Io {
                server: self.server,
                error,
            })?;
        self.pending.insert(
            tid,
            Pending {
                request,
                method,
                sent: Instant::now(),
                rounds,
                waiter,
            },
        );
        Ok(())
    }

    /// Handles one message of the control connection; an error ends the allocation.
    async fn on_message(&mut self, msg: &[u8]) -> Result<(), TurnError> {
        let server = self.server;
        let tid = match classify(msg) {
            Ok(ControlMessage::Response(tid)) => tid,
            Ok(ControlMessage::Attempt(attempt)) => {
                let Ok(permit) = self.binds.clone().try_acquire_owned() else {
                    warn!(
                        "TURN {server}: dropping the connection of {}: {} bindings in progress",
                        attempt.peer, self.config.max_binding
                    );
                    return Ok(());
                };
                debug!(
                    "TURN {server}: {} connects (id {})",
                    attempt.peer, attempt.connection_id
                );
                let (auth, limit, out) = (
                    self.auth.clone(),
                    self.config.transaction_timeout,
                    self.connections.clone(),
                );
                tokio::spawn(async move {
                    let _permit = permit;
                    match bind(server, attempt.connection_id, auth, limit).await {
                        Ok(stream) => {
                            let _ = out
                                .send(Ok(RelayedConnection {
                                    stream,
                                    peer: attempt.peer,
                                }))
                                .await;
                        }
                        Err(e) => warn!(
                            "TURN {server}: binding the connection of {}: {e}",
                            attempt.peer
                        ),
                    }
                });
                return Ok(());
            }
            Ok(ControlMessage::Other { method, class }) => {
                debug!("TURN {server}: ignoring message 0x{method:03x} {class:?}");
                return Ok(());
            }
            Err(error) => return Err(TurnError::Malformed { server, error }),
        };
        let Some(pending) = self.pending.remove(&tid) else {
            debug!("TURN {server}: answer to a transaction we no longer wait for");
            return Ok(());
        };
        let reply = decode_reply(msg, &tid, pending.method, self.auth.key())
            .map_err(|error| TurnError::Malformed { server, error })?;
        match reply {
            TurnReply::Error {
                code: 438,
                realm,
                nonce,
                ..
            } if pending.rounds < MAX_AUTH_ROUNDS => {
                self.auth.learn(realm, nonce, server)?;
                self.send(
                    pending.request,
                    pending.method,
                    pending.waiter,
                    pending.rounds + 1,
                )
                .await
            }
            TurnReply::Success(success) => self.completed(pending, Ok(success)),
            TurnReply::Error { code, reason, .. } => {
                self.completed(pending, Err(TurnError::from_code(server, code, reason)))
            }
        }
    }

    /// A transaction ended; an error here ends the allocation only for Refresh.
    fn completed(
        &mut self,
        pending: Pending,
        result: Result<TurnSuccess, TurnError>,
    ) -> Result<(), TurnError> {
        match (pending.waiter, result) {
            (Waiter::Refresh, Ok(success)) => {
                if let Some(lifetime) = success.lifetime {
                    self.lifetime = lifetime;
                }
                debug!(
                    "TURN {}: refreshed for {}s",
                    self.server,
                    self.lifetime.as_secs()
                );
                Ok(())
            }
            (Waiter::Refresh, Err(e)) => Err(e),
            (Waiter::Permit(waiters), result) => {
                let result = result.map(|_| ()).map_err(Arc::new);
                if result.is_ok() {
                    if let TurnRequest::CreatePermission { peers } = &pending.request {
                        let now = Instant::now();
                        for ip in peers {
                            self.installed.insert(*ip, now);
                        }
                    }
                }
                for w in waiters {
                    let _ = w.send(result.clone());
                }
                Ok(())
            }
            (Waiter::Release(done), _) => {
                let _ = done.send(());
                Ok(())
            }
        }
    }

    async fn permit(
        &mut self,
        peers: Vec<IpAddr>,
        done: oneshot::Sender<Result<(), Arc<TurnError>>>,
    ) {
        let now = Instant::now();
        let fresh = |at: &Instant| now.duration_since(*at) < self.config.permission_refresh;
        let mut missing: Vec<IpAddr> = Vec::new();
        for ip in peers {
            let ip = ip.to_canonical();
            self.wanted.insert(ip, now);
            if !self.installed.get(&ip).is_some_and(fresh) && !missing.contains(&ip) {
                missing.push(ip);
            }
        }
        self.bound_permissions();
        if missing.is_empty() {
            let _ = done.send(Ok(()));
            return;
        }
        missing.truncate(PEERS_PER_REQUEST);
        let request = TurnRequest::CreatePermission { peers: missing };
        if let Err(e) = self
            .send(request, CREATE_PERMISSION, Waiter::Permit(vec![done]), 0)
            .await
        {
            warn!("TURN {}: sending CreatePermission: {e}", self.server);
        }
    }

    fn bound_permissions(&mut self) {
        while self.wanted.len() > MAX_PERMISSIONS {
            let Some((&oldest, _)) = self.wanted.iter().min_by_key(|(_, at)| **at) else {
                return;
            };
            self.wanted.remove(&oldest);
            self.installed.remove(&oldest);
        }
    }

    /// Renews every permission asked for within `permission_keep`; forgets the rest.
    async fn renew_permissions(&mut self) {
        let now = Instant::now();
        let keep = self.config.permission_keep;
        self.wanted.retain(|_, at| now.duration_since(*at) < keep);
        let wanted = &self.wanted;
        self.installed.retain(|ip, _| wanted.contains_key(ip));
        let peers: Vec<IpAddr> = self.wanted.keys().copied().collect();
        for batch in peers.chunks(PEERS_PER_REQUEST) {
            let request = TurnRequest::CreatePermission {
                peers: batch.to_vec(),
            };
            if let Err(e) = self
                .send(request, CREATE_PERMISSION, Waiter::Permit(Vec::new()), 0)
                .await
            {
                warn!("TURN {}: renewing permissions: {e}", self.server);
                return;
            }
        }
    }

    /// Transactions unanswered for a whole timeout: a lost refresh ends the allocation (the
    /// server has not answered for seconds; the lifetime is about to run out anyway), a lost
    /// permission fails its waiters.
    fn expire_pending(&mut self) -> Result<(), TurnError> {
        let limit = self.config.transaction_timeout;
        let expired: Vec<TransactionId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sent.elapsed() > limit)
            .map(|(tid, _)| *tid)
            .collect();
        for tid in expired {
            if let Some(pending) = self.pending.remove(&tid) {
                let timeout = TurnError::Timeout {
                    server: self.server,
                    waited: limit,
                };
                self.completed(pending, Err(timeout))?;
            }
        }
        Ok(())
    }

    async fn release(
        &mut self,
        done: oneshot::Sender<()>,
        messages: &mut mpsc::Receiver<Result<Vec<u8>, TurnError>>,
    ) {
        let request = TurnRequest::Refresh {
            lifetime: Duration::ZERO,
        };
        if self
            .send(request, REFRESH, Waiter::Release(done), 0)
            .await
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + self.config.transaction_timeout;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, messages.recv()).await {
            let _ = self.on_message(&msg).await;
            if !self
                .pending
                .values()
                .any(|p| matches!(p.waiter, Waiter::Release(_)))
            {
                info!("TURN {}: allocation released", self.server);
                return;
            }
        }
    }
}

/// Opens a data connection for `connection_id` and binds it (RFC 6062 §4.4); after the success
/// response the stream carries only the peer's bytes.
async fn bind(
    server: SocketAddr,
    connection_id: u32,
    mut auth: AuthState,
    limit: Duration,
) -> Result<TcpStream, TurnError> {
    let mut stream = connect(server, limit).await?;
    let request = TurnRequest::ConnectionBind { connection_id };
    timeout(
        limit,
        transact(&mut stream, server, &request, CONNECTION_BIND, &mut auth),
    )
    .await
    .map_err(|_| TurnError::Timeout {
        server,
        waited: limit,
    })??;
    Ok(stream)
}

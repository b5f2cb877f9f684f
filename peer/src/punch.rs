//! TCP hole punching: reaching a peer whose NAT drops connections nobody inside asked for.
//!
//! A home router lets in only packets of connections its inside opened. When both peers sit
//! behind such routers, neither can connect to the other's public address: the SYN is dropped.
//! But if both send a SYN to each other at about the same time, from the ports they announced,
//! each outgoing SYN opens its own router for the other's, and TCP's simultaneous open
//! (RFC 9293 §3.5) turns the two crossing SYNs into one connection. The tracker is the
//! rendezvous: it can reach the target's UDP socket because the target's heartbeats keep that
//! mapping open, so the requester sends flag 8 and the tracker forwards a `PUNCH` notice
//! (protocol.txt §4).
//!
//! The port matters: the target announced the public mapping of its *serving* port, so both
//! sides connect from their serving port. The listener and the outgoing sockets share it with
//! SO_REUSEADDR + SO_REUSEPORT ([`stun_client::reusable_tcp_socket`]).
//!
//! This works through endpoint-independent mappings (full and port-restricted cones). A
//! symmetric NAT gives every destination a new public port, so the port the other side was told
//! is not the one our SYN comes from. When the requester's side lets connections in, the
//! target's connection back still arrives, at the requester's listener: the [`Rendezvous`]
//! hands it to the waiting punch ("reverse connection"). Otherwise the attempts fail and the
//! error names our NAT type as STUN sees it ([`OwnNat`]).
//!
//! Who does what: [`Dialer`] (the requester; the download engine's way to every peer),
//! [`PunchAnswerer`] + [`answer_notices`] (the target, run by every serving node), and
//! [`Incoming`] (the server's end: punched connections to serve, accepted ones to offer to the
//! rendezvous first).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{debug, info, warn};
use stun_client::reusable_tcp_socket;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, watch, OnceCell, Semaphore};
use tracker::{ClientError, FileName, PunchNotice, TrackerClient};

/// Timing of connection attempts. Every wait is bounded, so a NAT that drops everything costs
/// at most `direct_timeout + attempts * (attempt_timeout + retry_delay)`.
#[derive(Debug, Clone)]
pub struct PunchConfig {
    /// How long the first, plain connect may take before hole punching starts.
    pub direct_timeout: Duration,
    /// Simultaneous-open attempts per punch.
    pub attempts: u32,
    /// How long one attempt may wait. The kernel resends an unanswered SYN after 1 s and 3 s, so
    /// one attempt of 3.5 s lets the first SYN that the other router dropped be followed by
    /// retransmissions that arrive after the other side's SYN has opened that router.
    pub attempt_timeout: Duration,
    /// Pause between two attempts of one punch.
    pub retry_delay: Duration,
    /// Punch notices answered at once; more are dropped. A notice makes us send SYNs to an
    /// address a stranger chose, so this bounds what a flood of notices can make us do.
    pub max_concurrent_answers: usize,
}

impl Default for PunchConfig {
    fn default() -> Self {
        Self {
            direct_timeout: Duration::from_secs(3),
            attempts: 3,
            attempt_timeout: Duration::from_millis(3500),
            retry_delay: Duration::from_millis(300),
            max_concurrent_answers: 8,
        }
    }
}

/// What this peer knows about its own NAT, for error messages that tell the user why a peer
/// could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnNat {
    /// Nothing learned (no STUN server configured or none answered).
    Unknown,
    /// STUN reported our local address: no NAT in front of us.
    NoNat,
    /// Every STUN server saw the same public address: a cone NAT, punchable.
    EndpointIndependent,
    /// STUN servers saw different public ports: a symmetric NAT, which hole punching cannot
    /// traverse towards another filtering NAT.
    Symmetric,
}

impl OwnNat {
    fn describe(self) -> &'static str {
        match self {
            OwnNat::Unknown => {
                "this peer's NAT type is unknown (no STUN answer), so either side may be behind a \
                 symmetric NAT, or the other peer is gone"
            }
            OwnNat::NoNat => {
                "this peer is not behind a NAT, so the other peer is behind a NAT that drops these \
                 attempts (symmetric, or filtering without hole punching), or is gone"
            }
            OwnNat::EndpointIndependent => {
                "this peer is behind a cone NAT (endpoint-independent mapping), so the other peer is \
                 probably behind a symmetric NAT, or is gone"
            }
            OwnNat::Symmetric => {
                "this peer is behind a symmetric NAT (a new public port per destination), which hole \
                 punching cannot traverse when the other peer's NAT filters too"
            }
        }
    }

    /// Learns our NAT's mapping behaviour (stun-probe --probe-nat) from a throwaway UDP socket:
    /// the serving port's TCP mapping is the STUN refresher's to ask, and two connections with
    /// one address pair cannot coexist. A NAT maps UDP and TCP alike in practice (the same
    /// MASQUERADE rule on Linux routers). `servers[1]`, if given, is the second server;
    /// otherwise the first one's RFC 5780 OTHER-ADDRESS. Servers are `HOST:PORT`.
    pub async fn probe(servers: &[String]) -> OwnNat {
        let mut resolved = Vec::new();
        for spec in servers.iter().take(2) {
            let lookup = tokio::net::lookup_host(spec.as_str());
            match tokio::time::timeout(Duration::from_secs(2), lookup).await {
                Ok(Ok(mut addrs)) => resolved.extend(addrs.next()),
                Ok(Err(e)) => debug!("punch: cannot resolve STUN server {spec}: {e}"),
                Err(_) => debug!("punch: resolving STUN server {spec} timed out"),
            }
        }
        let Some(&first) = resolved.first() else {
            return OwnNat::Unknown;
        };
        let servers = resolved;
        let any = if first.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        let socket = match UdpSocket::bind((any, 0)).await {
            Ok(s) => s,
            Err(e) => {
                debug!("punch: no UDP socket for the NAT probe: {e}");
                return OwnNat::Unknown;
            }
        };
        // Short timers: this runs on the failure path, only to explain the failure.
        let config = stun_client::BindingConfig {
            rto: Duration::from_millis(250),
            max_requests: 4,
            last_wait_factor: 4,
            ..Default::default()
        };
        match stun_client::nat::probe_udp(&socket, first, servers.get(1).copied(), &config).await {
            Ok(report) => match report.mapping {
                stun_client::nat::Mapping::NotBehindNat => OwnNat::NoNat,
                stun_client::nat::Mapping::EndpointIndependent => OwnNat::EndpointIndependent,
                stun_client::nat::Mapping::EndpointDependent => OwnNat::Symmetric,
            },
            Err(e) => {
                debug!("punch: NAT probe via {first}: {e}");
                OwnNat::Unknown
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PunchError {
    #[error(
        "cannot bind local {local} for hole punching: {source} (the serving socket must be opened \
         with SO_REUSEPORT)"
    )]
    Bind {
        local: SocketAddr,
        source: io::Error,
    },
    #[error(
        "no TCP connection to {remote}: {attempts} simultaneous-open attempts from {local} failed \
         (last: {last})"
    )]
    Exhausted {
        local: SocketAddr,
        remote: SocketAddr,
        attempts: u32,
        last: String,
    },
}

/// Why [`Dialer::connect`] found no way to the peer.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(
        "direct connection to {target} failed ({direct}) and the tracker would not relay a punch \
         request: {source}"
    )]
    Signal {
        target: SocketAddr,
        direct: String,
        source: ClientError,
    },
    #[error("direct connection failed ({direct}), then {source}; {nat}", nat = .nat.describe())]
    Punch {
        direct: String,
        source: PunchError,
        nat: OwnNat,
    },
}

/// Connections a punch expects on our listener rather than on its own socket.
///
/// The target of a punch connects back from its serving port. Behind a symmetric NAT that
/// connection leaves from a public port nobody could predict, so it cannot match our socket that
/// connects to the port the target announced; if our NAT lets it in (no NAT, or the serving port
/// forwarded), it reaches our listener as an ordinary incoming connection. The same happens when
/// the target's SYN arrives between two of our attempts. The server offers every accepted
/// connection here first; one from the IP a punch is waiting for goes to that punch.
#[derive(Default)]
pub struct Rendezvous {
    waiting: Mutex<HashMap<IpAddr, Vec<oneshot::Sender<TcpStream>>>>,
}

impl Rendezvous {
    /// Hands `stream` to a punch waiting for a connection from `from`'s IP; gives it back when
    /// none waits, for the server to serve.
    pub fn claim(&self, stream: TcpStream, from: SocketAddr) -> Option<TcpStream> {
        let Ok(mut waiting) = self.waiting.lock() else {
            return Some(stream);
        };
        let mut stream = stream;
        if let Some(list) = waiting.get_mut(&from.ip()) {
            while let Some(tx) = list.pop() {
                match tx.send(stream) {
                    Ok(()) => {
                        debug!("punch: connection from {from} taken by the punch waiting for it");
                        if list.is_empty() {
                            waiting.remove(&from.ip());
                        }
                        return None;
                    }
                    Err(back) => stream = back,
                }
            }
            waiting.remove(&from.ip());
        }
        Some(stream)
    }

    fn expect(&self, ip: IpAddr) -> oneshot::Receiver<TcpStream> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            let list = waiting.entry(ip).or_default();
            list.retain(|t| !t.is_closed());
            list.push(tx);
        }
        rx
    }
}

/// The server's end of hole punching: connections punched on behalf of notices, to be served
/// like accepted ones, and the rendezvous accepted connections are offered to first.
pub struct Incoming {
    punched: mpsc::Receiver<TcpStream>,
    rendezvous: Arc<Rendezvous>,
}

impl Incoming {
    /// The next connection the answerer punched; `None` once no answerer is left.
    pub async fn punched(&mut self) -> Option<TcpStream> {
        self.punched.recv().await
    }

    /// See [`Rendezvous::claim`].
    pub fn claim(&self, stream: TcpStream, from: SocketAddr) -> Option<TcpStream> {
        self.rendezvous.claim(stream, from)
    }
}

/// The other end of [`Incoming`]: where punched connections go and the shared rendezvous.
#[derive(Clone)]
pub struct Outlet {
    pub punched: mpsc::Sender<TcpStream>,
    pub rendezvous: Arc<Rendezvous>,
}

/// A connected [`Incoming`] / [`Outlet`] pair for one server.
pub fn server_hooks() -> (Incoming, Outlet) {
    let (tx, rx) = mpsc::channel(16);
    let rendezvous = Arc::new(Rendezvous::default());
    (
        Incoming {
            punched: rx,
            rendezvous: rendezvous.clone(),
        },
        Outlet {
            punched: tx,
            rendezvous,
        },
    )
}

/// The downloader's way to a peer: a plain connect first, hole punching through the tracker when
/// that gets no answer (protocol.txt §4.3).
pub struct Dialer {
    tracker: Arc<TrackerClient>,
    local: SocketAddr,
    announce: watch::Receiver<SocketAddr>,
    rendezvous: Arc<Rendezvous>,
    stun: Vec<String>,
    nat: OnceCell<OwnNat>,
    config: PunchConfig,
    /// Peers a direct connect did not reach: the next connection to them (a download opens
    /// one for the manifest, then one per fetch) punches at once instead of waiting out
    /// `direct_timeout` again.
    filtered: Mutex<HashSet<SocketAddr>>,
}

impl Dialer {
    /// `local` is the serving listener's address (punch attempts start from it); `announce` is
    /// the address this peer announces (the public mapping of `local` once STUN knows it), which
    /// goes into flag 8 so the target knows where to connect. `nat` is what is known of our NAT;
    /// when `Unknown`, the servers of [`Dialer::with_stun`] are asked when a punch fails.
    pub fn new(
        tracker: Arc<TrackerClient>,
        local: SocketAddr,
        announce: watch::Receiver<SocketAddr>,
        nat: OwnNat,
        config: PunchConfig,
    ) -> Self {
        let known = match nat {
            OwnNat::Unknown => OnceCell::new(),
            known => OnceCell::new_with(Some(known)),
        };
        Self {
            tracker,
            local,
            announce,
            rendezvous: Arc::default(),
            stun: Vec::new(),
            nat: known,
            config,
            filtered: Mutex::default(),
        }
    }

    /// Takes connections the target opens back to our listener (see [`Rendezvous`]); pass the
    /// rendezvous of the server listening on `local`.
    pub fn with_rendezvous(mut self, rendezvous: Arc<Rendezvous>) -> Self {
        self.rendezvous = rendezvous;
        self
    }

    /// STUN servers (`HOST:PORT`) asked for our NAT type when a punch fails, to say why.
    pub fn with_stun(mut self, servers: Vec<String>) -> Self {
        self.stun = servers;
        self
    }

    fn remembered_filtered(&self, target: SocketAddr) -> bool {
        self.filtered
            .lock()
            .map(|f| f.contains(&target))
            .unwrap_or(false)
    }

    async fn own_nat(&self) -> OwnNat {
        *self.nat.get_or_init(|| OwnNat::probe(&self.stun)).await
    }

    /// A TCP connection to `target`, a peer of `file`'s swarm, on which this peer is the client.
    pub async fn connect(
        &self,
        file: &FileName,
        target: SocketAddr,
    ) -> Result<TcpStream, DialError> {
        let direct = if self.remembered_filtered(target) {
            String::from("skipped, it failed before")
        } else {
            match tokio::time::timeout(self.config.direct_timeout, TcpStream::connect(target)).await
            {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "no answer within {} ms",
                    self.config.direct_timeout.as_millis()
                ),
            }
        };
        if let Ok(mut filtered) = self.filtered.lock() {
            filtered.insert(target);
        }
        let me = *self.announce.borrow();
        info!("{target}: direct connection failed ({direct}); punching from {} (announced as {me}) for {file}", self.local);
        let inbound = self.rendezvous.expect(target.ip());
        tokio::pin!(inbound);
        // Our SYN leaves before the tracker relays the request, so the target's SYN finds this
        // socket (same address pair) rather than our listener (protocol.txt §4.3 step 2).
        let punching = simultaneous_open(self.local, target, &self.config);
        tokio::pin!(punching);
        let signal = self.tracker.punch(file, target, me);
        tokio::pin!(signal);
        let outcome = tokio::select! {
            result = &mut punching => result.map(|s| (s, "simultaneous open")),
            Ok(stream) = &mut inbound => Ok((stream, "it connected back to our listener")),
            signalled = &mut signal => {
                if let Err(source) = signalled {
                    return Err(DialError::Signal { target, direct, source });
                }
                tokio::select! {
                    result = &mut punching => result.map(|s| (s, "simultaneous open")),
                    Ok(stream) = &mut inbound => Ok((stream, "it connected back to our listener")),
                }
            }
        };
        match outcome {
            Ok((stream, how)) => {
                info!(
                    "{target}: punched through ({how}), connected as {:?} -> {:?}",
                    stream.local_addr(),
                    stream.peer_addr()
                );
                Ok(stream)
            }
            Err(source) => Err(DialError::Punch {
                direct,
                source,
                nat: self.own_nat().await,
            }),
        }
    }
}

/// Answers the tracker's PUNCH notices for files `shares` says this peer serves, handing each
/// punched connection to `serve`. Returns when the tracker client is gone.
pub async fn answer_notices<S, F>(
    mut notices: broadcast::Receiver<PunchNotice>,
    answerer: PunchAnswerer,
    shares: S,
    serve: F,
) where
    S: Fn(&FileName) -> bool,
    F: Fn(TcpStream) + Clone + Send + 'static,
{
    loop {
        match notices.recv().await {
            Ok(notice) if shares(&notice.file) => {
                let serve = serve.clone();
                answerer.answer(notice.file.as_str(), notice.from, move |stream| {
                    serve(stream)
                });
            }
            Ok(notice) => debug!(
                "punch: ignoring notice for {} (not shared here) from {}",
                notice.file, notice.from
            ),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!("punch: {n} notices dropped (too many at once)")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One connect from `local` to `remote`, bounded by `limit`.
async fn connect_from(
    local: SocketAddr,
    remote: SocketAddr,
    limit: Duration,
) -> Result<TcpStream, AttemptError> {
    let socket = reusable_tcp_socket(local).map_err(AttemptError::Bind)?;
    match tokio::time::timeout(limit, socket.connect(remote)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(AttemptError::Connect(e.to_string())),
        Err(_) => Err(AttemptError::Connect(format!(
            "no answer within {} ms",
            limit.as_millis()
        ))),
    }
}

enum AttemptError {
    Bind(io::Error),
    Connect(String),
}

/// Connects from `local` (the serving address) to `remote` while `remote` does the same towards
/// us: a few bounded attempts, the first as soon as possible. Either side's SYN may be the one
/// that gets through; the kernel merges crossing SYNs into one connection.
pub async fn simultaneous_open(
    local: SocketAddr,
    remote: SocketAddr,
    config: &PunchConfig,
) -> Result<TcpStream, PunchError> {
    let mut last = String::from("no attempt made");
    for attempt in 1..=config.attempts.max(1) {
        match connect_from(local, remote, config.attempt_timeout).await {
            Ok(stream) => {
                debug!("punch: connected {local} -> {remote} on attempt {attempt}");
                return Ok(stream);
            }
            Err(AttemptError::Bind(source)) => return Err(PunchError::Bind { local, source }),
            Err(AttemptError::Connect(e)) => {
                debug!("punch: attempt {attempt} {local} -> {remote}: {e}");
                last = e;
            }
        }
        if attempt < config.attempts {
            tokio::time::sleep(config.retry_delay).await;
        }
    }
    Err(PunchError::Exhausted {
        local,
        remote,
        attempts: config.attempts.max(1),
        last,
    })
}

/// The target side: answers punch notices by connecting back from the serving port and handing
/// each connection to `serve` (the same handler accepted connections get). Answers run
/// concurrently up to [`PunchConfig::max_concurrent_answers`].
#[derive(Clone)]
pub struct PunchAnswerer {
    local: SocketAddr,
    config: PunchConfig,
    slots: Arc<Semaphore>,
}

impl PunchAnswerer {
    /// `local` is the address the serving listener is bound to.
    pub fn new(local: SocketAddr, config: PunchConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_concurrent_answers.max(1)));
        Self {
            local,
            config,
            slots,
        }
    }

    /// Starts connecting to `from` in the background; `serve` gets the stream when the punch
    /// succeeds. A notice beyond the concurrency limit is dropped with a warning rather than
    /// queued (the requester sends a new flag 8 if it still wants us); returns whether the
    /// notice was taken.
    pub fn answer<F>(&self, file: &str, from: SocketAddr, serve: F) -> bool
    where
        F: FnOnce(TcpStream) + Send + 'static,
    {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            warn!(
                "punch: ignoring notice for {file} from {from}: {} answers already running",
                self.config.max_concurrent_answers
            );
            return false;
        };
        let local = self.local;
        let config = self.config.clone();
        let file = file.to_owned();
        tokio::spawn(async move {
            let _permit = permit;
            info!("punch: {from} asks for {file}; connecting from {local}");
            match simultaneous_open(local, from, &config).await {
                Ok(stream) => {
                    info!("punch: connected to {from} for {file}");
                    serve(stream)
                }
                // The requester's SYN may already have reached our listener, which then owns the
                // one connection this 4-tuple can carry; our own attempts fail and that is fine.
                Err(e) => {
                    info!("punch: answer to {from} for {file} ended without a connection: {e}")
                }
            }
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn quick() -> PunchConfig {
        PunchConfig {
            direct_timeout: Duration::from_secs(2),
            attempts: 3,
            attempt_timeout: Duration::from_secs(2),
            retry_delay: Duration::from_millis(50),
            max_concurrent_answers: 2,
        }
    }

    /// A free loopback address (its socket is closed again).
    fn free_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        l.local_addr().expect("local addr")
    }

    // Crossing SYNs cannot be staged on loopback (a SYN to a port nobody holds is refused at
    // once, never dropped); the NAT lab (scripts/nat-lab.sh) proves simultaneous open through
    // real NAT routers. Here: the retry loop and the port sharing it relies on.

    #[tokio::test]
    async fn attempts_continue_until_the_other_side_shows_up() {
        let (local, remote) = (free_addr(), free_addr());
        let mut cfg = quick();
        cfg.attempts = 40;
        cfg.retry_delay = Duration::from_millis(100);
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let listener = TcpListener::bind(remote).await.unwrap();
            let (mut conn, from) = listener.accept().await.unwrap();
            conn.write_all(b"late").await.unwrap();
            from
        });
        let mut stream = simultaneous_open(local, remote, &cfg)
            .await
            .expect("connects once the target listens");
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"late");
        assert_eq!(
            late.await.unwrap(),
            local,
            "the connection comes from the fixed local port"
        );
    }

    #[tokio::test]
    async fn outgoing_socket_shares_the_port_of_a_live_listener() {
        let serving = reusable_tcp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let local = serving.local_addr().unwrap();
        let _listener: TcpListener = serving.listen(16).unwrap();
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let cfg = quick();
        let (out, accepted) =
            tokio::join!(simultaneous_open(local, target_addr, &cfg), target.accept());
        assert_eq!(
            out.expect("connect from serving port")
                .local_addr()
                .unwrap(),
            local
        );
        assert_eq!(
            accepted.unwrap().1,
            local,
            "the target sees the serving port as source"
        );
    }

    #[tokio::test]
    async fn unreachable_target_fails_after_the_configured_attempts() {
        // A bound but not listening socket refuses connections at once: every attempt fails.
        let closed = free_addr();
        let err = simultaneous_open(free_addr(), closed, &quick())
            .await
            .expect_err("nobody listens");
        let text = err.to_string();
        assert!(
            matches!(err, PunchError::Exhausted { attempts: 3, .. }),
            "{text}"
        );
        assert!(text.contains(&closed.to_string()), "{text}");
    }

    #[tokio::test]
    async fn answerer_hands_the_punched_connection_to_the_serve_handler() {
        let requester = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let requester_addr = requester.local_addr().unwrap();
        let answerer = PunchAnswerer::new(free_addr(), quick());
        let (tx, rx) = tokio::sync::oneshot::channel();
        answerer.answer("f.bin", requester_addr, move |mut stream| {
            tokio::spawn(async move {
                stream.write_all(b"served").await.unwrap();
                let _ = tx.send(());
            });
        });
        let (mut conn, _) = requester.accept().await.unwrap();
        let mut buf = [0u8; 6];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"served");
        rx.await.unwrap();
    }

    #[tokio::test]
    async fn answers_beyond_the_limit_are_dropped_not_queued() {
        // Refused targets with many attempts keep both slots busy for seconds.
        let mut cfg = quick();
        cfg.attempts = 50;
        cfg.retry_delay = Duration::from_millis(100);
        let answerer = PunchAnswerer::new(free_addr(), cfg);
        assert!(answerer.answer("f.bin", free_addr(), |_| {}));
        assert!(answerer.answer("f.bin", free_addr(), |_| {}));
        assert!(
            !answerer.answer("f.bin", free_addr(), |_| {}),
            "third notice must be dropped"
        );
    }

    /// A stand-in tracker that answers the first flag 8 it receives with `answer` and reports
    /// the request it saw.
    async fn scripted_tracker(
        answer: fn(Option<u32>) -> tracker::proto::Response,
    ) -> (SocketAddr, tokio::task::JoinHandle<tracker::proto::Request>) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            let request = tracker::proto::Request::parse(&buf[..n]).expect("a valid request");
            socket
                .send_to(answer(request.tid).encode().as_bytes(), from)
                .await
                .unwrap();
            request
        });
        (addr, task)
    }

    async fn dialer(
        tracker_addr: SocketAddr,
        cfg: PunchConfig,
        stun: Vec<String>,
    ) -> (Dialer, SocketAddr, Arc<Rendezvous>) {
        let client = TrackerClient::bind(tracker_addr, tracker::ClientConfig::default())
            .await
            .unwrap();
        let local = free_addr();
        let me: SocketAddr = "192.0.2.7:6881".parse().unwrap();
        // borrow() keeps returning the last value after the sender is gone.
        let (_, rx) = watch::channel(me);
        let rendezvous = Arc::new(Rendezvous::default());
        let dialer = Dialer::new(Arc::new(client), local, rx, OwnNat::Unknown, cfg)
            .with_rendezvous(rendezvous.clone())
            .with_stun(stun);
        (dialer, local, rendezvous)
    }

    #[tokio::test]
    async fn dialer_connects_directly_when_it_can_without_asking_the_tracker() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tracker_addr, asked) = scripted_tracker(|tid| {
            tracker::proto::Response::new(
                tid,
                tracker::proto::ResponseKind::Ok(tracker::proto::Ack::Punch),
            )
        })
        .await;
        let (dialer, _, _) = dialer(tracker_addr, quick(), vec![]).await;
        let file = FileName::new("f.bin").unwrap();
        let stream = dialer
            .connect(&file, target.local_addr().unwrap())
            .await
            .expect("direct");
        assert_eq!(stream.peer_addr().unwrap(), target.local_addr().unwrap());
        assert!(!asked.is_finished(), "no flag 8 for a reachable peer");
        asked.abort();
    }

    #[tokio::test]
    async fn dialer_sends_flag_8_then_connects_from_its_serving_port() {
        let target_addr = free_addr();
        let (tracker_addr, asked) = scripted_tracker(|tid| {
            tracker::proto::Response::new(
                tid,
                tracker::proto::ResponseKind::Ok(tracker::proto::Ack::Punch),
            )
        })
        .await;
        let mut cfg = quick();
        cfg.attempts = 40;
        cfg.retry_delay = Duration::from_millis(100);
        let (dialer, local, _) = dialer(tracker_addr, cfg, vec![]).await;
        // The target "answers the notice" by starting to listen once it has seen flag 8.
        let target = tokio::spawn(async move {
            let request = asked.await.unwrap();
            let listener = TcpListener::bind(target_addr).await.unwrap();
            let (_conn, from) = listener.accept().await.unwrap();
            (request, from)
        });
        let file = FileName::new("f.bin").unwrap();
        dialer.connect(&file, target_addr).await.expect("punched");
        let (request, from) = target.await.unwrap();
        assert_eq!(from, local, "punch attempts come from the serving port");
        match request.kind {
            tracker::proto::RequestKind::Punch { file, target, me } => {
                assert_eq!(file.as_str(), "f.bin");
                assert_eq!(target, target_addr);
                assert_eq!(
                    me,
                    "192.0.2.7:6881".parse().unwrap(),
                    "flag 8 carries the announced address"
                );
            }
            other => panic!("expected flag 8, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn dialer_stops_at_once_when_the_tracker_refuses_to_relay() {
        let (tracker_addr, _asked) = scripted_tracker(|tid| {
            tracker::proto::Response::error(
                tid,
                tracker::proto::ErrorCode::PeerNotFound,
                "no such peer",
            )
        })
        .await;
        let mut cfg = quick();
        cfg.attempts = 1000;
        let (dialer, _, _) = dialer(tracker_addr, cfg, vec![]).await;
        let file = FileName::new("f.bin").unwrap();
        let err = dialer
            .connect(&file, free_addr())
            .await
            .expect_err("refused");
        assert!(matches!(err, DialError::Signal { .. }), "{err}");
        assert!(err.to_string().contains("PEER_NOT_FOUND"), "{err}");
    }

    fn punch_ok(tid: Option<u32>) -> tracker::proto::Response {
        tracker::proto::Response::new(
            tid,
            tracker::proto::ResponseKind::Ok(tracker::proto::Ack::Punch),
        )
    }

    /// A STUN server on loopback answering Binding requests with the requester's address.
    async fn loopback_stun() -> SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if let Some(answer) = stun_client::responder::answer_binding(&buf[..n], from) {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn failed_punch_says_what_stun_tells_about_our_nat() {
        let (tracker_addr, _asked) = scripted_tracker(punch_ok).await;
        let mut cfg = quick();
        cfg.attempts = 2;
        // On loopback STUN reports our own address: "not behind a NAT".
        let (dialer, _, _) =
            dialer(tracker_addr, cfg, vec![loopback_stun().await.to_string()]).await;
        let file = FileName::new("f.bin").unwrap();
        let err = dialer
            .connect(&file, free_addr())
            .await
            .expect_err("nobody there");
        assert!(
            matches!(
                err,
                DialError::Punch {
                    nat: OwnNat::NoNat,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("not behind a NAT"), "{err}");
    }

    #[tokio::test]
    async fn failed_punch_without_stun_says_the_nat_type_is_unknown() {
        let (tracker_addr, _asked) = scripted_tracker(punch_ok).await;
        let mut cfg = quick();
        cfg.attempts = 1;
        let (dialer, _, _) = dialer(tracker_addr, cfg, vec![]).await;
        let file = FileName::new("f.bin").unwrap();
        let err = dialer
            .connect(&file, free_addr())
            .await
            .expect_err("nobody there");
        assert!(err.to_string().contains("NAT type is unknown"), "{err}");
    }

    #[tokio::test]
    async fn target_connecting_back_from_another_port_reaches_the_waiting_punch() {
        // The target (as behind a symmetric NAT) never answers at the address it announced but
        // connects back from elsewhere to our listener, which offers the connection to the
        // rendezvous first.
        let (tracker_addr, asked) = scripted_tracker(punch_ok).await;
        let announced_target = free_addr();
        let mut cfg = quick();
        cfg.attempts = 40;
        cfg.retry_delay = Duration::from_millis(100);
        let (dialer, local, rendezvous) = dialer(tracker_addr, cfg, vec![]).await;
        let listener = reusable_tcp_socket(local).unwrap().listen(16).unwrap();
        let server = tokio::spawn(async move {
            let (stream, from) = listener.accept().await.unwrap();
            assert!(
                rendezvous.claim(stream, from).is_none(),
                "claimed by the punch"
            );
        });
        let target = tokio::spawn(async move {
            asked.await.unwrap();
            let mut conn = TcpStream::connect(local).await.unwrap();
            conn.write_all(b"back").await.unwrap();
            conn.local_addr().unwrap()
        });
        let file = FileName::new("f.bin").unwrap();
        let mut stream = dialer
            .connect(&file, announced_target)
            .await
            .expect("reverse connection");
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"back");
        assert_eq!(stream.peer_addr().unwrap(), target.await.unwrap());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn connections_nobody_waits_for_go_back_to_the_server() {
        let rendezvous = Rendezvous::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A punch that gave up: its receiver is gone.
        drop(rendezvous.expect(addr.ip()));
        let (_client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (stream, from) = accepted.unwrap();
        assert!(rendezvous.claim(stream, from).is_some());
    }
}

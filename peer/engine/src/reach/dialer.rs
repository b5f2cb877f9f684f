//! The requester's side (protocol.txt §4.3): every way to a peer, cheapest first and raced in
//! the manner of Happy Eyeballs (RFC 8305) and ICE: a plain connect at once; hole punching
//! through the tracker a moment later, or at once when the plain connect fails, while the plain
//! one is still allowed to win; and the reverse connection the target opens back to our
//! listener, taken by the rendezvous. A peer listed at a relayed address (the IP of a TURN
//! server the tracker hands out, §5) is asked through the tracker first, so that it permits our
//! IP on its allocation, then connected to like any other.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use log::info;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{watch, OnceCell};
use tokio::time::Instant;
use tracker_proto::{ClientError, FileName, TrackerClient};

use super::own_nat::OwnNat;
use super::relay::RelayState;
use super::rendezvous::Rendezvous;
use super::simultaneous::{simultaneous_open, PunchConfig, PunchError};
use crate::metrics::{metrics, DialOutcome};

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
    #[error(
        "{target} is a relayed address (a TURN server's) and every connection to it was closed \
         at once ({attempts} attempts, last: {last}): the peer holding it did not permit us, or \
         its allocation is gone"
    )]
    Relayed {
        target: SocketAddr,
        attempts: u32,
        last: String,
    },
}

/// How long the plain connect runs alone before punching starts beside it (Happy Eyeballs'
/// "connection attempt delay"): a reachable peer answers well within it.
const HEAD_START: Duration = Duration::from_millis(250);

/// Connects to a relayed address: before the holder permitted us, the TURN server accepts the
/// connection and closes it at once (RFC 6062 §5.3), so a connection still open this long
/// after a connect (on top of twice the connect's own round trip) is a real one.
const RELAY_SETTLE: Duration = Duration::from_millis(100);
/// Connects to a relayed address before giving up, with doubling pauses from 100 ms.
const RELAY_ATTEMPTS: u32 = 6;

/// How a connection was made, for the log (and the NAT lab's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    Punched,
    Reverse,
    /// Through a TURN relay: the target's (we connected to its relayed address) or ours (it
    /// connected to ours).
    Relayed,
}

impl Path {
    fn describe(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Punched => "punched (simultaneous open)",
            Path::Reverse => "reverse (it connected back to our listener)",
            Path::Relayed => "relayed (through a TURN server)",
        }
    }

    fn outcome(self) -> DialOutcome {
        match self {
            Path::Direct => DialOutcome::Direct,
            Path::Punched => DialOutcome::Punched,
            Path::Reverse => DialOutcome::Reverse,
            Path::Relayed => DialOutcome::Relayed,
        }
    }
}

/// The downloader's way to a peer (protocol.txt §4.3).
pub struct Dialer {
    tracker: Arc<TrackerClient>,
    local: SocketAddr,
    announce: watch::Receiver<SocketAddr>,
    rendezvous: Arc<Rendezvous>,
    relay: Arc<RelayState>,
    stun: Vec<String>,
    nat: OnceCell<OwnNat>,
    /// IPs of relayed addresses (those of the TURN server the tracker hands out), learned from
    /// the tracker once (flag 10).
    relay_ips: OnceCell<HashSet<IpAddr>>,
    config: PunchConfig,
    /// Peers a direct connect did not reach: the next connection to them (a download opens
    /// one for the manifest, then one per fetch) punches at once instead of waiting out
    /// `direct_timeout` again.
    filtered: Mutex<HashSet<SocketAddr>>,
}

impl Dialer {
    /// `local` is the serving listener's address (punch attempts start from it); `announce` is
    /// the address this peer announces (the public mapping of `local` once STUN knows it, or
    /// our relayed address), which goes into flag 8 so the target knows where to connect.
    /// `nat` is what is known of our NAT; when `Unknown`, the servers of [`Dialer::with_stun`]
    /// are asked when a punch fails.
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
            relay: Arc::default(),
            stun: Vec::new(),
            nat: known,
            relay_ips: OnceCell::new(),
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

    /// The relay our server holds (`Node::outlet.relay`): while it is active, a target is
    /// permitted on it before it is asked to connect back to our (relayed) address.
    pub fn with_relay(mut self, relay: Arc<RelayState>) -> Self {
        self.relay = relay;
        self
    }

    /// STUN servers (`HOST:PORT`) asked for our NAT type when a punch fails, to say why.
    pub fn with_stun(mut self, servers: Vec<String>) -> Self {
        self.stun = servers;
        self
    }

    fn remembered_filtered(&self, target: SocketAddr) -> bool {
        self.filtered.lock().contains(&target)
    }

    async fn own_nat(&self) -> OwnNat {
        *self.nat.get_or_init(|| OwnNat::probe(&self.stun)).await
    }

    /// Whether `target` is a relayed address; asks the tracker once (bounded: a tracker that
    /// does not answer means no relays are known).
    async fn is_relayed(&self, target: SocketAddr) -> bool {
        let ips = self
            .relay_ips
            .get_or_init(|| async {
                match tokio::time::timeout(Duration::from_secs(3), self.tracker.relay_offer()).await
                {
                    Ok(Ok(Some(offer))) => offer.relay_ips.into_iter().collect(),
                    Ok(Ok(None)) => HashSet::new(),
                    Ok(Err(e)) => {
                        log::debug!("the tracker names no relays ({e})");
                        HashSet::new()
                    }
                    Err(_) => HashSet::new(),
                }
            })
            .await;
        ips.contains(&target.ip().to_canonical())
    }

    /// A TCP connection to `target`, a peer of `file`'s swarm, on which this peer is the client.
    pub async fn connect(
        &self,
        file: &FileName,
        target: SocketAddr,
    ) -> Result<TcpStream, DialError> {
        let started = Instant::now();
        let dialed = if self.is_relayed(target).await {
            self.connect_relayed(file, target)
                .await
                .map(|s| (s, Path::Relayed))
        } else {
            self.race(file, target).await
        };
        let (stream, path) = match dialed {
            Ok(connected) => connected,
            Err(e) => {
                metrics().dialed(DialOutcome::Failed);
                return Err(e);
            }
        };
        metrics().dialed(path.outcome());
        info!(
            "{target}: connected for {file} via {} in {} ms ({:?} -> {:?})",
            path.describe(),
            started.elapsed().as_millis(),
            stream.local_addr(),
            stream.peer_addr()
        );
        Ok(stream)
    }

    /// A relayed target: flag 8 first, so the holder permits our IP (the tracker fills in our
    /// source IP for the unspecified address), then plain connects until one stays open.
    async fn connect_relayed(
        &self,
        file: &FileName,
        target: SocketAddr,
    ) -> Result<TcpStream, DialError> {
        let me = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), self.local.port());
        info!("{target}: a relayed address; asking its holder to permit us");
        if let Err(source) = self.tracker.punch(file, target, me).await {
            return Err(DialError::Signal {
                target,
                direct: "not tried: relayed addresses need a permission first".into(),
                source,
            });
        }
        let mut pause = Duration::from_millis(100);
        let mut last = String::new();
        for attempt in 1..=RELAY_ATTEMPTS {
            match connect_and_settle(target, self.config.direct_timeout).await {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    log::debug!("{target}: relayed connect {attempt}: {e}");
                    last = e.to_string();
                }
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        Err(DialError::Relayed {
            target,
            attempts: RELAY_ATTEMPTS,
            last,
        })
    }

    /// The plain connect raced against punching (with the reverse connection).
    async fn race(
        &self,
        file: &FileName,
        target: SocketAddr,
    ) -> Result<(TcpStream, Path), DialError> {
        let skip_direct = self.remembered_filtered(target);
        let direct = async {
            if skip_direct {
                return Err("skipped, it failed before".to_owned());
            }
            match tokio::time::timeout(self.config.direct_timeout, TcpStream::connect(target)).await
            {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {} ms",
                    self.config.direct_timeout.as_millis()
                )),
            }
        };
        tokio::pin!(direct);
        let head_start = tokio::time::sleep(if skip_direct {
            Duration::ZERO
        } else {
            HEAD_START
        });
        tokio::pin!(head_start);
        let mut direct_error = None;
        // Phase one: the plain connect alone, until it wins, fails, or its head start is over.
        tokio::select! {
            result = &mut direct => match result {
                Ok(stream) => return Ok((stream, Path::Direct)),
                Err(e) => direct_error = Some(e),
            },
            _ = &mut head_start => {}
        }
        // Phase two: punching, with the plain connect still in the race until it ends.
        // A relay still being allocated is waited for a moment: asking the target to connect
        // back to our unreachable STUN address would only waste its attempts.
        let relay = self.relay.settled(Duration::from_secs(3)).await;
        let me = match &relay {
            Some(relay) => relay.relayed,
            None => *self.announce.borrow(),
        };
        if let Some(relay) = relay {
            // We are relayed: the target's connection back goes to our relayed address, which
            // lets in only the IPs we permit.
            if let Err(e) = relay.permits.permit(vec![target.ip()]).await {
                log::warn!("TURN {}: permission for {target}: {e}", relay.server);
            }
        }
        info!(
            "{target}: punching from {} (announced as {me}) for {file}{}",
            self.local,
            direct_error.as_ref().map_or(String::new(), |e| format!(
                "; direct connection failed ({e})"
            ))
        );
        metrics().punch_attempts.inc();
        let inbound = self.rendezvous.expect(target.ip());
        tokio::pin!(inbound);
        // Our SYN leaves before the tracker relays the request, so the target's SYN finds this
        // socket (same address pair) rather than our listener (protocol.txt §4.3 step 2).
        let punching = simultaneous_open(self.local, target, &self.config);
        tokio::pin!(punching);
        let signal = self.tracker.punch(file, target, me);
        tokio::pin!(signal);
        let mut signalled = false;
        let outcome = loop {
            tokio::select! {
                result = &mut direct, if direct_error.is_none() => match result {
                    Ok(stream) => return Ok((stream, Path::Direct)),
                    Err(e) => {
                        self.filtered.lock().insert(target);
                        direct_error = Some(e);
                    }
                },
                result = &mut punching => break result.map(|s| (s, Path::Punched)),
                Ok(stream) = &mut inbound => {
                    let relayed = stream.peer_addr().is_ok_and(|p| p.ip() != target.ip());
                    break Ok((stream, if relayed { Path::Relayed } else { Path::Reverse }));
                }
                result = &mut signal, if !signalled => {
                    signalled = true;
                    if let Err(source) = result {
                        let direct = direct_error.clone().unwrap_or_else(|| "still trying".into());
                        return Err(DialError::Signal { target, direct, source });
                    }
                }
            }
        };
        self.filtered.lock().insert(target);
        let direct = direct_error.unwrap_or_else(|| "no answer yet".into());
        match outcome {
            Ok(connected) => Ok(connected),
            Err(source) => Err(DialError::Punch {
                direct,
                source,
                nat: self.own_nat().await,
            }),
        }
    }
}

/// Connects, then waits for the far end to close at once (see [`RELAY_SETTLE`]).
async fn connect_and_settle(target: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let started = Instant::now();
    let stream = match tokio::time::timeout(limit, TcpStream::connect(target)).await {
        Ok(connected) => connected?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer")),
    };
    let settle = RELAY_SETTLE + started.elapsed() * 2;
    let mut probe = [0u8; 1];
    match tokio::time::timeout(settle, stream.peek(&mut probe)).await {
        Ok(Ok(0)) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "closed by the TURN server at once",
        )),
        Ok(Err(e)) => Err(e),
        // Silence (the peer protocol's server speaks only when spoken to), or early bytes.
        Ok(Ok(_)) | Err(_) => Ok(stream),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{free_addr, quick};
    use super::*;
    use std::time::Duration;
    use stun::reusable_tcp_socket;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A stand-in tracker that offers no relay (flag 10), answers the first other request it
    /// receives with `answer` and reports that request.
    async fn scripted_tracker(
        answer: fn(Option<u32>) -> tracker_proto::Response,
    ) -> (SocketAddr, tokio::task::JoinHandle<tracker_proto::Request>) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let (n, from) = socket.recv_from(&mut buf).await.unwrap();
                let request = tracker_proto::Request::parse(&buf[..n]).expect("a valid request");
                let reply = match request.kind {
                    tracker_proto::RequestKind::RelayOffer => tracker_proto::Response::new(
                        request.tid,
                        tracker_proto::ResponseKind::Relay(None),
                    ),
                    _ => answer(request.tid),
                };
                socket
                    .send_to(reply.encode().as_bytes(), from)
                    .await
                    .unwrap();
                if request.kind != tracker_proto::RequestKind::RelayOffer {
                    return request;
                }
            }
        });
        (addr, task)
    }

    async fn dialer(
        tracker_addr: SocketAddr,
        cfg: PunchConfig,
        stun: Vec<String>,
    ) -> (Dialer, SocketAddr, Arc<Rendezvous>) {
        let client = TrackerClient::bind(tracker_addr, tracker_proto::ClientConfig::default())
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
            tracker_proto::Response::new(
                tid,
                tracker_proto::ResponseKind::Ok(tracker_proto::Ack::Punch),
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
            tracker_proto::Response::new(
                tid,
                tracker_proto::ResponseKind::Ok(tracker_proto::Ack::Punch),
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
            tracker_proto::RequestKind::Punch { file, target, me } => {
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
            tracker_proto::Response::error(
                tid,
                tracker_proto::ErrorCode::PeerNotFound,
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

    fn punch_ok(tid: Option<u32>) -> tracker_proto::Response {
        tracker_proto::Response::new(
            tid,
            tracker_proto::ResponseKind::Ok(tracker_proto::Ack::Punch),
        )
    }

    /// A STUN server on loopback answering Binding requests with the requester's address.
    async fn loopback_stun() -> SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if let Some(answer) = stun::responder::answer_binding(&buf[..n], from) {
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
}

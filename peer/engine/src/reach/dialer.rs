//! The requester's side (protocol.txt §4.3): a plain connect first, then hole punching through
//! the tracker, taking a reverse connection when one arrives.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use log::info;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{watch, OnceCell};
use tracker_proto::{ClientError, FileName, TrackerClient};

use super::own_nat::OwnNat;
use super::rendezvous::Rendezvous;
use super::simultaneous::{simultaneous_open, PunchConfig, PunchError};

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
        self.filtered.lock().contains(&target)
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
        self.filtered.lock().insert(target);
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{free_addr, quick};
    use super::*;
    use std::time::Duration;
    use stun::reusable_tcp_socket;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A stand-in tracker that answers the first flag 8 it receives with `answer` and reports
    /// the request it saw.
    async fn scripted_tracker(
        answer: fn(Option<u32>) -> tracker_proto::Response,
    ) -> (SocketAddr, tokio::task::JoinHandle<tracker_proto::Request>) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            let request = tracker_proto::Request::parse(&buf[..n]).expect("a valid request");
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

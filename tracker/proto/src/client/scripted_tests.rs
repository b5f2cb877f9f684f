//! The failover rules of protocol.txt §6.5 against scripted trackers on loopback: each answers
//! (or not) as its script says and records what it was asked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::UdpSocket;

use super::*;
use crate::{Ack, FileId, Request, Response};

/// What a scripted tracker does with a request: answer with this, or stay silent (`None`).
type Script = fn(&RequestKind) -> Option<ResponseKind>;

struct Scripted {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<RequestKind>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn scripted(script: Script) -> Scripted {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&asked);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(request) = Request::parse(&buf[..n]) else {
                continue;
            };
            log.lock().push(request.kind.clone());
            if let Some(kind) = script(&request.kind) {
                let answer = Response::new(request.tid, kind).encode();
                let _ = socket.send_to(answer.as_bytes(), from).await;
            }
        }
    });
    Scripted { addr, asked, task }
}

impl Scripted {
    fn count(&self, flag: fn(&RequestKind) -> bool) -> usize {
        self.asked.lock().iter().filter(|k| flag(k)).count()
    }
}

fn quick() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_millis(40),
        attempts: 2,
        ..ClientConfig::default()
    }
}

fn client(tiers: &[&[&Scripted]]) -> TrackerClient {
    let tiers = tiers
        .iter()
        .map(|t| t.iter().map(|s| TrackerSpec::Addr(s.addr)).collect())
        .collect();
    TrackerClient::with_tiers(tiers, quick(), Resolver::libc()).unwrap()
}

fn info() -> FileInfo {
    FileInfo::new(FileName::new("f.bin").unwrap(), 10, 2048, FileId([7; 32])).unwrap()
}

fn accepts(kind: &RequestKind) -> Option<ResponseKind> {
    Some(match kind {
        RequestKind::Share { .. } => ResponseKind::Ok(Ack::Share),
        RequestKind::Exit { .. } => ResponseKind::Ok(Ack::Exit),
        RequestKind::Punch { .. } => ResponseKind::Ok(Ack::Punch),
        RequestKind::Heartbeat { .. } => ResponseKind::Alive { files: 1 },
        RequestKind::Query { .. } => ResponseKind::File(FileSummary {
            info: info(),
            seeders: 1,
            leechers: 0,
            stats: None,
        }),
        _ => return None,
    })
}

fn silent(_: &RequestKind) -> Option<ResponseKind> {
    None
}

fn refuses(kind: &RequestKind) -> Option<ResponseKind> {
    let code = match kind {
        RequestKind::Heartbeat { .. } | RequestKind::Punch { .. } => ErrorCode::PeerNotFound,
        _ => ErrorCode::FileNotFound,
    };
    Some(ResponseKind::Error(ErrorReply::new(code, "no")))
}

fn unavailable(_: &RequestKind) -> Option<ResponseKind> {
    Some(ResponseKind::Error(ErrorReply::new(
        ErrorCode::Unavailable,
        "store down",
    )))
}

fn is_share(k: &RequestKind) -> bool {
    matches!(k, RequestKind::Share { .. })
}
fn is_query(k: &RequestKind) -> bool {
    matches!(k, RequestKind::Query { .. })
}
fn is_exit(k: &RequestKind) -> bool {
    matches!(k, RequestKind::Exit { .. })
}

const ME: &str = "127.0.0.1:6881";

#[tokio::test]
async fn announcements_reach_every_tracker_of_the_tier_and_queries_only_the_first() {
    let (a, b) = (scripted(accepts).await, scripted(accepts).await);
    let c = client(&[&[&a, &b]]);
    c.share(&info(), ME.parse().unwrap()).await.unwrap();
    assert_eq!((a.count(is_share), b.count(is_share)), (1, 1));
    c.query(info().name()).await.unwrap();
    assert_eq!((a.count(is_query), b.count(is_query)), (1, 0));
    c.exit(ME.parse().unwrap()).await.unwrap();
    assert_eq!((a.count(is_exit), b.count(is_exit)), (1, 1));
}

#[tokio::test]
async fn a_silent_tracker_is_passed_over_and_the_one_that_answers_moves_to_the_front() {
    let (dead, live) = (scripted(silent).await, scripted(accepts).await);
    let c = client(&[&[&dead, &live]]);
    c.query(info().name()).await.unwrap();
    assert_eq!(live.count(is_query), 1);
    let asked_dead = dead.count(is_query);
    assert_eq!(asked_dead, 2, "both attempts went to the silent one first");
    c.query(info().name()).await.unwrap();
    assert_eq!(
        dead.count(is_query),
        asked_dead,
        "the answering one is asked first now"
    );
    assert_eq!(c.tracker(), live.addr);
}

#[tokio::test]
async fn the_next_tier_is_used_only_when_every_tracker_of_the_first_fails() {
    let (first, second) = (scripted(accepts).await, scripted(accepts).await);
    let c = client(&[&[&first], &[&second]]);
    c.share(&info(), ME.parse().unwrap()).await.unwrap();
    assert_eq!((first.count(is_share), second.count(is_share)), (1, 0));

    let (dead, store_down, backup) = (
        scripted(silent).await,
        scripted(unavailable).await,
        scripted(accepts).await,
    );
    let c = client(&[&[&dead, &store_down], &[&backup]]);
    c.share(&info(), ME.parse().unwrap()).await.unwrap();
    assert_eq!(backup.count(is_share), 1);
    assert_eq!(
        store_down.count(is_share),
        1,
        "1204 is a failure, not an answer"
    );
    // The first tier is left aside now: the next share goes straight to the backup.
    let started = Instant::now();
    c.share(&info(), ME.parse().unwrap()).await.unwrap();
    assert_eq!(backup.count(is_share), 2);
    assert_eq!(store_down.count(is_share), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_refusal_is_an_answer_and_is_not_asked_again_elsewhere() {
    let (no, yes) = (scripted(refuses).await, scripted(accepts).await);
    let c = client(&[&[&no, &yes]]);
    let err = c.query(info().name()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::FileNotFound));
    assert_eq!(yes.count(is_query), 0);
}

#[tokio::test]
async fn a_heartbeat_reports_a_tracker_that_forgot_the_peer() {
    let (alive, forgot) = (scripted(accepts).await, scripted(refuses).await);
    let c = client(&[&[&alive, &forgot]]);
    let err = c.heartbeat(ME.parse().unwrap()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PeerNotFound));
    let c = client(&[&[&alive]]);
    assert_eq!(c.heartbeat(ME.parse().unwrap()).await.unwrap(), 1);
}

#[tokio::test]
async fn a_punch_passes_over_a_tracker_that_does_not_know_the_target() {
    let (unknown, knows) = (scripted(refuses).await, scripted(accepts).await);
    let c = client(&[&[&unknown, &knows]]);
    let target: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    c.punch(info().name(), target, ME.parse().unwrap())
        .await
        .unwrap();
    let is_punch = |k: &RequestKind| matches!(k, RequestKind::Punch { .. });
    assert_eq!((unknown.count(is_punch), knows.count(is_punch)), (1, 1));
}

#[tokio::test]
async fn every_tracker_failing_names_each_of_them() {
    let (a, b) = (scripted(silent).await, scripted(silent).await);
    let c = client(&[&[&a], &[&b]]);
    let err = c.query(info().name()).await.unwrap_err().to_string();
    assert!(
        err.contains(&a.addr.to_string()) && err.contains(&b.addr.to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn a_name_no_dns_server_answers_fails_in_bounded_time() {
    let dns = scripted(silent).await;
    let spec: TrackerSpec = "tracker.example.test:6969".parse().unwrap();
    let c = TrackerClient::with_tiers(vec![vec![spec]], quick(), Resolver::with_server(dns.addr))
        .unwrap();
    let started = Instant::now();
    let err = c.list_files().await.unwrap_err();
    assert!(matches!(err, ClientError::Resolve { .. }), "{err}");
    assert!(
        err.to_string().contains("tracker.example.test:6969"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn no_tracker_at_all_is_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    assert!(matches!(
        TrackerClient::with_tiers(vec![vec![], vec![]], quick(), Resolver::libc()),
        Err(ClientError::NoTrackers)
    ));
}

fn lists_peer(port: u16, kind: &RequestKind) -> Option<ResponseKind> {
    match kind {
        RequestKind::Peers { .. } => Some(ResponseKind::Peers {
            refresh: false,
            file: FileSummary {
                info: info(),
                seeders: 1,
                leechers: 0,
                stats: None,
            },
            intervals: None,
            next: None,
            peers: vec![crate::PeerEntry {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                chunks: crate::PeerChunks::Seeder,
            }],
        }),
        _ => None,
    }
}

#[tokio::test]
async fn a_joining_peer_gets_the_peers_every_tracker_of_the_tier_lists() {
    let (a, b) = (
        scripted(|k| lists_peer(7001, k)).await,
        scripted(|k| lists_peer(7002, k)).await,
    );
    let c = client(&[&[&a, &b]]);
    let swarm = c
        .peers_as(info().name(), ME.parse().unwrap())
        .await
        .unwrap();
    let mut ports: Vec<u16> = swarm.peers.iter().map(|p| p.addr.port()).collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![7001, 7002]);
    // Asked without joining, only the first tracker answers.
    let swarm = c.peers(info().name()).await.unwrap();
    assert_eq!(swarm.peers.len(), 1);
}

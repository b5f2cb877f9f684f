//! The TURN client against coturn on loopback: TCP allocations with long-term and REST-API
//! credentials, permissions, peers connecting to the relayed address, refresh past the
//! lifetime, release, and the refusals a server can answer with.

mod coturn_server;

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coturn_server::{loopback, Coturn};
use stun::turn::{Credentials, TcpAllocation, TurnConfig, TurnError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const USER: &str = "alice";
const PASS: &str = "wonderland";

async fn long_term_server(extra: &[&str]) -> Coturn {
    let user = format!("{USER}:{PASS}");
    let mut args = vec!["--lt-cred-mech", "--realm", "p2p.test", "--user", &user];
    args.extend_from_slice(extra);
    Coturn::turn(&args).await
}

fn alice() -> Option<Credentials> {
    Some(Credentials::new(USER, PASS))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A peer connects to the relayed address: the holder gets the connection and both directions
/// carry bytes unchanged.
async fn relay_round_trip(allocation: &mut TcpAllocation) {
    let relayed = allocation.relayed();
    let mut peer = TcpStream::connect(relayed)
        .await
        .expect("connect to relayed");
    peer.write_all(b"hello holder").await.unwrap();
    let mut conn = timeout(Duration::from_secs(10), allocation.accept())
        .await
        .expect("a connection within 10 s")
        .expect("allocation alive");
    assert_eq!(conn.peer.ip(), loopback());
    assert_eq!(conn.peer.port(), peer.local_addr().unwrap().port());
    let mut buf = [0u8; 12];
    conn.stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello holder");
    conn.stream.write_all(b"hello peer").await.unwrap();
    let mut buf = [0u8; 10];
    peer.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello peer");
}

#[tokio::test]
async fn tcp_allocation_with_long_term_credentials_relays_a_peer() {
    let coturn = long_term_server(&[]).await;
    let mut allocation = TcpAllocation::allocate(coturn.primary, alice(), TurnConfig::default())
        .await
        .expect("allocate");
    assert_eq!(allocation.relayed().ip(), loopback());
    assert_ne!(allocation.relayed().port(), coturn.primary.port());
    assert_eq!(allocation.mapped().map(|m| m.ip()), Some(loopback()));
    allocation
        .permits()
        .permit(vec![loopback()])
        .await
        .expect("permission");
    relay_round_trip(&mut allocation).await;
    // Several peers at once, each on its own data connection.
    let relayed = allocation.relayed();
    let mut peers = Vec::new();
    for i in 0..3u8 {
        let mut p = TcpStream::connect(relayed).await.unwrap();
        p.write_all(&[i; 4]).await.unwrap();
        peers.push(p);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut c = timeout(Duration::from_secs(10), allocation.accept())
            .await
            .unwrap()
            .unwrap();
        let mut buf = [0u8; 4];
        c.stream.read_exact(&mut buf).await.unwrap();
        seen.push(buf[0]);
    }
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2]);
    allocation.release().await;
}

#[tokio::test]
async fn a_peer_without_permission_is_turned_away() {
    let coturn = long_term_server(&[]).await;
    let mut allocation = TcpAllocation::allocate(coturn.primary, alice(), TurnConfig::default())
        .await
        .unwrap();
    // coturn may refuse the connection outright (a reset) or accept and close it.
    if let Ok(mut peer) = TcpStream::connect(allocation.relayed()).await {
        let mut buf = [0u8; 1];
        let read = timeout(Duration::from_secs(5), peer.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the server closes a connection nobody permitted: {read:?}"
        );
    }
    assert!(
        timeout(Duration::from_millis(500), allocation.accept())
            .await
            .is_err(),
        "no ConnectionAttempt for it"
    );
}

#[tokio::test]
async fn wrong_password_and_missing_credentials_are_unauthorized() {
    let coturn = long_term_server(&[]).await;
    let wrong = Some(Credentials::new(USER, "not the password"));
    let err = TcpAllocation::allocate(coturn.primary, wrong, TurnConfig::default())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, TurnError::Unauthorized { .. }), "{err}");
    assert_eq!(err.code(), Some(401));
    let err = TcpAllocation::allocate(coturn.primary, None, TurnConfig::default())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, TurnError::Unauthorized { .. }), "{err}");
}

#[tokio::test]
async fn rest_api_credentials_from_a_shared_secret() {
    let coturn = Coturn::turn(&[
        "--use-auth-secret",
        "--static-auth-secret",
        "s3cret",
        "--realm",
        "p2p.test",
    ])
    .await;
    let good = Credentials::rest_api("s3cret", "peer-1", unix_now() + 3600);
    let mut allocation = TcpAllocation::allocate(coturn.primary, Some(good), TurnConfig::default())
        .await
        .expect("allocate with REST credentials");
    allocation.permits().permit(vec![loopback()]).await.unwrap();
    relay_round_trip(&mut allocation).await;

    let expired = Credentials::rest_api("s3cret", "peer-1", unix_now() - 10);
    let err = TcpAllocation::allocate(coturn.primary, Some(expired), TurnConfig::default())
        .await
        .err()
        .expect("expired credentials refused");
    assert!(matches!(err, TurnError::Unauthorized { .. }), "{err}");
    let forged = Credentials::rest_api("guessed", "peer-1", unix_now() + 3600);
    let err = TcpAllocation::allocate(coturn.primary, Some(forged), TurnConfig::default())
        .await
        .err()
        .expect("wrong secret refused");
    assert!(matches!(err, TurnError::Unauthorized { .. }), "{err}");
}

#[tokio::test]
async fn allocation_and_permissions_outlive_their_lifetimes_through_refreshes() {
    // coturn grants allocations at least 600 s and does not expire TCP permissions on time,
    // so the renewals are checked in its (verbose) log: every one processed with success.
    let coturn = long_term_server(&["--verbose"]).await;
    let config = TurnConfig {
        permission_refresh: Duration::from_secs(2),
        keepalive: Duration::from_secs(1),
        ..TurnConfig::default()
    };
    let mut allocation = TcpAllocation::allocate(coturn.primary, alice(), config)
        .await
        .unwrap();
    allocation.permits().permit(vec![loopback()]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    relay_round_trip(&mut allocation).await;
    let log = coturn.log();
    let succeeded = |method: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("incoming packet {method} processed, success")))
            .count()
    };
    assert!(succeeded("REFRESH") >= 5, "refreshes every second:\n{log}");
    assert!(
        succeeded("CREATE_PERMISSION") >= 3,
        "permission renewals every 2 s:\n{log}"
    );
    // The only error is the 401 the first, unsigned Allocate gets to learn realm and nonce.
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("processed, error") && !l.contains("user <>"))
        .collect();
    assert!(refused.is_empty(), "no signed request refused: {refused:?}");
}

#[tokio::test]
async fn released_allocations_take_no_more_peers() {
    let coturn = long_term_server(&[]).await;
    let allocation = TcpAllocation::allocate(coturn.primary, alice(), TurnConfig::default())
        .await
        .unwrap();
    allocation.permits().permit(vec![loopback()]).await.unwrap();
    let relayed = allocation.relayed();
    allocation.release().await;
    // coturn closes the relayed port on its own time after the release is confirmed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let connected = timeout(Duration::from_secs(1), TcpStream::connect(relayed)).await;
        if !matches!(connected, Ok(Ok(_))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relayed port is still open 3 s after release"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn quota_refusal_is_typed() {
    let coturn = long_term_server(&["--user-quota", "1"]).await;
    let _first = TcpAllocation::allocate(coturn.primary, alice(), TurnConfig::default())
        .await
        .unwrap();
    let err = TcpAllocation::allocate(coturn.primary, alice(), TurnConfig::default())
        .await
        .err()
        .expect("second allocation over quota");
    assert!(matches!(err, TurnError::Quota { .. }), "{err}");
    assert_eq!(err.code(), Some(486));
}

#[tokio::test]
async fn forbidden_peer_ip_is_a_403() {
    let coturn = long_term_server(&["--denied-peer-ip", "192.0.2.0-192.0.2.255"]).await;
    let allocation = TcpAllocation::allocate(coturn.primary, alice(), TurnConfig::default())
        .await
        .unwrap();
    let denied: IpAddr = "192.0.2.9".parse().unwrap();
    let err = allocation
        .permits()
        .permit(vec![denied])
        .await
        .expect_err("denied peer");
    assert_eq!(err.code(), Some(403), "{err}");
    // The allocation survives a refused permission.
    allocation.permits().permit(vec![loopback()]).await.unwrap();
}

#[tokio::test]
async fn server_going_away_ends_the_allocation_with_an_error() {
    let mut coturn = long_term_server(&[]).await;
    let mut allocation = TcpAllocation::allocate(coturn.primary, alice(), TurnConfig::default())
        .await
        .unwrap();
    coturn.kill();
    let ended = timeout(Duration::from_secs(10), allocation.accept())
        .await
        .expect("noticed within 10 s");
    let err = ended.expect_err("no connection from a dead server");
    assert!(
        matches!(*err, TurnError::Closed { .. } | TurnError::Io { .. }),
        "{err}"
    );
    assert!(allocation.accept().await.is_err(), "and it stays ended");
}

#[tokio::test]
async fn unreachable_and_tcp_relay_less_servers_are_clear_errors() {
    let dead = coturn_server::free_port(&[loopback()]);
    let err = TcpAllocation::allocate((loopback(), dead).into(), alice(), TurnConfig::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, TurnError::Connect { .. }), "{err}");

    let coturn = long_term_server(&["--no-tcp-relay"]).await;
    let err = TcpAllocation::allocate(coturn.primary, alice(), TurnConfig::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(442), "{err}");
    assert!(err.to_string().contains("--no-tcp-relay"), "{err}");
}

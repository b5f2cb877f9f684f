//! Rows of silent peers expire after the TTL; heartbeats keep a peer listed.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tracker_proto::ErrorCode;
use tracker_proto::{ClientConfig, TrackerClient};

#[tokio::test]
async fn silent_peers_expire_and_heartbeats_keep_peers_alive() {
    let tracker = TrackerProcess::start(&["--ttl", "3"]);
    let cfg = ClientConfig {
        timeout: Duration::from_millis(300),
        attempts: 6,
        ..ClientConfig::default()
    };
    let silent = TrackerClient::bind(tracker.addr, cfg.clone())
        .await
        .unwrap();
    // A different key: the same key would make both one peer (rows move to the latest address).
    let alive = TrackerClient::bind(
        tracker.addr,
        ClientConfig {
            key: tracker_proto::PeerKey::random(),
            ..cfg.clone()
        },
    )
    .await
    .unwrap();
    let f = file("ttl.bin", 2);
    let silent_addr: SocketAddr = "127.0.0.1:7501".parse().unwrap();
    let alive_addr: SocketAddr = "127.0.0.1:7502".parse().unwrap();
    silent.share(&f, silent_addr).await.unwrap();
    alive.share(&f, alive_addr).await.unwrap();
    let other = file("only-silent.bin", 1);
    // The silent peer's last request: its rows must outlive this moment by the TTL.
    let start = Instant::now();
    silent.share(&other, silent_addr).await.unwrap();

    loop {
        assert_eq!(alive.heartbeat(alive_addr).await.unwrap(), 1);
        let peers: Vec<SocketAddr> = alive
            .peers(f.name())
            .await
            .unwrap()
            .peers
            .iter()
            .map(|p| p.addr)
            .collect();
        assert!(
            peers.contains(&alive_addr),
            "heartbeating peer dropped: {peers:?}"
        );
        if peers == [alive_addr] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "silent peer never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // At least the TTL passed before the silent peer went.
    assert!(start.elapsed() >= Duration::from_secs(3));
    // Its other file had no one else: it left the catalogue (once the sweep ran).
    let gone = async {
        loop {
            match alive.query(other.name()).await {
                Err(e) if e.code() == Some(ErrorCode::FileNotFound) => return,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    };
    tokio::time::timeout(PATIENCE, gone)
        .await
        .expect("file of an expired peer is dropped");
    // The silent peer learns it was forgotten from its next heartbeat.
    assert_eq!(
        silent.heartbeat(silent_addr).await.unwrap_err().code(),
        Some(ErrorCode::PeerNotFound)
    );
}

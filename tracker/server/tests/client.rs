//! Every flag through `TrackerClient` against the real tracker binary.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tracker_proto::{ChunkRanges, ErrorCode, PeerChunks, PeerKey};
use tracker_proto::{ClientConfig, TrackerClient};

fn config() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_millis(500),
        attempts: 5,
        ..ClientConfig::default()
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn every_flag_through_the_client() {
    let tracker = TrackerProcess::start(&[]);
    let seeder = TrackerClient::bind(tracker.addr, config()).await.unwrap();
    let leecher = TrackerClient::bind(tracker.addr, config()).await.unwrap();
    let movie = file("movie.mkv", 100);
    let seeder_addr = addr("127.0.0.1:7001");
    let leecher_addr = addr("127.0.0.1:7002");

    // Flag 4, then flag 3 (reported as 0.0.0.0: the tracker fills in the source IP).
    seeder.share(&movie, seeder_addr).await.unwrap();
    let chunks: ChunkRanges = "0-9,20".parse().unwrap();
    leecher
        .report_chunks(movie.name(), &chunks, addr("0.0.0.0:7002"))
        .await
        .unwrap();

    // Flags 1 and 2.
    for swarm in [
        leecher.peers(movie.name()).await.unwrap(),
        leecher.refresh(movie.name()).await.unwrap(),
    ] {
        assert_eq!(swarm.file.info, movie);
        assert_eq!((swarm.file.seeders, swarm.file.leechers), (1, 1));
        assert_eq!(swarm.peers.len(), 2);
        assert_eq!(swarm.peers[0].addr, seeder_addr);
        assert_eq!(swarm.peers[0].chunks, PeerChunks::Seeder);
        assert_eq!(swarm.peers[1].addr, leecher_addr);
        assert_eq!(swarm.peers[1].chunks, PeerChunks::Ranges(chunks.clone()));
    }

    // Flags 6 and 7.
    let listed = leecher.list_files().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].chunks,
            listed[0].seeders,
            listed[0].leechers
        ),
        ("movie.mkv", 100, 1, 1)
    );
    let summary = leecher.query(movie.name()).await.unwrap();
    assert_eq!(summary.info, movie);

    // Flag 9.
    assert_eq!(seeder.heartbeat(seeder_addr).await.unwrap(), 1);

    // Flag 8: the seeder hears about the leecher's punch on its tracker socket.
    let mut notices = seeder.punch_notices();
    leecher
        .punch(movie.name(), seeder_addr, addr("0.0.0.0:7002"))
        .await
        .unwrap();
    let notice = tokio::time::timeout(PATIENCE, notices.recv())
        .await
        .expect("PUNCH arrives")
        .unwrap();
    assert_eq!(notice.file, *movie.name());
    assert_eq!(notice.from, leecher_addr);

    // The leecher completes the file and becomes a seeder.
    leecher
        .report_chunks(movie.name(), &ChunkRanges::full(100).unwrap(), leecher_addr)
        .await
        .unwrap();
    assert_eq!(leecher.query(movie.name()).await.unwrap().seeders, 2);

    // Flag 5, one file then everything.
    leecher.leave(movie.name(), leecher_addr).await.unwrap();
    assert_eq!(leecher.peers(movie.name()).await.unwrap().peers.len(), 1);
    seeder.exit(seeder_addr).await.unwrap();
    let gone = leecher.query(movie.name()).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::FileNotFound));
    assert!(leecher.list_files().await.unwrap().is_empty());
}

#[tokio::test]
async fn tracker_errors_are_typed() {
    let tracker = TrackerProcess::start(&[]);
    let client = TrackerClient::bind(tracker.addr, config()).await.unwrap();
    let me = addr("127.0.0.1:7100");
    let f = file("a.bin", 10);
    assert_eq!(
        client.peers(f.name()).await.unwrap_err().code(),
        Some(ErrorCode::FileNotFound)
    );
    assert_eq!(
        client.heartbeat(me).await.unwrap_err().code(),
        Some(ErrorCode::PeerNotFound)
    );
    client.share(&f, me).await.unwrap();
    let other = file("a.bin", 11);
    assert_eq!(
        client.share(&other, me).await.unwrap_err().code(),
        Some(ErrorCode::HashMismatch)
    );
    let out_of_range: ChunkRanges = "10".parse().unwrap();
    assert_eq!(
        client
            .report_chunks(f.name(), &out_of_range, me)
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::ChunkNotAvailable)
    );
    assert_eq!(
        client
            .punch(f.name(), addr("127.0.0.1:9"), me)
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::PeerNotFound)
    );
    assert_eq!(
        client
            .share(&f, addr("127.0.0.2:7100"))
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::Forbidden)
    );
}

#[tokio::test]
async fn a_silent_tracker_times_out_with_a_clear_error() {
    let silent = udp("127.0.0.1").await;
    let cfg = ClientConfig {
        timeout: Duration::from_millis(50),
        attempts: 2,
        ..ClientConfig::default()
    };
    let client = TrackerClient::bind(silent.local_addr().unwrap(), cfg)
        .await
        .unwrap();
    let err = client.list_files().await.unwrap_err();
    assert!(
        err.to_string().contains("did not answer after 2 attempts"),
        "{err}"
    );
}

#[tokio::test]
async fn a_key_moves_rows_to_a_new_address() {
    let tracker = TrackerProcess::start(&[]);
    let key = PeerKey::random();
    let cfg = ClientConfig { key, ..config() };
    let before = TrackerClient::bind(tracker.addr, cfg.clone())
        .await
        .unwrap();
    let f = file("moving.iso", 4);
    before.share(&f, addr("127.0.0.1:7200")).await.unwrap();
    before
        .report_chunks(
            &name("moving.iso"),
            &"0".parse().unwrap(),
            addr("127.0.0.1:7200"),
        )
        .await
        .unwrap();
    // The same peer, now behind another address (a NAT mapping change): same key.
    let after = TrackerClient::from_socket(udp("127.0.0.2").await, tracker.addr, cfg.clone());
    assert_eq!(after.heartbeat(addr("0.0.0.0:7300")).await.unwrap(), 1);
    let swarm = after.peers(f.name()).await.unwrap();
    let addrs: Vec<SocketAddr> = swarm.peers.iter().map(|p| p.addr).collect();
    assert_eq!(addrs, vec![addr("127.0.0.2:7300")]);
    // The old address no longer exists for the tracker; another key cannot pull the rows back.
    let thief = TrackerClient::bind(tracker.addr, config()).await.unwrap();
    assert_eq!(
        thief
            .heartbeat(addr("127.0.0.1:7200"))
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::PeerNotFound)
    );
    assert_eq!(
        after.peers(f.name()).await.unwrap().peers[0].addr,
        addr("127.0.0.2:7300")
    );
}

#[tokio::test]
async fn long_listings_are_paged_and_followed() {
    let tracker = TrackerProcess::start(&["--max-response-bytes", "800"]);
    let client = TrackerClient::bind(tracker.addr, config()).await.unwrap();
    for i in 0..150 {
        client
            .share(
                &file(&format!("file-{i:04}.dat"), 3),
                addr("127.0.0.1:7400"),
            )
            .await
            .unwrap();
    }
    let listed = client.list_files().await.unwrap();
    assert_eq!(listed.len(), 150);
    assert!(listed
        .iter()
        .enumerate()
        .all(|(i, f)| f.name.as_str() == format!("file-{i:04}.dat")));

    let f = file("big.swarm", 8);
    for port in 0..120u16 {
        let peer = TrackerClient::bind(tracker.addr, config()).await.unwrap();
        if port == 0 {
            peer.share(&f, addr("127.0.0.1:8000")).await.unwrap();
        } else {
            peer.report_chunks(
                f.name(),
                &"1-2".parse().unwrap(),
                addr(&format!("127.0.0.1:{}", 8000 + port)),
            )
            .await
            .unwrap();
        }
    }
    let swarm = client.peers(f.name()).await.unwrap();
    assert_eq!(swarm.peers.len(), 120);
    assert_eq!((swarm.file.seeders, swarm.file.leechers), (1, 119));
}

/// A peer's one-shot commands (same key, another socket) do not divert its PUNCH notices.
#[tokio::test]
async fn punch_notices_reach_the_announcing_socket() {
    let tracker = TrackerProcess::start(&[]);
    let key = PeerKey::random();
    let daemon = TrackerClient::bind(tracker.addr, ClientConfig { key, ..config() })
        .await
        .unwrap();
    let f = file("p.bin", 1);
    let daemon_addr = addr("127.0.0.1:7600");
    daemon.share(&f, daemon_addr).await.unwrap();
    let mut notices = daemon.punch_notices();
    let one_shot = TrackerClient::bind(tracker.addr, ClientConfig { key, ..config() })
        .await
        .unwrap();
    assert_eq!(one_shot.list_files().await.unwrap().len(), 1);
    let other = TrackerClient::bind(tracker.addr, config()).await.unwrap();
    other
        .punch(f.name(), daemon_addr, addr("127.0.0.1:7601"))
        .await
        .unwrap();
    let notice = tokio::time::timeout(PATIENCE, notices.recv())
        .await
        .expect("PUNCH arrives")
        .unwrap();
    assert_eq!(notice.from, addr("127.0.0.1:7601"));
}

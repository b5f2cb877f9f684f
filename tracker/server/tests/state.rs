//! `tracker --state FILE`: a tracker stopped (SIGTERM) or killed (-9) and started again with
//! the same file still knows every swarm, row and key; a damaged file stops it at start.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tracker_proto::{
    ChunkRanges, ClientConfig, ErrorCode, ListedFile, PeerEntry, PeerKey, TrackerClient,
};

struct Peer {
    key: PeerKey,
    addr: SocketAddr,
}

impl Peer {
    fn new(port: u16) -> Peer {
        Peer {
            key: PeerKey::random(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    async fn client(&self, tracker: &TrackerProcess) -> TrackerClient {
        let cfg = ClientConfig {
            key: self.key,
            ..ClientConfig::default()
        };
        TrackerClient::bind(tracker.addr, cfg)
            .await
            .expect("bind a client")
    }
}

/// What an onlooker sees of the tracker: the catalogue and each swarm.
async fn view(tracker: &TrackerProcess) -> (Vec<ListedFile>, Vec<Vec<PeerEntry>>) {
    let c = TrackerClient::bind(tracker.addr, ClientConfig::default())
        .await
        .unwrap();
    let files = c.list_files().await.unwrap();
    let mut swarms = Vec::new();
    for f in &files {
        let mut peers = c.peers(&f.name).await.unwrap().peers;
        peers.sort_by_key(|p| p.addr);
        swarms.push(peers);
    }
    (files, swarms)
}

#[tokio::test]
async fn a_restarted_tracker_loses_nothing() {
    let dir = TempDir::new("state");
    let state = dir.file("tracker.state");
    let args = ["--state", state.as_str()];
    let (seeder, partial, joiner) = (Peer::new(7601), Peer::new(7602), Peer::new(7603));
    let movie = file("movie.bin", 300);
    let notes = file("notes.txt", 1);

    let mut first = TrackerProcess::start(&args);
    let s = seeder.client(&first).await;
    s.share(&movie, seeder.addr).await.unwrap();
    s.share(&notes, seeder.addr).await.unwrap();
    let chunks: ChunkRanges = "0-9,64,200-255".parse().unwrap();
    partial
        .client(&first)
        .await
        .report_chunks(movie.name(), &chunks, partial.addr)
        .await
        .unwrap();
    joiner
        .client(&first)
        .await
        .peers_as(movie.name(), joiner.addr)
        .await
        .unwrap();
    let before = view(&first).await;
    assert_eq!(before.0.len(), 2);
    assert_eq!(before.1[0].len(), 3, "{:?}", before.1);
    assert!(first.terminate(), "tracker failed on SIGTERM");

    let mut second = TrackerProcess::start(&args);
    assert_eq!(view(&second).await, before, "lost state across SIGTERM");
    // The peers are still known under their keys: a heartbeat finds them, another key may not
    // take their address.
    let p = partial.client(&second).await;
    assert_eq!(p.heartbeat(partial.addr).await.unwrap(), 1);
    let impostor = TrackerClient::bind(second.addr, ClientConfig::default())
        .await
        .unwrap();
    let e = impostor.heartbeat(partial.addr).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
    // kill -9 now: the save the tracker makes right after loading has it all.
    assert!(second.alive());
    drop(second);

    let third = TrackerProcess::start(&args);
    assert_eq!(view(&third).await, before, "lost state across kill -9");
}

#[tokio::test]
async fn a_killed_tracker_keeps_what_its_periodic_save_wrote() {
    let dir = TempDir::new("state-periodic");
    let state = dir.file("tracker.state");
    let args = ["--state", state.as_str(), "--state-interval", "1"];
    let seeder = Peer::new(7611);
    let first = TrackerProcess::start(&args);
    let movie = file("late.bin", 5);
    seeder
        .client(&first)
        .await
        .share(&movie, seeder.addr)
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(&state)
        .unwrap_or_default()
        .contains("late.bin")
    {
        assert!(
            Instant::now() < deadline,
            "no periodic save within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(first); // kill -9
    let second = TrackerProcess::start(&args);
    let (files, swarms) = view(&second).await;
    assert_eq!(files.len(), 1);
    assert_eq!(swarms[0].len(), 1);
    assert_eq!(swarms[0][0].addr, seeder.addr);
}

#[tokio::test]
async fn a_damaged_state_file_stops_the_tracker_with_a_clear_error() {
    let dir = TempDir::new("state-bad");
    let state = dir.file("tracker.state");
    let mut t = TrackerProcess::start(&["--state", state.as_str()]);
    let seeder = Peer::new(7621);
    seeder
        .client(&t)
        .await
        .share(&file("a.bin", 3), seeder.addr)
        .await
        .unwrap();
    assert!(t.terminate());
    let good = std::fs::read(&state).unwrap();

    let truncated = dir.file("truncated.state");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let edited = dir.file("edited.state");
    let text = String::from_utf8(good.clone()).unwrap();
    std::fs::write(&edited, text.replace("a.bin", "b.bin")).unwrap();
    let foreign = dir.file("foreign.state");
    std::fs::write(&foreign, "[settings]\nport = 80\n").unwrap();

    for (path, says) in [
        (&truncated, "truncated"),
        (&edited, "checksum"),
        (&foreign, "not a tracker state file"),
    ] {
        let (stdout, stderr) = start_failing(&["--state", path]);
        assert!(
            stderr.contains(path.as_str()) && stderr.contains(says),
            "{path}: {stderr}"
        );
        assert!(!stdout.contains("listening"), "{path}: {stdout}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // A refused file is left as it was, for its owner to look at.
    assert_eq!(std::fs::read(&truncated).unwrap(), &good[..good.len() / 2]);
    // A directory that cannot hold the file fails at start, not at the first save.
    let nowhere = dir.file("missing-dir/tracker.state");
    let (_, stderr) = start_failing(&["--state", &nowhere]);
    assert!(stderr.contains("cannot save the state"), "{stderr}");
}

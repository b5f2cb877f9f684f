//! Transfers between real processes on 127.0.0.1: a tracker, seeders and leechers.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

const MIB: usize = 1 << 20;

#[test]
fn three_seeders_one_leecher_get_a_byte_identical_file() {
    let t = TempDir::new("swarm");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("big.bin"), 16 * MIB, 1);
    let _seeders: Vec<_> = (0..3)
        .map(|i| start_seeder(tracker, &t.sub(&format!("s{i}")), &t.join("big.bin"), &[]))
        .collect();
    let leech = t.sub("leech");
    let out = run(peer_cmd(tracker, &leech).args(["get", "big.bin"]));
    assert!(out.status.success(), "get failed:\n{}", stderr(&out));
    assert!(
        fs::read(leech.join("big.bin")).unwrap() == data,
        "downloaded file differs"
    );
    assert!(!leech.join("big.bin.part").exists());
    let (fetched, peers, resumed) = summary(&stdout(&out), "big.bin");
    assert_eq!(resumed, 0);
    // Endgame duplicates (the last chunks asked of two peers) may count twice.
    assert!(fetched >= 8192, "only {fetched} chunks fetched");
    assert!(peers >= 2, "only {peers} of 3 seeders used");
}

#[test]
fn download_survives_a_seeder_killed_mid_transfer() {
    let t = TempDir::new("kill-seeder");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("big.bin"), 16 * MIB, 2);
    // Slow seeders (1 MB/s per connection) so the kill lands while chunks are still missing.
    let mut seeders: Vec<_> = (0..3)
        .map(|i| {
            start_seeder(
                tracker,
                &t.sub(&format!("s{i}")),
                &t.join("big.bin"),
                &["--upload-rate", "1000000"],
            )
        })
        .collect();
    let leech = t.sub("leech");
    let mut getter = Proc::spawn(
        "leecher",
        peer_cmd(tracker, &leech).args(["get", "big.bin"]),
    );
    wait_until("first recorded chunks", || {
        recorded_chunks(&leech, "big.bin") > 0
    });
    seeders[0].0.kill();
    let at_kill = recorded_chunks(&leech, "big.bin");
    assert!(
        at_kill < 8192,
        "download finished before the seeder was killed"
    );
    let status = wait_exit(&mut getter);
    assert!(status.success(), "leecher failed after a seeder died");
    assert!(
        fs::read(leech.join("big.bin")).unwrap() == data,
        "downloaded file differs"
    );
}

#[test]
fn two_files_at_once_each_from_several_peers() {
    let t = TempDir::new("two-files");
    let (_tracker, tracker) = start_tracker();
    let a = random_file(&t.join("a.bin"), 6 * MIB, 3);
    let b = random_file(&t.join("b.bin"), 5 * MIB + 123, 4);
    let mut daemons = Vec::new();
    for i in 0..2 {
        let dir = t.sub(&format!("d{i}"));
        fs::copy(t.join("a.bin"), dir.join("a.bin")).unwrap();
        fs::copy(t.join("b.bin"), dir.join("b.bin")).unwrap();
        let mut cmd = peer_cmd(tracker, &dir);
        cmd.args(["--upload-rate", "4000000", "daemon"]);
        let mut p = Proc::spawn("daemon", &mut cmd);
        p.wait_line("peer listening on ");
        daemons.push(p);
    }
    wait_until("both daemons listed for both files", || {
        ["a.bin", "b.bin"]
            .iter()
            .all(|f| seeders_of(tracker, f) == 2)
    });
    let leech = t.sub("leech");
    let out = run(peer_cmd(tracker, &leech).args(["get", "a.bin", "b.bin"]));
    assert!(out.status.success(), "get failed:\n{}", stderr(&out));
    assert!(fs::read(leech.join("a.bin")).unwrap() == a, "a.bin differs");
    assert!(fs::read(leech.join("b.bin")).unwrap() == b, "b.bin differs");
    for f in ["a.bin", "b.bin"] {
        let (_, peers, _) = summary(&stdout(&out), f);
        assert_eq!(peers, 2, "{f} did not come from both daemons");
    }
}

#[test]
fn a_leecher_serves_its_verified_chunks_while_it_downloads() {
    let t = TempDir::new("leecher-source");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("big.bin"), 8 * MIB, 10);
    let (_seeder, seeder) = start_seeder(
        tracker,
        &t.sub("s"),
        &t.join("big.bin"),
        &["--upload-rate", "800000"],
    );
    let first = t.sub("first");
    let mut early = Proc::spawn(
        "first leecher",
        peer_cmd(tracker, &first).args(["get", "big.bin"]),
    );
    let early_addr: std::net::SocketAddr = early.wait_line("peer listening on ").parse().unwrap();
    wait_until("the first leecher listed with chunks", || {
        peers_of(tracker, "big.bin")
            .iter()
            .any(|(a, seeder)| *a == early_addr && !seeder)
    });
    let second = t.sub("second");
    let out = run(peer_cmd(tracker, &second).args(["get", "big.bin"]));
    assert!(out.status.success(), "second get failed:\n{}", stderr(&out));
    assert!(
        fs::read(second.join("big.bin")).unwrap() == data,
        "second download differs"
    );
    let (_, peers, _) = summary(&stdout(&out), "big.bin");
    assert_eq!(
        peers, 2,
        "the second leecher did not get chunks from the first (seeder {seeder})"
    );
    wait_exit(&mut early);
    assert!(
        fs::read(first.join("big.bin")).unwrap() == data,
        "first download differs"
    );
}

#[test]
fn share_through_a_running_daemon_then_download() {
    let t = TempDir::new("via-daemon");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("doc.bin"), 300_000, 11);
    let dir = t.sub("d");
    let mut daemon = Proc::spawn("daemon", peer_cmd(tracker, &dir).arg("daemon"));
    let at = daemon.wait_line("peer listening on ");
    wait_until("the daemon's state file", || {
        dir.join(".peer").join("daemon").exists()
    });
    let out = run(peer_cmd(tracker, &dir).arg("share").arg(t.join("doc.bin")));
    assert!(out.status.success(), "share failed:\n{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("through the daemon at {at}")),
        "{}",
        stdout(&out)
    );
    // Shared in place: recorded in the share dir, not copied there.
    assert!(!dir.join("doc.bin").exists(), "the file was copied");
    assert!(dir.join(".peer/doc.bin.share").exists(), "no share record");
    let leech = t.sub("leech");
    let out = run(peer_cmd(tracker, &leech).args(["get", "doc.bin"]));
    assert!(out.status.success(), "get failed:\n{}", stderr(&out));
    assert!(
        fs::read(leech.join("doc.bin")).unwrap() == data,
        "downloaded file differs"
    );
    assert!(
        daemon.terminate().success(),
        "daemon did not exit cleanly on SIGTERM"
    );
}

fn wait_exit(p: &mut Proc) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(s)) = p.child.try_wait() {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} did not finish",
            p.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seeders the tracker lists for `file` (flag 7), 0 when it does not know the file.
fn seeders_of(tracker: std::net::SocketAddr, file: &str) -> u32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = tracker_proto::TrackerClient::bind(tracker, Default::default())
            .await
            .unwrap();
        match client
            .query(&tracker_proto::FileName::new(file).unwrap())
            .await
        {
            Ok(summary) => summary.seeders,
            Err(_) => 0,
        }
    })
}

/// Peers the tracker lists for `file` (flag 1) with their seeder mark.
fn peers_of(tracker: std::net::SocketAddr, file: &str) -> Vec<(std::net::SocketAddr, bool)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = tracker_proto::TrackerClient::bind(tracker, Default::default())
            .await
            .unwrap();
        match client
            .peers(&tracker_proto::FileName::new(file).unwrap())
            .await
        {
            Ok(swarm) => swarm
                .peers
                .iter()
                .map(|p| {
                    (
                        p.addr,
                        matches!(p.chunks, tracker_proto::PeerChunks::Seeder),
                    )
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    })
}

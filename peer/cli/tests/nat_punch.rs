//! Hole-punching signalling between real processes on 127.0.0.1: flag 8 to the tracker, the
//! PUNCH notice to the seeder's daemon, the seeder connecting back from its serving port, and the
//! downloader's listener handing that connection to the waiting punch.
//!
//! Loopback has no NAT, so a seeder that announces a port where nothing listens stands in for a
//! peer behind a symmetric NAT (its announced mapping leads nowhere). The NAT lab
//! (`scripts/nat-lab.sh test`, run by `scripts/test.sh` as root) checks the same code through
//! real NAT routers: simultaneous open through port-restricted cones and the whole matrix.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

const MIB: usize = 1 << 20;

/// A loopback port nobody listens on (bound once, then released).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local address").port()
}

#[test]
fn seeder_unreachable_at_its_announced_address_serves_through_a_punch_request() {
    let t = TempDir::new("punch-reverse");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("f.bin"), 2 * MIB, 61);
    let announced = format!("127.0.0.1:{}", dead_port());
    let (_seeder, _) = start_seeder(
        tracker,
        &t.sub("seed"),
        &t.join("f.bin"),
        &["--announce", &announced],
    );
    let leech = t.sub("leech");
    let out = run(peer_cmd(tracker, &leech).args(["get", "f.bin"]));
    let log = stderr(&out);
    assert!(out.status.success(), "get failed:\n{log}");
    assert!(
        fs::read(leech.join("f.bin")).unwrap() == data,
        "downloaded file differs"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("{announced}: punching from"))
                && l.contains("direct connection failed")),
        "the direct connect was tried first:\n{log}"
    );
    assert!(
        log.contains("via reverse (it connected back to our listener)"),
        "the connection came from the seeder answering the PUNCH notice:\n{log}"
    );
}

#[test]
fn unreachable_seeder_ends_in_a_bounded_clear_error() {
    let t = TempDir::new("punch-fail");
    let (_tracker, tracker) = start_tracker();
    random_file(&t.join("f.bin"), MIB / 4, 62);
    let announced = format!("127.0.0.1:{}", dead_port());
    let (mut seeder, _) = start_seeder(
        tracker,
        &t.sub("seed"),
        &t.join("f.bin"),
        &["--announce", &announced],
    );
    // Gone without leaving the swarm: the tracker still lists it and relays the punch to a
    // socket nobody reads, so nobody connects back.
    seeder.kill();
    let out = run(peer_cmd(tracker, &t.sub("leech")).args(["get", "f.bin"]));
    let log = stderr(&out);
    assert!(!out.status.success(), "get cannot succeed:\n{log}");
    let error = log
        .lines()
        .find(|l| l.starts_with("error: f.bin"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(error.contains(&announced), "{error}");
    assert!(error.contains("simultaneous-open attempts"), "{error}");
    assert!(
        error.contains("NAT type is unknown"),
        "says what it knows about our NAT: {error}"
    );
}

/// The case the reachability issue opened with: a daemon with default flags, `peer share`
/// beside it, a downloader seconds later. The one-shot share must not take the daemon's PUNCH
/// path (the daemon is unreachable at its announced address, as behind a filtering NAT, so only
/// its answer to the PUNCH can carry the download), and the answer must come at once, not at
/// the next heartbeat 30 s later.
#[test]
fn share_beside_a_daemon_keeps_punches_going_to_the_daemon() {
    let t = TempDir::new("punch-beside-daemon");
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("f.bin"), MIB, 63);
    let seed = t.sub("seed");
    let announced = format!("127.0.0.1:{}", dead_port());
    let mut daemon = Proc::spawn(
        "daemon",
        peer_cmd(tracker, &seed).args(["--announce", &announced, "daemon"]),
    );
    daemon.wait_line("peer listening on ");
    let shared = run(peer_cmd(tracker, &seed).args(["share", t.join("f.bin").to_str().unwrap()]));
    assert!(
        shared.status.success(),
        "share failed:\n{}",
        stderr(&shared)
    );
    assert!(
        stdout(&shared).contains("through the daemon"),
        "{}",
        stdout(&shared)
    );
    let leech = t.sub("leech");
    let started = std::time::Instant::now();
    let out = run(peer_cmd(tracker, &leech).args(["get", "f.bin"]));
    let log = stderr(&out);
    assert!(out.status.success(), "get failed:\n{log}");
    assert!(
        fs::read(leech.join("f.bin")).unwrap() == data,
        "downloaded file differs"
    );
    assert!(
        log.contains("via reverse (it connected back to our listener)"),
        "the daemon answered the PUNCH:\n{log}"
    );
    // Generous for a loaded machine, far below the 30 s heartbeat the old path waited for.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}:\n{log}",
        started.elapsed()
    );
}

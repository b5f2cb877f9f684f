//! The daemon as a user runs it: `peer daemon` against a real tracker, with a STUN server whose
//! answer the test changes (as a NAT that remaps the serving port would), then SIGTERM and
//! `peer exit`, checking what the tracker lists after each step.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{peer_cmd, random_file, run, start_tracker, stdout, wait_until, Proc, TempDir};
use stun::codec::{message_size, HEADER_SIZE};
use stun::responder::answer_binding;

/// A STUN Binding responder over TCP that reports whatever address `mapped` holds instead of
/// the connection's real source: the NAT of the test.
fn fake_stun(mapped: Arc<Mutex<SocketAddr>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake STUN");
    let addr = listener.local_addr().expect("fake STUN address");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mapped = *mapped.lock().unwrap_or_else(|p| p.into_inner());
            std::thread::spawn(move || {
                let mut message = vec![0u8; HEADER_SIZE];
                if conn.read_exact(&mut message).is_err() {
                    return;
                }
                let Ok(size) = message_size(&message) else {
                    return;
                };
                message.resize(size, 0);
                if conn.read_exact(&mut message[HEADER_SIZE..]).is_err() {
                    return;
                }
                if let Some(answer) = answer_binding(&message, mapped) {
                    let _ = conn.write_all(&answer);
                }
            });
        }
    });
    addr
}

/// The serving addresses the tracker lists for `name` (flag 2, through `peer peers --json`).
fn listed(tracker: SocketAddr, dir: &Path, name: &str) -> Vec<String> {
    let out = run(peer_cmd(tracker, dir).args(["--stun", "none", "peers", name, "--json"]));
    if !out.status.success() {
        return Vec::new();
    }
    let value: serde_json::Value =
        serde_json::from_str(stdout(&out).trim()).expect("peers --json is JSON");
    value["peers"]
        .as_array()
        .expect("a peers array")
        .iter()
        .map(|p| p["addr"].as_str().expect("addr").to_owned())
        .collect()
}

#[test]
fn daemon_moves_its_rows_when_the_mapping_changes_and_leaves_on_sigterm() {
    let tmp = TempDir::new("daemon-move");
    let (_tracker, tracker) = start_tracker();
    let (seed_dir, probe_dir) = (tmp.sub("seed"), tmp.sub("probe"));
    random_file(&seed_dir.join("moving.bin"), 50_000, 7);

    // 127.0.0.1 keeps the tracker's rule that rows belong to the datagram's source IP; the
    // ports are ones the NAT of the test invents.
    let first: SocketAddr = "127.0.0.1:41001".parse().unwrap();
    let second: SocketAddr = "127.0.0.1:41002".parse().unwrap();
    let mapped = Arc::new(Mutex::new(first));
    let stun = fake_stun(mapped.clone());

    let mut daemon = Proc::spawn(
        "daemon",
        peer_cmd(tracker, &seed_dir).args([
            "--stun",
            &stun.to_string(),
            "--refresh",
            "1",
            "daemon",
        ]),
    );
    daemon.wait_line("peer listening on ");

    wait_until("the tracker lists the first mapped address", || {
        listed(tracker, &probe_dir, "moving.bin") == [first.to_string()]
    });

    *mapped.lock().unwrap() = second;
    wait_until("the rows move to the new mapped address", || {
        listed(tracker, &probe_dir, "moving.bin") == [second.to_string()]
    });

    let status = daemon.terminate();
    assert!(
        status.success(),
        "daemon exit status after SIGTERM: {status:?}"
    );
    let left = listed(tracker, &probe_dir, "moving.bin");
    assert!(
        left.is_empty(),
        "the tracker still lists {left:?} after SIGTERM"
    );
}

#[test]
fn peer_exit_stops_the_daemon_of_a_directory() {
    let tmp = TempDir::new("daemon-exit");
    let (_tracker, tracker) = start_tracker();
    let (seed_dir, probe_dir) = (tmp.sub("seed"), tmp.sub("probe"));
    random_file(&seed_dir.join("exit.bin"), 10_000, 8);

    let mut daemon = Proc::spawn(
        "daemon",
        peer_cmd(tracker, &seed_dir).args(["--stun", "none", "daemon"]),
    );
    let serving = daemon.wait_line("peer listening on ");
    wait_until("the tracker lists the daemon", || {
        listed(tracker, &probe_dir, "exit.bin") == [serving.clone()]
    });

    let status_out = run(peer_cmd(tracker, &seed_dir).args(["status", "--json"]));
    let status: serde_json::Value =
        serde_json::from_str(stdout(&status_out).trim()).expect("status --json");
    assert_eq!(status["daemon"], serving.as_str(), "{status}");
    assert_eq!(status["files"][0]["name"], "exit.bin", "{status}");
    assert_eq!(status["files"][0]["state"], "seeding", "{status}");

    let second = run(peer_cmd(tracker, &seed_dir).arg("daemon"));
    assert!(
        !second.status.success(),
        "a second daemon started on the same directory"
    );
    assert!(
        common::stderr(&second).contains("already serves"),
        "{}",
        common::stderr(&second)
    );

    let out = run(peer_cmd(tracker, &seed_dir).arg("exit"));
    assert!(
        out.status.success(),
        "peer exit failed: {}",
        common::stderr(&out)
    );
    assert!(
        stdout(&out).contains("stopped the daemon"),
        "{}",
        stdout(&out)
    );
    wait_until("the daemon process ends", || {
        matches!(daemon.child.try_wait(), Ok(Some(_)))
    });
    assert!(
        listed(tracker, &probe_dir, "exit.bin").is_empty(),
        "still listed after peer exit"
    );

    let status_out = run(peer_cmd(tracker, &seed_dir).arg("status"));
    let text = stdout(&status_out);
    assert!(
        text.contains("no daemon serves it") && text.contains("Idle"),
        "{text}"
    );
}

#[test]
fn interrupted_get_leaves_the_swarm_and_keeps_its_verified_chunks() {
    let tmp = TempDir::new("daemon-sigint-get");
    let (_tracker, tracker) = start_tracker();
    let (seed_dir, get_dir, probe_dir) = (tmp.sub("seed"), tmp.sub("get"), tmp.sub("probe"));
    let original = random_file(&tmp.join("slow.bin"), 4 << 20, 9);
    let (_seeder, seeder) = common::start_seeder(
        tracker,
        &seed_dir,
        &tmp.join("slow.bin"),
        &["--upload-rate", "262144"],
    );

    let mut get = Proc::spawn("get", peer_cmd(tracker, &get_dir).args(["get", "slow.bin"]));
    let leecher = get.wait_line("peer listening on ");
    // A downloader is listed from the moment it joins; wait for chunks it has recorded too.
    wait_until("the leecher reports chunks", || {
        common::recorded_chunks(&get_dir, "slow.bin") > 0
            && listed(tracker, &probe_dir, "slow.bin").contains(&leecher)
    });

    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &get.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(interrupted.success());
    wait_until("peer get ends", || {
        matches!(get.child.try_wait(), Ok(Some(_)))
    });
    assert_eq!(
        listed(tracker, &probe_dir, "slow.bin"),
        [seeder.to_string()],
        "the leecher is still listed"
    );
    let kept = common::recorded_chunks(&get_dir, "slow.bin");
    assert!(kept > 0, "no verified chunk was kept");

    // The same command resumes and completes.
    let out = run(peer_cmd(tracker, &get_dir).args(["get", "slow.bin"]));
    assert!(
        out.status.success(),
        "resume failed: {}",
        common::stderr(&out)
    );
    assert_eq!(
        std::fs::read(get_dir.join("slow.bin")).expect("downloaded file"),
        original
    );
}

/// A SIGTERM that arrives right after the startup line, while STUN, port mapping and the relay
/// are still starting, is neither fatal nor lost: the daemon leaves and exits 0. (The window is
/// short on an idle machine, so the test tries several times.)
#[test]
fn sigterm_during_startup_still_leaves_cleanly() {
    let tmp = TempDir::new("daemon-early-sigterm");
    let (_tracker, tracker) = start_tracker();
    let dir = tmp.sub("d");
    random_file(&dir.join("early.bin"), 10_000, 31);
    for attempt in 1..=5 {
        let mut daemon = Proc::spawn("daemon", peer_cmd(tracker, &dir).arg("daemon"));
        daemon.wait_line("peer listening on ");
        let status = daemon.terminate();
        assert!(
            status.success(),
            "attempt {attempt}: daemon ended with {status}"
        );
    }
}

/// Ctrl-C with the tracker gone: the first signal leaves, which waits out the tracker's
/// retries (7.5 s); a second one quits at once, with the shell's code for the signal.
#[test]
fn second_signal_quits_at_once_when_the_tracker_is_gone() {
    let tmp = TempDir::new("daemon-second-signal");
    let (mut tracker_proc, tracker) = start_tracker();
    let dir = tmp.sub("d");
    let file = tmp.path().join("gone.bin");
    random_file(&file, 10_000, 32);
    let mut share = Proc::spawn("share", peer_cmd(tracker, &dir).arg("share").arg(&file));
    share.wait_line("magnet: ");
    tracker_proc.kill();

    share.signal("-INT");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        share.try_wait(),
        None,
        "the first signal should still be waiting for the dead tracker"
    );
    let asked = Instant::now();
    share.signal("-INT");
    let status = share.wait();
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "a second SIGINT took {:?} to end the share",
        asked.elapsed()
    );
    assert_eq!(status.code(), Some(128 + 2), "{status}");
}

//! The `tracker` command line: help, bad options and bind failures give clear messages.

use std::process::Command;

fn tracker(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tracker"))
        .args(args)
        .output()
        .expect("run tracker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_explains_every_option() {
    let (ok, out, _) = tracker(&["--help"]);
    assert!(ok);
    for opt in [
        "--bind",
        "--port",
        "--ttl",
        "--trust-ip-field",
        "--max-response-bytes",
        "--require-cookies",
        "--max-files",
        "--max-peers",
        "--max-peers-per-file",
        "--ip-share",
        "--max-rows",
        "--max-bitfield-mib",
        "--punch-rate",
        "--announce-interval",
        "--min-announce-interval",
        "--stun",
        "--stun-tcp",
        "--workers",
    ] {
        assert!(out.contains(opt), "--help lacks {opt}");
    }
    assert!(out.contains("0.0.0.0:80"));
}

#[test]
fn bad_values_are_refused_with_a_reason() {
    let (ok, _, err) = tracker(&["--bind", "127.0.0.1:0", "--ttl=-1"]);
    assert!(!ok);
    assert!(err.contains("--ttl must be a positive number"), "{err}");
    let (ok, _, err) = tracker(&["--bind", "127.0.0.1:0", "--max-response-bytes", "100"]);
    assert!(!ok);
    assert!(err.contains("--max-response-bytes"), "{err}");
    for share in ["0", "101"] {
        let (ok, _, err) = tracker(&["--bind", "127.0.0.1:0", "--ip-share", share]);
        assert!(!ok);
        assert!(err.contains("--ip-share must be a percentage"), "{err}");
    }
    let (ok, _, err) = tracker(&["--bind", "127.0.0.1:0", "--announce-interval", "0"]);
    assert!(!ok);
    assert!(err.contains("--announce-interval must be between"), "{err}");
    let (ok, _, err) = tracker(&[
        "--bind",
        "127.0.0.1:0",
        "--announce-interval",
        "10",
        "--min-announce-interval",
        "11",
    ]);
    assert!(!ok);
    assert!(
        err.contains("--min-announce-interval must be between"),
        "{err}"
    );
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (ok, out, err) = tracker(&["--bind", "127.0.0.1:80", "--port", &port]);
    assert!(!ok);
    assert!(out.is_empty(), "no startup line on failure: {out}");
    assert!(
        err.contains(&format!("cannot listen on UDP 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn a_second_tracker_cannot_share_the_port() {
    use std::io::{BufRead, BufReader};
    let mut first = Command::new(env!("CARGO_BIN_EXE_tracker"))
        .args(["--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run tracker");
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    let (ok, _, err) = tracker(&["--bind", "127.0.0.1:0", "--port", &port]);
    let _ = first.kill();
    let _ = first.wait();
    assert!(!ok);
    assert!(err.contains("cannot listen on UDP"), "{err}");
}

//! `peer daemon --http`: the metrics and JSON status API of a real daemon, read over real
//! sockets before and after a real transfer; bad routes and methods; a public address refused.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{
    peer_cmd, random_file, run, start_tracker, stderr, stdout, wait_until, Proc, TempDir,
};

/// One HTTP/1.1 request; returns the status code and the body.
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).expect("connect to the HTTP endpoint");
    conn.set_read_timeout(Some(common::PATIENCE)).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line in {head:?}"));
    (status, body.to_owned())
}

fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = request(addr, "GET", path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The value of the sample `name` (with its labels, if any) in a Prometheus text page.
fn sample(page: &str, name: &str) -> u64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{page}"))
}

fn metrics(addr: SocketAddr) -> String {
    let (status, body) = request(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// `peer daemon --http 127.0.0.1:0` on `dir`; returns it and its HTTP address.
fn start_http_daemon(tracker: SocketAddr, dir: &std::path::Path) -> (Proc, SocketAddr) {
    let mut daemon = Proc::spawn(
        "daemon",
        peer_cmd(tracker, dir).args(["daemon", "--http", "127.0.0.1:0"]),
    );
    let http = daemon
        .wait_line("http listening on http://")
        .parse()
        .expect("HTTP address");
    (daemon, http)
}

#[test]
fn figures_follow_a_real_transfer() {
    let tmp = TempDir::new("http-transfer");
    let (_tracker, tracker) = start_tracker();
    let (seed_dir, leech_dir) = (tmp.sub("seed"), tmp.sub("leech"));
    let size = 300_000;
    let data = random_file(&seed_dir.join("watched.bin"), size, 21);

    let mut daemon = Proc::spawn(
        "daemon",
        peer_cmd(tracker, &seed_dir).args(["daemon", "--http", "127.0.0.1:0"]),
    );
    let listen = daemon.wait_line("peer listening on ");
    let http: SocketAddr = daemon
        .wait_line("http listening on http://")
        .parse()
        .expect("HTTP address");

    let status = get_json(http, "/api/status");
    assert_eq!(status["listen"], listen.as_str(), "{status}");
    assert!(status["uptime_secs"].is_u64(), "{status}");
    assert!(status["reachability"].is_string(), "{status}");
    let before = metrics(http);
    assert_eq!(sample(&before, "peer_uploaded_bytes_total"), 0);
    wait_until("the daemon lists its file", || {
        let files = get_json(http, "/api/files");
        files["files"][0]["name"] == "watched.bin"
    });
    let files = get_json(http, "/api/files");
    let file = &files["files"][0];
    assert_eq!(file["size"], size as u64, "{files}");
    assert_eq!(file["complete"], true, "{files}");
    assert_eq!(file["progress"], 1.0, "{files}");
    assert_eq!(file["chunks_have"], file["chunks_total"], "{files}");
    assert_eq!(file["uploaded_bytes"], 0, "{files}");

    wait_until("the tracker lists the file", || {
        run(peer_cmd(tracker, &leech_dir).args(["query", "watched.bin"]))
            .status
            .success()
    });
    let got = run(peer_cmd(tracker, &leech_dir).args(["get", "watched.bin"]));
    assert!(got.status.success(), "get: {}", stderr(&got));
    assert_eq!(std::fs::read(leech_dir.join("watched.bin")).unwrap(), data);

    // Every chunk byte went up once; a re-request after a stall may send a few twice.
    let after = metrics(http);
    let up = sample(&after, "peer_uploaded_bytes_total");
    assert!(
        (size as u64..=size as u64 * 11 / 10).contains(&up),
        "uploaded {up} bytes for a {size}-byte file:\n{after}"
    );
    assert!(
        sample(&after, "peer_connections_accepted_total") >= 1,
        "{after}"
    );
    assert_eq!(
        sample(&after, "peer_connections_refused_total"),
        0,
        "{after}"
    );
    assert_eq!(sample(&after, "peer_chunks_rejected_total"), 0, "{after}");
    let files = get_json(http, "/api/files");
    assert_eq!(
        files["files"][0]["uploaded_bytes"].as_u64(),
        Some(up),
        "{files}"
    );
    let status = get_json(http, "/api/status");
    assert_eq!(status["uploaded_bytes"].as_u64(), Some(up), "{status}");
    // The rate was sampled while the upload ran, or within its window after.
    assert!(status["rate_up"].is_u64(), "{status}");

    let ended = daemon.terminate();
    assert!(ended.success(), "daemon exit status: {ended:?}");
}

#[test]
fn bad_routes_and_methods_get_json_errors() {
    let tmp = TempDir::new("http-routes");
    let (_tracker, tracker) = start_tracker();
    let (_daemon, http) = start_http_daemon(tracker, &tmp.sub("d"));

    for path in ["/", "/api", "/api/files/../status", "/metrics/x", "/%ff%00"] {
        let (status, body) = request(http, "GET", path);
        assert_eq!(status, 404, "{path}: {body}");
        let error: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(error["error"]["code"], 404, "{body}");
        assert!(error["error"]["message"].is_string(), "{body}");
    }
    let (status, body) = request(http, "POST", "/api/status");
    assert_eq!(status, 405, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("JSON 405");
    assert_eq!(error["error"]["code"], 405, "{body}");

    // Garbage instead of HTTP costs a 400 or a closed connection, and the daemon goes on.
    let mut junk = TcpStream::connect(http).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    junk.write_all(b"\x00\x01\x02 not http at all\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = junk.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    get_json(http, "/api/status");
}

/// Clients that connect and send nothing (or stop halfway through a request) cannot keep every
/// connection slot: the daemon ends them after its idle limit, and a real request gets in.
#[test]
fn idle_clients_cannot_hold_every_slot() {
    let tmp = TempDir::new("http-idle");
    let (_tracker, tracker) = start_tracker();
    let (_daemon, http) = start_http_daemon(tracker, &tmp.sub("d"));
    // One more than the daemon's 64 slots; the last stops in the middle of its headers.
    let mut idle: Vec<TcpStream> = (0..65)
        .map(|_| TcpStream::connect(http).expect("connect"))
        .collect();
    idle[64]
        .write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (status, body) = request(http, "GET", "/api/status");
    assert_eq!(status, 200, "{body}");
    for (i, conn) in idle.iter_mut().enumerate() {
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut rest = Vec::new();
        match conn.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "idle connection {i} got an answer"),
            Err(e) => assert_ne!(
                e.kind(),
                std::io::ErrorKind::WouldBlock,
                "idle connection {i} was still open after 60 s"
            ),
        }
    }
}

#[test]
fn a_public_address_is_refused_without_the_flag() {
    let tmp = TempDir::new("http-public");
    let (_tracker, tracker) = start_tracker();
    let dir = tmp.sub("d");
    let out = run(peer_cmd(tracker, &dir).args(["daemon", "--http", "0.0.0.0:0"]));
    assert!(!out.status.success(), "started: {}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--http-public") && err.contains("loopback"),
        "{err}"
    );
    assert!(
        !stdout(&out).contains("peer listening on"),
        "the daemon started before refusing: {}",
        stdout(&out)
    );
}

//! Announce events and swarm figures end to end (protocol.txt §1.2): real `tracker` and `peer`
//! processes with default flags, driven the way a person would, and the tracker asked by hand
//! over UDP as well as through `peer query` / `peer list`.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const SIZE: u64 = 300_000;
const NAME: &str = "movie.bin";

/// `tracker` on an ephemeral loopback port with `extra` flags.
fn tracker_with(extra: &[&str]) -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(
        "tracker",
        Command::new(tracker_bin())
            .args(["--bind", "127.0.0.1:0"])
            .args(extra),
    );
    let addr = p
        .wait_line("tracker listening on ")
        .parse()
        .expect("tracker address");
    (p, addr)
}

/// One request typed by hand, as `nc -u` would send it; the answer's text.
fn ask(tracker: SocketAddr, request: &str) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(request.as_bytes(), tracker).unwrap();
    let mut buf = [0u8; 65536];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The value of `field=` in a flag 7 answer.
fn field(answer: &str, name: &str) -> u64 {
    answer
        .split(' ')
        .find_map(|t| t.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {answer:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name}= is not a number in {answer:?}"))
}

fn query(tracker: SocketAddr) -> String {
    ask(tracker, &format!("REQUEST 7 {NAME}"))
}

fn get(tracker: SocketAddr, dir: &Path) -> String {
    let out = run(peer_cmd(tracker, dir).args(["get", NAME]));
    assert!(out.status.success(), "get failed:\n{}", stderr(&out));
    stdout(&out)
}

#[test]
fn completed_downloads_and_bytes_are_counted_once_and_survive_a_restart() {
    let tmp = TempDir::new("events");
    let state = tmp.join("tracker.state");
    let state_arg = state.to_str().unwrap().to_owned();
    let (mut tracker_proc, tracker) = tracker_with(&["--state", &state_arg]);

    let seed_dir = tmp.sub("seed");
    let content = random_file(&seed_dir.join(NAME), SIZE as usize, 13);
    let (mut seeder, _) = start_daemon(tracker, &seed_dir);
    wait_until("the seeder's announcement", || {
        query(tracker).starts_with("RESPONSE 7 ")
    });
    let fresh = query(tracker);
    assert_eq!(
        (
            field(&fresh, "completed"),
            field(&fresh, "up"),
            field(&fresh, "down")
        ),
        (0, 0, 0),
        "{fresh}"
    );

    // One leecher downloads and goes; another downloads beside its daemon, which stays.
    let leecher_a = tmp.sub("a");
    get(tracker, &leecher_a);
    let leecher_b = tmp.sub("b");
    let (mut daemon_b, _) = start_daemon(tracker, &leecher_b);
    get(tracker, &leecher_b);
    for dir in [&leecher_a, &leecher_b] {
        assert_eq!(std::fs::read(dir.join(NAME)).unwrap(), content);
    }
    let after = query(tracker);
    assert_eq!(field(&after, "completed"), 2, "{after}");
    // Each leecher fetched the whole file once (verified chunk bytes; an endgame duplicate
    // may add a little).
    let down = field(&after, "down");
    assert!((2 * SIZE..3 * SIZE).contains(&down), "{after}");

    // `peer query` and `peer list` show the figures, as text and as JSON.
    let text = stdout(&run(peer_cmd(tracker, &leecher_a).args(["query", NAME])));
    assert!(text.contains("downloads completed 2"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&run(peer_cmd(
        tracker, &leecher_a,
    )
    .args(["query", NAME, "--json"]))))
    .unwrap();
    assert_eq!(json["completed"], 2);
    assert_eq!(json["down"], down);
    let list: serde_json::Value = serde_json::from_str(&stdout(&run(peer_cmd(
        tracker, &leecher_a,
    )
    .args(["list", "--json"]))))
    .unwrap();
    assert_eq!(list["files"][0]["completed"], 2, "{list}");
    let table = stdout(&run(peer_cmd(tracker, &leecher_a).arg("list")));
    assert!(table.contains("Completed"), "{table}");

    // Running the finished download again does not count it again.
    get(tracker, &leecher_a);
    assert_eq!(field(&query(tracker), "completed"), 2);

    // `peer exit` stops the seeder, which tells the tracker what it uploaded (event=stopped).
    let out = run(peer_cmd(tracker, &seed_dir).arg("exit"));
    assert!(out.status.success(), "{}", stderr(&out));
    seeder.terminate();
    let stopped = query(tracker);
    assert!(field(&stopped, "up") >= 2 * SIZE, "{stopped}");
    assert_eq!(field(&stopped, "completed"), 2, "{stopped}");
    assert_eq!(field(&stopped, "down"), down, "{stopped}");

    // A tracker restarted with its state file keeps the figures.
    let before_restart = stopped
        .split(' ')
        .filter(|t| {
            ["completed=", "up=", "down="]
                .iter()
                .any(|f| t.starts_with(f))
        })
        .collect::<Vec<_>>()
        .join(" ");
    assert!(tracker_proc.terminate().success());
    let (mut restarted_proc, restarted) = tracker_with(&["--state", &state_arg]);
    let restored = query(restarted);
    assert!(
        restored.contains(&before_restart),
        "{restored} lacks {before_restart}"
    );

    // Hostile counters, typed by hand: clear errors, and the figures stay right.
    let hostile = [
        (
            format!("REQUEST 3 {NAME} 0 127.0.0.1:9 up=-1"),
            "ERROR 1104 ",
        ),
        (
            format!("REQUEST 3 {NAME} 0 127.0.0.1:9 down=lots"),
            "ERROR 1104 ",
        ),
        (
            format!("REQUEST 3 {NAME} 0 127.0.0.1:9 down=99999999999999999999999"),
            "ERROR 1104 ",
        ),
        (
            format!("REQUEST 3 {NAME} 0 127.0.0.1:9 event=bogus"),
            "ERROR 1110 ",
        ),
        (format!("REQUEST 7 {NAME} up=5"), "ERROR 1103 "),
        (
            format!("REQUEST 3 {NAME} 0 127.0.0.1:9 down=100"),
            "RESPONSE 3 OK",
        ),
        // Backwards without event=started.
        (
            format!("REQUEST 3 {NAME} 0 127.0.0.1:9 down=50"),
            "ERROR 1110 ",
        ),
        (
            format!("REQUEST 3 {NAME} 0 127.0.0.1:9 down=100"),
            "RESPONSE 3 OK",
        ),
        (
            format!("REQUEST 3 {NAME} 0 127.0.0.1:9 event=started down=0"),
            "RESPONSE 3 OK",
        ),
        (
            format!("REQUEST 3 {NAME} 0 127.0.0.1:9 down=20"),
            "RESPONSE 3 OK",
        ),
    ];
    for (request, answer) in &hostile {
        let got = ask(restarted, request);
        assert!(got.starts_with(answer), "{request} answered {got}");
    }
    assert_eq!(field(&query(restarted), "down"), down + 120);

    daemon_b.terminate();
    restarted_proc.terminate();
}

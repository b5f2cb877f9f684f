//! The tracker's part in reaching peers behind NATs, against the real binary: `punch=keep`
//! announcements never take the PUNCH path, flag 10 hands out the TURN server with REST-API
//! credentials, and relayed addresses of that server are accepted in announcements while
//! other foreign addresses stay forbidden.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;

const SECRET: &str = "lab-secret";

fn share(name: &str, addr: &str, key: &str, extra: &str) -> String {
    format!(
        "REQUEST 4 {name} 2 {addr} size=4096 id={} key={key}{extra}",
        id_hex()
    )
}

async fn punch_arrives(socket: &tokio::net::UdpSocket, wait: Duration) -> Option<String> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn one_shot_announcements_with_punch_keep_leave_the_punch_path_alone() {
    let tracker = TrackerProcess::start(&[]);
    let key = "11".repeat(16);
    let daemon = udp("127.0.0.1").await;
    let one_shot = udp("127.0.0.1").await;
    let requester = udp("127.0.0.1").await;
    // A one-shot command shares first, for a daemon that has announced nothing yet: the
    // tracker has no socket to punch to, and says so at once.
    let answer = ask(
        &one_shot,
        tracker.addr,
        &share("a.bin", "127.0.0.1:6881", &key, " punch=keep"),
    )
    .await;
    assert_eq!(answer, "RESPONSE 4 OK");
    let punch = "REQUEST 8 a.bin 127.0.0.1:6881 127.0.0.1:7000";
    assert!(ask(&requester, tracker.addr, punch)
        .await
        .starts_with("ERROR 1001"));
    // The daemon's own heartbeat makes its socket the PUNCH path...
    let beat = format!("REQUEST 9 127.0.0.1:6881 key={key}");
    assert!(ask(&daemon, tracker.addr, &beat)
        .await
        .starts_with("RESPONSE 9 OK"));
    // ...and a later one-shot share and report (punch=keep) do not take it away.
    let answer = ask(
        &one_shot,
        tracker.addr,
        &share("b.bin", "127.0.0.1:6881", &key, " punch=keep"),
    )
    .await;
    assert_eq!(answer, "RESPONSE 4 OK");
    let report = format!("REQUEST 3 b.bin 0 127.0.0.1:6881 key={key} punch=keep");
    assert_eq!(ask(&one_shot, tracker.addr, &report).await, "RESPONSE 3 OK");
    assert_eq!(
        ask(
            &requester,
            tracker.addr,
            "REQUEST 8 b.bin 127.0.0.1:6881 127.0.0.1:7000"
        )
        .await,
        "RESPONSE 8 OK"
    );
    assert_eq!(
        punch_arrives(&daemon, PATIENCE).await.as_deref(),
        Some("PUNCH b.bin 127.0.0.1:7000")
    );
    assert_eq!(
        punch_arrives(&one_shot, Duration::from_millis(300)).await,
        None
    );
    // Without punch=keep an announcement does move the path (the seed behaviour).
    let answer = ask(
        &one_shot,
        tracker.addr,
        &share("c.bin", "127.0.0.1:6881", &key, ""),
    )
    .await;
    assert_eq!(answer, "RESPONSE 4 OK");
    ask(
        &requester,
        tracker.addr,
        "REQUEST 8 c.bin 127.0.0.1:6881 127.0.0.1:7000",
    )
    .await;
    assert!(punch_arrives(&one_shot, PATIENCE).await.is_some());
}

#[tokio::test]
async fn flag_10_hands_out_the_turn_server_with_rest_api_credentials() {
    let tracker = TrackerProcess::start(&[
        "--turn",
        "127.0.0.2:3478",
        "--turn-secret",
        SECRET,
        "--turn-ttl",
        "600",
        "--turn-relay-ip",
        "127.0.0.3",
    ]);
    let socket = udp("127.0.0.1").await;
    let answer = ask(&socket, tracker.addr, "REQUEST 10 tid=3").await;
    let fields: Vec<&str> = answer.split(' ').collect();
    assert_eq!(
        &fields[..3],
        &["RESPONSE", "10", "127.0.0.2:3478"],
        "{answer}"
    );
    let field = |k: &str| {
        fields
            .iter()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {answer}"))
    };
    assert_eq!(field("ttl"), "600");
    assert_eq!(field("relay"), "127.0.0.2,127.0.0.3");
    assert_eq!(field("tid"), "3");
    let user = field("user");
    let (expiry, name) = user.split_once(':').expect("expiry:user");
    let expiry: u64 = expiry.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert!(name.starts_with("peer-"), "{name}");
    // The password is what coturn recomputes from the shared secret.
    let mac = hmac_sha1::hmac_sha1(SECRET.as_bytes(), user.as_bytes());
    assert_eq!(
        field("pass"),
        base64::engine::general_purpose::STANDARD.encode(mac)
    );

    let plain = TrackerProcess::start(&[]);
    assert_eq!(
        ask(&socket, plain.addr, "REQUEST 10").await,
        "RESPONSE 10 none"
    );
}

#[tokio::test]
async fn relayed_addresses_of_the_handed_out_turn_server_are_accepted() {
    let tracker = TrackerProcess::start(&["--turn", "127.0.0.2:3478", "--turn-secret", SECRET]);
    let socket = udp("127.0.0.1").await;
    let key = "22".repeat(16);
    // From 127.0.0.1, announcing an address of the TURN server's IP: a relayed address.
    let answer = ask(
        &socket,
        tracker.addr,
        &share("r.bin", "127.0.0.2:50123", &key, ""),
    )
    .await;
    assert_eq!(answer, "RESPONSE 4 OK");
    let listing = ask(&socket, tracker.addr, "REQUEST 1 r.bin").await;
    assert!(listing.contains("\n127.0.0.2:50123 seeder"), "{listing}");
    // A PUNCH for the relayed address reaches the peer's own socket.
    let requester = udp("127.0.0.1").await;
    assert_eq!(
        ask(
            &requester,
            tracker.addr,
            "REQUEST 8 r.bin 127.0.0.2:50123 0.0.0.0:7000"
        )
        .await,
        "RESPONSE 8 OK"
    );
    assert_eq!(
        punch_arrives(&socket, PATIENCE).await.as_deref(),
        Some("PUNCH r.bin 127.0.0.1:7000")
    );
    // A relayed peer behind a symmetric NAT asks a listed peer to connect back to its relayed
    // address (its source IP is another one).
    let relayed_requester = udp("127.0.0.3").await;
    assert_eq!(
        ask(
            &relayed_requester,
            tracker.addr,
            "REQUEST 8 r.bin 127.0.0.2:50123 127.0.0.2:50999"
        )
        .await,
        "RESPONSE 8 OK"
    );
    assert_eq!(
        punch_arrives(&socket, PATIENCE).await.as_deref(),
        Some("PUNCH r.bin 127.0.0.2:50999")
    );
    // Any other foreign IP is still forbidden, and so are relayed addresses when the tracker
    // hands out no TURN server.
    let answer = ask(
        &socket,
        tracker.addr,
        &share("r.bin", "127.0.0.9:50123", &key, ""),
    )
    .await;
    assert!(answer.starts_with("ERROR 1201 FORBIDDEN"), "{answer}");
    let plain = TrackerProcess::start(&[]);
    let answer = ask(
        &socket,
        plain.addr,
        &share("r.bin", "127.0.0.2:50123", &key, ""),
    )
    .await;
    assert!(answer.starts_with("ERROR 1201 FORBIDDEN"), "{answer}");
}

#[test]
fn turn_flags_are_checked() {
    for args in [
        &["--turn-secret", "x"][..],
        &["--turn", "127.0.0.1:3478"][..],
        &[
            "--turn",
            "127.0.0.1:3478",
            "--turn-secret",
            "x",
            "--turn-ttl",
            "5",
        ][..],
        &["--turn", "no-such-host.invalid:3478", "--turn-secret", "x"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tracker"))
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("turn"), "{args:?}: {err}");
    }
}

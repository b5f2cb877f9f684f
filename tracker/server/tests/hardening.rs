//! The tracker against one host trying to crowd out the others, neighbours behind one IP,
//! spoofed PUNCH origins and display-spoofing names (protocol.txt §1.6-§1.9), driven with raw
//! datagrams from several loopback addresses (each one host to the tracker).

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::net::UdpSocket;

/// Sends each request and returns how many were answered `ok`, checking that every other
/// answer starts with `refused`.
async fn count_ok(
    s: &UdpSocket,
    t: SocketAddr,
    requests: impl Iterator<Item = String>,
    ok: &str,
    refused: &str,
) -> usize {
    let mut accepted = 0;
    for r in requests {
        let answer = ask(s, t, &r).await;
        if answer == ok {
            accepted += 1;
        } else {
            assert!(answer.starts_with(refused), "{r} -> {answer}");
        }
    }
    accepted
}

fn share(name: &str, ip: &str, port: u16) -> String {
    format!("REQUEST 4 {name} 1 {ip}:{port} size=1 id={}", id_hex())
}

/// The attack that motivated the quotas: from one IP, 1,000 flag-4 shares filled `--max-files`
/// and every other host got CAPACITY_EXCEEDED. Now the IP gets its 10 % and stops there.
#[tokio::test]
async fn one_ip_cannot_fill_max_files() {
    let tracker = TrackerProcess::start(&["--max-files", "1000"]);
    let t = tracker.addr;
    let attacker = udp("127.0.0.2").await;
    let shares = (0..1000).map(|i| share(&format!("junk-{i:04}"), "127.0.0.2", 6881));
    let accepted = count_ok(
        &attacker,
        t,
        shares,
        "RESPONSE 4 OK",
        "ERROR 1202 CAPACITY_EXCEEDED this IP's share of the tracker is used up: files created",
    )
    .await;
    assert_eq!(accepted, 100);
    let other = udp("127.0.0.3").await;
    assert_eq!(
        ask(&other, t, &share("mine.txt", "127.0.0.3", 6881)).await,
        "RESPONSE 4 OK"
    );
}

/// The same with every default: one host may create 10,000 files of the 100,000.
#[tokio::test]
async fn with_defaults_one_ip_creates_a_tenth_of_the_files() {
    let tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let attacker = udp("127.0.0.2").await;
    // Ten serving ports, each seeding 1,000 files (a share of a large directory per port).
    let shares = (0..10_001).map(|i| share(&format!("f{i:05}"), "127.0.0.2", 7000 + i / 1000));
    let accepted = count_ok(
        &attacker,
        t,
        shares,
        "RESPONSE 4 OK",
        "ERROR 1202 CAPACITY_EXCEEDED this IP's share of the tracker is used up: files created",
    )
    .await;
    assert_eq!(accepted, 10_000);
    let other = udp("127.0.0.3").await;
    assert_eq!(
        ask(&other, t, &share("mine.txt", "127.0.0.3", 6881)).await,
        "RESPONSE 4 OK"
    );
    // Loopback is no exception, and a real user of 127.0.0.1 is unaffected by 127.0.0.2.
    let local = udp("127.0.0.1").await;
    assert_eq!(
        ask(&local, t, &share("local.txt", "127.0.0.1", 6881)).await,
        "RESPONSE 4 OK"
    );
}

/// With defaults one IP may put 1,000 peers in one swarm and run 10,000 peers in all.
#[tokio::test]
async fn one_ip_cannot_fill_a_swarm_or_the_peer_table() {
    let tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let seeder = udp("127.0.0.1").await;
    for f in 0..11 {
        assert_eq!(
            ask(&seeder, t, &share(&format!("s{f:02}"), "127.0.0.1", 6881)).await,
            "RESPONSE 4 OK"
        );
    }
    let crowd = udp("127.0.0.2").await;
    // Listing answers vary; count the refusals.
    let mut refused = Vec::new();
    for p in 0..1001u16 {
        let answer = ask(
            &crowd,
            t,
            &format!("REQUEST 1 s00 127.0.0.2:{}", 10_000 + p),
        )
        .await;
        if !answer.starts_with("RESPONSE 1 ") {
            refused.push((p, answer));
        }
    }
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, 1000);
    assert!(
        refused[0]
            .1
            .ends_with("used up: peers in one swarm (tracker --ip-share)"),
        "{}",
        refused[0].1
    );
    let neighbour = udp("127.0.0.3").await;
    let answer = ask(&neighbour, t, "REQUEST 1 s00 127.0.0.3:10000").await;
    assert!(answer.contains(" leechers=1001 "), "{answer}");

    // 10,000 serving addresses in all: nine more swarms of 1,000 fill them.
    let mut accepted = 1000;
    for f in 1..11 {
        for p in 0..1000u16 {
            let port = 10_000 + f * 1000 + p;
            let answer = ask(&crowd, t, &format!("REQUEST 2 s{f:02} 127.0.0.2:{port}")).await;
            if answer.starts_with("RESPONSE 2 ") {
                accepted += 1;
            } else {
                assert!(
                    answer.contains("used up: serving addresses"),
                    "{port}: {answer}"
                );
            }
        }
    }
    assert_eq!(accepted, 10_000);
    let answer = ask(&neighbour, t, "REQUEST 1 s10 127.0.0.3:10000").await;
    assert!(answer.starts_with("RESPONSE 1 "), "{answer}");
}

#[tokio::test]
async fn one_ip_cannot_fill_the_rows_or_the_bitfield_memory() {
    // Smaller caps than the defaults keep this test short; the share is the default.
    let tracker = TrackerProcess::start(&["--max-rows", "1000", "--max-bitfield-mib", "1"]);
    let t = tracker.addr;
    let hog = udp("127.0.0.2").await;
    let shares = (0..101).map(|i| share(&format!("r{i:03}"), "127.0.0.2", 6881));
    let accepted = count_ok(
        &hog,
        t,
        shares,
        "RESPONSE 4 OK",
        "ERROR 1202 CAPACITY_EXCEEDED this IP's share of the tracker is used up: rows",
    )
    .await;
    assert_eq!(accepted, 100);
    let other = udp("127.0.0.3").await;
    assert_eq!(
        ask(&other, t, &share("r-other", "127.0.0.3", 6881)).await,
        "RESPONSE 4 OK"
    );
    // 400,000 chunks make a 50,000-byte bitfield; a tenth of 1 MiB holds two.
    let id = id_hex();
    let size = 400_000u64 * 2048;
    for (name, ip) in [
        ("big-a", "127.0.0.4"),
        ("big-b", "127.0.0.4"),
        ("big-c", "127.0.0.4"),
    ] {
        let seeder = udp(ip).await;
        let answer = ask(
            &seeder,
            t,
            &format!("REQUEST 4 {name} 400000 {ip}:6881 size={size} id={id}"),
        )
        .await;
        assert_eq!(answer, "RESPONSE 4 OK");
    }
    let leecher = udp("127.0.0.5").await;
    for name in ["big-a", "big-b"] {
        assert_eq!(
            ask(&leecher, t, &format!("REQUEST 3 {name} 0 127.0.0.5:7000")).await,
            "RESPONSE 3 OK"
        );
    }
    assert_eq!(
        ask(&leecher, t, "REQUEST 3 big-c 0 127.0.0.5:7000").await,
        "ERROR 1202 CAPACITY_EXCEEDED this IP's share of the tracker is used up: bitfield memory (tracker --ip-share)"
    );
    assert_eq!(
        ask(&other, t, "REQUEST 3 big-c 0 127.0.0.3:7000").await,
        "RESPONSE 3 OK"
    );
}

/// Neighbours behind one IP (a carrier-grade NAT): rows announced with a key change, move or go
/// only with that key.
#[tokio::test]
async fn a_neighbour_on_the_same_ip_cannot_touch_keyed_rows() {
    let tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let owner = udp("127.0.0.1").await;
    let neighbour = udp("127.0.0.1").await;
    let id = id_hex();
    let (key, other_key) = ("ab".repeat(16), "cd".repeat(16));
    assert_eq!(
        ask(
            &owner,
            t,
            &format!("REQUEST 4 doc.pdf 2 127.0.0.1:6881 size=4000 id={id} key={key}")
        )
        .await,
        "RESPONSE 4 OK"
    );
    assert_eq!(
        ask(
            &neighbour,
            t,
            &format!("REQUEST 9 127.0.0.1:6882 key={other_key}")
        )
        .await,
        "ERROR 1001 PEER_NOT_FOUND no such peer: 127.0.0.1:6882"
    );
    assert_eq!(
        ask(
            &neighbour,
            t,
            &format!("REQUEST 3 doc.pdf 0 127.0.0.1:6882 key={other_key}")
        )
        .await,
        "RESPONSE 3 OK"
    );
    let listing = ask(&owner, t, "REQUEST 1 doc.pdf").await;
    for attack in [
        "REQUEST 5 127.0.0.1:6881".to_string(),
        "REQUEST 5 doc.pdf 127.0.0.1:6881".to_string(),
        format!("REQUEST 5 127.0.0.1:6881 key={other_key}"),
        "REQUEST 3 doc.pdf 0 127.0.0.1:6881".to_string(),
        format!("REQUEST 4 doc.pdf 2 127.0.0.1:6881 size=4000 id={id}"),
        "REQUEST 1 doc.pdf 127.0.0.1:6881".to_string(),
        "REQUEST 9 127.0.0.1:6881".to_string(),
        // The neighbour's own key cannot move its rows onto the owner's address either.
        format!("REQUEST 9 127.0.0.1:6881 key={other_key}"),
    ] {
        let answer = ask(&neighbour, t, &attack).await;
        assert_eq!(
            answer,
            "ERROR 1201 FORBIDDEN 127.0.0.1:6881 was announced with a key this request does not carry",
            "{attack}"
        );
    }
    assert_eq!(ask(&owner, t, "REQUEST 1 doc.pdf").await, listing);
    assert_eq!(
        ask(&owner, t, &format!("REQUEST 5 127.0.0.1:6881 key={key}")).await,
        "RESPONSE 5 OK"
    );
    assert!(ask(&owner, t, "REQUEST 1 doc.pdf")
        .await
        .contains("seeders=0 leechers=1 "));
}

/// Flag 8 is limited per target too: many requesters together get the target's rate.
#[tokio::test]
async fn many_requesters_cannot_flood_one_target_with_punches() {
    let tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let target = udp("127.0.0.1").await;
    assert_eq!(
        ask(&target, t, &share("p.bin", "127.0.0.1", 6881)).await,
        "RESPONSE 4 OK"
    );
    let mut outcomes = Vec::new();
    for i in 10..40 {
        let ip = format!("127.0.0.{i}");
        let requester = udp(&ip).await;
        let punch = format!("REQUEST 8 p.bin 127.0.0.1:6881 {ip}:7000");
        outcomes.push(ask(&requester, t, &punch).await);
    }
    let ok = outcomes.iter().filter(|a| *a == "RESPONSE 8 OK").count();
    // A burst of 20 (twice the default 10 per second), give or take what refills while the
    // loop runs on a slow machine.
    assert!((20..=25).contains(&ok), "{ok} relayed: {outcomes:?}");
    assert!(outcomes.iter().all(|a| a == "RESPONSE 8 OK"
        || a == "ERROR 1203 RATE_LIMITED too many punch requests for 127.0.0.1:6881 right now"));
    // Another target is unaffected.
    let other = udp("127.0.0.2").await;
    assert_eq!(
        ask(&other, t, &share("p.bin", "127.0.0.2", 6881)).await,
        "RESPONSE 4 OK"
    );
    let requester = udp("127.0.0.50").await;
    assert_eq!(
        ask(
            &requester,
            t,
            "REQUEST 8 p.bin 127.0.0.2:6881 127.0.0.50:7000"
        )
        .await,
        "RESPONSE 8 OK"
    );
}

/// A PUNCH's origin is where the target will send SYNs: never a multicast or broadcast address,
/// and under `--trust-ip-field` never someone else's public address (no open SYN reflector).
#[tokio::test]
async fn punch_origins_are_validated_even_when_trusting_ip_fields() {
    let tracker = TrackerProcess::start(&["--trust-ip-field"]);
    let t = tracker.addr;
    let target = udp("127.0.0.1").await;
    assert_eq!(
        ask(&target, t, &share("q.bin", "127.0.0.1", 6881)).await,
        "RESPONSE 4 OK"
    );
    let requester = udp("127.0.0.2").await;
    let punch = |me: &str| format!("REQUEST 8 q.bin 127.0.0.1:6881 {me}");
    for (me, expected) in [
        ("224.0.0.1:7000", "ERROR 1106 BAD_ADDRESS"),
        ("255.255.255.255:7000", "ERROR 1106 BAD_ADDRESS"),
        ("203.0.113.7:7000", "ERROR 1201 FORBIDDEN"),
        ("8.8.8.8:53", "ERROR 1201 FORBIDDEN"),
    ] {
        let answer = ask(&requester, t, &punch(me)).await;
        assert!(answer.starts_with(expected), "{me} -> {answer}");
    }
    let mut buf = [0u8; 1500];
    for me in [
        "127.0.0.2:7000",
        "0.0.0.0:7001",
        "10.1.2.3:7002",
        "127.0.0.9:7003",
    ] {
        assert_eq!(
            ask(&requester, t, &punch(me)).await,
            "RESPONSE 8 OK",
            "{me}"
        );
        let (n, _) = tokio::time::timeout(PATIENCE, target.recv_from(&mut buf))
            .await
            .expect("PUNCH arrives")
            .unwrap();
        let notice = String::from_utf8_lossy(&buf[..n]).into_owned();
        let expected_from = me.replace("0.0.0.0", "127.0.0.2");
        assert_eq!(notice, format!("PUNCH q.bin {expected_from}"));
    }
}

#[tokio::test]
async fn offsets_beyond_the_longest_list_are_refused() {
    let tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let s = udp("127.0.0.1").await;
    assert_eq!(
        ask(&s, t, &share("o.bin", "127.0.0.1", 6881)).await,
        "RESPONSE 4 OK"
    );
    assert_eq!(
        ask(&s, t, "REQUEST 6 offset=100000").await,
        "RESPONSE 6 files=1"
    );
    assert_eq!(
        ask(&s, t, "REQUEST 6 offset=100001").await,
        "ERROR 1104 BAD_NUMBER offset 100001 is beyond the longest list this tracker keeps (100000)"
    );
    assert!(ask(&s, t, "REQUEST 1 o.bin offset=10000")
        .await
        .starts_with("RESPONSE 1 o.bin "));
    assert_eq!(
        ask(&s, t, "REQUEST 2 o.bin offset=4294967295").await,
        "ERROR 1104 BAD_NUMBER offset 4294967295 is beyond the longest list this tracker keeps (10000)"
    );
}

/// An unverified source gets its cookie before the tracker does any work, unless its request
/// is long enough that no answer could be dropped.
#[tokio::test]
async fn unverified_requests_get_the_cookie_before_any_work() {
    let tracker = TrackerProcess::start(&["--require-cookies"]);
    let t = tracker.addr;
    let s = udp("127.0.0.1").await;
    // Its answer (FILE_NOT_FOUND, 50 bytes) would fit 3x this request, but the tracker cannot
    // know that before looking: cookie first.
    let look = "REQUEST 7 nosuch.bin pad=xxxxxxxxxxx";
    let answer = ask(&s, t, look).await;
    assert!(answer.starts_with("ERROR 1200 COOKIE_REQUIRED"), "{answer}");
    // A request a third as long as the largest answer (1400 bytes) can amplify nothing.
    let long = format!("{look}{}", "x".repeat(467 - look.len()));
    assert_eq!(
        ask(&s, t, &long).await,
        "ERROR 1002 FILE_NOT_FOUND no such file: nosuch.bin"
    );
    let short_long = &long[..long.len() - 1];
    assert!(ask(&s, t, short_long)
        .await
        .starts_with("ERROR 1200 COOKIE_REQUIRED"));
}

#[tokio::test]
async fn names_that_display_as_something_else_are_refused() {
    let tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let s = udp("127.0.0.1").await;
    for name in ["invoice\u{202E}fdp.exe", "a\u{200B}b", "\u{2066}x\u{2069}"] {
        let answer = ask(&s, t, &share(name, "127.0.0.1", 6881)).await;
        assert!(
            answer.starts_with("ERROR 1105 BAD_FILENAME bad file name: file name contains U+"),
            "{name:?} -> {answer}"
        );
    }
    assert_eq!(ask(&s, t, "REQUEST 6").await, "RESPONSE 6 files=0");
}

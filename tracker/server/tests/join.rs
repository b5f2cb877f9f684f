//! Downloaders join a swarm with flag 1 or 2 and an address (protocol.txt §1.2): they are listed
//! as `have=0` at once, under the same trust, cookie and paging rules as every announcement.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tracker_proto::{ClientConfig, ErrorCode, PeerChunks, TrackerClient};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

async fn client(tracker: SocketAddr) -> TrackerClient {
    TrackerClient::bind(tracker, ClientConfig::default())
        .await
        .unwrap()
}

/// Two leechers that start together find each other (and the seeder) without either holding a
/// chunk yet; a joiner is not listed back to itself and keeps what it reported when it refreshes.
#[tokio::test]
async fn leechers_that_start_together_find_each_other() {
    let tracker = TrackerProcess::start(&[]);
    let seeder = client(tracker.addr).await;
    let first = client(tracker.addr).await;
    let second = client(tracker.addr).await;
    let f = file("film.mkv", 10);
    let seeder_addr = addr("127.0.0.1:7001");
    let (first_addr, second_addr) = (addr("127.0.0.1:7002"), addr("127.0.0.1:7003"));
    seeder.share(&f, seeder_addr).await.unwrap();

    let swarm = first
        .peers_as(f.name(), addr("0.0.0.0:7002"))
        .await
        .unwrap();
    let listed: Vec<SocketAddr> = swarm.peers.iter().map(|p| p.addr).collect();
    assert_eq!(listed, [seeder_addr], "the joiner is not listed to itself");
    assert_eq!((swarm.file.seeders, swarm.file.leechers), (1, 1));

    let swarm = second.peers_as(f.name(), second_addr).await.unwrap();
    assert_eq!(swarm.peers.len(), 2);
    assert_eq!(swarm.peers[1].addr, first_addr);
    assert_eq!(swarm.peers[1].chunks, PeerChunks::Count(0));
    assert_eq!((swarm.file.seeders, swarm.file.leechers), (1, 2));

    // Someone who only looks (no address) sees both leechers and joins nothing.
    let looker = client(tracker.addr).await;
    let swarm = looker.peers(f.name()).await.unwrap();
    assert_eq!(swarm.peers.len(), 3);
    assert_eq!(looker.refresh(f.name()).await.unwrap().file.leechers, 2);

    // A refresh with the address keeps the chunks reported meanwhile.
    first
        .report_chunks(f.name(), &"0-1".parse().unwrap(), first_addr)
        .await
        .unwrap();
    first.refresh_as(f.name(), first_addr).await.unwrap();
    let swarm = second.refresh_as(f.name(), second_addr).await.unwrap();
    let of_first = swarm.peers.iter().find(|p| p.addr == first_addr).unwrap();
    assert_eq!(of_first.chunks, PeerChunks::Ranges("0-1".parse().unwrap()));

    // The joiner's rows go with flag 5 like any other.
    second.leave(f.name(), second_addr).await.unwrap();
    assert_eq!(looker.peers(f.name()).await.unwrap().peers.len(), 2);
}

/// The hand-typed forms: a joining flag 1 shows the joiner to the next requester as `have=0`;
/// joining a file nobody shares is FILE_NOT_FOUND and joins nothing.
#[tokio::test]
async fn a_joining_flag_1_is_listed_as_have_0() {
    let tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let s = udp("127.0.0.1").await;
    let id = id_hex();
    assert_eq!(
        ask(
            &s,
            t,
            &format!("REQUEST 4 a.iso 2 127.0.0.1:6881 size=4096 id={id}")
        )
        .await,
        "RESPONSE 4 OK"
    );
    let joined = ask(&s, t, "REQUEST 1 a.iso 127.0.0.1:7000 tid=3").await;
    let head = format!("RESPONSE 1 a.iso size=4096 chunks=2 chunk=2048 id={id}");
    assert_eq!(
        joined,
        format!(
            "{head} seeders=1 leechers=1 interval=30 min_interval=5 tid=3\n127.0.0.1:6881 seeder"
        )
    );
    assert_eq!(
        ask(&s, t, "REQUEST 2 a.iso").await,
        format!("RESPONSE 2 a.iso size=4096 chunks=2 chunk=2048 id={id} seeders=1 leechers=1 interval=30 min_interval=5\n127.0.0.1:6881 seeder\n127.0.0.1:7000 have=0")
    );
    assert_eq!(
        ask(&s, t, "REQUEST 1 none.iso 127.0.0.1:7000").await,
        "ERROR 1002 FILE_NOT_FOUND no such file: none.iso"
    );
    assert_eq!(
        ask(&s, t, "REQUEST 9 127.0.0.1:7000").await,
        "RESPONSE 9 OK files=1"
    );
}

/// The UDP socket a downloader joins from is where PUNCH notices for it go (as for flag 3).
#[tokio::test]
async fn punch_notices_reach_a_joined_downloader() {
    let tracker = TrackerProcess::start(&[]);
    let seeder = client(tracker.addr).await;
    let leecher = client(tracker.addr).await;
    let f = file("p.bin", 4);
    seeder.share(&f, addr("127.0.0.1:7101")).await.unwrap();
    let mut notices = leecher.punch_notices();
    leecher
        .peers_as(f.name(), addr("127.0.0.1:7102"))
        .await
        .unwrap();
    seeder
        .punch(f.name(), addr("127.0.0.1:7102"), addr("127.0.0.1:7101"))
        .await
        .unwrap();
    let notice = tokio::time::timeout(PATIENCE, notices.recv())
        .await
        .expect("PUNCH arrives")
        .unwrap();
    assert_eq!(notice.from, addr("127.0.0.1:7101"));
}

#[tokio::test]
async fn a_spoofed_joining_address_is_forbidden() {
    let tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let owner = udp("127.0.0.1").await;
    let spoofer = udp("127.0.0.2").await;
    let id = id_hex();
    assert_eq!(
        ask(
            &owner,
            t,
            &format!("REQUEST 4 b.iso 1 127.0.0.1:6881 size=1 id={id}")
        )
        .await,
        "RESPONSE 4 OK"
    );
    for attack in [
        "REQUEST 1 b.iso 127.0.0.1:7000",
        "REQUEST 2 b.iso 127.0.0.1:7000 offset=0",
    ] {
        let answer = ask(&spoofer, t, attack).await;
        assert!(
            answer.starts_with("ERROR 1201 FORBIDDEN"),
            "{attack} -> {answer}"
        );
    }
    let listing = ask(&owner, t, "REQUEST 1 b.iso").await;
    assert!(listing.ends_with("leechers=0 interval=30 min_interval=5\n127.0.0.1:6881 seeder"));
}

/// A joining flag 1 changes rows, so an unverified source needs the cookie first, exactly like
/// flag 3 (`--require-cookies` makes a loopback source unverified, as a public one is).
#[tokio::test]
async fn an_unverified_source_needs_the_cookie_to_join() {
    let tracker = TrackerProcess::start(&["--require-cookies"]);
    let t = tracker.addr;
    let s = udp("127.0.0.1").await;
    let id = id_hex();
    let cookie_of = |answer: &str| -> String {
        assert!(answer.starts_with("ERROR 1200 COOKIE_REQUIRED"), "{answer}");
        answer
            .split(' ')
            .find_map(|w| w.strip_prefix("cookie="))
            .expect("cookie field")
            .to_string()
    };
    let share = format!("REQUEST 4 c.iso 1 127.0.0.1:6881 size=1 id={id}");
    let cookie = cookie_of(&ask(&s, t, &share).await);
    assert_eq!(
        ask(&s, t, &format!("{share} cookie={cookie}")).await,
        "RESPONSE 4 OK"
    );
    let join = "REQUEST 1 c.iso 127.0.0.1:7000 pad=xxxxxxxxxxxxxxxxxxxxxxxx";
    let answer = ask(&s, t, join).await;
    assert!(answer.len() <= 3 * join.len());
    cookie_of(&answer);
    // Not joined: the swarm still has only the seeder.
    let look = format!("REQUEST 7 c.iso cookie={cookie}");
    assert!(ask(&s, t, &look).await.contains(" seeders=1 leechers=0"));
    let joined = ask(&s, t, &format!("{join} cookie={cookie}")).await;
    assert!(joined.starts_with("RESPONSE 1 c.iso "), "{joined}");
    assert!(ask(&s, t, &look).await.contains(" seeders=1 leechers=1"));
    // The client does the cookie round trip by itself.
    let c = client(t).await;
    let swarm = c
        .peers_as(&name("c.iso"), addr("127.0.0.1:7001"))
        .await
        .unwrap();
    assert_eq!(swarm.file.leechers, 2);
}

#[tokio::test]
async fn the_intervals_come_from_the_tracker_flags() {
    let tracker = TrackerProcess::start(&[]);
    let c = client(tracker.addr).await;
    let f = file("d.iso", 1);
    c.share(&f, addr("127.0.0.1:7200")).await.unwrap();
    let swarm = c.peers(f.name()).await.unwrap();
    assert_eq!(
        (swarm.interval, swarm.min_interval),
        (Duration::from_secs(30), Duration::from_secs(5))
    );

    let tracker =
        TrackerProcess::start(&["--announce-interval", "45", "--min-announce-interval", "7"]);
    let c = client(tracker.addr).await;
    c.share(&f, addr("127.0.0.1:7200")).await.unwrap();
    let swarm = c
        .refresh_as(f.name(), addr("127.0.0.1:7201"))
        .await
        .unwrap();
    assert_eq!(
        (swarm.interval, swarm.min_interval),
        (Duration::from_secs(45), Duration::from_secs(7))
    );
}

/// The longest header (a 255-byte name, intervals, `next=`, `tid=`) still leaves room for peer
/// lines in the smallest pages, and every joiner is listed across the pages.
#[tokio::test]
async fn pages_of_joiners_fit_the_smallest_datagram_limit() {
    let max = tracker::MIN_RESPONSE_BYTES;
    let tracker = TrackerProcess::start(&["--max-response-bytes", &max.to_string()]);
    let t = tracker.addr;
    let s = udp("127.0.0.1").await;
    let long = "n".repeat(255);
    let id = id_hex();
    assert_eq!(
        ask(
            &s,
            t,
            &format!("REQUEST 4 {long} 1 127.0.0.1:6881 size=1 id={id}")
        )
        .await,
        "RESPONSE 4 OK"
    );
    for port in 10_000..10_080 {
        let answer = ask(
            &s,
            t,
            &format!("REQUEST 1 {long} 127.0.0.1:{port} tid=4294967295"),
        )
        .await;
        assert!(answer.len() <= max, "{} bytes", answer.len());
    }
    let (mut offset, mut listed) = (0u32, 0usize);
    loop {
        let page = ask(
            &s,
            t,
            &format!("REQUEST 2 {long} offset={offset} tid=4294967295"),
        )
        .await;
        assert!(page.len() <= max, "{} bytes", page.len());
        let lines: Vec<&str> = page.split('\n').collect();
        assert!(lines.len() > 1, "empty page: {page}");
        listed += lines.len() - 1;
        match lines[0].split(' ').find_map(|w| w.strip_prefix("next=")) {
            Some(n) => offset = n.parse().unwrap(),
            None => break,
        }
    }
    assert_eq!(listed, 81);
    let swarm = client(t).await.peers(&name(&long)).await.unwrap();
    assert_eq!(swarm.peers.len(), 81);
    let have_nothing = swarm
        .peers
        .iter()
        .filter(|p| p.chunks == PeerChunks::Count(0))
        .count();
    assert_eq!(have_nothing, 80);
}

#[tokio::test]
async fn joining_counts_against_the_swarm_limit() {
    let tracker = TrackerProcess::start(&["--max-peers-per-file", "2"]);
    let c = client(tracker.addr).await;
    let f = file("e.iso", 1);
    c.share(&f, addr("127.0.0.1:7300")).await.unwrap();
    let from = |ip: &'static str| async move {
        TrackerClient::from_socket(udp(ip).await, tracker.addr, ClientConfig::default())
    };
    let other = from("127.0.0.2").await;
    other
        .peers_as(f.name(), addr("127.0.0.2:7301"))
        .await
        .unwrap();
    let third = from("127.0.0.3").await;
    let err = third
        .peers_as(f.name(), addr("127.0.0.3:7302"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CapacityExceeded));
    // Looking without joining still works.
    assert_eq!(third.peers(f.name()).await.unwrap().peers.len(), 2);
}

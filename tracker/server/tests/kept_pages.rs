//! The in-memory store keeps the lines of the last flag 1 page of each swarm and of the last
//! flag 6 page of the catalogue: every answer must still be what rendering the store's current
//! state from scratch gives, whatever changed between two identical requests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tracker::store::Limits;
use tracker::{ServerConfig, Tracker};
use tracker_proto::{FileName, PageBody, PeersHeader};

const SOURCE: &str = "127.0.0.1:5000";
const TTL: Duration = Duration::from_secs(60);

fn tracker() -> Tracker {
    Tracker::new(ServerConfig {
        ttl: TTL,
        // Small pages, so listings span several and `next=` is exercised.
        max_response_bytes: 512,
        limits: Limits {
            ip_share_percent: 100,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
}

fn ask(tracker: &Tracker, request: &str, now: Instant) -> String {
    let source: SocketAddr = SOURCE.parse().unwrap();
    let reply = tracker.handle(request.as_bytes(), source, now).reply;
    String::from_utf8(reply.expect("an answer")).unwrap()
}

/// Flag 1 for `name` from `offset`, rendered from the store's state now, without a kept page.
fn fresh_peers(tracker: &Tracker, name: &str, offset: u32, tid: Option<u32>) -> String {
    let name = FileName::new(name).unwrap();
    let mut file = match tracker.store().query(&name) {
        Ok(file) => file,
        Err(_) => return String::new(),
    };
    file.stats = None;
    let header = PeersHeader {
        refresh: false,
        file: &file,
        intervals: Some(tracker.config().intervals),
    };
    let mut body = PageBody::for_peers(tracker.config().max_response_bytes, header, tid);
    let page = tracker
        .store()
        .peers(&name, offset, None, &mut |p| body.push(p))
        .unwrap();
    body.finish_peers(page.next, tid)
}

/// Flag 6 from `offset`, rendered from the store's state now.
fn fresh_files(tracker: &Tracker, offset: u32, tid: Option<u32>) -> String {
    let mut body = PageBody::for_files(tracker.config().max_response_bytes, tid);
    let page = tracker.store().files(offset, &mut |f| body.push(f));
    body.finish_files(page.head, page.next, tid)
}

fn with_tid(request: String, tid: Option<u32>) -> String {
    match tid {
        Some(t) => format!("{request} tid={t}"),
        None => request,
    }
}

fn share(name: &str, port: u16) -> String {
    format!(
        "REQUEST 4 {name} 64 127.0.0.1:{port} size={} id=sha256:{}",
        64 * 2048,
        "ab".repeat(32)
    )
}

/// A page listed twice in a row is answered the same; any change in between shows.
#[test]
fn a_change_between_two_identical_listings_shows_in_the_second() {
    let t = tracker();
    let now = Instant::now();
    let list = "REQUEST 1 a.bin tid=1";
    assert!(ask(&t, &share("a.bin", 6000), now).starts_with("RESPONSE 4 OK"));
    let first = ask(&t, list, now);
    assert_eq!(ask(&t, list, now), first, "the same state, the same page");
    // A report of a new peer, then of more chunks of the same peer.
    assert_eq!(
        ask(&t, "REQUEST 3 a.bin 0-3 127.0.0.1:6001", now),
        "RESPONSE 3 OK"
    );
    let reported = ask(&t, list, now);
    assert_ne!(reported, first);
    assert!(reported.ends_with("\n127.0.0.1:6001 0-3"), "{reported}");
    assert_eq!(
        ask(&t, "REQUEST 3 a.bin 9 127.0.0.1:6001", now),
        "RESPONSE 3 OK"
    );
    let more = ask(&t, list, now);
    assert!(more.ends_with("\n127.0.0.1:6001 0-3,9"), "{more}");
    // A share by a second seeder, then a leave.
    assert!(ask(&t, &share("a.bin", 6002), now).starts_with("RESPONSE 4 OK"));
    let shared = ask(&t, list, now);
    assert!(shared.ends_with("\n127.0.0.1:6002 seeder"), "{shared}");
    assert_eq!(
        ask(&t, "REQUEST 5 a.bin 127.0.0.1:6001", now),
        "RESPONSE 5 OK"
    );
    let left = ask(&t, list, now);
    assert!(!left.contains("127.0.0.1:6001"), "{left}");
    assert_eq!(left, fresh_peers(&t, "a.bin", 0, Some(1)));
    // Expiry: everyone but the peer that announced again goes.
    let later = now + TTL / 2;
    assert!(ask(&t, &share("a.bin", 6002), later).starts_with("RESPONSE 4 OK"));
    assert_eq!(ask(&t, list, later), left);
    t.expire(now + TTL + Duration::from_secs(1));
    let expired = ask(&t, list, later);
    assert!(!expired.contains("127.0.0.1:6000"), "{expired}");
    assert_eq!(expired, fresh_peers(&t, "a.bin", 0, Some(1)));
}

/// The catalogue page follows new files, changed counts and files that go.
#[test]
fn a_catalogue_change_shows_in_the_next_page() {
    let t = tracker();
    let now = Instant::now();
    let list = "REQUEST 6 tid=9";
    assert_eq!(ask(&t, list, now), "RESPONSE 6 files=0 tid=9");
    assert!(ask(&t, &share("a.bin", 6000), now).starts_with("RESPONSE 4 OK"));
    let one = ask(&t, list, now);
    assert!(
        one.contains("\na.bin size=131072 chunks=64 seeders=1 leechers=0"),
        "{one}"
    );
    assert_eq!(ask(&t, list, now), one);
    assert_eq!(
        ask(&t, "REQUEST 3 a.bin 0 127.0.0.1:6001", now),
        "RESPONSE 3 OK"
    );
    let leecher = ask(&t, list, now);
    assert!(leecher.contains("seeders=1 leechers=1"), "{leecher}");
    // The leecher completes: now two seeders.
    assert_eq!(
        ask(&t, "REQUEST 3 a.bin 0-63 127.0.0.1:6001", now),
        "RESPONSE 3 OK"
    );
    assert!(ask(&t, list, now).contains("seeders=2 leechers=0"));
    assert!(ask(&t, &share("b.bin", 6000), now).starts_with("RESPONSE 4 OK"));
    let two = ask(&t, list, now);
    assert!(two.starts_with("RESPONSE 6 files=2 tid=9\n"), "{two}");
    // Another tid, or none, reuses the lines under the header of its own request.
    let other = ask(&t, "REQUEST 6 tid=4000000000", now);
    assert_eq!(other, two.replace("tid=9", "tid=4000000000"));
    assert_eq!(ask(&t, "REQUEST 6", now), fresh_files(&t, 0, None));
    assert_eq!(ask(&t, "REQUEST 6 match=b*", now).matches('\n').count(), 1);
    assert_eq!(ask(&t, list, now), two);
    for port in [6000, 6001] {
        let exit = format!("REQUEST 5 a.bin 127.0.0.1:{port}");
        assert_eq!(ask(&t, &exit, now), "RESPONSE 5 OK");
    }
    let gone = ask(&t, list, now);
    assert!(
        gone.starts_with("RESPONSE 6 files=1 tid=9\nb.bin "),
        "{gone}"
    );
    assert_eq!(gone, fresh_files(&t, 0, Some(9)));
}

#[derive(Debug, Clone)]
enum Step {
    Share {
        file: u8,
        peer: u8,
    },
    Report {
        file: u8,
        peer: u8,
        first: u8,
        len: u8,
    },
    Join {
        file: u8,
        peer: u8,
    },
    Exit {
        file: u8,
        peer: u8,
    },
    Expire {
        secs: u8,
    },
    Peers {
        file: u8,
        page: u8,
        tid: Option<u32>,
    },
    Files {
        page: u8,
        tid: Option<u32>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let (file, peer) = (0u8..3, 0u8..24);
    prop_oneof![
        (file.clone(), peer.clone()).prop_map(|(file, peer)| Step::Share { file, peer }),
        (file.clone(), peer.clone(), 0u8..64, 0u8..8).prop_map(|(file, peer, first, len)| {
            Step::Report {
                file,
                peer,
                first,
                len,
            }
        }),
        (file.clone(), peer.clone()).prop_map(|(file, peer)| Step::Join { file, peer }),
        (file.clone(), peer).prop_map(|(file, peer)| Step::Exit { file, peer }),
        (0u8..90).prop_map(|secs| Step::Expire { secs }),
        (file, 0u8..3, proptest::option::of(any::<u32>()))
            .prop_map(|(file, page, tid)| Step::Peers { file, page, tid }),
        (0u8..2, proptest::option::of(any::<u32>()))
            .prop_map(|(page, tid)| Step::Files { page, tid }),
    ]
}

proptest! {
    /// Whatever happens between them, every page answered equals the page rendered from the
    /// store's state at that moment without a kept page.
    #[test]
    fn kept_pages_are_never_stale(steps in proptest::collection::vec(step(), 1..80)) {
        let t = tracker();
        let start = Instant::now();
        let mut now = start;
        for step in steps {
            match step {
                Step::Share { file, peer } => {
                    ask(&t, &share(&format!("f{file}.bin"), 6000 + u16::from(peer)), now);
                }
                Step::Report { file, peer, first, len } => {
                    let last = (first + len).min(63);
                    let report = format!(
                        "REQUEST 3 f{file}.bin {first}-{last} 127.0.0.1:{}",
                        6000 + u16::from(peer)
                    );
                    ask(&t, &report, now);
                }
                Step::Join { file, peer } => {
                    let join = format!("REQUEST 1 f{file}.bin 127.0.0.1:{}", 6000 + u16::from(peer));
                    ask(&t, &join, now);
                }
                Step::Exit { file, peer } => {
                    let exit = format!("REQUEST 5 f{file}.bin 127.0.0.1:{}", 6000 + u16::from(peer));
                    ask(&t, &exit, now);
                }
                Step::Expire { secs } => {
                    now += Duration::from_secs(u64::from(secs));
                    t.expire(now);
                }
                Step::Peers { file, page, tid } => {
                    let name = format!("f{file}.bin");
                    let offset = u32::from(page) * 4;
                    let request = with_tid(format!("REQUEST 1 {name} offset={offset}"), tid);
                    let answer = ask(&t, &request, now);
                    if answer.starts_with("RESPONSE") {
                        prop_assert_eq!(answer, fresh_peers(&t, &name, offset, tid));
                    }
                }
                Step::Files { page, tid } => {
                    let offset = u32::from(page) * 2;
                    let answer = ask(&t, &with_tid(format!("REQUEST 6 offset={offset}"), tid), now);
                    prop_assert_eq!(answer, fresh_files(&t, offset, tid));
                }
            }
        }
    }
}

//! The tracker driven with raw datagrams, as a person with `nc -u` or a hostile host would.

mod common;

use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};

#[tokio::test]
async fn every_flag_as_raw_datagrams() {
    let tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let s = udp("127.0.0.1").await;
    let id = id_hex();
    assert_eq!(ask(&s, t, "REQUEST 6").await, "RESPONSE 6 files=0");
    assert_eq!(
        ask(
            &s,
            t,
            &format!("REQUEST 4 song.ogg 3 127.0.0.1:6881 size=5000 id={id} tid=7")
        )
        .await,
        "RESPONSE 4 OK tid=7"
    );
    assert_eq!(
        ask(&s, t, "REQUEST 3 song.ogg 0 127.0.0.1:6882").await,
        "RESPONSE 3 OK"
    );
    // The seed form: a bare IP means port 6881, one chunk number.
    assert_eq!(
        ask(&s, t, "REQUEST 3 song.ogg 2 127.0.0.1\n").await,
        "RESPONSE 3 OK"
    );
    let header = format!("song.ogg size=5000 chunks=3 chunk=2048 id={id} seeders=1 leechers=1");
    let intervals = "interval=30 min_interval=5";
    assert_eq!(
        ask(&s, t, "REQUEST 1 song.ogg").await,
        format!("RESPONSE 1 {header} {intervals}\n127.0.0.1:6881 seeder\n127.0.0.1:6882 0")
    );
    assert_eq!(
        ask(&s, t, "REQUEST 2 song.ogg tid=1").await,
        format!("RESPONSE 2 {header} {intervals} tid=1\n127.0.0.1:6881 seeder\n127.0.0.1:6882 0")
    );
    assert_eq!(
        ask(&s, t, "REQUEST 6").await,
        "RESPONSE 6 files=1\nsong.ogg size=5000 chunks=3 seeders=1 leechers=1 completed=0 up=0 down=0"
    );
    assert_eq!(
        ask(&s, t, "REQUEST 7 song.ogg").await,
        format!("RESPONSE 7 {header} completed=0 up=0 down=0")
    );
    assert_eq!(
        ask(&s, t, "REQUEST 9 127.0.0.1:6882").await,
        "RESPONSE 9 OK files=1"
    );
    // Flag 8: the target's UDP address is the source of its latest announcement (socket `s`).
    let asker = udp("127.0.0.1").await;
    assert_eq!(
        ask(
            &asker,
            t,
            "REQUEST 8 song.ogg 127.0.0.1:6882 0.0.0.0:7000 tid=4"
        )
        .await,
        "RESPONSE 8 OK tid=4"
    );
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(PATIENCE, s.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, t);
    assert_eq!(&buf[..n], b"PUNCH song.ogg 127.0.0.1:7000");
    assert_eq!(
        ask(&s, t, "REQUEST 5 song.ogg 127.0.0.1:6882").await,
        "RESPONSE 5 OK"
    );
    assert_eq!(
        ask(&s, t, "REQUEST 5 127.0.0.1:6881").await,
        "RESPONSE 5 OK"
    );
    assert_eq!(
        ask(&s, t, "REQUEST 7 song.ogg").await,
        "ERROR 1002 FILE_NOT_FOUND no such file: song.ogg"
    );
    assert_eq!(
        ask(&s, t, "REQUEST 1 a/b tid=3").await,
        "ERROR 1105 BAD_FILENAME bad file name: file name contains a path separator ('/' or '\\') tid=3"
    );
    assert!(ask(&s, t, "REQUEST 12")
        .await
        .starts_with("ERROR 1101 UNKNOWN_FLAG"));
    assert!(ask(&s, t, "REQUEST 3 x 1")
        .await
        .starts_with("ERROR 1102 MISSING_FIELD"));
}

/// Garbage, truncations and mutations of valid requests: each gets exactly one answer, the
/// tracker survives, and afterwards still answers correctly.
#[tokio::test]
async fn ten_thousand_bad_datagrams_then_correct_answers() {
    let mut tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let s = udp("127.0.0.1").await;
    let id = id_hex();
    let valid = [
        format!(
            "REQUEST 4 seed.bin 3 127.0.0.1:6881 size=5000 id={id} key={} tid=1",
            "ab".repeat(16)
        ),
        "REQUEST 3 seed.bin 0-2,7 127.0.0.1:6882 tid=2".to_string(),
        "REQUEST 1 seed.bin offset=0 tid=3".to_string(),
        "REQUEST 5 seed.bin 127.0.0.1:6881".to_string(),
        "REQUEST 8 seed.bin 127.0.0.1:6881 127.0.0.1:6882".to_string(),
        "REQUEST 6 offset=4294967295".to_string(),
        "REQUEST 9 [::1]:5".to_string(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7ac4e5);
    let mut answered = 0;
    for i in 0..10_000 {
        let datagram: Vec<u8> = match i % 4 {
            0 => (0..rng.random_range(0..1500))
                .map(|_| rng.random())
                .collect(),
            1 => {
                let v = valid[rng.random_range(0..valid.len())].as_bytes();
                v[..rng.random_range(0..=v.len())].to_vec()
            }
            2 => {
                let mut v = valid[rng.random_range(0..valid.len())].as_bytes().to_vec();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..v.len());
                    v[at] = match rng.random_range(0..3) {
                        0 => rng.random(),
                        1 => b" =-,:.0123456789/"[rng.random_range(0..17)],
                        _ => b'9',
                    };
                }
                v
            }
            _ => {
                let words = [
                    "REQUEST",
                    "1",
                    "9",
                    "0",
                    "offset=",
                    "tid=9",
                    "x",
                    "..",
                    "::",
                    "-",
                    "0-4294967295",
                    "key=00",
                    "cookie=",
                    "",
                ];
                (0..rng.random_range(0..8))
                    .map(|_| words[rng.random_range(0..words.len())])
                    .collect::<Vec<_>>()
                    .join(" ")
                    .into_bytes()
            }
        };
        let reply = ask_within(&s, t, &datagram, PATIENCE).await;
        let reply = reply
            .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(&datagram)));
        assert!(
            reply.starts_with("RESPONSE ") || reply.starts_with("ERROR 1"),
            "odd answer {reply:?}"
        );
        answered += 1;
    }
    assert_eq!(answered, 10_000);
    // Exactly one answer each: nothing is left over.
    assert_eq!(
        ask_within(&s, t, b"REQUEST 6 tid=77", PATIENCE)
            .await
            .map(|r| r.starts_with("RESPONSE 6 ") && r.contains(" tid=77")),
        Some(true)
    );
    assert!(tracker.alive());

    let fresh = udp("127.0.0.1").await;
    assert_eq!(
        ask(
            &fresh,
            t,
            &format!("REQUEST 4 after.bin 1 127.0.0.1:9999 size=1 id={id}")
        )
        .await,
        "RESPONSE 4 OK"
    );
    assert_eq!(
        ask(&fresh, t, "REQUEST 1 after.bin").await,
        format!("RESPONSE 1 after.bin size=1 chunks=1 chunk=2048 id={id} seeders=1 leechers=0 interval=30 min_interval=5\n127.0.0.1:9999 seeder")
    );
}

/// A host at 127.0.0.2 cannot create, change or remove rows of 127.0.0.1.
#[tokio::test]
async fn another_source_ip_cannot_touch_rows() {
    let tracker = TrackerProcess::start(&[]);
    let t = tracker.addr;
    let owner = udp("127.0.0.1").await;
    let spoofer = udp("127.0.0.2").await;
    let id = id_hex();
    let key = "cd".repeat(16);
    assert_eq!(
        ask(
            &owner,
            t,
            &format!("REQUEST 4 doc.pdf 2 127.0.0.1:6881 size=4000 id={id} key={key}")
        )
        .await,
        "RESPONSE 4 OK"
    );
    let listing = ask(&owner, t, "REQUEST 1 doc.pdf").await;
    for attack in [
        "REQUEST 5 127.0.0.1:6881".to_string(),
        "REQUEST 5 doc.pdf 127.0.0.1:6881".to_string(),
        format!("REQUEST 5 127.0.0.1:6881 key={}", "ee".repeat(16)),
        "REQUEST 3 doc.pdf 0 127.0.0.1:6881".to_string(),
        format!("REQUEST 4 doc.pdf 2 127.0.0.1:6881 size=4000 id={id}"),
        "REQUEST 9 127.0.0.1:6881".to_string(),
        "REQUEST 8 doc.pdf 127.0.0.1:6881 127.0.0.1:7000".to_string(),
    ] {
        let answer = ask(&spoofer, t, &attack).await;
        assert!(
            answer.starts_with("ERROR 1201 FORBIDDEN"),
            "{attack} -> {answer}"
        );
    }
    // Its own address (0.0.0.0 = its source IP) is fine and does not affect 127.0.0.1.
    assert_eq!(
        ask(&spoofer, t, "REQUEST 5 0.0.0.0:6881").await,
        "RESPONSE 5 OK"
    );
    assert_eq!(ask(&owner, t, "REQUEST 1 doc.pdf").await, listing);
}

#[tokio::test]
async fn unverified_sources_get_cookies_not_amplification() {
    let tracker = TrackerProcess::start(&["--require-cookies"]);
    let t = tracker.addr;
    let s = udp("127.0.0.1").await;
    let id = id_hex();
    // Changing rows needs a cookie; the answer hands one out and is not larger than 3x.
    let share = |n: u32| format!("REQUEST 4 c{n:02}.txt 1 0.0.0.0:6881 size=10 id={id}");
    let answer = ask(&s, t, &share(0)).await;
    assert!(answer.starts_with("ERROR 1200 COOKIE_REQUIRED"), "{answer}");
    assert!(answer.len() <= 3 * share(0).len());
    let cookie = answer
        .split(' ')
        .find_map(|w| w.strip_prefix("cookie="))
        .expect("cookie field");
    for n in 0..10 {
        assert_eq!(
            ask(&s, t, &format!("{} cookie={cookie}", share(n))).await,
            "RESPONSE 4 OK"
        );
    }
    // A bare 9-byte request: both the catalogue and the cookie answer would amplify: silence.
    assert_eq!(
        ask_within(&s, t, b"REQUEST 6", Duration::from_millis(300)).await,
        None
    );
    // Padded, it gets the cookie answer instead of the long catalogue.
    let padded = "REQUEST 6 pad=xxxxxxxxxxxxxxxx tid=5";
    let answer = ask(&s, t, padded).await;
    assert!(
        answer.starts_with("ERROR 1200 COOKIE_REQUIRED") && answer.ends_with(" tid=5"),
        "{answer}"
    );
    assert!(answer.len() <= 3 * padded.len());
    let full = ask(&s, t, &format!("REQUEST 6 cookie={cookie}")).await;
    assert!(full.starts_with("RESPONSE 6 files=10\n"), "{full}");
    // A cookie is bound to its source IP.
    let other = udp("127.0.0.2").await;
    let stolen = ask(
        &other,
        t,
        &format!("REQUEST 5 0.0.0.0:6881 cookie={cookie}"),
    )
    .await;
    assert!(stolen.starts_with("ERROR 1200 COOKIE_REQUIRED"), "{stolen}");
    // The client handles cookies by itself.
    let client = tracker_proto::TrackerClient::bind(t, tracker_proto::ClientConfig::default())
        .await
        .unwrap();
    client
        .share(&file("d.txt", 1), "0.0.0.0:6881".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(client.list_files().await.unwrap().len(), 11);
}

#[tokio::test]
async fn pages_fit_the_datagram_limit() {
    let tracker = TrackerProcess::start(&["--max-response-bytes", "800"]);
    let t = tracker.addr;
    let s = udp("127.0.0.1").await;
    let id = id_hex();
    for i in 0..40 {
        let name = format!("{}-{i:03}", "n".repeat(40));
        assert_eq!(
            ask(
                &s,
                t,
                &format!("REQUEST 4 {name} 1 127.0.0.1:6881 size=1 id={id}")
            )
            .await,
            "RESPONSE 4 OK"
        );
    }
    let mut offset = 0;
    let mut seen = 0;
    loop {
        let page = ask(&s, t, &format!("REQUEST 6 offset={offset}")).await;
        assert!(page.len() <= 800, "{} bytes", page.len());
        let lines: Vec<&str> = page.split('\n').collect();
        assert!(lines[0].starts_with("RESPONSE 6 files=40"));
        seen += lines.len() - 1;
        match lines[0].split(' ').find_map(|w| w.strip_prefix("next=")) {
            Some(n) => offset = n.parse().unwrap(),
            None => break,
        }
    }
    assert_eq!(seen, 40);
}

//! The whole request decision (`Tracker::handle`) on a sequence of datagrams from a few sources,
//! loopback and public, against one tracker: every answer is a message a client can parse, fits
//! the datagram limit, never amplifies towards an unverified source, and a PUNCH notice is one.
//!
//! Input: datagrams separated by 0xFF (never in UTF-8 text); the first byte of each picks the
//! source and whether the clock moves on.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tracker::{ServerConfig, Tracker};
use tracker_proto::TrackerMessage;

const SOURCES: [&str; 4] = [
    "127.0.0.1:4000",
    "127.0.0.2:4001",
    "203.0.113.5:4002",
    "[2001:db8::1]:4003",
];

fuzz_target!(|data: &[u8]| {
    let config = ServerConfig {
        ttl: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let max = config.max_response_bytes;
    let tracker = Tracker::new(config);
    let mut now = Instant::now();
    for datagram in data.split(|&b| b == 0xFF).take(64) {
        let Some((&control, datagram)) = datagram.split_first() else {
            continue;
        };
        let source: SocketAddr = SOURCES[usize::from(control % 4)].parse().unwrap();
        if control & 0x80 != 0 {
            now += Duration::from_secs(1);
            tracker.expire(now);
        }
        let outcome = tracker.handle(datagram, source, now);
        if let Some(reply) = &outcome.reply {
            assert!(reply.len() <= max, "{} bytes", reply.len());
            if !source.ip().is_loopback() {
                assert!(reply.len() <= 3 * datagram.len(), "amplifies: {reply:?}");
            }
            let text = String::from_utf8_lossy(reply);
            assert!(
                matches!(
                    TrackerMessage::parse(reply),
                    Ok(TrackerMessage::Response(_))
                ),
                "unreadable answer {text:?}"
            );
        }
        if let Some((_, notice)) = &outcome.punch {
            assert!(
                matches!(TrackerMessage::parse(notice), Ok(TrackerMessage::Punch(_))),
                "unreadable PUNCH {:?}",
                String::from_utf8_lossy(notice)
            );
        }
    }
});

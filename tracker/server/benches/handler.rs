//! Cost of the request handler alone (no sockets): per flag, on the load benchmark's heavy
//! state, then the load benchmark's default mix as it runs there (where reports keep changing
//! the swarms that flag 1 lists). SHOW=1 prints one answer of each kind.

use std::net::SocketAddr;
use std::time::Instant;

use tracker::store::Limits;
use tracker::{ServerConfig, Tracker};

#[path = "common/mix.rs"]
mod mix;

fn main() {
    // Every simulated peer comes from 127.0.0.1 but stands for a host of its own: one host's
    // share of the caps (10 % by default) would refuse most of them.
    let config = ServerConfig {
        limits: Limits {
            ip_share_percent: 100,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let tracker = Tracker::new(config.clone());
    let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let now = Instant::now();
    for f in 0..mix::FILES {
        let r = mix::share_request(f);
        assert!(tracker
            .handle(r.as_bytes(), src, now)
            .reply
            .unwrap()
            .starts_with(b"RESPONSE"));
    }
    // The load benchmark's heavy scenario: 1000-peer swarms with scattered chunks, so every
    // flag 1 answer is a full page.
    for i in 1..=200_000 {
        tracker.handle(mix::heavy_report(i).as_bytes(), src, now);
    }
    for (label, req) in [
        ("flag 1", "REQUEST 1 file-042.bin tid=77".to_string()),
        (
            "flag 3",
            "REQUEST 3 file-042.bin 17 127.0.0.1:40001 tid=77".to_string(),
        ),
        ("flag 6", "REQUEST 6 tid=77".to_string()),
        ("flag 7", "REQUEST 7 file-042.bin tid=77".to_string()),
    ] {
        if std::env::var("SHOW").is_ok() {
            println!(
                "{}",
                String::from_utf8_lossy(&tracker.handle(req.as_bytes(), src, now).reply.unwrap())
            );
        }
        let requests = std::iter::repeat_n(req.as_str(), 100_000);
        report(label, &tracker, requests, src, now);
    }
    default_mix(config, src, now);
}

/// The load benchmark's default scenario through the handler: populated the same way, warmed
/// up, then timed over requests formatted beforehand.
fn default_mix(config: ServerConfig, src: SocketAddr, now: Instant) {
    let tracker = Tracker::new(config);
    for f in 0..mix::FILES {
        for r in mix::populating_requests(f) {
            assert!(tracker
                .handle(r.as_bytes(), src, now)
                .reply
                .is_some_and(|a| a.starts_with(b"RESPONSE")));
        }
    }
    let n = 200_000usize;
    let requests: Vec<String> = (0..2 * n)
        .map(|i| mix::request(i as u64, i as u32, false))
        .collect();
    let (warm, timed) = requests.split_at(n);
    for r in warm {
        tracker.handle(r.as_bytes(), src, now);
    }
    report(
        "default mix (40% flag 1, 40% flag 3, 20% flag 6)",
        &tracker,
        timed.iter().map(String::as_str),
        src,
        now,
    );
}

/// Times `requests` through the handler and prints the cost per request and answer size.
fn report<'a>(
    label: &str,
    tracker: &Tracker,
    requests: impl ExactSizeIterator<Item = &'a str>,
    src: SocketAddr,
    now: Instant,
) {
    let n = requests.len();
    let t = Instant::now();
    let mut bytes = 0;
    for r in requests {
        bytes += tracker
            .handle(r.as_bytes(), src, now)
            .reply
            .map_or(0, |a| a.len());
    }
    let per = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "{label}: {:.2} µs per request, {} bytes per answer",
        per * 1e6,
        bytes / n
    );
}

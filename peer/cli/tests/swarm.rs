//! Swarms of real processes on 127.0.0.1: leechers trade chunks with each other, so one seeder
//! with a total upload limit feeds many downloads while uploading each chunk about once.

mod common;

use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1 << 20;

/// A swarm test runs a dozen processes: one at a time, so each measures its own swarm rather
/// than the machine's load.
static ONE_SWARM_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_swarm_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_SWARM_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a seeder (`peer share`) uploaded in all, from the statistics it prints on SIGTERM.
fn uploaded_by(seeder: &mut Proc) -> f64 {
    seeder.terminate();
    let line = seeder.wait_line("  Uploaded:");
    let (value, unit) = line.split_once(' ').expect("amount and unit");
    let value: f64 = value.parse().expect("amount");
    value
        * match unit {
            "B" => 1.0,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            other => panic!("unit {other}"),
        }
}

/// A `peer get --json` of `name` into `dir`, with `extra` global flags.
fn leecher(tracker: SocketAddr, dir: &Path, name: &str, extra: &[&str]) -> Proc {
    let mut cmd = peer_cmd(tracker, dir);
    cmd.args(extra).args(["get", "--json", name]);
    Proc::spawn("leecher", &mut cmd)
}

/// The JSON outcome a leecher prints when its download is complete.
fn outcome(p: &mut Proc) -> serde_json::Value {
    let line = p.wait_line("{");
    serde_json::from_str(&format!("{{{line}")).expect("JSON outcome")
}

/// The upload rates a leecher's progress lines on stderr showed (the `up` field of
/// `f.bin  42.0%  84/200 chunks  down 1.2 MiB/s  up 150.0 KiB/s  ETA 3s ...`), once it exited.
fn upload_rates_shown(p: &mut Proc) -> Vec<String> {
    p.wait();
    let mut err = String::new();
    if let Some(mut e) = p.child.stderr.take() {
        e.read_to_string(&mut err).expect("leecher stderr");
    }
    err.lines()
        .filter(|l| l.contains(" chunks  down "))
        .filter_map(|l| l.split("  up ").nth(1))
        .filter_map(|rest| rest.split("  ").next())
        .map(str::to_owned)
        .collect()
}

/// How long a download took, as the leecher measured it.
fn took(outcome: &serde_json::Value) -> Duration {
    Duration::from_secs_f64(outcome["seconds"].as_f64().expect("seconds"))
}

/// Bytes each peer address delivered, from an outcome.
fn sources(outcome: &serde_json::Value) -> Vec<(SocketAddr, u64)> {
    outcome["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| {
            (
                p["addr"].as_str().unwrap().parse().unwrap(),
                p["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// One seeder limited to `limit` bytes/s in all, `n` leechers of an `size`-byte file started
/// `stagger` apart: every leecher must get a byte-identical file, chunks from other leechers,
/// and the seeder must upload less than 1.5 times the file.
fn swarm_case(tag: &str, n: usize, size: usize, limit: u64, stagger: Duration) {
    let _serial = one_swarm_at_a_time();
    let t = TempDir::new(tag);
    let (_tracker, tracker) = start_tracker();
    let data = random_file(&t.join("f.bin"), size, 21);
    let limit = limit.to_string();
    let (mut seeder, seeder_addr) = start_seeder(
        tracker,
        &t.sub("seed"),
        &t.join("f.bin"),
        &["--upload-limit", &limit],
    );
    let started = Instant::now();
    let mut leechers = Vec::new();
    for i in 0..n {
        let dir = t.sub(&format!("l{i}"));
        leechers.push((leecher(tracker, &dir, "f.bin", &[]), dir, started.elapsed()));
        std::thread::sleep(stagger);
    }
    let mut finished = Vec::new();
    for (p, dir, start) in &mut leechers {
        let o = outcome(p);
        finished.push(*start + took(&o));
        assert_eq!(
            fs::read(dir.join("f.bin")).expect("downloaded file"),
            data,
            "a leecher's file differs"
        );
        let from_leechers: u64 = sources(&o)
            .iter()
            .filter(|(addr, _)| addr.port() != seeder_addr.port())
            .map(|(_, b)| b)
            .sum();
        assert!(
            from_leechers > 0,
            "a leecher got nothing from other leechers: {o}"
        );
        eprintln!(
            "leecher done after {:.1} s, {:.0}% of its chunks from other leechers",
            finished.last().unwrap().as_secs_f64(),
            100.0 * from_leechers as f64 / size as f64
        );
    }
    let uploaded = uploaded_by(&mut seeder);
    eprintln!(
        "{tag}: seeder uploaded {:.2} x the file; last leecher after {:.1} s",
        uploaded / size as f64,
        finished.iter().max().unwrap().as_secs_f64()
    );
    assert!(
        uploaded < 1.5 * size as f64,
        "the seeder uploaded {uploaded} bytes for a {size}-byte file"
    );
}

#[test]
fn eight_leechers_started_together_trade_with_each_other() {
    // 16 MiB (17 s at the seeder's limit) outlasts a choking period (10 s): a leecher whose
    // manifest came last finds every other leecher's upload slots taken until their next
    // rechoke, as in any swarm, and must still be traded with after it.
    swarm_case("swarm-8", 8, 16 * MIB, 1_000_000, Duration::ZERO);
}

#[test]
fn leechers_started_two_seconds_apart_trade_with_each_other() {
    // `peer get` leaves the swarm once complete, so the file is large enough (17 s at the
    // seeder's limit) that the first leechers are still there when the last one starts.
    swarm_case(
        "swarm-stagger",
        6,
        16 * MIB,
        1_000_000,
        Duration::from_secs(2),
    );
}

#[test]
fn a_leecher_leaving_or_killed_mid_download_does_not_stall_the_others() {
    let _serial = one_swarm_at_a_time();
    let t = TempDir::new("swarm-leave");
    let (_tracker, tracker) = start_tracker();
    let size = 8 * MIB;
    let data = random_file(&t.join("f.bin"), size, 22);
    let (_seeder, _) = start_seeder(
        tracker,
        &t.sub("seed"),
        &t.join("f.bin"),
        &["--upload-limit", "1000000"],
    );
    let mut leechers: Vec<_> = (0..5)
        .map(|i| {
            let dir = t.sub(&format!("l{i}"));
            (leecher(tracker, &dir, "f.bin", &[]), dir)
        })
        .collect();
    wait_until("the leechers have started trading", || {
        leechers
            .iter()
            .all(|(_, dir)| recorded_chunks(dir, "f.bin") >= 200)
    });
    // One leaves the swarm cleanly (SIGTERM: flag 5), one dies without a word.
    let (mut leaving, _) = leechers.remove(0);
    leaving.terminate();
    let (mut killed, _) = leechers.remove(0);
    killed.kill();
    for (p, dir) in &mut leechers {
        outcome(p);
        assert_eq!(fs::read(dir.join("f.bin")).unwrap(), data);
    }
}

/// Bytes that the peer serving at `from` delivered, as an outcome lists them.
fn delivered_by(outcome: &serde_json::Value, from: SocketAddr) -> u64 {
    sources(outcome)
        .into_iter()
        .find(|(addr, _)| *addr == from)
        .map_or(0, |(_, b)| b)
}

#[test]
fn uploaders_give_each_other_more_than_a_free_rider_which_still_finishes() {
    let _serial = one_swarm_at_a_time();
    let t = TempDir::new("swarm-tft");
    let (_tracker, tracker) = start_tracker();
    // Long enough (about 75 s) for several optimistic turns: over 8 MiB (4 choker periods) who
    // got the one optimistic turn decided the outcome, and a free-rider picked by three of
    // six uploaders got as much as they gave each other.
    let size = 16 * MIB;
    let data = random_file(&t.join("f.bin"), size, 23);
    // A seeder with 2 upload slots and a total limit, so most chunks must come from leechers;
    // leechers whose uploads are scarce (300 kB/s and 2 slots each, as on a home line), so
    // what they upload is what their chokers hand out, by what each peer gave back.
    let (_seeder, _) = start_seeder(
        tracker,
        &t.sub("seed"),
        &t.join("f.bin"),
        &["--upload-limit", "400000", "--upload-slots", "2"],
    );
    let scarce = ["--upload-limit", "200000", "--upload-slots", "2"];
    let mut uploaders: Vec<_> = (0..6)
        .map(|i| {
            let dir = t.sub(&format!("u{i}"));
            let mut p = leecher(tracker, &dir, "f.bin", &scarce);
            let addr: SocketAddr = p.wait_line("peer listening on ").parse().unwrap();
            (p, dir, addr)
        })
        .collect();
    let free_dir = t.sub("free");
    let mut free_rider = leecher(tracker, &free_dir, "f.bin", &["--upload-slots", "0"]);
    let mut outcomes = Vec::new();
    for (p, dir, _) in &mut uploaders {
        let o = outcome(p);
        assert_eq!(fs::read(dir.join("f.bin")).unwrap(), data);
        assert!(
            o["uploaded"].as_u64().unwrap() > 0,
            "an uploader uploaded nothing: {o}"
        );
        outcomes.push(o);
    }
    let free = outcome(&mut free_rider);
    assert_eq!(fs::read(free_dir.join("f.bin")).unwrap(), data);
    assert_eq!(
        free["uploaded"].as_u64(),
        Some(0),
        "the free-rider uploaded: {free}"
    );

    // Their progress lines say they upload while they download, not "up 0 B/s" throughout.
    let shown: Vec<String> = uploaders
        .iter_mut()
        .flat_map(|(p, _, _)| upload_rates_shown(p))
        .collect();
    assert!(
        shown.iter().any(|rate| rate != "0 B/s"),
        "no uploader's progress line showed it uploading: {shown:?}"
    );

    let addrs: Vec<SocketAddr> = uploaders.iter().map(|(_, _, a)| *a).collect();
    let to_free: u64 = addrs.iter().map(|a| delivered_by(&free, *a)).sum();
    let mut between = 0;
    for (i, o) in outcomes.iter().enumerate() {
        for (j, a) in addrs.iter().enumerate() {
            if i != j {
                between += delivered_by(o, *a);
            }
        }
    }
    let per_free = to_free as f64 / addrs.len() as f64;
    let per_pair = between as f64 / (addrs.len() * (addrs.len() - 1)) as f64;
    let mut times: Vec<f64> = outcomes.iter().map(|o| took(o).as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    eprintln!(
        "uploaders finished after {times:.1?} s (mean {:.1}), the free-rider after {:.1} s; an \
         uploader gave another {:.0} KiB on average and the free-rider {:.0} KiB",
        times.iter().sum::<f64>() / times.len() as f64,
        took(&free).as_secs_f64(),
        per_pair / 1024.0,
        per_free / 1024.0
    );
    assert!(
        per_pair > per_free,
        "uploaders gave the free-rider {per_free} bytes each, each other only {per_pair}"
    );
}

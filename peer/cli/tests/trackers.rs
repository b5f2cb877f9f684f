//! Several trackers (protocol.txt §6.5) between real processes on loopback: two `--tracker`
//! flags, metainfo tiers whose first tier is dead, and trackers found through DNS (SRV and
//! A records served by a dnsmasq this test starts on 127.0.0.1; no resolver outside loopback
//! is ever asked). One tracker is killed mid-download; the download and later downloaders
//! carry on through the other.
//!
//! Without dnsmasq the DNS tests are skipped loudly; `DNS_TEST=require` (set with the NAT lab's
//! require mode, as in CI) makes that a failure.

mod common;

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1 << 20;

/// `peer` on `dir` with `args` before the subcommand (the tracker options), serving on an
/// ephemeral loopback port, no STUN (loopback needs none), as every peer test does.
fn peer(dir: &Path, args: &[String]) -> Command {
    let mut c = Command::new(peer_bin());
    c.args(args)
        .arg("--dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--stun", "none"])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("info".into()),
        );
    c
}

fn flags(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.clone()])
        .collect()
}

/// `peer share FILE` serving in the foreground, once it announced.
fn seed(dir: &Path, args: &[String], file: &Path, extra: &[&str]) -> Proc {
    let mut cmd = peer(dir, args);
    cmd.args(extra).arg("share").arg(file);
    let mut p = Proc::spawn("seeder", &mut cmd);
    p.wait_line("shared ");
    p
}

/// How many seeders `tracker` itself lists for `name` (asked directly, no failover).
fn seeders_at(tracker: SocketAddr, name: &str, dir: &Path) -> u64 {
    let out =
        run(peer(dir, &flags(&[("--tracker", tracker.to_string())]))
            .args(["query", name, "--json"]));
    if !out.status.success() {
        return 0;
    }
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("query JSON");
    v["seeders"].as_u64().unwrap_or(0)
}

fn wait_exit(p: &mut Proc) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(s)) = p.child.try_wait() {
            return s;
        }
        assert!(Instant::now() < deadline, "{} did not finish", p.name);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A UDP port that swallows every datagram: a tracker that never answers.
fn silent_tracker() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

#[test]
fn two_tracker_flags_announce_to_both_and_a_download_survives_one_killed() {
    let t = TempDir::new("two-trackers");
    let (mut first, a) = start_tracker();
    let (_second, b) = start_tracker();
    let both = flags(&[("--tracker", a.to_string()), ("--tracker", b.to_string())]);
    let data = random_file(&t.join("two.bin"), 4 * MIB, 11);
    let _seeder = seed(&t.sub("seed"), &both, &t.join("two.bin"), &[]);
    let probe = t.sub("probe");
    assert_eq!(
        seeders_at(a, "two.bin", &probe),
        1,
        "first tracker lists it"
    );
    assert_eq!(
        seeders_at(b, "two.bin", &probe),
        1,
        "second tracker lists it"
    );

    first.kill();
    let leech = t.sub("leech");
    let out = run(peer(&leech, &both).args(["get", "two.bin"]));
    assert!(out.status.success(), "get failed:\n{}", stderr(&out));
    assert!(fs::read(leech.join("two.bin")).unwrap() == data);
}

#[test]
fn a_metainfo_whose_first_tier_is_dead_is_fetched_through_the_second() {
    let t = TempDir::new("dead-tier");
    let (_silent, dead) = silent_tracker();
    let (_tracker, live) = start_tracker();
    let tiers = flags(&[
        ("--tracker", dead.to_string()),
        ("--tracker-tier", live.to_string()),
    ]);
    let data = random_file(&t.join("tier.bin"), MIB + 77, 12);
    let seed_dir = t.sub("seed");
    let _seeder = seed(&seed_dir, &tiers, &t.join("tier.bin"), &[]);
    assert_eq!(seeders_at(live, "tier.bin", &t.sub("probe")), 1);

    let metainfo = seed_dir.join("tier.bin.p2p");
    let shown = run(Command::new(peer_bin())
        .args(["show", "--json"])
        .arg(&metainfo));
    let shown: serde_json::Value = serde_json::from_str(stdout(&shown).trim()).unwrap();
    let text = shown.to_string();
    let (dead_url, live_url) = (format!("p2p://{dead}"), format!("p2p://{live}"));
    assert!(
        text.contains(&dead_url) && text.contains(&live_url),
        "both tiers in the metainfo: {text}"
    );

    // No --tracker: the metainfo's tiers decide.
    let leech = t.sub("leech");
    let mut get = Command::new(peer_bin());
    get.arg("--dir")
        .arg(&leech)
        .args(["--listen", "127.0.0.1:0", "--stun", "none", "get"])
        .arg(&metainfo);
    let out = run(&mut get);
    assert!(out.status.success(), "get failed:\n{}", stderr(&out));
    assert!(fs::read(leech.join("tier.bin")).unwrap() == data);
}

#[test]
fn a_dns_server_that_never_answers_gives_a_clear_error_in_bounded_time() {
    let t = TempDir::new("no-dns");
    let (_silent, dns) = silent_tracker();
    let started = Instant::now();
    let out = run(peer(
        &t.sub("p"),
        &flags(&[
            ("--dns-server", dns.to_string()),
            ("--tracker", "tracker.nowhere.test:6969".into()),
        ]),
    )
    .arg("list"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot resolve tracker tracker.nowhere.test:6969"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn bad_tracker_addresses_are_refused_before_anything_runs() {
    let t = TempDir::new("bad-tracker");
    for bad in ["127.0.0.1", "host:0", "ho st:1", "a..b:1"] {
        let out = run(peer(&t.sub("p"), &flags(&[("--tracker", bad.into())])).arg("list"));
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            stderr(&out).contains("tracker address"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

/// A dnsmasq answering only from the records given, on a free loopback port; killed on drop.
struct Dns {
    addr: SocketAddr,
    _proc: Proc,
}

impl Dns {
    /// `None` (after saying so loudly) when dnsmasq is not installed, unless required.
    fn start(records: &[String]) -> Option<Dns> {
        let found = Command::new("dnsmasq")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("DNS_TEST").as_deref() != Ok("require"),
                "DNS_TEST=require but dnsmasq is not installed (apt-get install dnsmasq)"
            );
            eprintln!(
                "#### SKIPPED: dnsmasq is not installed, trackers through DNS were NOT tested \
                 (apt-get install dnsmasq; DNS_TEST=require makes this a failure)"
            );
            return None;
        }
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file",
            "--user=root",
            "--log-facility=-",
        ])
        .arg(format!("--port={port}"))
        .args(records);
        let proc = Proc::spawn("dnsmasq", &mut cmd);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Up once its port is taken.
        wait_until("dnsmasq listening", || UdpSocket::bind(addr).is_err());
        Some(Dns { addr, _proc: proc })
    }
}

#[test]
fn trackers_found_by_srv_survive_one_killed_mid_download() {
    let (mut t1, a) = start_tracker();
    let (_t2, b) = start_tracker();
    let Some(dns) = Dns::start(&[
        format!(
            "--srv-host=_p2p-tracker._udp.swarm.test,t1.swarm.test,{},10,50",
            a.port()
        ),
        format!(
            "--srv-host=_p2p-tracker._udp.swarm.test,t2.swarm.test,{},10,50",
            b.port()
        ),
        "--host-record=t1.swarm.test,127.0.0.1".into(),
        "--host-record=t2.swarm.test,127.0.0.1".into(),
    ]) else {
        return;
    };
    let t = TempDir::new("srv");
    let by_name = flags(&[
        ("--dns-server", dns.addr.to_string()),
        ("--tracker", "swarm.test".into()),
    ]);
    let data = random_file(&t.join("srv.bin"), 12 * MIB, 13);
    // A slow seeder (1 MB/s per connection), so the kill lands while chunks are missing.
    let seed_dir = t.sub("seed");
    let _seeder = seed(
        &seed_dir,
        &by_name,
        &t.join("srv.bin"),
        &["--upload-rate", "1000000"],
    );
    let probe = t.sub("probe");
    assert_eq!(seeders_at(a, "srv.bin", &probe), 1, "t1 lists the seeder");
    assert_eq!(seeders_at(b, "srv.bin", &probe), 1, "t2 lists the seeder");
    let metainfo = fs::read(seed_dir.join("srv.bin.p2p")).unwrap();
    assert!(
        String::from_utf8_lossy(&metainfo).contains("p2p://swarm.test"),
        "the metainfo names the domain"
    );

    let leech = t.sub("leech");
    let mut getter = Proc::spawn("leecher", peer(&leech, &by_name).args(["get", "srv.bin"]));
    wait_until("first chunks", || recorded_chunks(&leech, "srv.bin") > 0);
    t1.kill();
    assert!(
        recorded_chunks(&leech, "srv.bin") < 6144,
        "download finished before the tracker was killed"
    );
    let status = wait_exit(&mut getter);
    assert!(status.success(), "leecher failed after a tracker died");
    assert!(fs::read(leech.join("srv.bin")).unwrap() == data);

    let late = t.sub("late");
    let out = run(peer(&late, &by_name).args(["get", "srv.bin"]));
    assert!(out.status.success(), "late get failed:\n{}", stderr(&out));
    assert!(fs::read(late.join("srv.bin")).unwrap() == data);
}

#[test]
fn a_host_with_two_a_records_is_tried_address_by_address() {
    let (mut first, a) = start_tracker();
    // The same port on 127.0.0.2: one name, two addresses.
    let mut second = Proc::spawn(
        "tracker2",
        Command::new(tracker_bin()).args(["--bind", &format!("127.0.0.2:{}", a.port())]),
    );
    second.wait_line("tracker listening on ");
    let Some(dns) = Dns::start(&[
        "--host-record=multi.swarm.test,127.0.0.1".into(),
        "--host-record=multi.swarm.test,127.0.0.2".into(),
    ]) else {
        return;
    };
    let t = TempDir::new("multi-a");
    let by_name = flags(&[
        ("--dns-server", dns.addr.to_string()),
        ("--tracker", format!("multi.swarm.test:{}", a.port())),
    ]);
    let data = random_file(&t.join("a.bin"), MIB, 14);
    let _seeder = seed(&t.sub("seed"), &by_name, &t.join("a.bin"), &[]);
    first.kill();
    // The seeder's next heartbeat goes to the other address, which does not know it yet
    // (PEER_NOT_FOUND): it shares again there.
    let second_addr: SocketAddr = format!("127.0.0.2:{}", a.port()).parse().unwrap();
    let probe = t.sub("probe");
    wait_until("the seeder listed at the second address", || {
        seeders_at(second_addr, "a.bin", &probe) == 1
    });
    let leech = t.sub("leech");
    let out = run(peer(&leech, &by_name).args(["get", "a.bin"]));
    assert!(out.status.success(), "get failed:\n{}", stderr(&out));
    assert!(fs::read(leech.join("a.bin")).unwrap() == data);

    let out = run(peer(
        &leech,
        &flags(&[
            ("--dns-server", dns.addr.to_string()),
            ("--tracker", "nosuch.swarm.test:6969".into()),
        ]),
    )
    .arg("list"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot resolve tracker nosuch.swarm.test:6969"),
        "{}",
        stderr(&out)
    );
}

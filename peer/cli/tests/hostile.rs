//! Hostile clients against a real `peer daemon` with default flags (protocol.txt §2): idle and
//! half-open connections, clients that request and never read, malformed and out-of-range
//! frames, wrong names and ids, duplicates, floods and lies, a thousand connections from one
//! IP. The attacker speaks from 127.0.0.2 (loopback is all of 127/8), the honest downloader, a
//! real `peer get`, from 127.0.0.1: each test checks that the honest download still completes
//! byte-identical and prints the outcome with the daemon's peak RSS (VmHWM, reset before each
//! attack) to target/tmp/hostile-figures.txt.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::raw::{self, End, Raw};
use common::victim::{figure, mib, Daemon};
use common::*;
use peer_engine::manifest::{FileId, Manifest};
use peer_engine::wire::{ChunkRun, ErrorCode, Frame, PeerId};

const NAME: &str = "f.bin";

/// The attacker's address: another host, as far as the daemon can tell.
fn attacker_ip() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}

/// A tracker and a daemon seeding one file of `size` random bytes.
struct Lab {
    t: TempDir,
    seed: std::path::PathBuf,
    _tracker_proc: Proc,
    tracker: SocketAddr,
    daemon: Daemon,
    data: Vec<u8>,
    id: FileId,
    chunks: u32,
    gets: u32,
}

impl Lab {
    fn new(tag: &str, size: usize) -> Lab {
        let t = TempDir::new(tag);
        let (tracker_proc, tracker) = start_tracker();
        let seed = t.sub("seed");
        let data = random_file(&seed.join(NAME), size, size as u64 ^ 0x5eed);
        let manifest = Manifest::from_data(&data, 2048).expect("manifest");
        let daemon = Daemon::start(tracker, &seed, t.path(), &[NAME]);
        Lab {
            chunks: manifest.chunk_count(),
            id: manifest.id(),
            t,
            seed,
            _tracker_proc: tracker_proc,
            tracker,
            daemon,
            data,
            gets: 0,
        }
    }

    fn connect(&self) -> Raw {
        Raw::connect_from(attacker_ip(), self.daemon.addr).expect("connect to the daemon")
    }

    /// A connection past the handshake, as a peer that holds nothing and has sent its BITFIELD.
    fn joined(&self) -> (Raw, PeerId) {
        let mut c = self.connect();
        let me = PeerId::random();
        let greeting = c
            .handshake(me, NAME, self.id, None)
            .unwrap_or_else(|f| panic!("handshake refused: {f:?}"));
        let bits = peer_engine::bitfield::Bitfield::from_wire(&greeting.bits, self.chunks)
            .expect("the daemon's BITFIELD");
        assert_eq!(bits.count(), self.chunks, "the daemon seeds the whole file");
        c.send(&Frame::Bitfield(empty_bitfield(self.chunks)))
            .expect("send BITFIELD");
        (c, me)
    }

    /// A real `peer get --json` of the file from 127.0.0.1, with default flags; checks the file
    /// and returns how long it took and its JSON outcome.
    fn honest_get(&mut self) -> (Duration, serde_json::Value) {
        self.gets += 1;
        let dir = self.t.sub(&format!("leech{}", self.gets));
        let started = Instant::now();
        let out = run(peer_cmd(self.tracker, &dir).args(["get", "--json", NAME]));
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "the honest download failed under attack:\n{}\ndaemon log:\n{}",
            stderr(&out),
            self.daemon.log()
        );
        assert!(
            std::fs::read(dir.join(NAME)).expect("downloaded file") == self.data,
            "the honest download differs"
        );
        let text = stdout(&out);
        let line = text
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON outcome in:\n{text}"));
        let json = serde_json::from_str(line).expect("get --json");
        (took, json)
    }
}

fn empty_bitfield(chunks: u32) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(peer_engine::bitfield::Bitfield::empty(chunks).as_wire())
}

/// An attack running in its own thread until stopped.
struct Attack<T> {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<T>,
}

impl<T: Send + 'static> Attack<T> {
    fn start(f: impl FnOnce(Arc<AtomicBool>) -> T + Send + 'static) -> Attack<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        Attack {
            stop,
            handle: std::thread::spawn(move || f(s)),
        }
    }

    fn finish(self) -> T {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("attack thread")
    }
}

/// How the connections of an idle attack ended.
#[derive(Debug, Default)]
struct IdleStats {
    opened: u64,
    /// Refused at once with ERROR 1005 (no slot).
    refused: u64,
    /// Closed by the server without a word after a while (its handshake deadline).
    timed_out: u64,
    /// The longest a connection stayed open without completing a handshake.
    longest: Duration,
}

/// Keeps `count` connections from `ips` open to `to`, each sending `opening` and then nothing;
/// a connection the server closes is opened again at once, as a real attacker would.
fn idle_flood(
    ips: Vec<IpAddr>,
    to: SocketAddr,
    count: usize,
    opening: impl Fn(usize) -> Vec<u8> + Send + 'static,
) -> Attack<IdleStats> {
    Attack::start(move |stop| {
        let mut stats = IdleStats::default();
        let open = |i: usize, stats: &mut IdleStats| -> Option<Raw> {
            let mut c = Raw::connect_from(ips[i % ips.len()], to).ok()?;
            stats.opened += 1;
            let _ = c.send_bytes(&opening(i));
            Some(c)
        };
        let mut conns: Vec<Option<Raw>> = (0..count).map(|i| open(i, &mut stats)).collect();
        while !stop.load(Ordering::Relaxed) {
            for (i, slot) in conns.iter_mut().enumerate() {
                let closed = slot.as_mut().is_none_or(|c| c.is_closed());
                if !closed {
                    continue;
                }
                if let Some(mut c) = slot.take() {
                    let lived = c.opened.elapsed();
                    match c.read_frame(Duration::ZERO) {
                        Ok(Frame::Error {
                            code: ErrorCode::ConnectionRefused,
                            ..
                        }) => stats.refused += 1,
                        _ => {
                            stats.timed_out += 1;
                            stats.longest = stats.longest.max(lived);
                        }
                    }
                }
                *slot = open(i, &mut stats);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stats
    })
}

#[test]
fn idle_and_half_open_connections_from_one_host_leave_room_for_a_download() {
    let mut lab = Lab::new("idle", 4 << 20);
    lab.daemon.reset_peak();
    // Half send nothing, half four bytes of a frame header (a HANDSHAKE's length) and stop.
    let attack = idle_flood(vec![attacker_ip()], lab.daemon.addr, 300, |i| {
        if i % 2 == 0 {
            Vec::new()
        } else {
            57u32.to_be_bytes().to_vec()
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let held = lab.daemon.open_fds();
    let (took, _) = lab.honest_get();
    // Long enough for the handshake deadline to have closed some idle ones.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(took));
    let stats = attack.finish();
    lab.daemon.assert_alive();
    assert!(stats.refused > 0, "no connection was refused: {stats:?}");
    assert!(
        stats.timed_out > 0 && stats.longest < Duration::from_secs(30),
        "idle connections were not closed by the handshake deadline: {stats:?}"
    );
    figure(&format!(
        "idle: 300 idle/half-open connections from 127.0.0.2, reopened when closed ({} opened, {} refused at once, {} closed by the handshake deadline, longest {:.1} s; daemon held {held} fds): honest get from 127.0.0.1 completed in {:.1} s; daemon peak RSS {}",
        stats.opened,
        stats.refused,
        stats.timed_out,
        stats.longest.as_secs_f64(),
        took.as_secs_f64(),
        mib(lab.daemon.peak_kib())
    ));
}

#[test]
fn a_thousand_connections_from_one_ip_leave_room_for_a_download() {
    raw::allow_open_files(1500);
    let mut lab = Lab::new("thousand", 4 << 20);
    lab.daemon.reset_peak();
    let started = Instant::now();
    let mut conns: Vec<Raw> = (0..1000).map(|_| lab.connect()).collect();
    let opened = started.elapsed();
    // Each sends a valid HANDSHAKE: those with a slot are served, the rest refused.
    for c in &mut conns {
        let _ = c.send(&raw::hello(PeerId::random(), NAME, lab.id, None));
    }
    std::thread::sleep(Duration::from_secs(1));
    let refused = conns
        .iter_mut()
        .map(|c| c.is_closed())
        .filter(|closed| *closed)
        .count();
    let (took, _) = lab.honest_get();
    lab.daemon.assert_alive();
    assert!(refused >= 1000 - 32, "only {refused} of 1000 refused");
    figure(&format!(
        "thousand: 1000 connections from 127.0.0.2 opened in {:.1} s, {refused} refused (per-IP cap 32): honest get from 127.0.0.1 completed in {:.1} s; daemon peak RSS {}",
        opened.as_secs_f64(),
        took.as_secs_f64(),
        mib(lab.daemon.peak_kib())
    ));
    drop(conns);
}

#[test]
fn idle_connections_from_many_hosts_cannot_fill_every_slot() {
    let mut lab = Lab::new("idle-many", 4 << 20);
    lab.daemon.reset_peak();
    // 300 connections from ten addresses: more than the daemon's 256 slots, within each
    // address's 32, all saying nothing and reopened as soon as they are closed.
    let ips: Vec<IpAddr> = (2..12)
        .map(|i| format!("127.0.0.{i}").parse().unwrap())
        .collect();
    let attack = idle_flood(ips, lab.daemon.addr, 300, |_| Vec::new());
    std::thread::sleep(Duration::from_secs(1));
    let held = lab.daemon.open_fds();
    let (took, _) = lab.honest_get();
    let stats = attack.finish();
    lab.daemon.assert_alive();
    assert!(
        held >= 256,
        "the attack did not fill the daemon's slots (it holds {held} fds)"
    );
    figure(&format!(
        "idle-many: 300 silent connections from 127.0.0.2-11, reopened when closed ({} opened, {} refused at once, {} closed to make room or by the deadline; daemon held {held} fds): honest get from 127.0.0.1 completed in {:.1} s; daemon peak RSS {}",
        stats.opened,
        stats.refused,
        stats.timed_out,
        took.as_secs_f64(),
        mib(lab.daemon.peak_kib())
    ));
}

/// What a client that asks and never reads does to the daemon.
#[derive(Debug, Default)]
struct GreedyStats {
    connections: u64,
    /// Bytes of requests the daemon took from us (it stops reading when it owes too much).
    pushed: u64,
    /// Connections the daemon closed on us (it drops a peer that takes none of its bytes).
    dropped: u64,
    /// Connections still open at the end whose first unread bytes include a CHUNK: the
    /// daemon was serving them.
    served: u64,
}

/// `count` connections from 127.0.0.2 that pipeline `frames` and never read a byte until the
/// attack stops; `interested` ones say INTERESTED first, so the choker unchokes some of them. A
/// connection the daemon drops is opened again.
fn greedy(lab: &Lab, count: usize, interested: bool, frames: Vec<Frame>) -> Attack<GreedyStats> {
    let (addr, id, chunks) = (lab.daemon.addr, lab.id, lab.chunks);
    Attack::start(move |stop| {
        let mut batch = bytes::BytesMut::new();
        for _ in 0..64 {
            for f in &frames {
                f.encode(&mut batch);
            }
        }
        let mut stats = GreedyStats::default();
        let open = |stats: &mut GreedyStats| -> Option<Raw> {
            let mut c = Raw::connect_from(attacker_ip(), addr).ok()?;
            c.handshake(PeerId::random(), NAME, id, None).ok()?;
            c.send(&Frame::Bitfield(empty_bitfield(chunks))).ok()?;
            if interested {
                c.send(&Frame::Interested).ok()?;
            }
            stats.connections += 1;
            Some(c)
        };
        let mut conns: Vec<Option<Raw>> = (0..count).map(|_| open(&mut stats)).collect();
        while !stop.load(Ordering::Relaxed) {
            for slot in conns.iter_mut() {
                let Some(c) = slot else {
                    *slot = open(&mut stats);
                    continue;
                };
                match c.push(&batch) {
                    Ok(n) => stats.pushed += n as u64,
                    Err(_) => {
                        stats.dropped += 1;
                        *slot = None;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for c in conns.iter_mut().flatten() {
            loop {
                match c.read_frame(Duration::from_millis(500)) {
                    Ok(Frame::Chunk { .. }) => {
                        stats.served += 1;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        stats
    })
}

/// Runs a greedy attack beside an honest download, prints its figure and returns the stats.
fn greedy_case(tag: &str, what: &str, interested: bool, frames: Vec<Frame>) -> GreedyStats {
    let mut lab = Lab::new(tag, 8 << 20);
    let base = lab.daemon.rss_kib();
    lab.daemon.reset_peak();
    let attack = greedy(&lab, 16, interested, frames);
    // Let the backlog build up before the honest download starts.
    std::thread::sleep(Duration::from_secs(3));
    let (took, _) = lab.honest_get();
    let stats = attack.finish();
    lab.daemon.assert_alive();
    let peak = lab.daemon.peak_kib();
    figure(&format!(
        "{tag}: 16 connections from 127.0.0.2 {what}, never reading ({} opened, {} dropped by the daemon, {:.1} MiB of requests taken, {} being served at the end): honest get from 127.0.0.1 completed in {:.1} s; daemon RSS {} before, peak {}",
        stats.connections,
        stats.dropped,
        stats.pushed as f64 / (1 << 20) as f64,
        stats.served,
        took.as_secs_f64(),
        mib(base),
        mib(peak)
    ));
    // 2 MiB of answers per connection (protocol.txt §2.4) plus buffers and the honest
    // download; an unbounded queue grows by hundreds of MiB here.
    assert!(
        peak < base + 16 * 6 * 1024 + 64 * 1024,
        "the daemon's memory grew from {} to {}",
        mib(base),
        mib(peak)
    );
    stats
}

#[test]
fn requests_never_read_while_unchoked_stay_bounded() {
    let stats = greedy_case(
        "greedy-unchoked",
        "interested, pipelining REQUESTs of 64 chunks",
        true,
        vec![Frame::Request(ChunkRun::new(0, 64))],
    );
    assert!(
        stats.served > 0,
        "the choker unchoked none of the attackers, so this tested nothing: {stats:?}"
    );
}

#[test]
fn requests_never_read_while_choked_stay_bounded() {
    greedy_case(
        "greedy-choked",
        "not interested (choked), pipelining REQUESTs",
        false,
        vec![Frame::Request(ChunkRun::new(0, 64))],
    );
}

/// Regression: manifest answers were not counted in what a connection owes, so the daemon kept
/// reading GET_MANIFESTs from a peer that never read, queued a blocking-pool read for each, and
/// starved every other connection (an honest download could not get its handshake answered).
#[test]
fn manifest_requests_never_read_stay_bounded() {
    greedy_case(
        "greedy-manifest",
        "pipelining GET_MANIFEST of 4096 hashes",
        false,
        vec![Frame::GetManifest {
            start: 0,
            count: 4096,
        }],
    );
}

/// Regression: REQUESTs read while a connection's output was full (2 MiB owed) waited in its read
/// buffer until the peer sent something more, so a peer that asked for all it wanted in one go
/// and then only read waited forever (with a deeper request window, downloads stalled for the
/// 15 s stall timeout at their very end).
#[test]
fn requests_pipelined_past_the_output_bound_are_all_answered() {
    let lab = Lab::new("deep-pipeline", 8 << 20);
    let (mut c, _) = lab.joined();
    c.send(&Frame::Interested).expect("send INTERESTED");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.read_frame(deadline.saturating_duration_since(Instant::now())) {
            Ok(Frame::Unchoke) => break,
            Ok(_) => {}
            Err(end) => panic!("never unchoked ({end:?})"),
        }
    }
    // All 4096 chunks (8 MiB, four times what a connection may owe) in one write.
    let mut all = bytes::BytesMut::new();
    for first in (0..lab.chunks).step_by(64) {
        Frame::Request(ChunkRun::new(first, 64.min(lab.chunks - first))).encode(&mut all);
    }
    c.send_bytes(&all).expect("send the REQUESTs");
    let mut next = 0;
    while next < lab.chunks {
        match c.read_frame(Duration::from_secs(10)) {
            Ok(Frame::Chunk { index, data }) => {
                assert_eq!(index, next, "chunks arrive in request order");
                let at = index as usize * 2048;
                assert!(data[..] == lab.data[at..at + data.len()], "chunk {index} differs");
                next += 1;
            }
            Ok(Frame::KeepAlive | Frame::Have(_)) => {}
            Ok(other) => panic!("unexpected {} after {next} chunks", other.name()),
            Err(end) => panic!(
                "{end:?} after {next} of {} chunks: the daemon stopped answering requests it had read",
                lab.chunks
            ),
        }
    }
}

/// How the daemon must end a connection that misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// With this ERROR, then close.
    Error(ErrorCode),
    /// Closed, with or without an ERROR first.
    Closed,
}

/// A HANDSHAKE whose NAME is `name`'s raw bytes, which need not be a valid file name.
fn raw_hello(name: &[u8], id: FileId) -> Vec<u8> {
    let mut payload = b"P2PW".to_vec();
    payload.push(peer_engine::wire::VERSION);
    payload.extend_from_slice(&PeerId::random().0);
    payload.extend_from_slice(&id.0);
    payload.push(name.len() as u8);
    payload.extend_from_slice(name);
    payload.push(0);
    let mut bytes = raw::header(payload.len() as u32 + 1, 0x01);
    bytes.extend_from_slice(&payload);
    bytes
}

fn encoded(frames: &[Frame]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for f in frames {
        f.encode(&mut out);
    }
    out.to_vec()
}

/// Sends `bytes` on `c` and checks that the daemon ends the connection as `expect` says within
/// `limit`; returns a line for the figure and the message of its ERROR.
fn expect_end(
    c: &mut Raw,
    case: &str,
    bytes: &[u8],
    expect: Expect,
    limit: Duration,
) -> (String, String) {
    let started = Instant::now();
    // The daemon may close before taking everything: a failed write is part of the answer.
    let _ = c.send_bytes(bytes);
    let (frames, end) = c.drain(limit);
    let took = started.elapsed();
    assert_eq!(
        end,
        End::Closed,
        "{case}: the daemon kept the connection open for {limit:?} (it sent {frames:?})"
    );
    let error = frames.iter().rev().find_map(|f| match f {
        Frame::Error { code, message } => Some((*code, message.clone())),
        _ => None,
    });
    if let Expect::Error(code) = expect {
        assert_eq!(
            error.as_ref().map(|e| e.0),
            Some(code),
            "{case}: expected ERROR {code:?}, got {frames:?}"
        );
    }
    let (said, message) = error.map_or(("closed".to_owned(), String::new()), |(code, m)| {
        (format!("{code:?}"), m)
    });
    let line = format!("{case}: {said} in {:.0} ms", took.as_secs_f64() * 1000.0);
    (line, message)
}

#[test]
fn malformed_unexpected_and_lying_frames_are_refused_while_others_are_served() {
    let mut lab = Lab::new("frames", 1 << 20);
    let private = lab.t.sub("private");
    std::fs::write(private.join("secret.txt"), b"not for you").unwrap();
    std::os::unix::fs::symlink(private.join("secret.txt"), lab.seed.join("secret.txt"))
        .expect("symlink into the share directory");
    lab.daemon.reset_peak();
    let chunks = lab.chunks;
    let soon = Duration::from_secs(30);
    let mut lines = Vec::new();
    let bad_frame = Expect::Error(ErrorCode::BadFrame);

    // Before the handshake: every other frame type, unknown types, bounds broken from the
    // header. Each is refused from its first 5 bytes, without the payload being sent at all.
    let mut before: Vec<(String, Vec<u8>)> = [
        Frame::Bitfield(empty_bitfield(chunks)),
        Frame::Have(vec![0]),
        Frame::GetManifest { start: 0, count: 1 },
        Frame::Manifest {
            start: 0,
            hashes: vec![[0; 32]],
        },
        Frame::Request(ChunkRun::new(0, 1)),
        Frame::Chunk {
            index: 0,
            data: bytes::Bytes::from_static(&[0; 2048]),
        },
        Frame::Reject(ChunkRun::new(0, 1)),
        Frame::Choke,
        Frame::Unchoke,
        Frame::Interested,
        Frame::NotInterested,
        Frame::KeepAlive,
    ]
    .into_iter()
    .map(|f| (format!("{} before HANDSHAKE", f.name()), encoded(&[f])))
    .collect();
    for (case, header) in [
        ("unknown type 0x0F", raw::header(1, 0x0f)),
        ("unknown type 0xFF", raw::header(1, 0xff)),
        ("LENGTH 0", raw::header(0, 0x01)),
        ("HANDSHAKE of 330 bytes", raw::header(330, 0x01)),
        ("HANDSHAKE of 4 GiB", raw::header(u32::MAX, 0x01)),
        ("CHUNK header of 1 MiB", raw::header(1 << 20, 0x07)),
    ] {
        before.push((case.to_owned(), header));
    }
    for (case, bytes) in &before {
        lines.push(expect_end(&mut lab.connect(), case, bytes, bad_frame, soon).0);
    }

    // Handshakes the daemon must refuse, and what it may say.
    let mut wrong_id = lab.id;
    wrong_id.0[0] ^= 1;
    let mut old = raw::hello(PeerId::random(), NAME, lab.id, None);
    if let Frame::Handshake { version, .. } = &mut old {
        *version = 1;
    }
    let handshakes: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "version 1",
            encoded(&[old]),
            Expect::Error(ErrorCode::UnsupportedVersion),
        ),
        (
            "a name not shared",
            raw_hello(b"nothing.bin", lab.id),
            Expect::Error(ErrorCode::FileNotFound),
        ),
        (
            "../private/secret.txt",
            raw_hello(b"../private/secret.txt", lab.id),
            Expect::Error(ErrorCode::FileNotFound),
        ),
        (
            "a symlink to a private file",
            raw_hello(b"secret.txt", lab.id),
            Expect::Error(ErrorCode::FileNotFound),
        ),
        (
            "the right name, a wrong id",
            raw_hello(NAME.as_bytes(), wrong_id),
            Expect::Error(ErrorCode::HashMismatch),
        ),
        (
            "a HANDSHAKE cut after 20 bytes",
            raw_hello(NAME.as_bytes(), lab.id)[..20].to_vec(),
            Expect::Closed,
        ),
    ];
    // A refusal never reveals the id of the file the daemon has under that name.
    let real_hex = lab.id.to_string().trim_start_matches("sha256:").to_owned();
    for (case, bytes, expect) in &handshakes {
        let (line, message) = expect_end(&mut lab.connect(), case, bytes, *expect, soon);
        assert!(
            !message.contains(&real_hex),
            "{case}: the refusal revealed the file's id: {message}"
        );
        lines.push(line);
    }

    // After the handshake (and our BITFIELD): out-of-range, unrequested and lying frames.
    let after: Vec<(&str, Vec<Frame>, Expect)> = vec![
        (
            "REQUEST past the last chunk",
            vec![Frame::Request(ChunkRun::new(chunks, 1))],
            bad_frame,
        ),
        (
            "REQUEST running past the end",
            vec![Frame::Request(ChunkRun::new(chunks - 1, 2))],
            bad_frame,
        ),
        (
            "HAVE past the last chunk",
            vec![Frame::Have(vec![chunks])],
            bad_frame,
        ),
        (
            "HAVE flood (the same chunk 100 times)",
            vec![Frame::Have(vec![0; 100])],
            bad_frame,
        ),
        (
            "unrequested CHUNK",
            vec![Frame::Chunk {
                index: 0,
                data: bytes::Bytes::from_static(&[0; 2048]),
            }],
            bad_frame,
        ),
        (
            "unrequested REJECT",
            vec![Frame::Reject(ChunkRun::new(0, 1))],
            bad_frame,
        ),
        (
            "a second BITFIELD",
            vec![Frame::Bitfield(empty_bitfield(chunks))],
            bad_frame,
        ),
        (
            "a second HANDSHAKE",
            vec![raw::hello(PeerId::random(), NAME, lab.id, None)],
            bad_frame,
        ),
    ];
    for (case, frames, expect) in &after {
        let (mut c, _) = lab.joined();
        lines.push(expect_end(&mut c, case, &encoded(frames), *expect, soon).0);
    }
    // BITFIELD lies: the wrong length, spare bits set.
    let mut long = empty_bitfield(chunks).to_vec();
    long.push(0);
    let mut spare = empty_bitfield(chunks + 1).to_vec();
    *spare.last_mut().unwrap() = 0xff;
    for (case, bits) in [
        ("a BITFIELD one byte too long", long),
        ("a BITFIELD with spare bits set", spare),
    ] {
        let mut c = lab.connect();
        c.handshake(PeerId::random(), NAME, lab.id, None)
            .expect("handshake");
        let frame = Frame::Bitfield(bytes::Bytes::from(bits));
        lines.push(expect_end(&mut c, case, &encoded(&[frame]), bad_frame, soon).0);
    }

    // A duplicate: the same peer id again from the same IP; the older connection goes.
    let (mut first, me) = lab.joined();
    let mut second = lab.connect();
    second
        .handshake(me, NAME, lab.id, None)
        .expect("the newer duplicate is accepted");
    lines.push(
        expect_end(
            &mut first,
            "a duplicate connection (the older one)",
            &[],
            Expect::Error(ErrorCode::Duplicate),
            soon,
        )
        .0,
    );
    assert!(!second.is_closed(), "the newer duplicate was closed too");
    // The daemon's own peer id: a connection to itself.
    let mut c = lab.connect();
    let own = c
        .handshake(PeerId::random(), NAME, lab.id, None)
        .expect("handshake")
        .peer_id;
    c.close();
    let mut c = lab.connect();
    lines.push(
        expect_end(
            &mut c,
            "a HANDSHAKE with the daemon's own peer id",
            &encoded(&[raw::hello(own, NAME, lab.id, None)]),
            Expect::Error(ErrorCode::Duplicate),
            soon,
        )
        .0,
    );

    let (took, _) = lab.honest_get();
    lab.daemon.assert_alive();
    figure(&format!(
        "frames: {} hostile connections from 127.0.0.2 each ended as the protocol says ({}); then an honest get from 127.0.0.1 completed in {:.1} s; daemon peak RSS {}",
        lines.len() + 1,
        lines.join("; "),
        took.as_secs_f64(),
        mib(lab.daemon.peak_kib())
    ));
}

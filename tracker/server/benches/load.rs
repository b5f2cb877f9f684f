//! Load benchmark: the release `tracker` binary on loopback under a mix of flags 1, 3 and 6
//! (40/40/20) from many simulated peers, measured against a null responder in the same run:
//! the null responder, the tracker with its in-memory store, then the tracker with
//! `--store redis://` on a `redis-server` this benchmark starts (skipped, saying so, when
//! redis-server is not installed). Prints requests/s, latency percentiles, CPU per request and
//! RSS for each, and each tracker's ratio to the null responder. The Redis row's CPU and RSS are
//! the tracker's and redis-server's together: what a request costs wherever it is spent.
//!
//! The null responder is the ceiling: the same SO_REUSEPORT sockets (`bind_sockets`), the same
//! `recvmmsg`/`sendmmsg` batches, and for every request a fixed `RESPONSE 6 files=0 tid=N`,
//! with no parsing beyond the tid and no store. It is this benchmark run again as a child
//! process (`LOAD_NULL_RESPONDER` set), so it can be pinned like the tracker. It runs twice:
//! first with its fixed answer (about 30 bytes), then, after the in-memory tracker, with every
//! answer padded to the mean length the tracker's answers to that flag had (pages of peers and
//! files run to 1,400 bytes). The second ceiling tells what the answer bytes cost the kernel
//! apart from what the tracker's own work costs.
//!
//! Per target, phase 1 (capacity): closed loop, each client thread keeps a window of requests
//! in flight. Phase 2 (latency): open loop at a fixed rate (default: half that target's phase-1
//! figure) in 250 µs batches, so latency is measured without the closed loop's own queueing.
//!
//! Environment: LOAD_SCENARIO (`default` or `heavy`, see [`request`]), LOAD_SECS (default 5),
//! LOAD_CLIENTS (phase-1 client sockets, default 4), LOAD_WINDOW (in flight per client in phase
//! 1, default 32), LOAD_RATE (phase-2 requests/s), LOAD_RATE_CLIENTS (phase-2 client sockets,
//! default 2: every client is a sender and a receiver thread on the tracker's own cores, and with
//! 8 of them on a 2-core machine the generator's scheduling delays, not the tracker, set the
//! tail), LOAD_WORKERS (tracker --workers, default: its own default), LOAD_PIN=1 (one worker
//! pinned to CPU 0 with `taskset`, the generator to CPU 1, as issue 15 measured; redis-server is
//! pinned to CPU 0 beside the worker, so the Redis-backed tracker gets the same one core).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracker::batch::{send_all, RecvBatch};

/// Set in the environment of the child that is the null responder.
const NULL_RESPONDER: &str = "LOAD_NULL_RESPONDER";

/// Set, besides [`NULL_RESPONDER`], for the null responder whose answers are as long as the
/// tracker's: ten comma-separated lengths in bytes, indexed by the request's flag.
const NULL_SIZES: &str = "LOAD_NULL_SIZES";

/// Answer lengths by request flag (`REQUEST <digit>`).
type Sizes = [usize; 10];

#[path = "common/mix.rs"]
mod mix;
use mix::{populating_requests, request, FILES, PEERS};

/// Slots of the send-time table; tids wrap around it.
const SLOTS: usize = 1 << 20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The measured process, and the redis-server behind it for the Redis target.
struct TrackerProcess(Child, Option<Child>);

impl TrackerProcess {
    /// CPU seconds used by the process and its redis-server.
    fn cpu_secs(&self) -> f64 {
        cpu_secs(self.0.id()) + self.1.as_ref().map_or(0.0, |r| cpu_secs(r.id()))
    }

    /// CPU seconds used by the redis-server alone.
    fn redis_cpu_secs(&self) -> f64 {
        self.1.as_ref().map_or(0.0, |r| cpu_secs(r.id()))
    }

    /// Resident memory of the process and its redis-server.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.0.id()) + self.1.as_ref().map_or(0, |r| rss_kib(r.id()))
    }
}

impl Drop for TrackerProcess {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.0).chain(self.1.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What is measured: the null responder (the ceiling), the same with answers padded to the
/// lengths the in-memory tracker's had (what the ceiling is with the answer bytes the protocol
/// makes us send), or the tracker with one of its stores.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Null,
    SizedNull(Sizes),
    Memory,
    Redis,
}

/// A redis-server on a free loopback port, persistent as a deployment would run it (append-only
/// file, fsync every second) in a directory of its own; `None` when it is not installed.
fn start_redis(dir: &std::path::Path) -> Option<(Child, u16)> {
    // Asked directly: pinned, the child spawned is `taskset`, which exists either way.
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let mut cmd = if pinned() {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", "redis-server"]);
        c
    } else {
        Command::new("redis-server")
    };
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ])
    .args(["--appendonly", "yes", "--appendfsync", "everysec"])
    .arg("--dir")
    .arg(dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let child = cmd.spawn().ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, port))
}

fn pinned() -> bool {
    std::env::var("LOAD_PIN").is_ok_and(|v| v == "1")
}

fn start(target: Target, redis: Option<(Child, u16)>) -> (TrackerProcess, SocketAddr) {
    let exe = match target {
        Target::Memory | Target::Redis => std::path::PathBuf::from(env!("CARGO_BIN_EXE_tracker")),
        Target::Null | Target::SizedNull(_) => {
            std::env::current_exe().expect("the benchmark's own path")
        }
    };
    let mut cmd = if pinned() {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    match target {
        // The 1,000 simulated peers all come from 127.0.0.1 but stand for a host each: one
        // host's default share of the caps (10 %) would refuse a full heavy swarm.
        Target::Memory | Target::Redis => {
            cmd.args(["--bind", "127.0.0.1:0", "--ip-share", "100"]);
        }
        Target::Null => {
            cmd.env(NULL_RESPONDER, "1");
        }
        Target::SizedNull(sizes) => {
            let list: Vec<String> = sizes.iter().map(usize::to_string).collect();
            cmd.env(NULL_RESPONDER, "1").env(NULL_SIZES, list.join(","));
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let workers = if pinned() {
        Some("1".to_string())
    } else {
        std::env::var("LOAD_WORKERS").ok()
    };
    if let Some((_, port)) = &redis {
        cmd.args(["--store", &format!("redis://127.0.0.1:{port}")]);
    }
    if let Some(w) = workers {
        match target {
            Target::Memory | Target::Redis => cmd.args(["--workers", &w]),
            Target::Null | Target::SizedNull(_) => cmd.env("LOAD_WORKERS", &w),
        };
    }
    let mut child = cmd.spawn().expect("start the measured process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("startup line");
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("address in startup line");
    (TrackerProcess(child, redis.map(|(r, _)| r)), addr)
}

/// The null responder's life: the tracker's sockets and batching, a fixed answer per request
/// (with [`NULL_SIZES`], padded after its first line to the length given for the request's flag).
fn null_responder() -> ! {
    let sizes: Sizes = std::env::var(NULL_SIZES).map_or([0; 10], |list| {
        let lengths: Vec<usize> = list
            .split(',')
            .map(|n| n.parse().expect("a length"))
            .collect();
        lengths.try_into().expect("ten lengths")
    });
    let workers = env_or(
        "LOAD_WORKERS",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let sockets =
        tracker::bind_sockets("127.0.0.1:0".parse().unwrap(), workers).expect("bind sockets");
    println!(
        "null responder listening on {}",
        sockets[0].local_addr().unwrap()
    );
    let threads: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            std::thread::spawn(move || {
                let mut batch = RecvBatch::new();
                let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
                loop {
                    let Ok(n) = batch.recv(&socket) else { continue };
                    out.clear();
                    for (datagram, from) in (0..n).filter_map(|i| batch.get(i)) {
                        let tid = request_tid(datagram).unwrap_or(0);
                        let mut answer = format!("RESPONSE 6 files=0 tid={tid}").into_bytes();
                        let size = message_flag(datagram, b"REQUEST ").map_or(0, |f| sizes[f]);
                        if size > answer.len() {
                            answer.push(b'\n');
                            answer.resize(size, b'.');
                        }
                        out.push((from, answer));
                    }
                    send_all(&socket, &out);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    std::process::exit(1)
}

/// The `tid=` of a request (its last token, as this benchmark sends them).
fn request_tid(request: &[u8]) -> Option<u32> {
    let at = request.windows(5).rposition(|w| w == b" tid=")?;
    std::str::from_utf8(&request[at + 5..]).ok()?.parse().ok()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) the process has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        });
    ticks.unwrap_or(0) as f64 / 100.0
}

/// Shares FILES files (see [`populating_requests`]).
fn populate(tracker: SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 2048];
    for f in 0..FILES {
        for r in populating_requests(f) {
            s.send_to(r.as_bytes(), tracker).unwrap();
            let (n, _) = s.recv_from(&mut buf).expect("populate answer");
            assert!(
                buf[..n].starts_with(b"RESPONSE"),
                "{}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }
}

/// The flag digit after `prefix` (`REQUEST ` or `RESPONSE `).
fn message_flag(message: &[u8], prefix: &[u8]) -> Option<usize> {
    let digit = *message.strip_prefix(prefix)?.first()?;
    digit.is_ascii_digit().then(|| usize::from(digit - b'0'))
}

fn answer_tid(answer: &[u8]) -> Option<u32> {
    let header = answer.split(|&b| b == b'\n').next()?;
    let at = header.windows(5).rposition(|w| w == b" tid=")?;
    std::str::from_utf8(&header[at + 5..]).ok()?.parse().ok()
}

#[derive(Default)]
struct Stats {
    latencies_ns: Vec<u64>,
    answered: u64,
    lost: u64,
    /// Bytes and number of the answers, by their flag.
    answer_bytes: [u64; 10],
    answers: [u64; 10],
}

impl Stats {
    fn record(&mut self, answer: &[u8], latency_ns: u64) {
        self.latencies_ns.push(latency_ns);
        self.answered += 1;
        if let Some(flag) = message_flag(answer, b"RESPONSE ") {
            self.answer_bytes[flag] += answer.len() as u64;
            self.answers[flag] += 1;
        }
    }

    /// Mean answer length by flag (0 where none came).
    fn mean_sizes(&self) -> Sizes {
        std::array::from_fn(|f| (self.answer_bytes[f] / self.answers[f].max(1)) as usize)
    }

    fn mean_answer(&self) -> u64 {
        self.answer_bytes.iter().sum::<u64>() / self.answers.iter().sum::<u64>().max(1)
    }

    fn add(&mut self, other: Stats) {
        self.latencies_ns.extend(other.latencies_ns);
        self.answered += other.answered;
        self.lost += other.lost;
        for f in 0..10 {
            self.answer_bytes[f] += other.answer_bytes[f];
            self.answers[f] += other.answers[f];
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1e6
}

/// What one phase measured, for the ratios.
struct Figures {
    rate: f64,
    p99_ms: f64,
    cpu_us: f64,
}

fn report(
    label: &str,
    stats: &mut Stats,
    secs: f64,
    process: &TrackerProcess,
    tracker_cpu: f64,
) -> Figures {
    stats.latencies_ns.sort_unstable();
    let figures = Figures {
        rate: stats.answered as f64 / secs,
        p99_ms: percentile(&stats.latencies_ns, 0.99),
        cpu_us: tracker_cpu * 1e6 / stats.answered.max(1) as f64,
    };
    println!(
        "{label}: {:.0} requests/s answered ({} in {secs:.1} s, {} lost), latency p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, answers of {} bytes on average, tracker RSS {} KiB, tracker CPU {:.1} µs per request ({:.0}% of a core)",
        stats.answered as f64 / secs,
        stats.answered,
        stats.lost,
        percentile(&stats.latencies_ns, 0.50),
        percentile(&stats.latencies_ns, 0.99),
        percentile(&stats.latencies_ns, 0.999),
        stats.mean_answer(),
        process.rss_kib(),
        tracker_cpu * 1e6 / stats.answered.max(1) as f64,
        tracker_cpu / secs * 100.0
    );
    figures
}

/// Closed loop: `window` requests in flight per client socket. Clients batch their system
/// calls like the tracker does, so the generator leaves the CPU to the tracker.
fn capacity(tracker: SocketAddr, clients: usize, window: usize, secs: f64, heavy: bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let start = Instant::now();
                let mut sent_at = vec![0u64; SLOTS];
                let mut tid: u32 = (c as u32) << 24;
                let mut i = c as u64 * 1_000_003;
                let mut stats = Stats {
                    latencies_ns: Vec::with_capacity(1 << 20),
                    ..Stats::default()
                };
                let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(window);
                let mut next =
                    |n: usize, out: &mut Vec<(SocketAddr, Vec<u8>)>, sent_at: &mut [u64]| {
                        out.clear();
                        let now = start.elapsed().as_nanos() as u64;
                        for _ in 0..n {
                            tid = tid.wrapping_add(1);
                            i += 1;
                            sent_at[tid as usize % SLOTS] = now;
                            out.push((tracker, request(i, tid, heavy).into_bytes()));
                        }
                    };
                next(window, &mut out, &mut sent_at);
                send_all(&s, &out);
                let mut batch = RecvBatch::new();
                while Instant::now() < deadline {
                    let n = match batch.recv(&s) {
                        Ok(n) => n,
                        Err(_) => {
                            // The window was lost (socket buffers overflowed): refill it.
                            stats.lost += window as u64;
                            window
                        }
                    };
                    let now = start.elapsed().as_nanos() as u64;
                    for (d, _) in (0..n).filter_map(|k| batch.get(k)) {
                        if let Some(t) = answer_tid(d) {
                            stats.record(d, now - sent_at[t as usize % SLOTS]);
                        }
                    }
                    next(n, &mut out, &mut sent_at);
                    send_all(&s, &out);
                }
                stats
            })
        })
        .collect();
    merge(threads)
}

/// Open loop at `rate` requests/s spread over `clients` sockets, sent in batches every
/// 250 µs; a second thread per socket receives the answers.
fn fixed_rate(tracker: SocketAddr, clients: usize, rate: u64, secs: f64, heavy: bool) -> Stats {
    const TICK: Duration = Duration::from_micros(250);
    let per_client_per_tick = (rate as f64 * TICK.as_secs_f64() / clients as f64).max(0.001);
    let start = Instant::now();
    let end = Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
                let rx = s.try_clone().unwrap();
                let sent_at: Arc<Vec<AtomicU64>> =
                    Arc::new((0..SLOTS).map(|_| AtomicU64::new(0)).collect());
                let done = Arc::new(AtomicBool::new(false));
                let receiver = {
                    let sent_at = Arc::clone(&sent_at);
                    let done = Arc::clone(&done);
                    std::thread::spawn(move || {
                        let mut stats = Stats {
                            latencies_ns: Vec::with_capacity(1 << 20),
                            ..Stats::default()
                        };
                        let mut batch = RecvBatch::new();
                        while !done.load(Ordering::Relaxed) {
                            let Ok(n) = batch.recv(&rx) else { continue };
                            let now = start.elapsed().as_nanos() as u64;
                            for (d, _) in (0..n).filter_map(|k| batch.get(k)) {
                                if let Some(t) = answer_tid(d) {
                                    let sent = sent_at[t as usize % SLOTS].load(Ordering::Relaxed);
                                    stats.record(d, now.saturating_sub(sent));
                                }
                            }
                        }
                        stats
                    })
                };
                let mut tid: u32 = (c as u32) << 24;
                let mut i = c as u64 * 1_000_003;
                let mut due = 0.0f64;
                let mut sent = 0u64;
                let mut tick = 0u32;
                let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
                while start.elapsed() < end {
                    due += per_client_per_tick;
                    out.clear();
                    let now = start.elapsed().as_nanos() as u64;
                    while due >= 1.0 {
                        due -= 1.0;
                        tid = tid.wrapping_add(1);
                        i += 1;
                        sent_at[tid as usize % SLOTS].store(now, Ordering::Relaxed);
                        out.push((tracker, request(i, tid, heavy).into_bytes()));
                    }
                    send_all(&s, &out);
                    sent += out.len() as u64;
                    tick += 1;
                    if let Some(wait) = (TICK * tick).checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
                done.store(true, Ordering::Relaxed);
                let mut stats = receiver.join().expect("receiver thread");
                stats.lost = sent.saturating_sub(stats.answered);
                stats
            })
        })
        .collect();
    merge(threads)
}

fn merge(threads: Vec<std::thread::JoinHandle<Stats>>) -> Stats {
    let mut all = Stats::default();
    for t in threads {
        all.add(t.join().expect("client thread"));
    }
    all
}

fn main() {
    if std::env::var_os(NULL_RESPONDER).is_some() {
        null_responder();
    }
    let secs: f64 = env_or("LOAD_SECS", 5.0);
    let clients: usize = env_or("LOAD_CLIENTS", 4);
    let window: usize = env_or("LOAD_WINDOW", 32);
    // More sockets in phase 2: the tracker spreads sources over its receive threads by
    // address hash, and a few sources can land unevenly.
    let rate_clients: usize = env_or("LOAD_RATE_CLIENTS", 2);
    let heavy = std::env::var("LOAD_SCENARIO").is_ok_and(|s| s == "heavy");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if pinned() {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it; pid 0 is this thread,
        // whose later children (the client threads) inherit the mask.
        let ok = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(1, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        };
        assert!(ok, "cannot pin the generator to CPU 1");
    }
    println!(
        "tracker load benchmark ({} scenario): {FILES} files, {PEERS} simulated reporting peers, mix 40% flag 1 / 40% flag 3 / 20% flag 6, {clients} client sockets, {} CPUs, {}",
        if heavy { "heavy" } else { "default" },
        cpus,
        if pinned() {
            "1 worker pinned to CPU 0, generator on CPU 1"
        } else {
            "unpinned"
        }
    );
    let redis_dir = std::env::temp_dir().join(format!("load-bench-redis-{}", std::process::id()));
    let mut figures = Vec::new();
    let mut memory_sizes: Sizes = [0; 10];
    for (target, name) in [
        (Target::Null, "null responder"),
        (Target::Memory, "tracker (memory)"),
        (
            Target::SizedNull([0; 10]),
            "null responder, answers sized as the tracker's",
        ),
        (Target::Redis, "tracker (redis)"),
    ] {
        // The sized null responder runs after the in-memory tracker, whose answers it copies.
        let target = match target {
            Target::SizedNull(_) => Target::SizedNull(memory_sizes),
            other => other,
        };
        let redis = if target == Target::Redis {
            std::fs::create_dir_all(&redis_dir).expect("a directory for redis-server");
            match start_redis(&redis_dir) {
                Some(r) => Some(r),
                None => {
                    println!("{name}: SKIPPED, redis-server is not installed");
                    continue;
                }
            }
        } else {
            None
        };
        let (process, addr) = start(target, redis);
        populate(addr);
        let (cpu, redis_cpu) = (process.cpu_secs(), process.redis_cpu_secs());
        let mut stats = capacity(addr, clients, window, secs, heavy);
        let (cpu, redis_cpu) = (
            process.cpu_secs() - cpu,
            process.redis_cpu_secs() - redis_cpu,
        );
        let max_rate = stats.answered as f64 / secs;
        let label = format!("{name}: capacity (closed loop, window {window}/client)");
        let full = report(&label, &mut stats, secs, &process, cpu);
        if target == Target::Memory {
            memory_sizes = stats.mean_sizes();
        }
        if target == Target::Redis {
            println!(
                "{name}: redis-server's share of the CPU in the capacity phase: {:.0}%",
                redis_cpu / cpu.max(1e-9) * 100.0
            );
        }
        let rate: u64 = env_or("LOAD_RATE", (max_rate / 2.0) as u64);
        let cpu = process.cpu_secs();
        let mut stats = fixed_rate(addr, rate_clients, rate, secs, heavy);
        let cpu = process.cpu_secs() - cpu;
        let half = report(
            &format!("{name}: fixed rate {rate} requests/s (open loop)"),
            &mut stats,
            secs,
            &process,
            cpu,
        );
        figures.push((target, name, full, half));
    }
    let _ = std::fs::remove_dir_all(&redis_dir);
    let ceilings: Vec<_> = figures
        .iter()
        .filter(|(t, ..)| matches!(t, Target::Null | Target::SizedNull(_)))
        .collect();
    for (_, name, full, half) in figures
        .iter()
        .filter(|(t, ..)| matches!(t, Target::Memory | Target::Redis))
    {
        for (_, ceiling, ceiling_full, ceiling_half) in &ceilings {
            println!(
                "{name} / {ceiling}: {:.2} of the requests/s ({:.0} / {:.0}); CPU per request {:.1} µs / {:.1} µs; p99 at half load {:.3} ms / {:.3} ms",
                full.rate / ceiling_full.rate,
                full.rate,
                ceiling_full.rate,
                full.cpu_us,
                ceiling_full.cpu_us,
                half.p99_ms,
                ceiling_half.p99_ms
            );
        }
    }
}

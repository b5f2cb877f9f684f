//! `tracker --store redis://`: real trackers on a real `redis-server` this test starts on a free
//! port. Two trackers on one Redis serve the same swarms and cookies; a tracker killed -9 and
//! started again loses nothing; Redis paused, killed and restarted gives bounded 1204 answers
//! meanwhile and then recovery without restarting a tracker; keys holding what the store did not
//! write give errors, never a crash. Without `redis-server` the tests are skipped loudly, and
//! under `REDIS=require` (CI) they fail.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tracker_proto::{ChunkRanges, ClientConfig, ErrorCode, PeerChunks, PeerKey, TrackerClient};

/// A `redis-server` of this test: no snapshots, optionally an append-only file in its own
/// directory (so a restart keeps the data); killed when dropped.
struct RedisServer {
    port: u16,
    dir: TempDir,
    persistent: bool,
    child: Option<Child>,
}

/// Whether this machine has `redis-server`; under `REDIS=require` its absence fails the test.
fn redis_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("REDIS").as_deref() != Ok("require"),
            "REDIS=require but redis-server is not installed (apt-get install redis-server)"
        );
        eprintln!(
            "#### SKIPPED: redis-server is not installed, the Redis store was NOT tested \
             (apt-get install redis-server; REDIS=require makes this a failure)"
        );
    }
    found
}

impl RedisServer {
    fn start(persistent: bool) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = RedisServer {
            port,
            dir: TempDir::new("redis"),
            persistent,
            child: None,
        };
        redis.spawn();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let appendonly = if self.persistent { "yes" } else { "no" };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                appendonly,
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while self.connection().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let mut conn = redis::Client::open(self.url())?.get_connection()?;
        redis::cmd("PING").query::<String>(&mut conn)?;
        Ok(conn)
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("redis-server runs");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn aof_dir(&self) -> PathBuf {
        self.dir.0.clone()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A paused server does not die of SIGKILL any later, but wait() is only sure after
            // SIGCONT.
            self.signal(libc::SIGCONT);
        }
        self.kill();
    }
}

fn tracker_on(redis: &RedisServer, extra: &[&str]) -> TrackerProcess {
    let url = redis.url();
    let mut args = vec!["--store", url.as_str()];
    args.extend_from_slice(extra);
    TrackerProcess::start(&args)
}

fn client_config(key: PeerKey) -> ClientConfig {
    ClientConfig {
        key,
        ..ClientConfig::default()
    }
}

async fn client(tracker: &TrackerProcess) -> TrackerClient {
    TrackerClient::bind(tracker.addr, ClientConfig::default())
        .await
        .expect("bind a client")
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn two_trackers_on_one_redis_serve_the_same_swarms() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start(false);
    let a = tracker_on(&redis, &["--ttl", "3"]);
    let b = tracker_on(&redis, &["--ttl", "3"]);
    let movie = file("movie.bin", 300);
    let (seeder, leecher) = (at(7701), at(7702));
    let seeder_key = PeerKey::random();
    let via_a = TrackerClient::bind(a.addr, client_config(seeder_key))
        .await
        .unwrap();
    via_a.share(&movie, seeder).await.unwrap();
    let chunks: ChunkRanges = "0-9,64,200-255".parse().unwrap();
    client(&a)
        .await
        .report_chunks(movie.name(), &chunks, leecher)
        .await
        .unwrap();

    // Flags 6, 7, 1 and 2 through B see what was announced through A.
    let via_b = client(&b).await;
    let files = via_b.list_files().await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0].name.as_str(), files[0].chunks),
        ("movie.bin", 300)
    );
    let summary = via_b.query(movie.name()).await.unwrap();
    assert_eq!((summary.seeders, summary.leechers), (1, 1));
    assert_eq!(summary.info, movie);
    let joiner = at(7703);
    let swarm = via_b.peers_as(movie.name(), joiner).await.unwrap();
    let mut listed: Vec<_> = swarm
        .peers
        .iter()
        .map(|p| (p.addr, p.chunks.clone()))
        .collect();
    listed.sort_by_key(|p| p.0);
    assert_eq!(
        listed,
        vec![
            (seeder, PeerChunks::Seeder),
            (leecher, PeerChunks::Ranges(chunks.clone()))
        ]
    );
    let swarm = via_a.refresh(movie.name()).await.unwrap();
    assert_eq!(swarm.peers.len(), 3, "A sees the joiner B took: {swarm:?}");
    // The seeder's key, known through A, guards its address at B too.
    let impostor = client(&b).await;
    let e = impostor.heartbeat(seeder).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
    let same_key = TrackerClient::bind(b.addr, client_config(seeder_key))
        .await
        .unwrap();
    assert_eq!(same_key.heartbeat(seeder).await.unwrap(), 1);

    // Nobody refreshes: after the TTL (3 s) the swarm is gone, as seen through B, expired by
    // whichever tracker swept first.
    // (An onlooker without rows asks: any request refreshes the peer of its key.)
    let onlooker = client(&b).await;
    let deadline = Instant::now() + Duration::from_secs(3) + PATIENCE;
    loop {
        if onlooker.list_files().await.unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "nothing expired through B");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let e = onlooker.query(movie.name()).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::FileNotFound), "{e}");
    let mut conn = redis.connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert_eq!(
        keys,
        vec!["p2pt:cookie-secret".to_string()],
        "expiry left keys"
    );
}

/// The `peer` binary beside `tracker` (scripts/test.sh builds every binary first).
fn peer_bin() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_tracker")).with_file_name("peer");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tracker's Redis tests",
        p.display()
    );
    p
}

/// `peer --tracker T --dir DIR --listen 127.0.0.1:0 --stun none ARGS...`, as a user runs it
/// on loopback.
fn peer(tracker: &TrackerProcess, dir: &std::path::Path) -> Command {
    let mut c = Command::new(peer_bin());
    c.arg("--tracker")
        .arg(tracker.addr.to_string())
        .arg("--dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--stun", "none"])
        .stdin(Stdio::null());
    c
}

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A file shared with `peer share` through tracker A is downloaded with `peer get` through
/// tracker B, byte for byte.
#[test]
fn a_file_shared_through_one_tracker_downloads_through_the_other() {
    use std::io::BufRead;
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start(false);
    let (a, b) = (tracker_on(&redis, &[]), tracker_on(&redis, &[]));
    let dir = TempDir::new("redis-peers");
    let (seed_dir, get_dir) = (dir.0.join("seed"), dir.0.join("get"));
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::create_dir_all(&get_dir).unwrap();
    let original: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let path = seed_dir.join("shared.bin");
    std::fs::write(&path, &original).unwrap();
    let mut seeder = peer(&a, &seed_dir)
        .arg("share")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start peer share");
    let stdout = seeder.stdout.take().expect("piped stdout");
    let seeder = Running(seeder);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("peer share never said it shared");
        if line.starts_with("shared ") {
            break;
        }
    }
    let mut get = peer(&b, &get_dir)
        .args(["get", "shared.bin"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run peer get");
    let deadline = Instant::now() + 3 * PATIENCE;
    while get.try_wait().expect("wait for peer get").is_none() {
        if Instant::now() > deadline {
            let _ = get.kill();
            let out = get.wait_with_output().expect("peer get output");
            panic!(
                "peer get through B did not finish: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = get.wait_with_output().expect("peer get output");
    assert!(
        got.status.success(),
        "peer get through B failed: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::read(get_dir.join("shared.bin")).unwrap(), original);
    drop(seeder);
}

/// A cookie issued by tracker A is accepted by tracker B: both key them with the secret kept
/// in Redis (`--require-cookies` makes loopback sources need one).
#[tokio::test]
async fn a_cookie_from_one_tracker_is_good_at_the_other() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start(false);
    let a = tracker_on(&redis, &["--require-cookies"]);
    let b = tracker_on(&redis, &["--require-cookies"]);
    let socket = udp("127.0.0.1").await;
    let refused = ask(&socket, a.addr, "REQUEST 6 pad=xxxxxxxxxxxxxxxxxxxx").await;
    assert!(
        refused.starts_with("ERROR 1200 COOKIE_REQUIRED"),
        "{refused}"
    );
    let cookie = refused
        .split(' ')
        .find_map(|w| w.strip_prefix("cookie="))
        .expect("a cookie")
        .trim()
        .to_string();
    let answer = ask(&socket, b.addr, &format!("REQUEST 6 cookie={cookie}")).await;
    assert_eq!(answer, "RESPONSE 6 files=0");
    // The memory store's trackers each make their own secret: the same cookie fails there.
    let alone = TrackerProcess::start(&["--require-cookies"]);
    let answer = ask(&socket, alone.addr, &format!("REQUEST 6 cookie={cookie}")).await;
    assert!(answer.starts_with("ERROR 1200 COOKIE_REQUIRED"), "{answer}");
}

#[tokio::test]
async fn a_tracker_killed_and_started_again_loses_nothing() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start(false);
    let a = tracker_on(&redis, &[]);
    let key = PeerKey::random();
    let seeder = TrackerClient::bind(a.addr, client_config(key))
        .await
        .unwrap();
    for (name, chunks) in [("a.bin", 3), ("b.bin", 70), ("c.txt", 1)] {
        seeder.share(&file(name, chunks), at(7711)).await.unwrap();
    }
    let partial: ChunkRanges = "1-5,60".parse().unwrap();
    client(&a)
        .await
        .report_chunks(&name("b.bin"), &partial, at(7712))
        .await
        .unwrap();
    let before = client(&a).await.list_files().await.unwrap();
    let swarm_before = client(&a).await.peers(&name("b.bin")).await.unwrap().peers;
    drop(a); // kill -9

    let again = tracker_on(&redis, &[]);
    let c = client(&again).await;
    assert_eq!(c.list_files().await.unwrap(), before);
    let mut swarm = c.peers(&name("b.bin")).await.unwrap().peers;
    let mut expected = swarm_before;
    swarm.sort_by_key(|p| p.addr);
    expected.sort_by_key(|p| p.addr);
    assert_eq!(swarm, expected);
    let same = TrackerClient::bind(again.addr, client_config(key))
        .await
        .unwrap();
    assert_eq!(same.heartbeat(at(7711)).await.unwrap(), 3);
}

/// The figures of protocol.txt 1.2 live in Redis: two trackers count one swarm's events
/// together (a completion repeated through the other tracker counts once, bytes by growth), and
/// a tracker killed and started again answers the same figures.
#[tokio::test]
async fn the_swarm_figures_are_shared_by_trackers_and_survive_a_kill() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start(false);
    let a = tracker_on(&redis, &[]);
    let b = tracker_on(&redis, &[]);
    let seeder = PeerKey::random();
    let leecher = PeerKey::random();
    let share = format!(
        "REQUEST 4 figures.bin 3 127.0.0.1:7801 size=5000 id={} key={seeder} event=started up=0 down=0 left=0",
        id_hex()
    );
    let steps = [
        (&a, share),
        (&b, format!("REQUEST 1 figures.bin 127.0.0.1:7802 key={leecher} event=started up=0 down=0")),
        (&a, format!("REQUEST 3 figures.bin 0-1 127.0.0.1:7802 key={leecher} up=0 down=4096")),
        (&b, format!("REQUEST 3 figures.bin 0-2 127.0.0.1:7802 key={leecher} event=completed up=100 down=5000 left=0")),
        // The same completion again, through the other tracker: counted once.
        (&a, format!("REQUEST 3 figures.bin 0-2 127.0.0.1:7802 key={leecher} event=completed up=100 down=5000 left=0")),
        (&b, format!("REQUEST 5 figures.bin 127.0.0.1:7801 key={seeder} event=stopped up=5000 down=0")),
    ];
    let socket = udp("127.0.0.1").await;
    for (tracker, request) in &steps {
        let answer = ask(&socket, tracker.addr, request).await;
        assert!(answer.starts_with("RESPONSE "), "{request}: {answer}");
    }
    let backwards = format!("REQUEST 3 figures.bin 0 127.0.0.1:7802 key={leecher} down=10");
    assert!(ask(&socket, b.addr, &backwards)
        .await
        .starts_with("ERROR 1110 BAD_FIELD down:10 is less than the 5000"));
    let figures = "completed=1 up=5100 down=5000";
    for tracker in [&a, &b] {
        let answer = ask(&socket, tracker.addr, "REQUEST 7 figures.bin").await;
        assert!(answer.ends_with(figures), "{answer}");
        let listing = ask(&socket, tracker.addr, "REQUEST 6").await;
        assert!(listing.ends_with(figures), "{listing}");
    }
    drop(a); // kill -9
    let again = tracker_on(&redis, &[]);
    let answer = ask(&socket, again.addr, "REQUEST 7 figures.bin").await;
    assert!(answer.ends_with(figures), "{answer}");
}

/// How long a request may take to be refused while Redis does not answer: the 500 ms default
/// timeout, with room for a loaded machine.
const ERROR_BOUND: Duration = Duration::from_secs(3);

/// One raw request; its answer and how long it took (`None` on silence within `wait`).
async fn timed(to: SocketAddr, request: &str, wait: Duration) -> (Option<String>, Duration) {
    let socket = udp("127.0.0.1").await;
    let started = Instant::now();
    let answer = ask_within(&socket, to, request.as_bytes(), wait).await;
    (answer, started.elapsed())
}

/// Asks until the answer starts with `prefix`, failing after `within`.
async fn answer_becomes(to: SocketAddr, request: &str, prefix: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (answer, _) = timed(to, request, Duration::from_secs(1)).await;
        match answer {
            Some(a) if a.starts_with(prefix) => return a,
            other => assert!(
                Instant::now() < deadline,
                "{request:?} still answered {other:?} after {within:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_paused_or_restarted_gives_errors_then_recovery() {
    if !redis_available() {
        return;
    }
    let mut redis = RedisServer::start(true);
    let mut a = tracker_on(&redis, &[]);
    let mut b = tracker_on(&redis, &[]);
    let query = "REQUEST 7 kept.bin";
    client(&a)
        .await
        .share(&file("kept.bin", 4), at(7721))
        .await
        .unwrap();

    // Paused (a hung Redis): every request is refused within the bound, none hangs.
    redis.signal(libc::SIGSTOP);
    for tracker in [&a, &b] {
        for request in [query, "REQUEST 6", "REQUEST 9 127.0.0.1:7721"] {
            let (answer, took) = timed(tracker.addr, request, ERROR_BOUND).await;
            let answer = answer.unwrap_or_else(|| panic!("no answer to {request:?} in {took:?}"));
            assert!(answer.starts_with("ERROR 1204 UNAVAILABLE"), "{answer}");
        }
    }
    redis.signal(libc::SIGCONT);
    let answer = answer_becomes(a.addr, query, "RESPONSE 7", PATIENCE).await;
    assert!(answer.contains("seeders=1"), "{answer}");

    // Killed: refused at once; started again on its append-only file, both trackers answer
    // from it again without being restarted.
    redis.kill();
    let (answer, took) = timed(b.addr, query, ERROR_BOUND).await;
    let answer = answer.unwrap_or_else(|| panic!("no answer in {took:?}"));
    assert!(answer.starts_with("ERROR 1204 UNAVAILABLE"), "{answer}");
    assert!(a.alive() && b.alive(), "a tracker died with Redis");
    assert!(redis.aof_dir().exists());
    redis.spawn();
    for tracker in [&a, &b] {
        let answer = answer_becomes(tracker.addr, query, "RESPONSE 7", PATIENCE).await;
        assert!(answer.contains("seeders=1"), "{answer}");
    }
    // Redis came back empty (its data lost): trackers answer from the empty store, and a new
    // announcement works.
    redis.kill();
    redis.persistent = false;
    std::fs::remove_dir_all(redis.aof_dir()).unwrap();
    std::fs::create_dir_all(redis.aof_dir()).unwrap();
    redis.spawn();
    // Each tracker sees the empty store once its own retry pause (200 ms) is over.
    for tracker in [&a, &b] {
        answer_becomes(tracker.addr, query, "ERROR 1002", PATIENCE).await;
    }
    client(&b)
        .await
        .share(&file("new.bin", 2), at(7722))
        .await
        .unwrap();
    let listed = client(&a).await.list_files().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(a.alive() && b.alive());
}

/// Keys of the wrong type, numbers that are not numbers and bitmaps cut short, as a careless
/// operator or another program could leave them: the tracker answers errors for what it cannot
/// read, keeps serving the rest, and heals a bitmap on the next report.
#[tokio::test]
async fn unexpected_data_in_redis_is_an_error_never_a_crash() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start(false);
    let mut t = tracker_on(&redis, &[]);
    let c = client(&t).await;
    for n in ["good.bin", "typed.bin", "count.bin"] {
        c.share(&file(n, 20), at(7731)).await.unwrap();
    }
    let chunks: ChunkRanges = "0-15".parse().unwrap();
    let leecher = client(&t).await;
    leecher
        .report_chunks(&name("good.bin"), &chunks, at(7732))
        .await
        .unwrap();
    let mut conn = redis.connection().unwrap();
    let set = |conn: &mut redis::Connection, key: &str, value: &[u8]| {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(conn)
            .unwrap();
    };
    // A string where the file's record hash belongs, a count that is no number.
    set(&mut conn, "p2pt:f:typed.bin", b"garbage");
    redis::cmd("HSET")
        .arg("p2pt:f:count.bin")
        .arg("seeders")
        .arg("many")
        .query::<()>(&mut conn)
        .unwrap();
    let socket = udp("127.0.0.1").await;
    for request in [
        "REQUEST 7 typed.bin",
        "REQUEST 1 typed.bin",
        "REQUEST 7 count.bin",
    ] {
        let answer = ask(&socket, t.addr, request).await;
        assert!(
            answer.starts_with("ERROR 1204 UNAVAILABLE"),
            "{request}: {answer}"
        );
    }
    let report = "REQUEST 3 typed.bin 1 127.0.0.1:7733";
    let answer = ask(&socket, t.addr, report).await;
    assert!(answer.starts_with("ERROR 1204"), "{answer}");
    assert_eq!(
        ask(&socket, t.addr, "REQUEST 7 good.bin")
            .await
            .lines()
            .count(),
        1
    );

    // The partial peer's bitmap cut to its first byte: listed with what it still holds...
    set(&mut conn, "p2pt:b:good.bin\n127.0.0.1:7732", &[0xff]);
    let swarm = c.peers(&name("good.bin")).await.unwrap();
    let partial = swarm.peers.iter().find(|p| p.addr == at(7732)).unwrap();
    assert_eq!(partial.chunks, PeerChunks::Ranges("0-7".parse().unwrap()));
    // ...and whole again from its next report, counted from the bitmap.
    leecher
        .report_chunks(&name("good.bin"), &"8-19".parse().unwrap(), at(7732))
        .await
        .unwrap();
    let summary = c.query(&name("good.bin")).await.unwrap();
    assert_eq!((summary.seeders, summary.leechers), (2, 0));
    // A list where the catalogue's sorted set belongs: flag 6 is refused, the tracker lives.
    redis::cmd("DEL")
        .arg("p2pt:files")
        .query::<()>(&mut conn)
        .unwrap();
    redis::cmd("RPUSH")
        .arg("p2pt:files")
        .arg("x")
        .query::<()>(&mut conn)
        .unwrap();
    let answer = ask(&socket, t.addr, "REQUEST 6").await;
    assert!(answer.starts_with("ERROR 1204"), "{answer}");
    assert!(t.alive(), "the tracker died of what Redis held");
}

#[test]
fn store_flags_are_checked_at_start() {
    let (_, stderr) = start_failing(&["--store", "mysql://x"]);
    assert!(
        stderr.contains("expected `memory` or `redis://"),
        "{stderr}"
    );
    let (_, stderr) = start_failing(&["--store", "redis://127.0.0.1:1", "--state", "/tmp/x"]);
    assert!(
        stderr.contains("--state keeps the in-memory store"),
        "{stderr}"
    );
    // Nothing listens on port 1: a clear error, no startup line.
    let (stdout, stderr) = start_failing(&["--store", "redis://127.0.0.1:1"]);
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(
        stderr.contains("cannot use --store redis://127.0.0.1:1") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// A random request of a small world where caps, quotas, key moves and takeovers all happen:
/// four files (one announced now and then with another size), twelve ports on three hosts, keys
/// that sometimes wander to another port or host. `pad` starts every file name (long names make
/// short pages).
fn random_request(rng: &mut impl rand::Rng, pad: &str) -> (String, SocketAddr) {
    const NAMES: [(&str, u32); 4] = [("f0", 1), ("f1", 20), ("f2", 70), ("f3", 130)];
    const HOSTS: [[u8; 4]; 3] = [[127, 0, 0, 1], [127, 0, 0, 2], [10, 0, 0, 1]];
    let (file, chunks) = NAMES[rng.random_range(0..NAMES.len())];
    let file = format!("{pad}{file}");
    let port = 10_000 + rng.random_range(0..12u16);
    let source = SocketAddr::from((HOSTS[rng.random_range(0..HOSTS.len())], 40_000));
    // Mostly the key of the port, sometimes another port's (a move), sometimes none.
    let key = match rng.random_range(0..10) {
        0 => String::new(),
        1 => format!(" key={:032x}", 10_000 + rng.random_range(0..8u32)),
        _ => format!(" key={port:032x}"),
    };
    let me = format!("0.0.0.0:{port}{key}");
    let ranges = {
        let s = rng.random_range(0..chunks);
        let e = rng.random_range(s..chunks);
        if rng.random_bool(0.3) {
            format!("{s}-{e},{}", chunks - 1)
        } else {
            format!("{s}-{e}")
        }
        .replace(
            &format!("{},{}", chunks - 1, chunks - 1),
            &format!("{}", chunks - 1),
        )
    };
    let size = u64::from(chunks) * 2048 - if rng.random_bool(0.05) { 1 } else { 0 };
    // Announce events and byte counters: small random counters go backwards now and then
    // (refused alike), `left` sometimes exceeds the file.
    let counters = format!(
        " up={} down={}",
        rng.random_range(0..8u64) * 1000,
        rng.random_range(0..8u64) * 1000
    );
    let transfer = match rng.random_range(0..5) {
        0 => String::new(),
        1 => format!(" event=started{counters}"),
        2 => format!(" event=completed{counters} left=0"),
        3 => counters.clone(),
        _ => format!("{counters} left={}", rng.random_range(0..size + 2)),
    };
    let stopped = match rng.random_range(0..3) {
        0 => String::new(),
        1 => " event=stopped".to_string(),
        _ => format!(" event=stopped{counters}"),
    };
    let request = match rng.random_range(0..12) {
        0 | 1 => format!(
            "REQUEST 4 {file} {chunks} {me} size={size} id={}{transfer}",
            id_hex()
        ),
        2..=4 => format!("REQUEST 3 {file} {ranges} {me}{transfer}"),
        5 => format!("REQUEST 1 {file} {me}{transfer}"),
        6 => format!("REQUEST 2 {file} offset={}", rng.random_range(0..4)),
        7 => format!("REQUEST 5 {file} {me}{stopped}"),
        8 => format!("REQUEST 5 {me}"),
        9 => "REQUEST 6".to_string(),
        10 => format!("REQUEST 7 {file}"),
        _ => format!("REQUEST 9 {me}"),
    };
    (request, source)
}

/// The Redis store and the in-memory store answer every request of long random runs alike,
/// byte for byte (same rules, caps, quotas, keys and page order), one request at a time and in
/// receive batches.
#[test]
fn the_redis_store_answers_as_the_memory_store_does() {
    use rand::{Rng, SeedableRng};
    use tracker::store::{Limits, RedisConfig, RedisStore};
    use tracker::{ServerConfig, Tracker};
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start(false);
    // Tight caps and shares; then roomy ones with the smallest pages and long names, so peer
    // lists and the catalogue are paged.
    let tight = ServerConfig {
        limits: Limits {
            max_files: 3,
            max_peers: 7,
            max_peers_per_file: 5,
            max_rows: 14,
            max_bitfield_bytes: 64,
            ip_share_percent: 60,
        },
        ..ServerConfig::default()
    };
    let paged = ServerConfig {
        max_response_bytes: tracker::MIN_RESPONSE_BYTES,
        limits: Limits {
            ip_share_percent: 100,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let long = "n".repeat(250);
    let runs = [(&tight, ""), (&paged, long.as_str())];
    for (seed, (config, pad)) in (0..8u64).zip(runs.iter().cycle()) {
        let mut conn = redis.connection().unwrap();
        redis::cmd("FLUSHALL").query::<()>(&mut conn).unwrap();
        let store = RedisStore::connect(
            &RedisConfig {
                url: redis.url(),
                timeout: PATIENCE,
                page_bytes: config.max_response_bytes,
            },
            config.ttl,
            config.limits,
        )
        .expect("connect to the test's Redis");
        let in_redis = Tracker::with_store((*config).clone(), store);
        let in_memory = Tracker::new((*config).clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let now = Instant::now();
        let mut history = Vec::new();
        for _ in 0..150 {
            let batch: Vec<(String, SocketAddr)> = (0..rng.random_range(1..6))
                .map(|_| random_request(&mut rng, pad))
                .collect();
            let (mut from_redis, mut from_memory) = (Vec::new(), Vec::new());
            let datagrams = || batch.iter().map(|(r, s)| (r.as_bytes(), *s));
            in_redis.handle_batch(datagrams(), now, &mut from_redis);
            in_memory.handle_batch(datagrams(), now, &mut from_memory);
            history.extend(batch.iter().map(|(r, s)| format!("{s} {r}")));
            assert_eq!(
                from_redis
                    .iter()
                    .map(|(a, d)| (a, String::from_utf8_lossy(d)))
                    .collect::<Vec<_>>(),
                from_memory
                    .iter()
                    .map(|(a, d)| (a, String::from_utf8_lossy(d)))
                    .collect::<Vec<_>>(),
                "seed {seed}, the last batch of:\n{}",
                history.join("\n")
            );
        }
        // A swarm longer than a page, paged through from every offset.
        let crowd = format!("{pad}crowd");
        let share = format!(
            "REQUEST 4 {crowd} 64 127.0.0.1:11000 size={} id={}",
            64 * 2048,
            id_hex()
        );
        let mut requests = vec![share];
        for p in 1..60u32 {
            let (s, e) = (p % 50, p % 50 + p % 7);
            requests.push(format!(
                "REQUEST 3 {crowd} {s}-{e},63 127.0.0.1:{}",
                11_000 + p
            ));
        }
        requests.extend((0..64).map(|o| format!("REQUEST 1 {crowd} offset={o}")));
        // Chunk ranges spread over a bitmap of many read windows, some too many to list.
        let big = format!("{pad}big");
        requests.push(format!(
            "REQUEST 4 {big} 20000 127.0.0.1:12000 size={} id={}",
            20_000 * 2048,
            id_hex()
        ));
        for p in 1..12u32 {
            let spread: Vec<String> = (0..p)
                .map(|k| {
                    let s = (k * 4099 + p * 37) % 19_990;
                    format!("{s}-{}", s + p % 3)
                })
                .collect();
            let report = format!(
                "REQUEST 3 {big} {},19999 127.0.0.1:{}",
                spread.join(","),
                12_000 + p
            );
            requests.push(report);
            requests.push(format!("REQUEST 1 {big}"));
        }
        requests.push("REQUEST 6 offset=1".to_string());
        // Name filters thin pages out: the store must read on until the page is full.
        for filter in ["*big", "*crowd", "*f3", "*nothing*", "n*", "*f*"] {
            for offset in [0, 1, 3] {
                requests.push(format!("REQUEST 6 match={filter} offset={offset}"));
            }
        }
        let source = SocketAddr::from(([127, 0, 0, 1], 40_000));
        for request in &requests {
            let from_redis = in_redis.handle(request.as_bytes(), source, now).reply;
            let from_memory = in_memory.handle(request.as_bytes(), source, now).reply;
            assert_eq!(
                from_redis.as_deref().map(String::from_utf8_lossy),
                from_memory.as_deref().map(String::from_utf8_lossy),
                "seed {seed}: {request}"
            );
        }
    }
}

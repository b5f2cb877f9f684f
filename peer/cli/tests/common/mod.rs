//! Helpers for transfer tests: real `tracker` and `peer` processes on 127.0.0.1 with ephemeral
//! ports, temporary share directories, random files, and a hostile peer speaking the wire
//! protocol from inside the test.

#![allow(dead_code)]

pub mod liar;
pub mod raw;
pub mod victim;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous bound for anything a loaded 2-core machine should manage.
pub const PATIENCE: Duration = Duration::from_secs(120);

pub fn peer_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_peer"))
}

pub fn tracker_bin() -> PathBuf {
    let p = peer_bin().with_file_name("tracker");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the peer tests",
        p.display()
    );
    p
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "peer-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    /// A fresh sub-directory.
    pub fn sub(&self, name: &str) -> PathBuf {
        let d = self.0.join(name);
        std::fs::create_dir_all(&d).expect("create sub dir");
        d
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `size` pseudo-random bytes (different per seed) to `path` and returns them.
pub fn random_file(path: &Path, size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    std::fs::write(path, &data).expect("write random file");
    data
}

/// A child process killed (SIGKILL) on drop; its stdout is read line by line in a thread.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            name: name.to_owned(),
        }
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it.
    pub fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let mut err = String::new();
                    if let Some(mut e) = self.child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    panic!(
                        "{}: no line {prefix:?} (exited: {:?}); stderr:\n{err}",
                        self.name,
                        self.child.try_wait()
                    );
                }
            }
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal, named as kill(1) takes it (`-TERM`, `-INT`).
    pub fn signal(&self, flag: &str) {
        let _ = Command::new("kill")
            .arg(flag)
            .arg(self.child.id().to_string())
            .status();
    }

    /// The exit status, if the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits (at most the tests' patience) for the process to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(s) = self.try_wait() {
                return s;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        self.wait()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a tracker on an ephemeral loopback port.
pub fn start_tracker() -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(
        "tracker",
        Command::new(tracker_bin()).args(["--bind", "127.0.0.1:0"]),
    );
    let addr = p
        .wait_line("tracker listening on ")
        .parse()
        .expect("tracker address");
    (p, addr)
}

/// A `peer` command for `dir` talking to `tracker`, serving on an ephemeral port.
pub fn peer_cmd(tracker: SocketAddr, dir: &Path) -> Command {
    let mut c = Command::new(peer_bin());
    c.arg("--tracker")
        .arg(tracker.to_string())
        .arg("--dir")
        .arg(dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        // Loopback needs no STUN; keeps the tests independent of any STUN server on the machine.
        .args(["--stun", "none"])
        // RUST_LOG of the test run reaches the peers (debugging a failure); info otherwise.
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("info".into()),
        );
    c
}

/// Starts `peer daemon` on `dir`; returns it and its serving address.
pub fn start_daemon(tracker: SocketAddr, dir: &Path) -> (Proc, SocketAddr) {
    let mut daemon = Proc::spawn("daemon", peer_cmd(tracker, dir).arg("daemon"));
    let at = daemon
        .wait_line("peer listening on ")
        .parse()
        .expect("daemon address");
    (daemon, at)
}

/// `peer share FILE` serving in the foreground; returns once the file is announced.
pub fn start_seeder(
    tracker: SocketAddr,
    dir: &Path,
    file: &Path,
    extra: &[&str],
) -> (Proc, SocketAddr) {
    let mut cmd = peer_cmd(tracker, dir);
    cmd.args(extra).arg("share").arg(file);
    let mut p = Proc::spawn("seeder", &mut cmd);
    let addr = p
        .wait_line("peer listening on ")
        .parse()
        .expect("peer address");
    p.wait_line("shared ");
    (p, addr)
}

/// Runs a command to completion (bounded by [`PATIENCE`]) and returns its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command timed out; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses "N chunks fetched from P peers, R resumed" (or "1 peer,") of a `peer get` summary line
/// for `name`.
pub fn summary(out: &str, name: &str) -> (u32, u32, u32) {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("downloaded {name} ")))
        .unwrap_or_else(|| panic!("no summary for {name} in:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| -> u32 {
        let i = words
            .iter()
            .position(|x| *x == w || (w == "peers," && *x == "peer,"))
            .unwrap_or_else(|| panic!("{w:?} in {line}"));
        words[i - 1]
            .trim_start_matches("):")
            .parse()
            .unwrap_or_else(|_| panic!("number before {w:?} in {line}"))
    };
    (after("chunks"), after("peers,"), after("resumed,"))
}

/// Bytes before the bitfield of a resume record (version 2: magic, version, file id, chunk
/// count, the .part's device, inode, size and change time).
const RECORD_HEAD: usize = 4 + 1 + 32 + 4 + 4 * 8;

/// Number of chunks listed in a download's resume record (0 when there is none yet).
pub fn recorded_chunks(dir: &Path, name: &str) -> u32 {
    let Ok(bytes) = std::fs::read(dir.join(".peer").join(format!("{name}.part.have"))) else {
        return 0;
    };
    bytes
        .get(RECORD_HEAD..)
        .map_or(0, |b| b.iter().map(|x| x.count_ones()).sum())
}

/// Polls `cond` every 20 ms until it holds, panicking with `what` after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

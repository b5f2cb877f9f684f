//! Starting the real `tracker` binary and talking raw UDP to it.

#![allow(dead_code)] // each test file uses a different subset

pub mod http;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tracker_proto::{FileId, FileInfo, FileName};

/// Generous bound for anything a loaded 2-core CI machine should do in well under a second.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A running tracker process, killed when dropped.
pub struct TrackerProcess {
    pub addr: SocketAddr,
    child: Child,
}

impl TrackerProcess {
    /// Starts `tracker --bind 127.0.0.1:0 <extra>` and waits for its startup line.
    pub fn start(extra: &[&str]) -> TrackerProcess {
        TrackerProcess::start_reading(extra, 1).0
    }

    /// Starts `tracker --bind 127.0.0.1:0 --http 127.0.0.1:0 <extra>`: the process and the
    /// HTTP address it printed.
    pub fn start_http(extra: &[&str]) -> (TrackerProcess, SocketAddr) {
        let mut args = vec!["--http", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (tracker, lines) = TrackerProcess::start_reading(&args, 2);
        let http = lines[1]
            .trim()
            .strip_prefix("http listening on ")
            .unwrap_or_else(|| panic!("unexpected second line {:?}", lines[1]))
            .parse()
            .expect("the http line carries an address");
        (tracker, http)
    }

    /// Starts the tracker and waits for its first `count` stdout lines.
    fn start_reading(extra: &[&str], count: usize) -> (TrackerProcess, Vec<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tracker"))
            .args(["--bind", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the tracker binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut lines = Vec::new();
            for _ in 0..count {
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                lines.push(line);
            }
            let _ = tx.send(lines);
            // Keep the pipe open and drained, so the tracker never blocks on stdout.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let lines = rx
            .recv_timeout(PATIENCE)
            .expect("tracker printed no startup line");
        let line = &lines[0];
        let addr = line
            .trim()
            .strip_prefix("tracker listening on ")
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
            .parse()
            .expect("startup line carries an address");
        (TrackerProcess { addr, child }, lines)
    }

    /// Sends SIGTERM and waits for the process to end; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill failed");
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the tracker") {
                return status.success();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tracker did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for TrackerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tracker --bind 127.0.0.1:0 <extra>` expecting it to refuse to start: its stdout and
/// stderr.
pub fn start_failing(extra: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tracker"))
        .args(["--bind", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .expect("cannot start the tracker binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "tracker started with {extra:?}: {stdout}{stderr}"
    );
    (stdout, stderr)
}

/// A fresh directory under the system's temporary one, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "tracker-test-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn file(&self, name: &str) -> String {
        self.0
            .join(name)
            .to_str()
            .expect("UTF-8 temp path")
            .to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends `request` from `socket` and returns the answer text (None on silence within `wait`).
/// PUNCH notices arriving meanwhile are skipped.
pub async fn ask_within(
    socket: &UdpSocket,
    to: SocketAddr,
    request: &[u8],
    wait: Duration,
) -> Option<String> {
    socket.send_to(request, to).await.expect("send");
    let mut buf = vec![0u8; 65_536];
    loop {
        match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            // PUNCH notices relayed to this socket are not answers.
            Ok(Ok((n, from))) if from == to && !buf[..n].starts_with(b"PUNCH ") => {
                return Some(String::from_utf8(buf[..n].to_vec()).expect("tracker sends UTF-8"))
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("receive failed: {e}"),
            Err(_) => return None,
        }
    }
}

/// Like [`ask_within`] but an answer is required.
pub async fn ask(socket: &UdpSocket, to: SocketAddr, request: &str) -> String {
    ask_within(socket, to, request.as_bytes(), PATIENCE)
        .await
        .unwrap_or_else(|| panic!("no answer to {request:?}"))
}

pub async fn udp(ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{ip}:0"))
        .await
        .expect("bind test socket")
}

pub fn name(s: &str) -> FileName {
    FileName::new(s).expect("valid test file name")
}

/// A file description of `chunks` full 2048-byte chunks.
pub fn file(s: &str, chunks: u32) -> FileInfo {
    FileInfo::new(name(s), u64::from(chunks) * 2048, 2048, FileId([0x5a; 32])).expect("valid info")
}

pub fn id_hex() -> String {
    format!("sha256:{}", "5a".repeat(32))
}

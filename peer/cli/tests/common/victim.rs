//! The victim of the hostile-client tests: a real `peer daemon` with default flags, its output
//! in files (a daemon logging every hostile connection must never block on a full pipe), its
//! memory read from /proc, and the figures each attack leaves.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{peer_cmd, PATIENCE};

pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Daemon {
    /// `peer daemon` on `dir`, returning once it serves and announced `names`.
    pub fn start(tracker: SocketAddr, dir: &Path, logs: &Path, names: &[&str]) -> Daemon {
        let stdout = logs.join("daemon.out");
        let stderr = logs.join("daemon.err");
        let child = peer_cmd(tracker, dir)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("daemon stdout file"))
            .stderr(File::create(&stderr).expect("daemon stderr file"))
            .spawn()
            .expect("spawn peer daemon");
        let mut d = Daemon {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stdout,
            stderr,
        };
        let line = d.wait_for(&d.stdout.clone(), "peer listening on ");
        d.addr = line
            .trim_start_matches("peer listening on ")
            .trim()
            .parse()
            .expect("daemon address");
        for name in names {
            d.wait_for(&d.stderr.clone(), &format!("sharing {name} "));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for(&mut self, file: &Path, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = fs::read_to_string(file).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the daemon exited ({status}) before {needle:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} from the daemon:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics (with its log) if the daemon is no longer running.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the daemon died ({status}):\n{}", self.log());
        }
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the daemon's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory (VmHWM) since start or the last [`Daemon::reset_peak`], in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Starts a new peak: VmHWM falls back to the current RSS (clear_refs 5, Linux >= 4.0).
    pub fn reset_peak(&self) {
        fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")
            .expect("reset the daemon's peak RSS through /proc/PID/clear_refs");
    }

    /// Open file descriptors of the daemon (sockets included).
    pub fn open_fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records one figure of the hostile suite: printed (seen with `--nocapture`) and appended to
/// `target/tmp/hostile-figures.txt`, which scripts/test.sh prints after the tests.
pub fn figure(line: &str) {
    println!("hostile: {line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-figures.txt");
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// KiB as MiB with one decimal, for figures.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

//! The daemon's state file (`DIR/.peer/daemon`: announce address and pid): how other commands
//! on a directory find the daemon serving it, announce through it, or stop it.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::share::ShareDir;

const STATE_FILE: &str = "daemon";

/// Where the daemon of `dir` records itself.
pub fn state_file(dir: &ShareDir) -> PathBuf {
    dir.state_dir().join(STATE_FILE)
}

/// Records this process as the daemon of `dir`, announced at `announce`.
pub fn record(dir: &ShareDir, announce: SocketAddr) -> io::Result<()> {
    fs::write(
        state_file(dir),
        format!("{} {}\n", announce, std::process::id()),
    )
}

/// Removes this process's record from `dir` (it stops serving).
pub fn release(dir: &ShareDir) {
    let _ = fs::remove_file(state_file(dir));
}

/// Announce address of a daemon running on `dir`, if one is alive.
pub fn running_daemon(dir: &ShareDir) -> Option<SocketAddr> {
    running_daemon_process(dir).map(|(addr, _)| addr)
}

/// Announce address and process id of a daemon running on `dir`, if one is alive (`peer exit`
/// stops it with SIGTERM so that it leaves the swarm itself).
pub fn running_daemon_process(dir: &ShareDir) -> Option<(SocketAddr, u32)> {
    let text = fs::read_to_string(state_file(dir)).ok()?;
    let mut it = text.split_whitespace();
    let addr: SocketAddr = it.next()?.parse().ok()?;
    let pid: u32 = it.next()?.parse().ok()?;
    (pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists())
        .then_some((addr, pid))
}

/// Why a daemon could not be stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("cannot signal the daemon (pid {pid}): {source}")]
    Signal { pid: u32, source: nix::Error },
    #[error("the daemon (pid {0}) did not stop within 30 s")]
    StillRunning(u32),
}

/// Asks the daemon `pid` to stop (SIGTERM) and waits until it is gone, which is after it sent
/// flag 5.
pub async fn stop_daemon(pid: u32) -> Result<(), StopError> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let raw = i32::try_from(pid).map_err(|_| StopError::Signal {
        pid,
        source: nix::Error::ESRCH,
    })?;
    kill(Pid::from_raw(raw), Signal::SIGTERM)
        .map_err(|source| StopError::Signal { pid, source })?;
    // Gone, or a zombie its parent has not reaped yet: either way it has finished leaving.
    let alive = || {
        fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    };
    for _ in 0..300 {
        if !alive() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(StopError::StillRunning(pid))
}

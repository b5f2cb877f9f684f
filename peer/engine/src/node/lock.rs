//! Who serves a directory, and how the other commands on it find and stop that process.
//!
//! The process serving `DIR` (`peer daemon`, the console, a foreground `peer share`) holds the
//! exclusive lock of `DIR/.peer/lock` for its whole life ([`hold`], a flock: see
//! `share::lockfile`). A second one is refused at once, naming the first; a `kill -9` releases
//! the lock, so nothing stale is ever mistaken for a live server. While it serves, it records
//! its announce address and pid in `DIR/.peer/daemon` ([`record`]); other commands (`share`,
//! `get`, `status`, `exit`) believe that record only while the lock is held by the pid it names.

use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::share::disk;
use crate::share::lockfile::{self, Attempt, Held};
use crate::share::ShareDir;

const LOCK_FILE: &str = "lock";
const STATE_FILE: &str = "daemon";

/// The right to serve a directory; released when dropped (or when the process ends, however).
#[derive(Debug)]
pub struct DirLock {
    _held: Held,
}

/// Why this process may not serve a directory.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "a peer ({}) already serves {}; stop it with `peer exit` or choose another --dir",
        describe(*pid, *announce),
        dir.display()
    )]
    Held {
        dir: PathBuf,
        pid: Option<u32>,
        announce: Option<SocketAddr>,
    },
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
}

fn describe(pid: Option<u32>, announce: Option<SocketAddr>) -> String {
    match (pid, announce) {
        (Some(p), Some(a)) => format!("pid {p}, announced at {a}"),
        (Some(p), None) => format!("pid {p}"),
        (None, _) => "pid unknown".to_owned(),
    }
}

fn lock_file(dir: &ShareDir) -> PathBuf {
    dir.state_dir().join(LOCK_FILE)
}

/// Where the server of `dir` records itself.
pub fn state_file(dir: &ShareDir) -> PathBuf {
    dir.state_dir().join(STATE_FILE)
}

/// Takes the right to serve `dir`, or says who has it. Keep the lock until the process has
/// left the swarm.
pub fn hold(dir: &ShareDir) -> Result<DirLock, LockError> {
    let path = lock_file(dir);
    let io = |error| LockError::Io {
        path: path.clone(),
        error,
    };
    match lockfile::try_hold(&path).map_err(io)? {
        Attempt::Acquired(held) => {
            // Whoever wrote a record before us does not hold the lock any more.
            let state = state_file(dir);
            if let Err(error) = fs::remove_file(&state) {
                if error.kind() != io::ErrorKind::NotFound {
                    return Err(LockError::Io { path: state, error });
                }
            }
            Ok(DirLock { _held: held })
        }
        Attempt::Busy { pid } => Err(LockError::Held {
            dir: dir.root().to_owned(),
            pid,
            announce: read_state(dir)
                .filter(|(_, p)| Some(*p) == pid)
                .map(|(a, _)| a),
        }),
    }
}

/// Records this process, which holds the lock of `dir` ([`hold`]), as its server announced at
/// `announce`.
pub fn record(dir: &ShareDir, announce: SocketAddr) -> io::Result<()> {
    let lock = lock_file(dir);
    let me = std::process::id();
    if !lockfile::is_held(&lock)? || lockfile::holder_pid(&lock) != Some(me) {
        return Err(io::Error::other(format!(
            "{}: not held by this process (pid {me}); take it with node::lock::hold first",
            lock.display()
        )));
    }
    let state = state_file(dir);
    let mut tmp = state.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    disk::replace(&tmp, &state, |out| {
        out.write_all(format!("{announce} {me}\n").as_bytes())
    })
}

/// Removes this process's record from `dir` (it stops serving).
pub fn release(dir: &ShareDir) {
    let _ = fs::remove_file(state_file(dir));
}

fn read_state(dir: &ShareDir) -> Option<(SocketAddr, u32)> {
    let text = fs::read_to_string(state_file(dir)).ok()?;
    let mut it = text.split_whitespace();
    let addr: SocketAddr = it.next()?.parse().ok()?;
    let pid: u32 = it.next()?.parse().ok()?;
    Some((addr, pid))
}

/// Announce address of another process serving `dir`, if one is.
pub fn running_daemon(dir: &ShareDir) -> Option<SocketAddr> {
    running_daemon_process(dir).map(|(addr, _)| addr)
}

/// Announce address and process id of another process serving `dir`, if one is (`peer exit`
/// stops it with SIGTERM so that it leaves the swarm itself).
pub fn running_daemon_process(dir: &ShareDir) -> Option<(SocketAddr, u32)> {
    let lock = lock_file(dir);
    if !lockfile::is_held(&lock).ok()? {
        return None;
    }
    let holder = lockfile::holder_pid(&lock)?;
    let (addr, pid) = read_state(dir)?;
    (pid == holder && pid != std::process::id()).then_some((addr, pid))
}

/// Why a daemon could not be stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("cannot signal the daemon (pid {pid}): {source}")]
    Signal { pid: u32, source: nix::Error },
    #[error("the daemon (pid {0}) did not stop within 30 s")]
    StillRunning(u32),
}

/// Asks the server `pid` of `dir` to stop (SIGTERM) and waits until it has let go of the
/// directory's lock, which it does last, after sending flag 5.
pub async fn stop_daemon(dir: &ShareDir, pid: u32) -> Result<(), StopError> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let raw = i32::try_from(pid).map_err(|_| StopError::Signal {
        pid,
        source: nix::Error::ESRCH,
    })?;
    kill(Pid::from_raw(raw), Signal::SIGTERM)
        .map_err(|source| StopError::Signal { pid, source })?;
    let lock = lock_file(dir);
    for _ in 0..300 {
        // The lock goes when the process ends, zombie or not; an unreadable lock file cannot
        // tell us more than that either.
        if !lockfile::is_held(&lock).unwrap_or(false) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(StopError::StillRunning(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_per_directory_and_its_record_counts_only_while_it_holds_the_lock() {
        let root = std::env::temp_dir().join(format!("node-lock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = ShareDir::open(&root).unwrap();
        let at: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert!(record(&dir, at).is_err(), "recorded without the lock");
        let held = hold(&dir).unwrap();
        record(&dir, at).unwrap();
        match hold(&dir).unwrap_err() {
            LockError::Held { pid, announce, .. } => {
                assert_eq!((pid, announce), (Some(std::process::id()), Some(at)));
            }
            e => panic!("{e}"),
        }
        // Our own record is not "another process serving".
        assert_eq!(running_daemon(&dir), None);
        drop(held);
        assert_eq!(read_state(&dir).map(|(a, _)| a), Some(at));
        let _again = hold(&dir).unwrap();
        assert_eq!(
            read_state(&dir),
            None,
            "a stale record survived a new holder"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}

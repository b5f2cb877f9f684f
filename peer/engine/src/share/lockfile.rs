//! Ownership through `flock(2)`: whoever holds the exclusive lock on a file owns what it
//! guards, for as long as the file stays open. The kernel releases the lock however the holder
//! ends, `kill -9` and crashes included, so there is no stale state to detect: no pidfile, no
//! `/proc` check, no pid reused by an unrelated process taken for the owner.
//!
//! The file holds the owner's pid, written after locking, for messages only ("held by pid N").
//! Locks conflict between open file descriptions, so one process trying twice is refused too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::disk;

/// A lock held by this process; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Held {
    /// Held for its drop, which unlocks.
    _lock: Flock<File>,
    path: PathBuf,
}

/// What trying to take a lock found.
#[derive(Debug)]
pub(crate) enum Attempt {
    Acquired(Held),
    /// Someone else holds it; their pid when they wrote it.
    Busy {
        pid: Option<u32>,
    },
}

/// Attempts made before a lock counts as busy. [`is_held`] takes a shared lock for an instant,
/// so a single refusal may be a probe, not an owner.
const ATTEMPTS: u32 = 4;
const RETRY_AFTER: Duration = Duration::from_millis(5);

fn open(path: &Path, create: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .mode(0o644)
        .custom_flags(disk::no_follow())
        .open(path)
        .map_err(disk::explain)?;
    if !file.metadata()?.is_file() {
        return Err(disk::not_regular("not a lock file"));
    }
    Ok(file)
}

/// Takes the exclusive lock on `path` (created if missing) without waiting for its owner.
pub(crate) fn try_hold(path: &Path) -> io::Result<Attempt> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let file = open(path, true)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                // An owner that removes the file as it lets go (a download claim) may have done
                // so between our open and our lock: then we hold a name nobody else sees.
                let ours = lock.metadata()?;
                let named = disk::entry(path)?;
                if named.is_some_and(|m| (m.dev(), m.ino()) == (ours.dev(), ours.ino())) {
                    lock.set_len(0)?;
                    lock.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)?;
                    return Ok(Attempt::Acquired(Held {
                        _lock: lock,
                        path: path.to_owned(),
                    }));
                }
            }
            Err((_, Errno::EWOULDBLOCK)) if attempt < ATTEMPTS => std::thread::sleep(RETRY_AFTER),
            Err((_, Errno::EWOULDBLOCK)) => {
                return Ok(Attempt::Busy {
                    pid: holder_pid(path),
                })
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
}

/// True when someone (this process included) holds the lock on `path`.
pub(crate) fn is_held(path: &Path) -> io::Result<bool> {
    let file = match open(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_probe) => Ok(false),
        Err((_, Errno::EWOULDBLOCK)) => Ok(true),
        Err((_, e)) => Err(e.into()),
    }
}

/// The pid the owner of `path` wrote, if any.
pub(crate) fn holder_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    open(path, false).ok()?.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

impl Held {
    /// Releases the lock and removes its file, so no lock file outlives what it guarded. The
    /// file goes first, while still locked: [`try_hold`] notices a name removed under it.
    pub(crate) fn release_and_remove(self) {
        if let Err(e) = fs::remove_file(&self.path) {
            log::warn!("removing {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::tempdir;
    use super::*;

    #[test]
    fn one_holder_at_a_time_even_within_a_process() {
        let root = tempdir("lockfile");
        fs::create_dir_all(&root).unwrap();
        let path = root.join("x.lock");
        assert!(!is_held(&path).unwrap());
        let Attempt::Acquired(held) = try_hold(&path).unwrap() else {
            panic!("a fresh lock is busy");
        };
        assert!(is_held(&path).unwrap());
        match try_hold(&path).unwrap() {
            Attempt::Busy { pid } => assert_eq!(pid, Some(std::process::id())),
            Attempt::Acquired(_) => panic!("held twice"),
        }
        held.release_and_remove();
        assert!(!path.exists() && !is_held(&path).unwrap());
        let Attempt::Acquired(_again) = try_hold(&path).unwrap() else {
            panic!("a released lock is still busy");
        };
        fs::remove_dir_all(&root).unwrap();
    }
}

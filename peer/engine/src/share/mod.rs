//! The share directory: the only files a peer serves, downloads in progress, and the state
//! that lets both survive a restart or a `kill -9`.
//!
//! Layout of a share directory `DIR`:
//!
//! - `DIR/NAME`: complete files; each is served once its manifest is known.
//! - `DIR/NAME.part`: a download in progress; verified chunks are written at their offset.
//! - `DIR/.peer/NAME.manifest`: cached manifest of `DIR/NAME`, valid while its size and
//!   modification time are unchanged, so a restart does not rehash ([`manifest_file`]).
//! - `DIR/.peer/NAME.part.manifest`: the manifest of a download, fetched once.
//! - `DIR/.peer/NAME.part.have`: the resume record: which chunks of which `NAME.part` are
//!   verified ([`record`]).
//! - `DIR/.peer/NAME.part.lock`: locked by the one download of `NAME` running ([`claim`]).
//! - `DIR/.peer/NAME.share`: a file or directory shared in place, from wherever it lies: its
//!   path and what it (each of its files) was when hashed ([`placed`]). Served under NAME only
//!   while it is unchanged. A directory downloaded here (`DIR/NAME/`) is recorded so too.
//! - `DIR/NAME.part/`: the download of a directory: its files at their relative paths
//!   ([`tree`]), renamed to `DIR/NAME/` when complete; `DIR/.peer/NAME.part.files` holds its
//!   layout (the bencoded `info.files`), which the manifest's id commits to.
//! - `DIR/.peer/key`: the peer's tracker identity, readable by its owner only.
//! - `DIR/.peer/lock`, `DIR/.peer/daemon`: who serves the directory
//!   ([`crate::node::lock`]).
//!
//! Only regular files count: a symbolic link is never followed, whatever its name ([`disk`]).
//! The record is also what other peers are told we have (the tracker report and the server
//! read it), so nothing unverified is served; [`partial`] says how it stays true across crashes
//! and why it is believed only for the `.part` it describes.

mod claim;
pub(crate) mod disk;
mod inventory;
mod key;
pub(crate) mod lockfile;
pub mod manifest_file;
mod manifest_sink;
mod partial;
pub mod placed;
mod recheck;
pub mod record;
mod served;
mod staging;
mod tree;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tracker_proto::MAX_CHUNKS;

use crate::bitfield::Bitfield;
use crate::chunking::{self, ChunkSizeError};
use crate::manifest::{FileId, Manifest};
use crate::name::{NameError, ShareName, PART_SUFFIX};
use crate::storage::Storage;
use manifest_file::Stamp;
use placed::{FileStamp, Placed};
use record::{PartStamp, Record, Standing};

pub use claim::DownloadClaim;
pub use inventory::LocalFile;
pub use manifest_sink::ManifestSink;
pub use partial::{Finish, PartialFile, PersistError};
pub use served::Served;
pub use staging::Staged;

/// Directory inside the share directory that holds manifests and resume records.
pub const STATE_DIR: &str = ".peer";

/// What went wrong with the share directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Name(#[from] NameError),
    /// The message carries the I/O error itself (not as a `source`, which would print it twice).
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{0} is not in the share directory")]
    NotFound(ShareName),
    #[error(
        "a different file named {name} already exists in {dir} (HASH_MISMATCH: ids {have} and {want})"
    )]
    NameTaken {
        name: ShareName,
        dir: PathBuf,
        have: FileId,
        want: FileId,
    },
    #[error(
        "{name}: {bad} chunks of the downloaded file did not re-verify against its manifest; they were dropped from the .part's resume record and are fetched again by the next download"
    )]
    VerifyFailed { name: ShareName, bad: u32 },
    #[error(
        "{path}: {size} bytes is too large to share: a file has at most {MAX_CHUNKS} chunks of {chunk_size} bytes ({limit} bytes)"
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        chunk_size: u32,
        limit: u64,
    },
    #[error("{}: cannot share {why}", path.display())]
    Unshareable { path: PathBuf, why: String },
    #[error(
        "{name} is already shared from {}; rename this file to share it too",
        other.display()
    )]
    NameShared { name: ShareName, other: PathBuf },
    #[error("{}: {error}", path.display())]
    ChunkSize {
        path: PathBuf,
        error: ChunkSizeError,
    },
    #[error(
        "{name}: {} changed on disk since it was shared ({why}); it is no longer served. Run `peer share {}` again to share what it holds now",
        path.display(),
        path.display()
    )]
    Changed {
        name: ShareName,
        path: PathBuf,
        why: &'static str,
    },
    #[error(
        "{name} is already being downloaded into {} ({}); wait for that download to end or stop it",
        dir.display(),
        holder(*pid)
    )]
    DownloadBusy {
        name: ShareName,
        dir: PathBuf,
        pid: Option<u32>,
    },
    /// A bug of the caller, reported rather than raced: see [`ShareDir::claim_download`].
    #[error("the download of {0} did not claim its name first (ShareDir::claim_download)")]
    Unclaimed(ShareName),
    #[error(transparent)]
    Persist(#[from] PersistError),
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(p) if p == std::process::id() => "by this peer".to_owned(),
        Some(p) => format!("by pid {p}"),
        None => "by another process".to_owned(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Refuses a download whose chunk size gives more than 2^22 chunks (protocol.txt §1.1). What
/// we share gets a chunk size that fits from [`chunking::for_file`].
pub fn check_size(path: &Path, size: u64, chunk_size: u32) -> Result<(), StoreError> {
    let limit = u64::from(MAX_CHUNKS) * u64::from(chunk_size);
    if size > limit {
        return Err(StoreError::TooLarge {
            path: path.to_owned(),
            size,
            chunk_size,
            limit,
        });
    }
    Ok(())
}

/// Replaces `dest` by `bytes` through `tmp` (fsync, rename, fsync of the directory), never
/// writing through a link.
pub fn write_file(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    disk::replace(tmp, dest, |out| io::Write::write_all(out, bytes)).map_err(io_err(dest))
}

/// A share directory. Cheap to clone the `Arc` of; safe to use from many tasks.
#[derive(Debug)]
pub struct ShareDir {
    root: PathBuf,
    state: PathBuf,
    cache: Mutex<HashMap<ShareName, (Stamp, Arc<Manifest>)>>,
    claims: claim::Claims,
}

impl ShareDir {
    /// Opens (creating if needed) a share directory and its state directory.
    pub fn open(root: &Path) -> Result<ShareDir, StoreError> {
        if root.exists() && !root.is_dir() {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory (give --dir a directory)",
            );
            return Err(io_err(root)(e));
        }
        fs::create_dir_all(root).map_err(io_err(root))?;
        let root = root.canonicalize().map_err(io_err(root))?;
        let state = root.join(STATE_DIR);
        match disk::entry(&state).map_err(io_err(&state))? {
            Some(m) if m.is_dir() => {}
            Some(_) => {
                return Err(io_err(&state)(disk::not_regular(
                    "not a directory (a link, or a file)",
                )))
            }
            None => fs::create_dir(&state).map_err(io_err(&state))?,
        }
        Ok(ShareDir {
            root,
            state,
            cache: Mutex::new(HashMap::new()),
            claims: claim::Claims::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory for the peer's own state files (manifests, resume records, daemon address).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    pub fn complete_path(&self, name: &ShareName) -> PathBuf {
        self.root.join(name.as_str())
    }

    pub fn part_path(&self, name: &ShareName) -> PathBuf {
        self.root.join(format!("{name}{PART_SUFFIX}"))
    }

    fn manifest_path(&self, name: &ShareName) -> PathBuf {
        self.state.join(format!("{name}.manifest"))
    }

    fn part_manifest_path(&self, name: &ShareName) -> PathBuf {
        self.state.join(format!("{name}{PART_SUFFIX}.manifest"))
    }

    fn record_path(&self, name: &ShareName) -> PathBuf {
        self.state.join(format!("{name}{PART_SUFFIX}.have"))
    }

    fn record_tmp_path(&self, name: &ShareName) -> PathBuf {
        self.state.join(format!("{name}{PART_SUFFIX}.have.tmp"))
    }

    /// True when a complete file `name` is served here: a regular file of the directory (not
    /// a link), or a file shared in place and unchanged since.
    pub fn has_complete(&self, name: &ShareName) -> bool {
        disk::entry(&self.complete_path(name)).is_ok_and(|m| m.is_some_and(|m| m.is_file()))
            || self.placed_unchanged(name).is_ok()
    }

    /// Names of the complete files: those in the directory and those shared in place (changed
    /// ones too, so the daemon notices and withdraws them), sorted.
    pub fn complete_files(&self) -> Result<Vec<ShareName>, StoreError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| ShareName::new(n).ok())
            else {
                continue;
            };
            // `file_type` does not follow links: a link is never listed.
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                names.push(name);
            }
        }
        names.extend(self.placed_names());
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Opens the complete file `name`: the directory's own, else the one shared in place if
    /// it is unchanged (`Changed` otherwise); `NotFound` when there is none, or only something
    /// that is not a regular file (a link named like a shared file is not shared here).
    fn open_complete(&self, name: &ShareName) -> Result<Opened, StoreError> {
        let path = self.complete_path(name);
        // A directory of that name is served only through its share record.
        let is_dir = disk::entry(&path).is_ok_and(|m| m.is_some_and(|m| m.is_dir()));
        match disk::open_regular(&path) {
            _ if is_dir => {}
            Ok((file, meta)) => {
                return Ok(Opened {
                    stamp: Stamp::of(&meta),
                    size: meta.len(),
                    storage: Storage::One(file),
                    placed: None,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                log::debug!("{}: {e}; not shared", path.display());
                return Err(StoreError::NotFound(name.clone()));
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
        let placed = self.recorded(name)?;
        if placed.is_dir() {
            let storage =
                tree::open_recorded(&placed.path, &placed.files).map_err(|(path, why)| {
                    StoreError::Changed {
                        name: name.clone(),
                        path,
                        why,
                    }
                })?;
            return Ok(Opened {
                stamp: dir_stamp(&placed),
                size: placed.files.iter().map(|f| f.stamp.size).sum(),
                storage,
                placed: Some(placed),
            });
        }
        let changed = |why| placed.changed(name, why);
        let (file, meta) = match disk::open_regular(&placed.path) {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(changed("it is gone")),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(changed("it is no longer a regular file"))
            }
            Err(e) => return Err(io_err(&placed.path)(e)),
        };
        if FileStamp::of(&meta) != placed.stamp {
            return Err(changed(
                "its size, modification time or inode differ from when it was hashed",
            ));
        }
        Ok(Opened {
            stamp: Stamp::of(&meta),
            size: meta.len(),
            storage: Storage::One(file),
            placed: Some(placed),
        })
    }

    /// The manifest of the complete file `name`: from memory, from the on-disk cache when the
    /// file is unchanged since, or by hashing it (and caching the result).
    pub fn complete_manifest(&self, name: &ShareName) -> Result<Arc<Manifest>, StoreError> {
        let opened = self.open_complete(name)?;
        self.manifest_of(name, &opened)
    }

    /// The manifest of the open complete share `name` (whose record, when it is shared in
    /// place, holds the truth: its chunk size, its id, a directory's layout).
    fn manifest_of(&self, name: &ShareName, opened: &Opened) -> Result<Arc<Manifest>, StoreError> {
        let (stamp, placed) = (opened.stamp, opened.placed.as_ref());
        if let Some((s, m)) = self.cache.lock().get(name) {
            if *s == stamp {
                return Ok(m.clone());
            }
        }
        let path = placed.map_or_else(|| self.complete_path(name), |p| p.path.clone());
        let cache_path = self.manifest_path(name);
        let manifest = match manifest_file::read(&cache_path, Some(stamp)) {
            Some(m) => m,
            None => {
                let chunk_size = match placed {
                    Some(p) => p.chunk_size,
                    None => chunking::for_file(opened.size, None).map_err(|error| {
                        StoreError::ChunkSize {
                            path: path.clone(),
                            error,
                        }
                    })?,
                };
                log::info!("hashing {}", path.display());
                let m = Manifest::from_reader(&opened.storage, opened.size, chunk_size)
                    .map_err(io_err(&path))?;
                manifest_file::write(&cache_path, stamp, &m).map_err(io_err(&cache_path))?;
                // Keep the on-disk copy rather than 32 bytes per chunk in memory.
                manifest_file::read(&cache_path, Some(stamp)).unwrap_or(m)
            }
        };
        let manifest = match placed.filter(|p| p.is_dir()) {
            Some(p) => manifest.with_files(p.layout()),
            None => manifest,
        };
        if let Some(p) = placed.filter(|p| p.id != manifest.id()) {
            return Err(p.changed(name, "its content differs from when it was hashed"));
        }
        let manifest = Arc::new(manifest);
        self.remember(name, stamp, manifest.clone());
        Ok(manifest)
    }

    /// Caches `manifest` as the one of the complete file `name` as it is at `stamp`.
    fn remember(&self, name: &ShareName, stamp: Stamp, manifest: Arc<Manifest>) {
        self.cache.lock().insert(name.clone(), (stamp, manifest));
    }

    /// Forgets a manifest cached in memory (after a download completes under that name).
    fn forget(&self, name: &ShareName) {
        self.cache.lock().remove(name);
    }

    /// What can be served of `name`: the complete file, else the verified part of a download in
    /// progress (as last recorded on disk, and only while the `.part` is the one recorded),
    /// else `NotFound`.
    pub fn served(&self, name: &ShareName) -> Result<Served, StoreError> {
        match self.open_complete(name) {
            Ok(opened) => {
                let manifest = self.manifest_of(name, &opened)?;
                return Ok(Served {
                    manifest,
                    in_place: opened.placed.is_some(),
                    storage: opened.storage,
                    have: None,
                });
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let not_found = || StoreError::NotFound(name.clone());
        let manifest = self.partial_manifest(name).ok_or_else(not_found)?;
        let storage = self.open_part(name, &manifest).ok_or_else(not_found)?;
        let stamp = storage.stamp().map_err(|_| not_found())?;
        let have = self
            .servable_record(name, &manifest, &stamp)
            .ok_or_else(not_found)?;
        Ok(Served {
            manifest: Arc::new(manifest),
            storage,
            have: Some(have),
            in_place: false,
        })
    }

    /// The `.part` of download `name` (a file, or a directory's files), opened for reading.
    fn open_part(&self, name: &ShareName, manifest: &Manifest) -> Option<Storage> {
        let part = self.part_path(name);
        match manifest.files() {
            Some(files) => tree::open_readable(&part, files).ok(),
            None => disk::open_regular(&part)
                .ok()
                .map(|(file, _)| Storage::One(file)),
        }
    }

    /// The verified chunks of download `name` as last recorded, if its record matches
    /// `manifest` and the `.part` now in the directory is the one the record describes.
    pub fn read_record(&self, name: &ShareName, manifest: &Manifest) -> Option<Bitfield> {
        let stamp = match manifest.files() {
            Some(_) => self.open_part(name, manifest)?.stamp().ok()?,
            None => {
                let meta = disk::entry(&self.part_path(name)).ok()??;
                if !meta.is_file() {
                    return None;
                }
                PartStamp::of(&meta)
            }
        };
        self.servable_record(name, manifest, &stamp)
    }

    /// The chunks the record of `name` lists, when they may be served from the `.part` whose
    /// stamp is `part`: the record's own file, untouched since, or written since by the
    /// download running now (whose writes are what moved its change time).
    fn servable_record(
        &self,
        name: &ShareName,
        manifest: &Manifest,
        part: &PartStamp,
    ) -> Option<Bitfield> {
        let record = self.record_of(name, manifest)?;
        match record.standing(part) {
            Standing::Unchanged => Some(record.have),
            Standing::Written if self.download_running(name) => Some(record.have),
            Standing::Written | Standing::Other => None,
        }
    }

    /// The resume record of `name`, if there is one for `manifest`.
    fn record_of(&self, name: &ShareName, manifest: &Manifest) -> Option<Record> {
        let path = self.record_path(name);
        let (mut file, _) = disk::open_regular(&path).ok()?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes).ok()?;
        match record::parse(&bytes) {
            Ok(r) if r.is_for(manifest) => Some(r),
            Ok(_) => None,
            Err(e) => {
                log::info!("{}: {e}; not used", path.display());
                None
            }
        }
    }

    fn placed_path(&self, name: &ShareName) -> PathBuf {
        self.state.join(format!("{name}.share"))
    }

    /// The record of `name` shared in place, if there is a readable one.
    pub fn placed(&self, name: &ShareName) -> Option<Placed> {
        let path = self.placed_path(name);
        let (mut file, meta) = disk::open_regular(&path).ok()?;
        if meta.len() > placed::MAX_RECORD as u64 {
            log::warn!("{}: too large for a share record; not used", path.display());
            return None;
        }
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes).ok()?;
        match placed::parse(&bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                log::warn!("{}: {e}; not used", path.display());
                None
            }
        }
    }

    /// The share record of `name`; `NotFound` without one.
    fn recorded(&self, name: &ShareName) -> Result<Placed, StoreError> {
        self.placed(name)
            .ok_or_else(|| StoreError::NotFound(name.clone()))
    }

    /// The record of `name` shared in place, if its file is unchanged since (one `stat`).
    pub fn placed_unchanged(&self, name: &ShareName) -> Result<Placed, StoreError> {
        let placed = self.recorded(name)?;
        if placed.is_dir() {
            return match tree::first_changed(&placed.path, &placed.files) {
                Some((path, why)) => Err(StoreError::Changed {
                    name: name.clone(),
                    path,
                    why,
                }),
                None => Ok(placed),
            };
        }
        let changed = |why| placed.changed(name, why);
        match disk::entry(&placed.path) {
            Ok(Some(m)) if !m.is_file() => Err(changed("it is no longer a regular file")),
            Ok(Some(m)) if FileStamp::of(&m) != placed.stamp => Err(changed(
                "its size, modification time or inode differ from when it was hashed",
            )),
            Ok(Some(_)) => Ok(placed),
            Ok(None) => Err(changed("it is gone")),
            Err(e) => Err(io_err(&placed.path)(e)),
        }
    }

    /// Names with a share record, whatever the state of their files.
    pub fn placed_names(&self) -> Vec<ShareName> {
        let Ok(entries) = fs::read_dir(&self.state) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".share")
                    .and_then(|n| ShareName::new(n).ok())
            })
            .collect()
    }

    /// The manifest of an unfinished download of `name`, if one was saved.
    pub fn partial_manifest(&self, name: &ShareName) -> Option<Manifest> {
        let manifest = manifest_file::read(&self.part_manifest_path(name), None)?;
        match self.partial_files(name) {
            Some(files) => Some(manifest.with_files(files.into())),
            None => Some(manifest),
        }
    }
}

/// A complete share, open for reading.
struct Opened {
    storage: Storage,
    /// What the cached manifest must have been made from.
    stamp: Stamp,
    size: u64,
    placed: Option<Placed>,
}

/// The stamp a directory's cached manifest is kept under: its total size and its files' latest
/// modification time (the record's id and layout are checked as well).
fn dir_stamp(placed: &Placed) -> Stamp {
    Stamp {
        size: placed.files.iter().map(|f| f.stamp.size).sum(),
        mtime_ns: placed
            .files
            .iter()
            .map(|f| f.stamp.mtime_ns)
            .max()
            .unwrap_or(0),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A fresh, empty temporary directory path for test `tag`.
    pub fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_size_limit_is_two_to_the_22_chunks() {
        let p = Path::new("big");
        check_size(p, 8 << 30, 2048).unwrap();
        let err = check_size(p, (8 << 30) + 1, 2048).unwrap_err();
        assert!(
            err.to_string()
                .contains("at most 4194304 chunks of 2048 bytes (8589934592 bytes)"),
            "{err}"
        );
        check_size(p, (8 << 30) + 1, 4096).unwrap();
    }

    #[test]
    fn links_are_not_shared_whatever_their_name() {
        let root = tempdir("links");
        let outside = tempdir("links-outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"private").unwrap();
        let dir = ShareDir::open(&root).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("secret")).unwrap();
        let name = ShareName::new("secret").unwrap();
        assert!(dir.complete_files().unwrap().is_empty());
        assert!(!dir.has_complete(&name));
        assert!(matches!(
            dir.complete_manifest(&name),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(dir.served(&name), Err(StoreError::NotFound(_))));
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn a_linked_state_directory_is_refused() {
        let root = tempdir("linked-state");
        let elsewhere = tempdir("linked-state-target");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join(STATE_DIR)).unwrap();
        let err = ShareDir::open(&root).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&elsewhere).unwrap();
    }
}

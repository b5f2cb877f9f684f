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
//! - `DIR/.peer/NAME.part.have`: the resume record: which chunks of `NAME.part` are verified
//!   ([`record`]).
//! - `DIR/.peer/key`: the peer's tracker identity ([`key`]).
//!
//! The record is also what other peers are told we have (the tracker report and the server
//! read it), so nothing unverified is served; [`partial`] says how it stays true across crashes.

mod inventory;
mod key;
mod manifest_file;
mod partial;
mod record;
mod served;
mod staging;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::bitfield::Bitfield;
use crate::manifest::{FileId, Manifest, DEFAULT_CHUNK_SIZE};
use crate::name::{NameError, ShareName, PART_SUFFIX};
use manifest_file::Stamp;

pub use inventory::LocalFile;
pub use partial::{ManifestSink, PartialFile};
pub use served::Served;
pub use staging::Staged;

/// Directory inside the share directory that holds manifests and resume records.
pub const STATE_DIR: &str = ".peer";

/// Version byte of the on-disk formats (manifest files and resume records).
const FORMAT_VERSION: u8 = 1;

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
        "{name}: the downloaded file did not re-verify against its manifest; the .part was kept"
    )]
    VerifyFailed { name: ShareName },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

/// A share directory. Cheap to clone the `Arc` of; safe to use from many tasks.
#[derive(Debug)]
pub struct ShareDir {
    root: PathBuf,
    state: PathBuf,
    cache: Mutex<HashMap<ShareName, (Stamp, Arc<Manifest>)>>,
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
        fs::create_dir_all(&state).map_err(io_err(&state))?;
        Ok(ShareDir {
            root,
            state,
            cache: Mutex::new(HashMap::new()),
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

    /// Names of the complete files in the directory, sorted.
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
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The manifest of the complete file `name`: from memory, from the on-disk cache when the
    /// file is unchanged since, or by hashing it (and caching the result).
    pub fn complete_manifest(&self, name: &ShareName) -> Result<Arc<Manifest>, StoreError> {
        let path = self.complete_path(name);
        let meta = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Err(StoreError::NotFound(name.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(name.clone()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let stamp = Stamp::of(&meta);
        if let Some((s, m)) = self.cache.lock().get(name) {
            if *s == stamp {
                return Ok(m.clone());
            }
        }
        let cache_path = self.manifest_path(name);
        let manifest = match manifest_file::read(&cache_path, Some(stamp)) {
            Some(m) => m,
            None => {
                log::info!("hashing {}", path.display());
                let m = Manifest::from_file(&path, DEFAULT_CHUNK_SIZE).map_err(io_err(&path))?;
                manifest_file::write(&cache_path, stamp, &m)?;
                // Keep the on-disk copy rather than 32 bytes per chunk in memory.
                manifest_file::read(&cache_path, Some(stamp)).unwrap_or(m)
            }
        };
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
    /// progress (as last recorded on disk), else `NotFound`.
    pub fn served(&self, name: &ShareName) -> Result<Served, StoreError> {
        match self.complete_manifest(name) {
            Ok(manifest) => {
                let path = self.complete_path(name);
                let file = File::open(&path).map_err(io_err(&path))?;
                return Ok(Served {
                    manifest,
                    file,
                    have: None,
                });
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let not_found = || StoreError::NotFound(name.clone());
        let manifest = self.partial_manifest(name).ok_or_else(not_found)?;
        let have = self.read_record(name, &manifest).ok_or_else(not_found)?;
        let file = File::open(self.part_path(name)).map_err(|_| not_found())?;
        Ok(Served {
            manifest: Arc::new(manifest),
            file,
            have: Some(have),
        })
    }

    /// The verified chunks of download `name` as last recorded, if its record matches `manifest`.
    pub fn read_record(&self, name: &ShareName, manifest: &Manifest) -> Option<Bitfield> {
        let bytes = fs::read(self.record_path(name)).ok()?;
        record::parse(&bytes, manifest)
    }

    /// The manifest of an unfinished download of `name`, if one was saved.
    pub fn partial_manifest(&self, name: &ShareName) -> Option<Manifest> {
        manifest_file::read(&self.part_manifest_path(name), None)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    /// A fresh, empty temporary directory path for test `tag`.
    pub fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}

//! The share directory: the only files a peer serves, downloads in progress, and the state
//! that lets both survive a restart or a `kill -9`.
//!
//! Layout of a share directory `DIR`:
//!
//! - `DIR/NAME`: complete files; each is served once its manifest is known.
//! - `DIR/NAME.part`: a download in progress; verified chunks are written at their offset.
//! - `DIR/.peer/NAME.manifest`: cached manifest of `DIR/NAME`, valid while its size and
//!   modification time are unchanged, so a restart does not rehash.
//! - `DIR/.peer/NAME.part.manifest`: the manifest of a download, fetched once.
//! - `DIR/.peer/NAME.part.have`: the resume record: which chunks of `NAME.part` are verified.
//!
//! Crash safety rests on one ordering: chunk bytes are written and `fdatasync`ed before the
//! resume record that lists them is replaced (write to a temporary file, fsync, rename). So at any
//! instant the record lists only chunks whose bytes are on disk, and the complete name appears only
//! through a rename after the whole `.part` was re-verified. The record is also what other peers
//! are told we have (the tracker report and the server read it), so nothing unverified is served.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use crate::manifest::{FileId, Manifest, DEFAULT_CHUNK_SIZE, HASH_LEN};
use crate::wire::bits;
use tracker::proto::FileName;

/// Directory inside the share directory that holds manifests and resume records.
pub const STATE_DIR: &str = ".peer";

const PART_SUFFIX: &str = ".part";
const MANIFEST_MAGIC: &[u8; 4] = b"P2PM";
const RECORD_MAGIC: &[u8; 4] = b"P2PR";
const FORMAT_VERSION: u8 = 1;

/// Why a file name is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("bad file name {0:?}: {1}")]
    Invalid(String, tracker::proto::FileNameError),
    #[error("file name {0:?} starts with '.', reserved for the peer's own state")]
    Hidden(String),
    #[error("file name {0:?} ends with \".part\", reserved for downloads in progress")]
    PartSuffix(String),
}

/// Checks that `name` is a plain file name this peer can share and download: what the tracker
/// accepts (no path, no whitespace, ...), minus the names this directory layout reserves.
pub fn check_name(name: &str) -> Result<FileName, NameError> {
    let valid =
        FileName::new(name).map_err(|e| NameError::Invalid(name.chars().take(300).collect(), e))?;
    if name.starts_with('.') {
        return Err(NameError::Hidden(name.to_owned()));
    }
    if name.ends_with(PART_SUFFIX) {
        return Err(NameError::PartSuffix(name.to_owned()));
    }
    Ok(valid)
}

/// What went wrong with the share directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Name(#[from] NameError),
    /// The message carries the I/O error itself (not as a `source`, which would print it twice).
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{0} is not in the share directory")]
    NotFound(String),
    #[error(
        "a different file named {name} already exists in {dir} (HASH_MISMATCH: ids {have} and {want})"
    )]
    NameTaken {
        name: String,
        dir: PathBuf,
        have: FileId,
        want: FileId,
    },
    #[error(
        "{name}: the downloaded file did not re-verify against its manifest; the .part was kept"
    )]
    VerifyFailed { name: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

/// What a complete file looked like when its manifest was cached: a change means rehash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: u128,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Stamp {
            size: meta.len(),
            mtime_ns,
        }
    }
}

/// A file this peer can serve right now: its manifest, an open handle, and which chunks are
/// verified (`None`: all of them).
#[derive(Debug)]
pub struct Served {
    pub manifest: Arc<Manifest>,
    pub file: File,
    pub have: Option<Vec<u8>>,
}

impl Served {
    /// True when chunk `index` is verified and may be sent.
    pub fn has(&self, index: u32) -> bool {
        index < self.manifest.chunk_count()
            && self.have.as_ref().is_none_or(|h| bits::get(h, index))
    }

    /// The BITFIELD of this file.
    pub fn bitfield(&self) -> Vec<u8> {
        match &self.have {
            Some(h) => h.clone(),
            None => full_bitfield(self.manifest.chunk_count()),
        }
    }
}

/// A bitfield with the first `n` bits set and the spare bits clear.
pub fn full_bitfield(n: u32) -> Vec<u8> {
    let mut v = vec![0xffu8; bits::len_for(n)];
    let spare = (v.len() * 8) as u32 - n;
    if let Some(last) = v.last_mut() {
        *last &= 0xffu8 << spare;
    }
    v
}

/// A share directory. Cheap to clone the `Arc` of; safe to use from many tasks.
#[derive(Debug)]
pub struct ShareDir {
    root: PathBuf,
    state: PathBuf,
    cache: Mutex<HashMap<String, (Stamp, Arc<Manifest>)>>,
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

    pub fn complete_path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn part_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}{PART_SUFFIX}"))
    }

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.state.join(format!("{name}.manifest"))
    }

    fn part_manifest_path(&self, name: &str) -> PathBuf {
        self.state.join(format!("{name}{PART_SUFFIX}.manifest"))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.state.join(format!("{name}{PART_SUFFIX}.have"))
    }

    /// Plain names of the complete files in the directory.
    pub fn complete_files(&self) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_name(&name).is_err() {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The manifest of the complete file `name`: from memory, from the on-disk cache when the
    /// file is unchanged since, or by hashing it (and caching the result).
    pub fn complete_manifest(&self, name: &str) -> Result<Arc<Manifest>, StoreError> {
        check_name(name)?;
        let path = self.complete_path(name);
        let meta = match fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Err(StoreError::NotFound(name.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(name.to_owned()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let stamp = Stamp::of(&meta);
        if let Some((s, m)) = self.lock_cache().get(name) {
            if *s == stamp {
                return Ok(m.clone());
            }
        }
        let cache_path = self.manifest_path(name);
        let manifest = match read_manifest_file(&cache_path, Some(stamp)) {
            Some(m) => m,
            None => {
                log::info!("hashing {}", path.display());
                let m = Manifest::from_file(&path, DEFAULT_CHUNK_SIZE).map_err(io_err(&path))?;
                write_manifest_file(&cache_path, stamp, &m)?;
                // Keep the on-disk copy rather than 32 bytes per chunk in memory.
                read_manifest_file(&cache_path, Some(stamp)).unwrap_or(m)
            }
        };
        let manifest = Arc::new(manifest);
        self.lock_cache()
            .insert(name.to_owned(), (stamp, manifest.clone()));
        Ok(manifest)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Stamp, Arc<Manifest>)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// First half of sharing `src`: hashes it and, unless it already is in the share directory,
    /// copies it into the state directory, so the tracker can be asked before the file appears
    /// under its name. A different file already shared under that name is refused.
    pub fn stage(&self, src: &Path) -> Result<Staged, StoreError> {
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                io_err(src)(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a file name in UTF-8",
                ))
            })?
            .to_owned();
        check_name(&name)?;
        let meta = fs::metadata(src).map_err(io_err(src))?;
        if !meta.is_file() {
            return Err(io_err(src)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let dest = self.complete_path(&name);
        let in_place =
            matches!((src.canonicalize(), dest.canonicalize()), (Ok(a), Ok(b)) if a == b);
        if in_place {
            let manifest = self.complete_manifest(&name)?;
            return Ok(Staged {
                name,
                manifest,
                tmp: None,
            });
        }
        let tmp = self.state.join(format!("{name}.import"));
        let _ = fs::remove_file(&tmp);
        // A copy, not a hard link: editing the original later must not change what is served.
        fs::copy(src, &tmp).map_err(io_err(&tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&tmp))?;
        let staged = Staged {
            name: name.clone(),
            manifest: Arc::new(
                Manifest::from_file(&tmp, DEFAULT_CHUNK_SIZE).map_err(io_err(&tmp))?,
            ),
            tmp: Some(tmp),
        };
        if dest.exists() {
            let existing = self.complete_manifest(&name)?;
            if existing.id() != staged.manifest.id() {
                return Err(StoreError::NameTaken {
                    name,
                    dir: self.root.clone(),
                    have: existing.id(),
                    want: staged.manifest.id(),
                });
            }
        }
        Ok(staged)
    }

    /// Second half of sharing: moves a staged copy to its name in the share directory.
    pub fn commit(&self, mut staged: Staged) -> Result<(String, Arc<Manifest>), StoreError> {
        if let Some(tmp) = staged.tmp.take() {
            let dest = self.complete_path(&staged.name);
            let stamp = Stamp::of(&fs::metadata(&tmp).map_err(io_err(&tmp))?);
            write_manifest_file(&self.manifest_path(&staged.name), stamp, &staged.manifest)?;
            fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
            self.lock_cache()
                .insert(staged.name.clone(), (stamp, staged.manifest.clone()));
        }
        Ok((staged.name.clone(), staged.manifest.clone()))
    }

    /// What can be served of `name`: the complete file, else the verified part of a download in
    /// progress (as last recorded on disk), else `NotFound`.
    pub fn served(&self, name: &str) -> Result<Served, StoreError> {
        check_name(name)?;
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
        let Some(manifest) = self.partial_manifest(name) else {
            return Err(StoreError::NotFound(name.to_owned()));
        };
        let have = self
            .read_record(name, &manifest)
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        let path = self.part_path(name);
        let file = File::open(&path).map_err(|_| StoreError::NotFound(name.to_owned()))?;
        Ok(Served {
            manifest: Arc::new(manifest),
            file,
            have: Some(have),
        })
    }

    /// The verified chunks of download `name` as last recorded, if its record matches `manifest`.
    pub fn read_record(&self, name: &str, manifest: &Manifest) -> Option<Vec<u8>> {
        let bytes = fs::read(self.record_path(name)).ok()?;
        parse_record(&bytes, manifest)
    }

    /// The manifest of an unfinished download of `name`, if one was saved.
    pub fn partial_manifest(&self, name: &str) -> Option<Manifest> {
        read_manifest_file(&self.part_manifest_path(name), None)
    }

    /// Where a manifest received from a peer for download `name` is written page by page, so it
    /// never has to be held in memory whole.
    pub fn manifest_sink(
        &self,
        name: &str,
        size: u64,
        chunk_size: u32,
    ) -> Result<ManifestSink, StoreError> {
        check_name(name)?;
        let dest = self.part_manifest_path(name);
        let mut tmp = dest.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut out = io::BufWriter::new(File::create(&tmp).map_err(io_err(&tmp))?);
        out.write_all(&manifest_header(
            Stamp {
                size: 0,
                mtime_ns: 0,
            },
            size,
            chunk_size,
        ))
        .map_err(io_err(&tmp))?;
        Ok(ManifestSink { out, tmp, dest })
    }

    /// Opens (or creates) the download of `name` with the given manifest, keeping the chunks a
    /// previous run verified when its record is for the same content; anything else left over
    /// (another version, no record) starts from scratch.
    pub fn open_partial(
        &self,
        name: &str,
        manifest: Arc<Manifest>,
    ) -> Result<PartialFile, StoreError> {
        check_name(name)?;
        let part = self.part_path(name);
        let record = self.record_path(name);
        let same = self
            .partial_manifest(name)
            .is_some_and(|m| m.id() == manifest.id());
        if !same {
            let _ = fs::remove_file(&record);
            let _ = fs::remove_file(&part);
            write_manifest_file(
                &self.part_manifest_path(name),
                Stamp {
                    size: 0,
                    mtime_ns: 0,
                },
                &manifest,
            )?;
        }
        let have = same
            .then(|| self.read_record(name, &manifest))
            .flatten()
            .unwrap_or_else(|| vec![0u8; bits::len_for(manifest.chunk_count())]);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(io_err(&part))?;
        file.set_len(manifest.size()).map_err(io_err(&part))?;
        let count = (0..manifest.chunk_count())
            .filter(|&i| bits::get(&have, i))
            .count() as u32;
        Ok(PartialFile {
            name: name.to_owned(),
            manifest,
            file,
            part,
            record,
            tmp: self.state.join(format!("{name}{PART_SUFFIX}.have.tmp")),
            complete: self.complete_path(name),
            complete_manifest: self.manifest_path(name),
            progress: Mutex::new(Progress {
                have,
                unrecorded: Vec::new(),
                count,
            }),
        })
    }

    /// Forgets a manifest cached in memory (after a download completes under that name).
    fn forget(&self, name: &str) {
        self.lock_cache().remove(name);
    }

    /// Finishes a download: see `PartialFile::finish`. The caller must have stopped writing.
    pub fn finish(&self, partial: &PartialFile) -> Result<(), StoreError> {
        partial.finish()?;
        self.forget(&partial.name);
        Ok(())
    }
}

/// A manifest being received: hashes are appended as they arrive, then checked against the id.
#[derive(Debug)]
pub struct ManifestSink {
    out: io::BufWriter<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl ManifestSink {
    pub fn push(&mut self, hashes: &[crate::manifest::ChunkHash]) -> io::Result<()> {
        for h in hashes {
            self.out.write_all(h)?;
        }
        Ok(())
    }

    /// The manifest, when what was pushed is the whole manifest named by `id`; `None` when it is
    /// not (the sender lied), in which case nothing is kept.
    pub fn finish(self, id: FileId) -> Result<Option<Manifest>, StoreError> {
        let ManifestSink { out, tmp, dest } = self;
        let file = out.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_data().map_err(io_err(&tmp))?;
        drop(file);
        match read_manifest_file(&tmp, None) {
            Some(m) if m.id() == id => {
                fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
                Ok(read_manifest_file(&dest, None))
            }
            _ => {
                let _ = fs::remove_file(&tmp);
                Ok(None)
            }
        }
    }
}

/// A file hashed and copied for sharing but not yet under its name; dropping it removes the copy.
#[derive(Debug)]
pub struct Staged {
    pub name: String,
    pub manifest: Arc<Manifest>,
    tmp: Option<PathBuf>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = fs::remove_file(tmp);
        }
    }
}

#[derive(Debug)]
struct Progress {
    /// Chunks verified and written (possibly not yet durable).
    have: Vec<u8>,
    /// Chunks in `have` but not in `recorded`, in the order they were written.
    unrecorded: Vec<u32>,
    count: u32,
}

/// A download in progress: `NAME.part` plus its resume record. Shared by all tasks fetching the
/// file; writes are positioned so they need no lock.
#[derive(Debug)]
pub struct PartialFile {
    name: String,
    manifest: Arc<Manifest>,
    file: File,
    part: PathBuf,
    record: PathBuf,
    tmp: PathBuf,
    complete: PathBuf,
    complete_manifest: PathBuf,
    progress: Mutex<Progress>,
}

impl PartialFile {
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when chunk `index` is verified (written, maybe not yet recorded).
    pub fn has(&self, index: u32) -> bool {
        bits::get(&self.lock().have, index)
    }

    /// Snapshot of the verified chunks.
    pub fn have_bits(&self) -> Vec<u8> {
        self.lock().have.clone()
    }

    /// Number of verified chunks.
    pub fn have_count(&self) -> u32 {
        self.lock().count
    }

    pub fn is_complete(&self) -> bool {
        self.have_count() == self.manifest.chunk_count()
    }

    /// Writes chunks `first..` whose bytes are `data`, all of them already verified by the caller
    /// against the manifest; one positioned write for the whole run.
    pub fn write_verified(&self, first: u32, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, self.manifest.offset(first))?;
        let mut p = self.lock();
        let mut index = first;
        let mut pos = 0usize;
        while pos < data.len() {
            if !bits::get(&p.have, index) {
                bits::set(&mut p.have, index);
                p.unrecorded.push(index);
                p.count += 1;
            }
            pos += self.manifest.chunk_len(index).max(1);
            index += 1;
        }
        Ok(())
    }

    /// Makes every verified chunk durable and lists it in the resume record; returns the chunks
    /// newly recorded (what may now be reported to the tracker).
    pub fn persist(&self) -> io::Result<Vec<u32>> {
        let (bits_now, newly) = {
            let mut p = self.lock();
            if p.unrecorded.is_empty() {
                return Ok(Vec::new());
            }
            (p.have.clone(), std::mem::take(&mut p.unrecorded))
        };
        let result = (|| {
            self.file.sync_data()?;
            let mut rec = Vec::with_capacity(4 + 1 + HASH_LEN + 4 + bits_now.len());
            rec.extend_from_slice(RECORD_MAGIC);
            rec.push(FORMAT_VERSION);
            rec.extend_from_slice(&self.manifest.id().0);
            rec.extend_from_slice(&self.manifest.chunk_count().to_be_bytes());
            rec.extend_from_slice(&bits_now);
            write_atomically(&self.tmp, &self.record, &rec)
        })();
        if let Err(e) = result {
            let mut p = self.lock();
            let mut back = newly;
            back.append(&mut p.unrecorded);
            p.unrecorded = back;
            return Err(e);
        }
        Ok(newly)
    }

    /// Re-verifies the whole `.part` from disk and renames it to the complete name, then drops
    /// the resume state. The complete name never appears for a file that does not verify.
    fn finish(&self) -> Result<(), StoreError> {
        self.persist().map_err(io_err(&self.part))?;
        self.file.sync_all().map_err(io_err(&self.part))?;
        if !self
            .manifest
            .verify_file(&self.part)
            .map_err(io_err(&self.part))?
        {
            return Err(StoreError::VerifyFailed {
                name: self.name.clone(),
            });
        }
        if self.complete.exists() {
            return Err(StoreError::NameTaken {
                name: self.name.clone(),
                dir: self
                    .complete
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
                have: FileId([0; HASH_LEN]),
                want: self.manifest.id(),
            });
        }
        let stamp = Stamp::of(&fs::metadata(&self.part).map_err(io_err(&self.part))?);
        write_manifest_file(&self.complete_manifest, stamp, &self.manifest)?;
        fs::rename(&self.part, &self.complete).map_err(io_err(&self.complete))?;
        if let Some(dir) = self.complete.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        let _ = fs::remove_file(&self.record);
        let _ = fs::remove_file(self.record.with_extension("manifest"));
        Ok(())
    }
}

fn parse_record(bytes: &[u8], manifest: &Manifest) -> Option<Vec<u8>> {
    let head = 4 + 1 + HASH_LEN + 4;
    if bytes.len() < head || &bytes[..4] != RECORD_MAGIC || bytes[4] != FORMAT_VERSION {
        return None;
    }
    if bytes[5..5 + HASH_LEN] != manifest.id().0 {
        return None;
    }
    let n = u32::from_be_bytes(bytes[5 + HASH_LEN..head].try_into().ok()?);
    let field = &bytes[head..];
    (n == manifest.chunk_count() && bits::well_formed(field, n)).then(|| field.to_vec())
}

/// Replaces `dest` with `data` so that a crash leaves either the old or the new content.
fn write_atomically(tmp: &Path, dest: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(tmp)?;
    f.write_all(data)?;
    f.sync_data()?;
    fs::rename(tmp, dest)
}

/// Bytes before the hashes in a manifest file.
const MANIFEST_HEAD: u64 = 4 + 1 + 8 + 16 + 8 + 4;

/// Manifests up to this many bytes of hashes are kept in memory; larger ones stay in their file.
const IN_MEMORY_MANIFEST: u64 = 64 * 1024;

fn manifest_header(stamp: Stamp, size: u64, chunk_size: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(MANIFEST_HEAD as usize);
    h.extend_from_slice(MANIFEST_MAGIC);
    h.push(FORMAT_VERSION);
    h.extend_from_slice(&stamp.size.to_be_bytes());
    h.extend_from_slice(&stamp.mtime_ns.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&chunk_size.to_be_bytes());
    h
}

/// Writes a manifest file atomically: header (what the file looked like, its geometry), hashes.
fn write_manifest_file(path: &Path, stamp: Stamp, m: &Manifest) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        out.write_all(&manifest_header(stamp, m.size(), m.chunk_size()))?;
        m.write_hashes(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(io_err(path))
}

/// Opens a manifest file; `None` when it is missing, damaged, or (with `expect`) describes
/// another state of the file than `expect`.
fn read_manifest_file(path: &Path, expect: Option<Stamp>) -> Option<Manifest> {
    let file = File::open(path).ok()?;
    let mut head = [0u8; MANIFEST_HEAD as usize];
    file.read_exact_at(&mut head, 0).ok()?;
    if &head[..4] != MANIFEST_MAGIC || head[4] != FORMAT_VERSION {
        return None;
    }
    let stamp = Stamp {
        size: u64::from_be_bytes(head[5..13].try_into().ok()?),
        mtime_ns: u128::from_be_bytes(head[13..29].try_into().ok()?),
    };
    if expect.is_some_and(|e| e != stamp) {
        return None;
    }
    let file_size = u64::from_be_bytes(head[29..37].try_into().ok()?);
    let chunk_size = u32::from_be_bytes(head[37..41].try_into().ok()?);
    let small = file.metadata().ok()?.len() <= MANIFEST_HEAD + IN_MEMORY_MANIFEST;
    let m = Manifest::from_file_region(file, MANIFEST_HEAD, file_size, chunk_size).ok()?;
    if small {
        return Manifest::from_hashes(file_size, chunk_size, m.hashes(0, u32::MAX).ok()?).ok();
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn names() {
        assert!(check_name("movie.mkv").is_ok());
        for bad in [
            "", ".", "..", "a/b", "..\\x", "a b", "x\n", ".hidden", "f.part",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn partial_resumes_only_recorded_chunks_and_finishes() {
        let root = tempdir("partial");
        let dir = ShareDir::open(&root).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let p = dir.open_partial("f", m.clone()).unwrap();
        p.write_verified(0, &data[..4096]).unwrap();
        assert_eq!(p.persist().unwrap(), vec![0, 1]);
        p.write_verified(4, &data[8192..]).unwrap();
        drop(p);
        let p = dir.open_partial("f", m.clone()).unwrap();
        assert_eq!(p.have_count(), 2, "chunk 4 was never recorded");
        let served = dir.served("f").unwrap();
        assert!(served.has(1) && !served.has(2));
        p.write_verified(2, &data[4096..]).unwrap();
        assert!(p.is_complete());
        dir.finish(&p).unwrap();
        assert_eq!(fs::read(root.join("f")).unwrap(), data);
        assert!(!root.join("f.part").exists());
        assert_eq!(dir.complete_manifest("f").unwrap().id(), m.id());
        assert_eq!(dir.complete_files().unwrap(), vec!["f".to_owned()]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn finish_refuses_a_part_that_does_not_verify() {
        let root = tempdir("verify");
        let dir = ShareDir::open(&root).unwrap();
        let data = vec![7u8; 5000];
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let p = dir.open_partial("g", m).unwrap();
        p.write_verified(0, &data).unwrap();
        p.file.write_all_at(b"X", 10).unwrap();
        assert!(matches!(
            dir.finish(&p),
            Err(StoreError::VerifyFailed { .. })
        ));
        assert!(!root.join("g").exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn import_refuses_other_content_under_a_taken_name() {
        let root = tempdir("import");
        let src = tempdir("import-src");
        fs::create_dir_all(&src).unwrap();
        let dir = ShareDir::open(&root).unwrap();
        fs::write(src.join("a.txt"), b"one").unwrap();
        let (name, m) = dir.commit(dir.stage(&src.join("a.txt")).unwrap()).unwrap();
        assert_eq!(name, "a.txt");
        assert_eq!(
            dir.commit(dir.stage(&src.join("a.txt")).unwrap())
                .unwrap()
                .1
                .id(),
            m.id()
        );
        assert_eq!(
            dir.stage(&root.join("a.txt")).unwrap().manifest.id(),
            m.id()
        );
        fs::write(src.join("a.txt"), b"two").unwrap();
        assert!(matches!(
            dir.stage(&src.join("a.txt")),
            Err(StoreError::NameTaken { .. })
        ));
        drop(dir.stage(&src.join("b.txt")));
        assert_eq!(
            fs::read_dir(root.join(STATE_DIR)).unwrap().count(),
            1,
            "only a.txt's manifest"
        );
        assert_eq!(fs::read(root.join("a.txt")).unwrap(), b"one");
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&src).unwrap();
    }
}

//! A download in progress: `NAME.part` with its resume record. For a directory, `NAME.part`
//! is a folder holding its files at their relative paths ([`super::tree`]); the same rules
//! hold, the `.part`'s stamp being the folder's identity, its files' total size and their
//! latest change time ([`Storage::stamp`]), and the rename of the folder gives every file its
//! name at once.
//!
//! Crash safety rests on one ordering: chunk bytes are written and `fdatasync`ed before the
//! resume record that lists them is replaced (temporary file, fsync, rename, fsync of the
//! directory). So at any instant the record lists only chunks whose bytes are on disk, and the
//! complete name appears only through a rename after the whole `.part` was re-verified.
//!
//! Three things can break that from outside; each is caught:
//! - The `.part` is not the file its record describes (deleted and created again, replaced, or
//!   written while no download ran). The record carries the `.part`'s identity and change time
//!   ([`super::record`]): a download re-checks the recorded chunks of a `.part` that changed
//!   and starts over on one of the wrong size; nobody else serves from it meanwhile.
//! - An fsync fails ("fsyncgate"). Linux may then have dropped the dirty pages and reports
//!   success to the next fsync, so retrying would record chunks that are gone. The chunks
//!   written since the last good sync are forgotten, the file refuses further writes and
//!   [`PersistError::DataLost`] ends the download; the next run fetches those chunks again.
//! - A chunk is damaged on disk after its record. The final re-verification finds which ones,
//!   drops them from the record and fails the download, so the next run fetches exactly those
//!   instead of failing every finish.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::bitfield::Bitfield;
use crate::manifest::{FileId, Manifest, HASH_LEN};
use crate::metainfo::{decode_files, encode_files, FileEntry};
use crate::name::{ShareName, PART_SUFFIX};
use crate::storage::Storage;

use super::manifest_file::{self, Stamp};
use super::placed::{FileStamp, Placed};
use super::record::{Record, Standing};
use super::{check_size, disk, io_err, recheck, tree, ShareDir, StoreError};

/// Why verified chunks could not be made durable and recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistError {
    /// Fatal: see the module docs. The forgotten chunks are missing again in the
    /// [`PartialFile`], which refuses every further write and persist.
    #[error(
        "{}: fsync failed: {error}; the {forgotten} chunks written since the last good fsync may be lost, so they were forgotten and the download stops (running it again fetches them)",
        path.display()
    )]
    DataLost {
        path: PathBuf,
        forgotten: u32,
        error: Arc<io::Error>,
    },
    /// Fatal: what we write no longer is the file under the name.
    #[error(
        "{} was removed or replaced while downloading into it; the download stops (running it again starts over)",
        path.display()
    )]
    Replaced { path: PathBuf },
    /// Not fatal: the chunk bytes are durable; their record is retried at the next persist.
    #[error("{}: saving the resume record: {error} (retried at the next save)", path.display())]
    Record {
        path: PathBuf,
        error: Arc<io::Error>,
    },
}

impl PersistError {
    /// True when the download must stop with this error instead of carrying on.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, PersistError::Record { .. })
    }
}

#[derive(Debug)]
struct Progress {
    /// Chunks verified and written (possibly not yet durable).
    have: Bitfield,
    /// Chunks in `have` but not in the record, in the order they were written.
    unrecorded: Vec<u32>,
    /// Chunks set in `have`, kept so progress checks do not count bits.
    count: u32,
    /// Set by a fatal [`PersistError`]; every later write or persist fails with it.
    broken: Option<PersistError>,
}

/// A download in progress: `NAME.part` plus its resume record. Shared by all tasks fetching the
/// file; writes are positioned so they need no lock.
#[derive(Debug)]
pub struct PartialFile {
    name: ShareName,
    manifest: Arc<Manifest>,
    storage: Arc<Storage>,
    part: PathBuf,
    record: PathBuf,
    tmp: PathBuf,
    complete: PathBuf,
    complete_manifest: PathBuf,
    part_manifest: PathBuf,
    part_files: PathBuf,
    /// Where a completed directory's share record goes.
    complete_record: (PathBuf, PathBuf),
    root: PathBuf,
    progress: Mutex<Progress>,
    /// `Storage::sync_data`; a field so tests can make it fail as a dying disk does.
    sync_data: fn(&Storage) -> io::Result<()>,
}

impl ShareDir {
    /// Opens (or creates) the download of `name` with the given manifest, keeping the chunks a
    /// previous run verified when its record is for the same content and the same `.part`
    /// (re-checking them when the `.part` changed since); anything else left over (another
    /// version, no record, a `.part` of the wrong size) starts from scratch. The caller holds
    /// the claim of `name` ([`ShareDir::claim_download`]).
    pub fn open_partial(
        &self,
        name: &ShareName,
        manifest: Arc<Manifest>,
    ) -> Result<PartialFile, StoreError> {
        self.require_claim(name)?;
        let part = self.part_path(name);
        check_size(&part, manifest.size(), manifest.chunk_size())?;
        let record = self.record_path(name);
        let is_dir = manifest.files().is_some();
        if disk::entry(&part).map_err(io_err(&part))?.is_some_and(|m| {
            if is_dir {
                !m.is_dir()
            } else {
                !m.is_file()
            }
        }) {
            let what = if is_dir {
                "not a directory (a link, or a file)"
            } else {
                "not a regular file"
            };
            return Err(io_err(&part)(disk::not_regular(what)));
        }
        let same = self
            .partial_manifest(name)
            .is_some_and(|m| m.id() == manifest.id());
        if !same {
            disk::remove_if_present(&record).map_err(io_err(&record))?;
            if is_dir {
                if disk::entry(&part).map_err(io_err(&part))?.is_some() {
                    // `remove_dir_all` removes links, never what they point to.
                    fs::remove_dir_all(&part).map_err(io_err(&part))?;
                }
            } else {
                disk::remove_if_present(&part).map_err(io_err(&part))?;
            }
            let path = self.part_manifest_path(name);
            manifest_file::write(&path, Stamp::NONE, &manifest).map_err(io_err(&path))?;
            self.save_partial_files(name, &manifest)?;
        }
        let (storage, sized) = match manifest.files() {
            Some(files) => tree::open_writable(&part, files).map_err(io_err(&part))?,
            None => {
                let (file, meta) = disk::open_writable(&part).map_err(io_err(&part))?;
                let sized = meta.len() == manifest.size();
                (Storage::One(file), sized)
            }
        };
        let mut partial = PartialFile {
            name: name.clone(),
            progress: Mutex::new(Progress {
                count: 0,
                have: Bitfield::empty(manifest.chunk_count()),
                unrecorded: Vec::new(),
                broken: None,
            }),
            manifest,
            storage: Arc::new(storage),
            part,
            tmp: self.record_tmp_path(name),
            record,
            complete: self.complete_path(name),
            complete_manifest: self.manifest_path(name),
            part_manifest: self.part_manifest_path(name),
            part_files: self.part_files_path(name),
            complete_record: (
                self.placed_path(name),
                self.state_dir().join(format!("{name}.share.tmp")),
            ),
            root: self.root().to_owned(),
            sync_data: Storage::sync_data,
        };
        if sized {
            let have = self.resume(&partial)?;
            partial.progress.get_mut().count = have.count();
            partial.progress.get_mut().have = have;
        } else {
            if same {
                log::info!(
                    "{}: not {} bytes: starting over",
                    partial.part.display(),
                    partial.manifest.size()
                );
            }
            disk::remove_if_present(&partial.record).map_err(io_err(&partial.record))?;
            if let Storage::One(file) = &*partial.storage {
                let size = partial.manifest.size();
                file.set_len(size).map_err(io_err(&partial.part))?;
            }
        }
        Ok(partial)
    }

    /// The chunks of `partial` (whose `.part` has the right size) that a previous run
    /// verified: the record's when the `.part` is untouched since, else those of them that
    /// verify again (then recorded at once, for the `.part` as it is now).
    fn resume(&self, partial: &PartialFile) -> Result<Bitfield, StoreError> {
        let Some(record) = self.record_of(&partial.name, &partial.manifest) else {
            return Ok(Bitfield::empty(partial.manifest.chunk_count()));
        };
        let stamp = partial.storage.stamp().map_err(io_err(&partial.part))?;
        let why = match record.standing(&stamp) {
            Standing::Unchanged => return Ok(record.have),
            Standing::Written => "written since its resume record (an interrupted run?)",
            Standing::Other => "not the file its resume record describes (replaced?)",
        };
        log::info!(
            "{}: {why}; re-checking its {} recorded chunks",
            partial.part.display(),
            record.have.count()
        );
        let good = recheck::matching(&*partial.storage, &partial.manifest, &record.have)
            .map_err(io_err(&partial.part))?;
        let bad = record.have.count() - good.count();
        if bad > 0 {
            log::warn!(
                "{}: {bad} recorded chunks did not verify; they are fetched again",
                partial.part.display()
            );
        }
        partial.save_record(&good)?;
        Ok(good)
    }

    /// Finishes a download: see `PartialFile::finish`. The caller must have stopped writing.
    pub fn finish(&self, partial: &PartialFile, check: Finish) -> Result<(), StoreError> {
        partial.finish(check)?;
        self.forget(&partial.name);
        Ok(())
    }
}

impl ShareDir {
    pub(super) fn part_files_path(&self, name: &ShareName) -> PathBuf {
        self.state.join(format!("{name}{PART_SUFFIX}.files"))
    }

    /// The layout of an unfinished directory download of `name`, if one was saved.
    pub(super) fn partial_files(&self, name: &ShareName) -> Option<Vec<FileEntry>> {
        let path = self.part_files_path(name);
        let (mut file, _) = disk::open_regular(&path).ok()?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes).ok()?;
        match decode_files(&bytes) {
            Ok(files) => Some(files),
            Err(e) => {
                log::warn!("{}: {e}; not used", path.display());
                None
            }
        }
    }

    /// Saves the layout of the directory download of `name` beside its manifest (or removes a
    /// leftover one for a single file).
    fn save_partial_files(&self, name: &ShareName, manifest: &Manifest) -> Result<(), StoreError> {
        let path = self.part_files_path(name);
        match manifest.files() {
            Some(files) => {
                let tmp = self.state.join(format!("{name}{PART_SUFFIX}.files.tmp"));
                super::write_file(&tmp, &path, &encode_files(files))
            }
            None => disk::remove_if_present(&path).map_err(io_err(&path)),
        }
    }
}

impl PartialFile {
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Where the verified chunks are written, for the swarm to serve them from.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// True when chunk `index` is verified (written, maybe not yet recorded).
    pub fn has(&self, index: u32) -> bool {
        self.progress.lock().have.get(index)
    }

    /// Snapshot of the verified chunks.
    pub fn have_bits(&self) -> Bitfield {
        self.progress.lock().have.clone()
    }

    /// Number of verified chunks.
    pub fn have_count(&self) -> u32 {
        self.progress.lock().count
    }

    pub fn is_complete(&self) -> bool {
        self.have_count() == self.manifest.chunk_count()
    }

    /// Writes consecutive chunks `first..`, one per element of `chunks`, all of them already
    /// verified by the caller against the manifest; one vectored positioned write for the
    /// whole run. Returns the chunks that were not verified before (another connection may
    /// have delivered some of them first). Fails once a fatal [`PersistError`] happened:
    /// nothing written after it could be trusted.
    pub fn write_verified(&self, first: u32, chunks: &[impl AsRef<[u8]>]) -> io::Result<Vec<u32>> {
        if let Some(broken) = &self.progress.lock().broken {
            return Err(io::Error::other(broken.clone()));
        }
        self.storage
            .write_all_vectored_at(chunks, self.manifest.offset(first))?;
        let mut p = self.progress.lock();
        let mut newly = Vec::new();
        for index in first..first + chunks.len() as u32 {
            if p.have.set(index) {
                p.unrecorded.push(index);
                p.count += 1;
                newly.push(index);
            }
        }
        Ok(newly)
    }

    /// Runs `f` on the verified chunks without copying them.
    pub fn with_have<T>(&self, f: impl FnOnce(&Bitfield) -> T) -> T {
        f(&self.progress.lock().have)
    }

    /// Makes every verified chunk durable and lists it in the resume record; returns the chunks
    /// newly recorded (what may now be reported to the tracker). A fatal error (see
    /// [`PersistError::is_fatal`]) must end the download.
    pub fn persist(&self) -> Result<Vec<u32>, PersistError> {
        let (bits_now, newly) = {
            let mut p = self.progress.lock();
            if let Some(broken) = &p.broken {
                return Err(broken.clone());
            }
            if p.unrecorded.is_empty() {
                return Ok(Vec::new());
            }
            (p.have.clone(), std::mem::take(&mut p.unrecorded))
        };
        if let Err(error) = (self.sync_data)(&self.storage) {
            let mut p = self.progress.lock();
            // Chunks written while the sync ran may be lost as well.
            let mut forgotten = newly;
            forgotten.append(&mut p.unrecorded);
            for &i in &forgotten {
                p.have.clear(i);
            }
            p.count -= forgotten.len() as u32;
            let e = PersistError::DataLost {
                path: self.part.clone(),
                forgotten: forgotten.len() as u32,
                error: Arc::new(error),
            };
            p.broken = Some(e.clone());
            return Err(e);
        }
        match self.save_record(&bits_now) {
            Ok(()) => Ok(newly),
            Err(e) => {
                let mut p = self.progress.lock();
                if e.is_fatal() {
                    p.broken = Some(e.clone());
                } else {
                    let mut back = newly;
                    back.append(&mut p.unrecorded);
                    p.unrecorded = back;
                }
                Err(e)
            }
        }
    }

    /// Replaces the resume record by one listing `have` for the `.part` as it is now, after
    /// checking that the name still is the file we write.
    fn save_record(&self, have: &Bitfield) -> Result<(), PersistError> {
        let failed = |error: io::Error| PersistError::Record {
            path: self.record.clone(),
            error: Arc::new(error),
        };
        let ours = self.storage.identity().map_err(failed)?;
        match disk::entry(&self.part).map_err(failed)? {
            Some(m) if (m.dev(), m.ino()) == ours => {}
            _ => {
                return Err(PersistError::Replaced {
                    path: self.part.clone(),
                })
            }
        }
        let record = Record {
            id: self.manifest.id(),
            part: self.storage.stamp().map_err(failed)?,
            have: have.clone(),
        }
        .encode();
        disk::replace(&self.tmp, &self.record, |out| out.write_all(&record)).map_err(failed)
    }

    /// Makes the `.part` durable and renames it to the complete name, then drops the resume
    /// state. With [`Finish::Recheck`] the whole file is verified again first: the complete
    /// name never appears for a file that does not verify, and chunks that do not are dropped
    /// from the record, so the next download fetches exactly those.
    fn finish(&self, check: Finish) -> Result<(), StoreError> {
        self.persist()?;
        self.storage.sync_all().map_err(io_err(&self.part))?;
        let count = self.manifest.chunk_count();
        if self.have_count() != count {
            return Err(StoreError::VerifyFailed {
                name: self.name.clone(),
                bad: count - self.have_count(),
            });
        }
        if check == Finish::Recheck {
            self.recheck_all()?;
        }
        if disk::entry(&self.complete)
            .map_err(io_err(&self.complete))?
            .is_some()
        {
            return Err(StoreError::NameTaken {
                name: self.name.clone(),
                dir: self.root.clone(),
                have: FileId([0; HASH_LEN]),
                want: self.manifest.id(),
            });
        }
        let stamp = match self.manifest.files() {
            Some(_) => self.record_complete_directory()?,
            None => {
                let meta = disk::entry(&self.part)
                    .map_err(io_err(&self.part))?
                    .ok_or_else(|| PersistError::Replaced {
                        path: self.part.clone(),
                    })?;
                Stamp::of(&meta)
            }
        };
        manifest_file::write(&self.complete_manifest, stamp, &self.manifest)
            .map_err(io_err(&self.complete_manifest))?;
        disk::rename_durably(&self.part, &self.complete).map_err(io_err(&self.complete))?;
        for leftover in [&self.record, &self.part_manifest, &self.part_files] {
            if let Err(e) = disk::remove_if_present(leftover) {
                log::warn!("removing {}: {e}", leftover.display());
            }
        }
        Ok(())
    }

    /// Records the directory about to be renamed to its complete name as shared in place there
    /// (what a downloaded directory is served through, after a restart too); returns the stamp
    /// its cached manifest is kept under. Until the rename the record names a path that is not
    /// there yet, so nothing is served from it early.
    fn record_complete_directory(&self) -> Result<Stamp, StoreError> {
        let files = self.manifest.files().map(|f| &f[..]).unwrap_or_default();
        let meta = disk::entry(&self.part)
            .map_err(io_err(&self.part))?
            .ok_or_else(|| PersistError::Replaced {
                path: self.part.clone(),
            })?;
        let placed = Placed {
            path: self.complete.clone(),
            stamp: FileStamp::of_dir(&meta),
            chunk_size: self.manifest.chunk_size(),
            id: self.manifest.id(),
            files: tree::stamps(&self.part, files).map_err(io_err(&self.part))?,
        };
        let (record, tmp) = &self.complete_record;
        super::write_file(tmp, record, placed.encode().as_bytes())?;
        Ok(super::dir_stamp(&placed))
    }

    /// Reads the whole `.part` back and verifies every chunk; those that do not match are
    /// forgotten (here and in the resume record) and the download fails.
    fn recheck_all(&self) -> Result<(), StoreError> {
        let count = self.manifest.chunk_count();
        let good = recheck::matching(&*self.storage, &self.manifest, &Bitfield::full(count))
            .map_err(io_err(&self.part))?;
        if good.count() == count {
            return Ok(());
        }
        let bad = count - good.count();
        {
            let mut p = self.progress.lock();
            p.count = good.count();
            p.have = good.clone();
        }
        self.save_record(&good)?;
        Err(StoreError::VerifyFailed {
            name: self.name.clone(),
            bad,
        })
    }
}

/// What finishing a download checks before the file takes its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Every chunk was verified before it was written: trust that.
    Verified,
    /// Read the file back and verify every chunk again.
    Recheck,
}

#[cfg(test)]
mod tests {
    use super::super::tests::tempdir;
    use super::super::DownloadClaim;
    use super::*;
    use std::fs;
    use std::os::unix::fs::FileExt;

    /// Longer than the coarse clock file times come from.
    const TICK: std::time::Duration = std::time::Duration::from_millis(30);

    fn name(n: &str) -> ShareName {
        ShareName::new(n).unwrap()
    }

    /// `data` as the 2048-byte chunks a delivery carries.
    fn split(data: &[u8]) -> Vec<&[u8]> {
        data.chunks(2048).collect()
    }

    fn data(len: u32) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8).collect()
    }

    fn claimed(dir: &ShareDir, n: &str) -> (ShareName, DownloadClaim) {
        let n = name(n);
        let claim = dir.claim_download(&n).unwrap();
        (n, claim)
    }

    #[test]
    fn partial_resumes_only_recorded_chunks_and_finishes() {
        let root = tempdir("partial");
        let dir = ShareDir::open(&root).unwrap();
        let data = data(10_000);
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let (f, _claim) = claimed(&dir, "f");
        let p = dir.open_partial(&f, m.clone()).unwrap();
        p.write_verified(0, &split(&data[..4096])).unwrap();
        assert_eq!(p.persist().unwrap(), vec![0, 1]);
        p.write_verified(4, &split(&data[8192..])).unwrap();
        drop(p);
        let p = dir.open_partial(&f, m.clone()).unwrap();
        assert_eq!(p.have_count(), 2, "chunk 4 was never recorded");
        let served = dir.served(&f).unwrap();
        assert!(served.has(1) && !served.has(2));
        p.write_verified(2, &split(&data[4096..])).unwrap();
        assert!(p.is_complete());
        dir.finish(&p, Finish::Verified).unwrap();
        assert_eq!(fs::read(root.join("f")).unwrap(), data);
        assert!(!root.join("f.part").exists());
        assert!(!root.join(".peer/f.part.have").exists());
        assert!(!root.join(".peer/f.part.manifest").exists());
        assert_eq!(dir.complete_manifest(&f).unwrap().id(), m.id());
        assert_eq!(dir.complete_files().unwrap(), vec![f]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_directory_download_resumes_and_appears_whole_by_one_rename() {
        use crate::metainfo::{FileEntry, RelPath};
        let root = tempdir("partial-dir");
        let dir = ShareDir::open(&root).unwrap();
        let data = data(5000);
        let files: Arc<[FileEntry]> = [("a", 1000), ("b/c", 0), ("b/d", 3500), ("e", 500)]
            .iter()
            .map(|&(p, length)| FileEntry {
                folder: false,
                path: RelPath::parse(p).unwrap(),
                length,
            })
            .collect();
        let m = Arc::new(
            Manifest::from_data(&data, 2048)
                .unwrap()
                .with_files(files.clone()),
        );
        let (n, _claim) = claimed(&dir, "album");
        let p = dir.open_partial(&n, m.clone()).unwrap();
        // Chunk 0 spans files a and b/d.
        p.write_verified(0, &split(&data[..2048])).unwrap();
        assert_eq!(p.persist().unwrap(), vec![0]);
        drop(p);
        assert!(root.join("album.part/b/c").is_file());
        let p = dir.open_partial(&n, m.clone()).unwrap();
        assert_eq!(p.have_count(), 1);
        assert_eq!(dir.partial_manifest(&n).unwrap().id(), m.id());
        assert!(dir.served(&n).unwrap().has(0));
        p.write_verified(1, &split(&data[2048..])).unwrap();
        dir.finish(&p, Finish::Recheck).unwrap();
        assert!(!root.join("album.part").exists());
        assert_eq!(fs::read(root.join("album/a")).unwrap(), &data[..1000]);
        assert_eq!(fs::read(root.join("album/b/c")).unwrap(), b"");
        assert_eq!(fs::read(root.join("album/b/d")).unwrap(), &data[1000..4500]);
        assert_eq!(fs::read(root.join("album/e")).unwrap(), &data[4500..]);
        // Seeded from where it landed, after a restart too.
        let again = ShareDir::open(&root).unwrap();
        assert_eq!(again.complete_files().unwrap(), vec![n.clone()]);
        assert_eq!(again.complete_manifest(&n).unwrap().id(), m.id());
        assert!(again.served(&n).unwrap().in_place);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_download_needs_its_claim() {
        let root = tempdir("partial-claim");
        let dir = ShareDir::open(&root).unwrap();
        let m = Arc::new(Manifest::from_data(&data(100), 2048).unwrap());
        assert!(matches!(
            dir.open_partial(&name("f"), m),
            Err(StoreError::Unclaimed(_))
        ));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_deleted_part_is_not_served_and_its_download_starts_over() {
        let root = tempdir("partial-deleted");
        let dir = ShareDir::open(&root).unwrap();
        let data = data(10_000);
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let (f, claim) = claimed(&dir, "f");
        let p = dir.open_partial(&f, m.clone()).unwrap();
        p.write_verified(0, &split(&data[..4096])).unwrap();
        p.persist().unwrap();
        drop((p, claim));
        fs::remove_file(root.join("f.part")).unwrap();
        assert!(matches!(dir.served(&f), Err(StoreError::NotFound(_))));
        // Past the kernel's timestamp granularity, so even a reused inode number shows.
        std::thread::sleep(TICK);
        // Another file in its place, of the right size: not the recorded one, not served.
        fs::write(root.join("f.part"), vec![0u8; 10_000]).unwrap();
        assert!(matches!(dir.served(&f), Err(StoreError::NotFound(_))));
        assert_eq!(dir.read_record(&f, &m), None);
        fs::remove_file(root.join("f.part")).unwrap();
        let (_, _claim) = claimed(&dir, "f");
        let p = dir.open_partial(&f, m.clone()).unwrap();
        assert_eq!(p.have_count(), 0, "chunks of a deleted .part were kept");
        assert!(
            !root.join(".peer/f.part.have").exists(),
            "stale record kept"
        );
        assert!(matches!(dir.served(&f), Err(StoreError::NotFound(_))));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_part_changed_behind_its_record_is_rechecked_and_not_served_meanwhile() {
        let root = tempdir("partial-changed");
        let dir = ShareDir::open(&root).unwrap();
        let data = data(10_000);
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let (f, claim) = claimed(&dir, "f");
        let p = dir.open_partial(&f, m.clone()).unwrap();
        p.write_verified(0, &split(&data[..6144])).unwrap();
        p.persist().unwrap();
        assert_eq!(dir.read_record(&f, &m).map(|b| b.count()), Some(3));
        // While the download runs, its own writes move the change time: still served.
        std::thread::sleep(TICK);
        p.write_verified(4, &split(&data[8192..])).unwrap();
        assert_eq!(dir.read_record(&f, &m).map(|b| b.count()), Some(3));
        drop((p, claim));
        assert_eq!(
            dir.read_record(&f, &m).map(|b| b.count()),
            None,
            "no download runs"
        );
        fs::OpenOptions::new()
            .write(true)
            .open(root.join("f.part"))
            .unwrap()
            .write_all_at(b"XX", 2048)
            .unwrap();
        let (_, _claim) = claimed(&dir, "f");
        let p = dir.open_partial(&f, m.clone()).unwrap();
        assert_eq!(
            p.have_bits().ones().collect::<Vec<_>>(),
            vec![0, 2],
            "the damaged chunk 1 was trusted"
        );
        // The re-check was recorded for the .part as it is now.
        assert_eq!(dir.read_record(&f, &m).map(|b| b.count()), Some(2));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_failed_fsync_forgets_the_unsynced_chunks_and_stops_the_download() {
        let root = tempdir("partial-fsync");
        let dir = ShareDir::open(&root).unwrap();
        let data = data(10_000);
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let (f, _claim) = claimed(&dir, "f");
        let mut p = dir.open_partial(&f, m.clone()).unwrap();
        p.write_verified(0, &split(&data[..2048])).unwrap();
        assert_eq!(p.persist().unwrap(), vec![0]);
        p.write_verified(1, &split(&data[2048..6144])).unwrap();
        p.sync_data = |_| Err(io::Error::from_raw_os_error(nix::errno::Errno::EIO as i32));
        let err = p.persist().unwrap_err();
        assert!(err.is_fatal(), "{err}");
        assert!(
            matches!(err, PersistError::DataLost { forgotten: 2, .. }),
            "{err:?}"
        );
        assert_eq!(p.have_bits().ones().collect::<Vec<_>>(), vec![0]);
        // The disk "recovers": nothing may be trusted any more all the same.
        p.sync_data = Storage::sync_data;
        assert!(p.persist().unwrap_err().is_fatal());
        assert!(p.write_verified(3, &split(&data[6144..8192])).is_err());
        assert!(matches!(
            dir.finish(&p, Finish::Recheck),
            Err(StoreError::Persist(_))
        ));
        assert_eq!(dir.read_record(&f, &m).map(|b| b.count()), Some(1));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_failed_record_write_is_retried() {
        let root = tempdir("partial-record");
        let dir = ShareDir::open(&root).unwrap();
        let data = data(10_000);
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let (f, _claim) = claimed(&dir, "f");
        let p = dir.open_partial(&f, m.clone()).unwrap();
        p.write_verified(0, &split(&data[..2048])).unwrap();
        // A directory where the temporary record goes makes writing it fail.
        fs::create_dir(root.join(".peer/f.part.have.tmp")).unwrap();
        let err = p.persist().unwrap_err();
        assert!(!err.is_fatal(), "{err}");
        fs::remove_dir(root.join(".peer/f.part.have.tmp")).unwrap();
        assert_eq!(p.persist().unwrap(), vec![0]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_part_removed_during_the_download_stops_it() {
        let root = tempdir("partial-removed");
        let dir = ShareDir::open(&root).unwrap();
        let data = data(10_000);
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let (f, _claim) = claimed(&dir, "f");
        let p = dir.open_partial(&f, m).unwrap();
        fs::remove_file(root.join("f.part")).unwrap();
        p.write_verified(0, &split(&data[..2048])).unwrap();
        let err = p.persist().unwrap_err();
        assert!(
            matches!(err, PersistError::Replaced { .. }) && err.is_fatal(),
            "{err}"
        );
        assert!(p.write_verified(1, &split(&data[2048..4096])).is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn finish_drops_the_chunks_that_do_not_verify() {
        let root = tempdir("verify");
        let dir = ShareDir::open(&root).unwrap();
        let data = vec![7u8; 5000];
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let (g, _claim) = claimed(&dir, "g");
        let p = dir.open_partial(&g, m.clone()).unwrap();
        p.write_verified(0, &split(&data)).unwrap();
        p.storage.write_all_vectored_at(&[b"X"], 10).unwrap();
        assert!(matches!(
            dir.finish(&p, Finish::Recheck),
            Err(StoreError::VerifyFailed { bad: 1, .. })
        ));
        assert!(!root.join("g").exists());
        assert_eq!(p.have_bits().ones().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            dir.read_record(&g, &m)
                .map(|b| b.ones().collect::<Vec<_>>()),
            Some(vec![1, 2])
        );
        p.write_verified(0, &split(&data[..2048])).unwrap();
        dir.finish(&p, Finish::Verified).unwrap();
        assert_eq!(fs::read(root.join("g")).unwrap(), data);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_linked_part_is_refused() {
        let root = tempdir("partial-link");
        let outside = tempdir("partial-link-target");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), b"keep me").unwrap();
        let dir = ShareDir::open(&root).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("f.part")).unwrap();
        let m = Arc::new(Manifest::from_data(&data(5000), 2048).unwrap());
        let (f, _claim) = claimed(&dir, "f");
        let err = dir.open_partial(&f, m).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep me");
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }
}

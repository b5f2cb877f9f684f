//! A download in progress: `NAME.part` with its resume record, and the manifest received for it.
//!
//! Crash safety rests on one ordering: chunk bytes are written and `fdatasync`ed before the
//! resume record that lists them is replaced (write to a temporary file, fsync, rename). So at
//! any instant the record lists only chunks whose bytes are on disk, and the complete name
//! appears only through a rename after the whole `.part` was re-verified.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::bitfield::Bitfield;
use crate::manifest::{ChunkHash, FileId, Manifest, HASH_LEN};
use crate::name::ShareName;

use super::manifest_file::{self, Stamp};
use super::{io_err, record, ShareDir, StoreError};

/// A manifest being received: hashes are appended as they arrive, then checked against the id.
#[derive(Debug)]
pub struct ManifestSink {
    out: io::BufWriter<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl ManifestSink {
    pub fn push(&mut self, hashes: &[ChunkHash]) -> io::Result<()> {
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
        match manifest_file::read(&tmp, None) {
            Some(m) if m.id() == id => {
                fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
                Ok(manifest_file::read(&dest, None))
            }
            _ => {
                let _ = fs::remove_file(&tmp);
                Ok(None)
            }
        }
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
}

/// A download in progress: `NAME.part` plus its resume record. Shared by all tasks fetching the
/// file; writes are positioned so they need no lock.
#[derive(Debug)]
pub struct PartialFile {
    name: ShareName,
    manifest: Arc<Manifest>,
    file: File,
    part: PathBuf,
    record: PathBuf,
    tmp: PathBuf,
    complete: PathBuf,
    complete_manifest: PathBuf,
    progress: Mutex<Progress>,
}

impl ShareDir {
    /// Where a manifest received from a peer for download `name` is written page by page, so it
    /// never has to be held in memory whole.
    pub fn manifest_sink(
        &self,
        name: &ShareName,
        size: u64,
        chunk_size: u32,
    ) -> Result<ManifestSink, StoreError> {
        let dest = self.part_manifest_path(name);
        let tmp = manifest_file::tmp_beside(&dest);
        let mut out = io::BufWriter::new(File::create(&tmp).map_err(io_err(&tmp))?);
        out.write_all(&manifest_file::header(Stamp::NONE, size, chunk_size))
            .map_err(io_err(&tmp))?;
        Ok(ManifestSink { out, tmp, dest })
    }

    /// Opens (or creates) the download of `name` with the given manifest, keeping the chunks a
    /// previous run verified when its record is for the same content; anything else left over
    /// (another version, no record) starts from scratch.
    pub fn open_partial(
        &self,
        name: &ShareName,
        manifest: Arc<Manifest>,
    ) -> Result<PartialFile, StoreError> {
        let part = self.part_path(name);
        let record = self.record_path(name);
        let same = self
            .partial_manifest(name)
            .is_some_and(|m| m.id() == manifest.id());
        if !same {
            let _ = fs::remove_file(&record);
            let _ = fs::remove_file(&part);
            manifest_file::write(&self.part_manifest_path(name), Stamp::NONE, &manifest)?;
        }
        let have = same
            .then(|| self.read_record(name, &manifest))
            .flatten()
            .unwrap_or_else(|| Bitfield::empty(manifest.chunk_count()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(io_err(&part))?;
        file.set_len(manifest.size()).map_err(io_err(&part))?;
        Ok(PartialFile {
            name: name.clone(),
            manifest,
            file,
            part,
            tmp: self.record_tmp_path(name),
            record,
            complete: self.complete_path(name),
            complete_manifest: self.manifest_path(name),
            progress: Mutex::new(Progress {
                count: have.count(),
                have,
                unrecorded: Vec::new(),
            }),
        })
    }

    /// Finishes a download: see `PartialFile::finish`. The caller must have stopped writing.
    pub fn finish(&self, partial: &PartialFile) -> Result<(), StoreError> {
        partial.finish()?;
        self.forget(&partial.name);
        Ok(())
    }
}

impl PartialFile {
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
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

    /// Writes chunks `first..` whose bytes are `data`, all of them already verified by the caller
    /// against the manifest; one positioned write for the whole run. Returns the chunks that were
    /// not verified before (another connection may have delivered some of them first).
    pub fn write_verified(&self, first: u32, data: &[u8]) -> io::Result<Vec<u32>> {
        self.file.write_all_at(data, self.manifest.offset(first))?;
        let mut p = self.progress.lock();
        let mut newly = Vec::new();
        let mut index = first;
        let mut pos = 0usize;
        while pos < data.len() {
            if p.have.set(index) {
                p.unrecorded.push(index);
                p.count += 1;
                newly.push(index);
            }
            pos += self.manifest.chunk_len(index).max(1);
            index += 1;
        }
        Ok(newly)
    }

    /// Runs `f` on the verified chunks without copying them.
    pub fn with_have<T>(&self, f: impl FnOnce(&Bitfield) -> T) -> T {
        f(&self.progress.lock().have)
    }

    /// Makes every verified chunk durable and lists it in the resume record; returns the chunks
    /// newly recorded (what may now be reported to the tracker).
    pub fn persist(&self) -> io::Result<Vec<u32>> {
        let (bits_now, newly) = {
            let mut p = self.progress.lock();
            if p.unrecorded.is_empty() {
                return Ok(Vec::new());
            }
            (p.have.clone(), std::mem::take(&mut p.unrecorded))
        };
        let result = (|| {
            self.file.sync_data()?;
            let rec = record::encode(&self.manifest, &bits_now);
            record::write_atomically(&self.tmp, &self.record, &rec)
        })();
        if let Err(e) = result {
            let mut p = self.progress.lock();
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
        manifest_file::write(&self.complete_manifest, stamp, &self.manifest)?;
        fs::rename(&self.part, &self.complete).map_err(io_err(&self.complete))?;
        if let Some(dir) = self.complete.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        let _ = fs::remove_file(&self.record);
        let _ = fs::remove_file(self.record.with_extension("manifest"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::tempdir;
    use super::*;

    fn name(n: &str) -> ShareName {
        ShareName::new(n).unwrap()
    }

    #[test]
    fn partial_resumes_only_recorded_chunks_and_finishes() {
        let root = tempdir("partial");
        let dir = ShareDir::open(&root).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let f = name("f");
        let p = dir.open_partial(&f, m.clone()).unwrap();
        p.write_verified(0, &data[..4096]).unwrap();
        assert_eq!(p.persist().unwrap(), vec![0, 1]);
        p.write_verified(4, &data[8192..]).unwrap();
        drop(p);
        let p = dir.open_partial(&f, m.clone()).unwrap();
        assert_eq!(p.have_count(), 2, "chunk 4 was never recorded");
        let served = dir.served(&f).unwrap();
        assert!(served.has(1) && !served.has(2));
        p.write_verified(2, &data[4096..]).unwrap();
        assert!(p.is_complete());
        dir.finish(&p).unwrap();
        assert_eq!(fs::read(root.join("f")).unwrap(), data);
        assert!(!root.join("f.part").exists());
        assert_eq!(dir.complete_manifest(&f).unwrap().id(), m.id());
        assert_eq!(dir.complete_files().unwrap(), vec![f]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn finish_refuses_a_part_that_does_not_verify() {
        let root = tempdir("verify");
        let dir = ShareDir::open(&root).unwrap();
        let data = vec![7u8; 5000];
        let m = Arc::new(Manifest::from_data(&data, 2048).unwrap());
        let p = dir.open_partial(&name("g"), m).unwrap();
        p.write_verified(0, &data).unwrap();
        p.file.write_all_at(b"X", 10).unwrap();
        assert!(matches!(
            dir.finish(&p),
            Err(StoreError::VerifyFailed { .. })
        ));
        assert!(!root.join("g").exists());
        fs::remove_dir_all(&root).unwrap();
    }
}

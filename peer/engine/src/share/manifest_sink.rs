//! The manifest of a download as it arrives from a peer: written page by page to
//! `DIR/.peer/NAME.part.manifest.tmp`, so a huge manifest never sits in memory, and given its
//! name only once it matches the file id the tracker published.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::manifest::{ChunkHash, FileId, Manifest};
use crate::metainfo::FileEntry;
use crate::name::ShareName;

use super::manifest_file::{self, Header, Stamp};
use super::{check_size, disk, io_err, ShareDir, StoreError};

/// A manifest being received: hashes are appended as they arrive, then checked against the id.
#[derive(Debug)]
pub struct ManifestSink {
    out: BufWriter<File>,
    tmp: PathBuf,
    dest: PathBuf,
    /// SHA-256 of what was pushed so far.
    digest: Sha256,
}

impl ShareDir {
    /// Where a manifest received from a peer for download `name` is written page by page. The
    /// caller holds the claim of `name` ([`ShareDir::claim_download`]).
    pub fn manifest_sink(
        &self,
        name: &ShareName,
        size: u64,
        chunk_size: u32,
    ) -> Result<ManifestSink, StoreError> {
        self.require_claim(name)?;
        check_size(&self.part_path(name), size, chunk_size)?;
        let dest = self.part_manifest_path(name);
        let tmp = manifest_file::tmp_beside(&dest);
        let header = Header {
            stamp: Stamp::NONE,
            size,
            chunk_size,
        };
        let mut out = BufWriter::new(disk::create_truncated(&tmp, 0o644).map_err(io_err(&tmp))?);
        out.write_all(&header.encode()).map_err(io_err(&tmp))?;
        Ok(ManifestSink {
            out,
            tmp,
            dest,
            digest: Sha256::new(),
        })
    }
}

impl ManifestSink {
    pub fn push(&mut self, hashes: &[ChunkHash]) -> io::Result<()> {
        for h in hashes {
            self.out.write_all(h)?;
            self.digest.update(h);
        }
        Ok(())
    }

    /// SHA-256 of the hashes pushed so far: a single file's id once all are in.
    pub fn digest(&self) -> FileId {
        FileId(self.digest.clone().finalize().into())
    }

    /// The manifest, when what was pushed is the whole manifest named by `id` (with `files`,
    /// the manifest of a directory of those files); `None` when it is not (the sender lied), in
    /// which case nothing is kept.
    pub fn finish(
        self,
        id: FileId,
        files: Option<Arc<[FileEntry]>>,
    ) -> Result<Option<Manifest>, StoreError> {
        let ManifestSink { out, tmp, dest, .. } = self;
        let with_files = |m: Manifest| match &files {
            Some(f) => m.with_files(f.clone()),
            None => m,
        };
        let written = (|| {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_data()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
        match manifest_file::read(&tmp, None).map(with_files) {
            Some(m) if m.id() == id => {
                disk::rename_durably(&tmp, &dest).map_err(io_err(&dest))?;
                Ok(manifest_file::read(&dest, None).map(with_files))
            }
            _ => {
                let _ = fs::remove_file(&tmp);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::tempdir;
    use super::*;

    #[test]
    fn a_manifest_is_kept_only_when_it_matches_the_id_and_only_under_a_claim() {
        let root = tempdir("sink");
        let dir = ShareDir::open(&root).unwrap();
        let name = ShareName::new("f").unwrap();
        let m = Manifest::from_data(&[9u8; 5000], 2048).unwrap();
        let hashes = m.hashes(0, 3).unwrap();
        assert!(matches!(
            dir.manifest_sink(&name, 5000, 2048),
            Err(StoreError::Unclaimed(_))
        ));
        let _claim = dir.claim_download(&name).unwrap();
        let mut lie = dir.manifest_sink(&name, 5000, 2048).unwrap();
        lie.push(&[[0; 32]; 3]).unwrap();
        assert_eq!(lie.finish(m.id(), None).unwrap(), None);
        assert!(dir.partial_manifest(&name).is_none());
        let mut sink = dir.manifest_sink(&name, 5000, 2048).unwrap();
        sink.push(&hashes).unwrap();
        assert_eq!(sink.finish(m.id(), None).unwrap(), Some(m));
        assert!(matches!(
            dir.manifest_sink(&name, 9 << 30, 2048),
            Err(StoreError::TooLarge { .. })
        ));
        fs::remove_dir_all(&root).unwrap();
    }
}

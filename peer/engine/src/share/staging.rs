//! Sharing a file from outside the share directory in two halves: [`ShareDir::stage`] hashes a
//! private copy (`DIR/.peer/NAME.import`), the caller asks the tracker, and only then
//! [`ShareDir::commit`] puts the copy under its name. A refused or failed share leaves nothing
//! behind: the copy is removed however staging ends, short of a crash.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::OFlag;

use crate::manifest::{Manifest, DEFAULT_CHUNK_SIZE};
use crate::name::ShareName;

use super::manifest_file::{self, Stamp};
use super::{check_size, disk, io_err, ShareDir, StoreError};

/// A file hashed and copied for sharing but not yet under its name; dropping it removes the copy.
#[derive(Debug)]
pub struct Staged {
    pub name: ShareName,
    pub manifest: Arc<Manifest>,
    copy: Option<ImportCopy>,
}

/// The private copy of a file being shared, removed on drop unless it was given its name.
#[derive(Debug)]
struct ImportCopy(PathBuf);

impl Drop for ImportCopy {
    fn drop(&mut self) {
        if let Err(e) = disk::remove_if_present(&self.0) {
            log::warn!("removing {}: {e}", self.0.display());
        }
    }
}

/// Opens the file the user names for sharing. Links are followed here, since the user chose
/// the path; it must lead to a regular file (opening a FIFO must not wait for a writer).
fn open_source(src: &Path) -> Result<(File, fs::Metadata), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(src)
        .map_err(io_err(src))?;
    let meta = file.metadata().map_err(io_err(src))?;
    if !meta.is_file() {
        return Err(io_err(src)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    Ok((file, meta))
}

impl ShareDir {
    /// First half of sharing `src`: hashes it and, unless it already is in the share directory,
    /// copies it into the state directory, so the tracker can be asked before the file appears
    /// under its name. A different file already shared under that name is refused, and so is a
    /// file too large to share, before anything is copied or hashed.
    pub fn stage(&self, src: &Path) -> Result<Staged, StoreError> {
        let name = src.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            io_err(src)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file name in UTF-8",
            ))
        })?;
        let name = ShareName::new(name)?;
        let (mut source, meta) = open_source(src)?;
        check_size(src, meta.len(), DEFAULT_CHUNK_SIZE)?;
        let dest = self.complete_path(&name);
        match disk::entry(&dest).map_err(io_err(&dest))? {
            Some(d) if !d.is_file() => {
                return Err(io_err(&dest)(disk::not_regular(
                    "already there (remove it to share a file under this name)",
                )))
            }
            Some(d) if (d.dev(), d.ino()) == (meta.dev(), meta.ino()) => {
                let manifest = self.complete_manifest(&name)?;
                return Ok(Staged {
                    name,
                    manifest,
                    copy: None,
                });
            }
            _ => {}
        }
        let copy = ImportCopy(self.state_dir().join(format!("{name}.import")));
        let tmp = &copy.0;
        // A copy, not a hard link: editing the original later must not change what is served.
        let mut out = disk::create_truncated(tmp, 0o644).map_err(io_err(tmp))?;
        io::copy(&mut source, &mut out).map_err(io_err(tmp))?;
        out.sync_all().map_err(io_err(tmp))?;
        let manifest = Manifest::from_open_file(&out, DEFAULT_CHUNK_SIZE).map_err(io_err(tmp))?;
        let staged = Staged {
            name: name.clone(),
            manifest: Arc::new(manifest),
            copy: Some(copy),
        };
        if self.has_complete(&name) {
            let existing = self.complete_manifest(&name)?;
            if existing.id() != staged.manifest.id() {
                return Err(StoreError::NameTaken {
                    name,
                    dir: self.root().to_owned(),
                    have: existing.id(),
                    want: staged.manifest.id(),
                });
            }
        }
        Ok(staged)
    }

    /// Second half of sharing: moves a staged copy to its name in the share directory.
    pub fn commit(&self, mut staged: Staged) -> Result<(ShareName, Arc<Manifest>), StoreError> {
        if let Some(copy) = staged.copy.take() {
            let tmp = &copy.0;
            let dest = self.complete_path(&staged.name);
            if disk::entry(&dest)
                .map_err(io_err(&dest))?
                .is_some_and(|d| !d.is_file())
            {
                return Err(io_err(&dest)(disk::not_regular("in the way")));
            }
            let stamp = Stamp::of(&fs::symlink_metadata(tmp).map_err(io_err(tmp))?);
            let cache = self.manifest_path(&staged.name);
            manifest_file::write(&cache, stamp, &staged.manifest).map_err(io_err(&cache))?;
            // The copy is gone from its temporary name now; dropping `copy` finds nothing.
            disk::rename_durably(tmp, &dest).map_err(io_err(&dest))?;
            self.remember(&staged.name, stamp, staged.manifest.clone());
        }
        Ok((staged.name.clone(), staged.manifest.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tests::tempdir, STATE_DIR};
    use super::*;

    fn state_files(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root.join(STATE_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn import_refuses_other_content_under_a_taken_name() {
        let root = tempdir("import");
        let src = tempdir("import-src");
        fs::create_dir_all(&src).unwrap();
        let dir = ShareDir::open(&root).unwrap();
        fs::write(src.join("a.txt"), b"one").unwrap();
        let (name, m) = dir.commit(dir.stage(&src.join("a.txt")).unwrap()).unwrap();
        assert_eq!(name.as_str(), "a.txt");
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
        assert_eq!(state_files(&root), vec!["a.txt.manifest"]);
        assert_eq!(fs::read(root.join("a.txt")).unwrap(), b"one");
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&src).unwrap();
    }

    #[test]
    fn too_large_files_are_refused_before_any_copy() {
        let root = tempdir("import-large");
        let src = tempdir("import-large-src");
        fs::create_dir_all(&src).unwrap();
        let dir = ShareDir::open(&root).unwrap();
        let huge = File::create(src.join("huge.bin")).unwrap();
        huge.set_len((8 << 30) + 1).unwrap();
        let err = dir.stage(&src.join("huge.bin")).unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
        assert!(state_files(&root).is_empty());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&src).unwrap();
    }

    #[test]
    fn links_in_the_share_directory_are_neither_shared_nor_replaced() {
        let root = tempdir("import-link");
        let src = tempdir("import-link-src");
        fs::create_dir_all(&src).unwrap();
        let dir = ShareDir::open(&root).unwrap();
        fs::write(src.join("c.txt"), b"private").unwrap();
        std::os::unix::fs::symlink(src.join("c.txt"), root.join("c.txt")).unwrap();
        for path in [src.join("c.txt"), root.join("c.txt")] {
            let err = dir.stage(&path).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        assert!(state_files(&root).is_empty());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&src).unwrap();
    }

    #[test]
    fn a_failed_copy_leaves_no_import_behind() {
        let root = tempdir("import-fail");
        let dir = ShareDir::open(&root).unwrap();
        // A regular file whose reads fail (EIO at address 0), so the copy fails half made.
        let err = dir.stage(Path::new("/proc/self/mem")).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        assert!(state_files(&root).is_empty(), "{:?}", state_files(&root));
        fs::remove_dir_all(&root).unwrap();
    }
}

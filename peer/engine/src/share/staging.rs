//! Sharing a file from outside the share directory in two halves: [`ShareDir::stage`] hashes a
//! private copy, the caller asks the tracker, and only then [`ShareDir::commit`] puts the copy
//! under its name. A refused share leaves nothing behind.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifest::{Manifest, DEFAULT_CHUNK_SIZE};
use crate::name::ShareName;

use super::manifest_file::{self, Stamp};
use super::{io_err, ShareDir, StoreError};

/// A file hashed and copied for sharing but not yet under its name; dropping it removes the copy.
#[derive(Debug)]
pub struct Staged {
    pub name: ShareName,
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

impl ShareDir {
    /// First half of sharing `src`: hashes it and, unless it already is in the share directory,
    /// copies it into the state directory, so the tracker can be asked before the file appears
    /// under its name. A different file already shared under that name is refused.
    pub fn stage(&self, src: &Path) -> Result<Staged, StoreError> {
        let name = src.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            io_err(src)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file name in UTF-8",
            ))
        })?;
        let name = ShareName::new(name)?;
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
        let tmp = self.state_dir().join(format!("{name}.import"));
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
        if let Some(tmp) = staged.tmp.take() {
            let dest = self.complete_path(&staged.name);
            let stamp = Stamp::of(&fs::metadata(&tmp).map_err(io_err(&tmp))?);
            manifest_file::write(&self.manifest_path(&staged.name), stamp, &staged.manifest)?;
            fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
            self.remember(&staged.name, stamp, staged.manifest.clone());
        }
        Ok((staged.name.clone(), staged.manifest.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tests::tempdir, STATE_DIR};
    use super::*;

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

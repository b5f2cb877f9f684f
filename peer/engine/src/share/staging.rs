//! Sharing a file in two halves: [`ShareDir::stage`] hashes it where it lies, the caller asks
//! the tracker, and only then [`ShareDir::commit`] records it, so a refused share leaves nothing
//! behind. A file outside the share directory is shared in place (a record in
//! `DIR/.peer/NAME.share`, see [`super::placed`]), never copied: a 4 GiB file costs one read
//! to hash it and no disk. A file already in the directory is shared as it is.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::chunking;
use crate::manifest::Manifest;
use crate::name::ShareName;

use super::manifest_file::{self, Stamp};
use super::placed::{FileStamp, Placed, PlacedFile};
use super::{disk, io_err, tree, ShareDir, StoreError};

/// A file hashed for sharing but not yet recorded as shared.
#[derive(Debug)]
pub struct Staged {
    pub name: ShareName,
    pub manifest: Arc<Manifest>,
    /// Where it is shared from, for a file outside the share directory.
    placed: Option<Placed>,
    /// A file of the directory hashed again (another chunk size was asked for): its new
    /// manifest replaces the cached one at commit.
    rehashed: Option<Stamp>,
}

/// Refuses what cannot be shared, saying what it is: links (share what they point to) and
/// special files. True for a directory.
fn check_kind(src: &Path) -> Result<bool, StoreError> {
    let meta = fs::symlink_metadata(src).map_err(io_err(src))?;
    let why = if meta.file_type().is_symlink() {
        let target = fs::read_link(src).map_or_else(|_| "?".into(), |t| t.display().to_string());
        format!("a symbolic link (to {target}); share the file itself, so what is served is what you named")
    } else if meta.is_dir() {
        return Ok(true);
    } else if !meta.is_file() {
        "not a regular file (a FIFO, socket or device); only regular files can be shared".into()
    } else {
        return Ok(false);
    };
    Err(StoreError::Unshareable {
        path: src.to_owned(),
        why,
    })
}

fn stamp_of(f: &FileStamp) -> Stamp {
    Stamp {
        size: f.size,
        mtime_ns: f.mtime_ns,
    }
}

impl ShareDir {
    /// First half of sharing `src`: hashes it in chunks of `chosen` bytes (or the size
    /// [`chunking::for_file`] picks), checking that the name is free: a different file already
    /// shared under that name is refused, and so is a file too large to share, before anything
    /// is hashed.
    pub fn stage(&self, src: &Path, chosen: Option<u32>) -> Result<Staged, StoreError> {
        let name = src.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            io_err(src)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file name in UTF-8",
            ))
        })?;
        let name = ShareName::new(name)?;
        if check_kind(src)? {
            return self.stage_dir(src, name, chosen);
        }
        let (file, meta) = disk::open_regular(src).map_err(io_err(src))?;
        let chunk_size =
            chunking::for_file(meta.len(), chosen).map_err(|error| StoreError::ChunkSize {
                path: src.to_owned(),
                error,
            })?;
        let dest = self.complete_path(&name);
        let existing = match disk::entry(&dest).map_err(io_err(&dest))? {
            Some(d) if !d.is_file() => {
                return Err(io_err(&dest)(disk::not_regular(
                    "already there (remove it to share a file under this name)",
                )))
            }
            Some(d) if (d.dev(), d.ino()) == (meta.dev(), meta.ino()) => {
                // The file is in the share directory already: shared as it is.
                let manifest = self.complete_manifest(&name)?;
                if chosen.is_none() || manifest.chunk_size() == chunk_size {
                    return Ok(Staged {
                        name,
                        manifest,
                        placed: None,
                        rehashed: None,
                    });
                }
                log::info!("hashing {} in chunks of {chunk_size} bytes", src.display());
                let manifest = Manifest::from_open_file(&file, chunk_size).map_err(io_err(src))?;
                self.unchanged_since(&name, src, &file, &meta)?;
                return Ok(Staged {
                    name,
                    manifest: Arc::new(manifest),
                    placed: None,
                    rehashed: Some(Stamp::of(&meta)),
                });
            }
            Some(_) => Some(self.complete_manifest(&name)?),
            None => None,
        };
        let path = src.canonicalize().map_err(io_err(src))?;
        if let Some(other) = self.placed(&name).filter(|p| p.path != path) {
            return Err(StoreError::NameShared {
                name,
                other: other.path,
            });
        }
        log::info!("hashing {}", path.display());
        let manifest = Manifest::from_open_file(&file, chunk_size).map_err(io_err(&path))?;
        self.unchanged_since(&name, &path, &file, &meta)?;
        if let Some(existing) = existing.filter(|e| e.id() != manifest.id()) {
            return Err(StoreError::NameTaken {
                name,
                dir: self.root().to_owned(),
                have: existing.id(),
                want: manifest.id(),
            });
        }
        Ok(Staged {
            placed: Some(Placed {
                path,
                stamp: FileStamp::of(&meta),
                chunk_size,
                id: manifest.id(),
                files: Vec::new(),
            }),
            name,
            manifest: Arc::new(manifest),
            rehashed: None,
        })
    }

    /// [`ShareDir::stage`] of directory `src`: its regular files laid end to end in path
    /// order (protocol.txt §6.1), hashed where they lie.
    fn stage_dir(
        &self,
        src: &Path,
        name: ShareName,
        chosen: Option<u32>,
    ) -> Result<Staged, StoreError> {
        let path = src.canonicalize().map_err(io_err(src))?;
        if path == self.root() || self.root().starts_with(&path) {
            return Err(StoreError::Unshareable {
                path,
                why: "the share directory itself (or a folder holding it); share a folder inside it or elsewhere".into(),
            });
        }
        let dest = self.complete_path(&name);
        let dir_meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if let Some(d) = disk::entry(&dest).map_err(io_err(&dest))? {
            if (d.dev(), d.ino()) != (dir_meta.dev(), dir_meta.ino()) {
                return Err(io_err(&dest)(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "already there (remove it to share a directory under this name)",
                )));
            }
        }
        if let Some(other) = self.placed(&name).filter(|p| p.path != path) {
            return Err(StoreError::NameShared {
                name,
                other: other.path,
            });
        }
        let found = tree::scan(&path)?;
        let total = found
            .iter()
            .filter(|(_, m)| m.is_file())
            .map(|(_, m)| m.len())
            .sum::<u64>();
        let chunk_size =
            chunking::for_file(total, chosen).map_err(|error| StoreError::ChunkSize {
                path: path.clone(),
                error,
            })?;
        let files: Vec<PlacedFile> = found
            .iter()
            .map(|(rel, meta)| PlacedFile {
                path: rel.clone(),
                stamp: if meta.is_dir() {
                    FileStamp::of_dir(meta)
                } else {
                    FileStamp::of(meta)
                },
                folder: meta.is_dir(),
            })
            .collect();
        let storage =
            tree::open_recorded(&path, &files).map_err(|(path, why)| StoreError::Changed {
                name: name.clone(),
                path,
                why,
            })?;
        log::info!("hashing {} ({} files)", path.display(), files.len());
        let manifest = Manifest::from_reader(&storage, total, chunk_size).map_err(io_err(&path))?;
        if let Some((changed, _)) = tree::first_changed(&path, &files) {
            return Err(StoreError::Changed {
                name,
                path: changed,
                why: "it changed while it was being hashed",
            });
        }
        let placed = Placed {
            path,
            stamp: FileStamp::of_dir(&dir_meta),
            chunk_size,
            id: manifest.id(),
            files,
        };
        let manifest = manifest.with_files(placed.layout());
        Ok(Staged {
            placed: Some(Placed {
                id: manifest.id(),
                ..placed
            }),
            name,
            manifest: Arc::new(manifest),
            rehashed: None,
        })
    }

    /// Refuses a file that changed while it was hashed (its manifest describes no one state).
    fn unchanged_since(
        &self,
        name: &ShareName,
        path: &Path,
        file: &fs::File,
        before: &fs::Metadata,
    ) -> Result<(), StoreError> {
        let after = file.metadata().map_err(io_err(path))?;
        if FileStamp::of(&after) != FileStamp::of(before) {
            return Err(StoreError::Changed {
                name: name.clone(),
                path: path.to_owned(),
                why: "it changed while it was being hashed",
            });
        }
        Ok(())
    }

    /// Second half of sharing: records the share (its manifest, and where a file shared in
    /// place lies), so the daemon serves it, after a restart too.
    pub fn commit(&self, staged: Staged) -> Result<(ShareName, Arc<Manifest>), StoreError> {
        let Staged {
            name,
            manifest,
            placed,
            rehashed,
        } = staged;
        let stamp = match &placed {
            Some(p) if p.is_dir() => Some(super::dir_stamp(p)),
            Some(p) => Some(stamp_of(&p.stamp)),
            None => rehashed,
        };
        if let Some(stamp) = stamp {
            let cache = self.manifest_path(&name);
            manifest_file::write(&cache, stamp, &manifest).map_err(io_err(&cache))?;
            self.remember(&name, stamp, manifest.clone());
        }
        if let Some(placed) = placed {
            let record = self.placed_path(&name);
            let tmp: PathBuf = self.state_dir().join(format!("{name}.share.tmp"));
            super::write_file(&tmp, &record, placed.encode().as_bytes())?;
        }
        Ok((name, manifest))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

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
    fn a_file_outside_is_shared_in_place_and_served_while_unchanged() {
        let root = tempdir("inplace");
        let src = tempdir("inplace-src");
        fs::create_dir_all(&src).unwrap();
        let dir = ShareDir::open(&root).unwrap();
        fs::write(src.join("a.txt"), b"one").unwrap();
        let (name, m) = dir
            .commit(dir.stage(&src.join("a.txt"), None).unwrap())
            .unwrap();
        assert_eq!(name.as_str(), "a.txt");
        // Not copied: only the record and the manifest are written.
        assert!(!root.join("a.txt").exists());
        assert_eq!(state_files(&root), vec!["a.txt.manifest", "a.txt.share"]);
        assert_eq!(dir.complete_files().unwrap(), vec![name.clone()]);
        assert_eq!(dir.served(&name).unwrap().manifest.id(), m.id());
        assert!(dir.served(&name).unwrap().in_place);
        // A directory opened again (a restart) serves it from the record.
        let again = ShareDir::open(&root).unwrap();
        assert_eq!(again.complete_manifest(&name).unwrap().id(), m.id());
        assert_eq!(again.inventory()[0].size, 3);

        fs::write(src.join("a.txt"), b"three").unwrap();
        for d in [&dir, &again] {
            let err = d.served(&name).unwrap_err();
            assert!(matches!(err, StoreError::Changed { .. }), "{err:?}");
            assert!(err.to_string().contains("no longer served"), "{err}");
            assert!(!d.has_complete(&name));
        }
        assert!(again.inventory().is_empty());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&src).unwrap();
    }

    #[test]
    fn a_directory_is_shared_in_place_with_an_id_that_commits_to_its_layout() {
        let root = tempdir("inplace-dir");
        let src = tempdir("inplace-dir-src").join("album");
        fs::create_dir_all(src.join("b/c")).unwrap();
        let dir = ShareDir::open(&root).unwrap();
        let (one, two) = (vec![1u8; 3000], vec![2u8; 1500]);
        fs::write(src.join("a.bin"), &one).unwrap();
        fs::write(src.join("b/c/d.bin"), &two).unwrap();
        fs::write(src.join("b/empty"), b"").unwrap();
        let (name, m) = dir.commit(dir.stage(&src, None).unwrap()).unwrap();
        assert_eq!(name.as_str(), "album");
        let files = m.files().unwrap();
        let paths: Vec<String> = files.iter().map(|f| f.path.to_string()).collect();
        assert_eq!(paths, ["a.bin", "b/c/d.bin", "b/empty"]);
        // The chunks are those of the files laid end to end; the id is not their manifest's.
        let flat = Manifest::from_data(&[one.clone(), two.clone()].concat(), 2048).unwrap();
        assert_eq!(m.chunk_count(), 3);
        assert_eq!(m.hashes(0, 3).unwrap(), flat.hashes(0, 3).unwrap());
        assert_ne!(m.id(), flat.id());
        assert_eq!(m.id(), flat.with_files(files.clone()).id());
        // Served from where it lies, chunk 1 spanning both files; after a restart too.
        let again = ShareDir::open(&root).unwrap();
        let served = again.served(&name).unwrap();
        assert!(served.in_place);
        assert_eq!(served.manifest.id(), m.id());
        let mut chunk = vec![0u8; 2048];
        served
            .storage
            .read_exact_vectored_at(vec![&mut chunk], 2048)
            .unwrap();
        assert_eq!(&chunk[..952], &one[2048..]);
        assert_eq!(&chunk[952..], &two[..1096]);
        // Any file changing withdraws the whole share.
        fs::write(src.join("b/c/d.bin"), b"changed").unwrap();
        let err = again.served(&name).unwrap_err();
        assert!(err.to_string().contains("d.bin"), "{err}");
        assert!(!again.has_complete(&name));
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(src.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_name_is_shared_from_one_place_with_one_content() {
        let root = tempdir("inplace-taken");
        let (one, two) = (tempdir("inplace-one"), tempdir("inplace-two"));
        fs::create_dir_all(&one).unwrap();
        fs::create_dir_all(&two).unwrap();
        let dir = ShareDir::open(&root).unwrap();
        fs::write(one.join("a.txt"), b"one").unwrap();
        fs::write(two.join("a.txt"), b"one").unwrap();
        dir.commit(dir.stage(&one.join("a.txt"), None).unwrap())
            .unwrap();
        let err = dir.stage(&two.join("a.txt"), None).unwrap_err();
        assert!(matches!(err, StoreError::NameShared { .. }), "{err:?}");
        // The directory's own file of that name, with other content, is not replaced.
        fs::write(root.join("b.txt"), b"mine").unwrap();
        fs::write(one.join("b.txt"), b"theirs").unwrap();
        let err = dir.stage(&one.join("b.txt"), None).unwrap_err();
        assert!(matches!(err, StoreError::NameTaken { .. }), "{err:?}");
        // A file of the directory is shared as it is.
        let staged = dir.stage(&root.join("b.txt"), None).unwrap();
        assert!(staged.placed.is_none());
        dir.commit(staged).unwrap();
        assert_eq!(fs::read(root.join("b.txt")).unwrap(), b"mine");
        for d in [&root, &one, &two] {
            fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn large_files_get_larger_chunks_and_chosen_sizes_are_checked() {
        let root = tempdir("inplace-large");
        let src = tempdir("inplace-large-src");
        fs::create_dir_all(&src).unwrap();
        let dir = ShareDir::open(&root).unwrap();
        fs::write(src.join("small.bin"), vec![7u8; 20_000]).unwrap();
        let staged = dir.stage(&src.join("small.bin"), Some(8192)).unwrap();
        assert_eq!(staged.manifest.chunk_size(), 8192);
        assert_eq!(staged.manifest.chunk_count(), 3);
        let err = dir.stage(&src.join("small.bin"), Some(3000)).unwrap_err();
        assert!(err.to_string().contains("power of two"), "{err}");
        // Too many chunks for the chosen size is refused before hashing 9 GiB.
        let huge = File::create(src.join("huge.bin")).unwrap();
        huge.set_len(9 << 30).unwrap();
        let err = dir.stage(&src.join("huge.bin"), Some(2048)).unwrap_err();
        assert!(err.to_string().contains("at most 4194304"), "{err}");
        assert!(state_files(&root).is_empty());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&src).unwrap();
    }

    #[test]
    fn links_directories_and_special_files_are_refused_saying_what_they_are() {
        let root = tempdir("inplace-kinds");
        let src = tempdir("inplace-kinds-src");
        fs::create_dir_all(src.join("folder")).unwrap();
        let dir = ShareDir::open(&root).unwrap();
        fs::write(src.join("c.txt"), b"private").unwrap();
        std::os::unix::fs::symlink(src.join("c.txt"), src.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(src.join("c.txt"), root.join("c.txt")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let cases = [
            (src.join("link.txt"), "a symbolic link"),
            (root.join("c.txt"), "a symbolic link"),
            (src.join("folder"), "an empty directory"),
            (src.join("fifo"), "not a regular file"),
            (PathBuf::from("/dev/null"), "not a regular file"),
        ];
        for (path, want) in cases {
            let err = dir.stage(&path, None).unwrap_err();
            assert!(err.to_string().contains(want), "{}: {err}", path.display());
        }
        assert!(state_files(&root).is_empty());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&src).unwrap();
    }
}

//! Directory shares on disk: walking a directory to share it (regular files only, every name a
//! plain name of protocol.txt §1.1, in the fixed order of the layout) and opening a directory's
//! files as one [`Storage`], for reading (seeding) or writing (a download's `NAME.part/`).
//!
//! Paths come from a metainfo or a peer, so every one is checked again here at the edge: each
//! component is a plain name (the [`RelPath`] type), each folder on the way is a real folder
//! (never a link: `lstat`, and folders we create ourselves), and the file itself is opened with
//! `O_NOFOLLOW`. Nothing is ever opened outside the directory.

use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use tracker_proto::FileName;

use crate::metainfo::{FileEntry, RelPath, MAX_FILES, MAX_PATH_DEPTH};
use crate::storage::Storage;

use super::disk;
use super::placed::{FileStamp, PlacedFile};
use super::StoreError;

fn refuse(path: &Path, why: impl Into<String>) -> StoreError {
    StoreError::Unshareable {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// The regular files and empty folders under `root`, sorted by path (component by component,
/// as bytes), with their metadata. A link, a special file, a name that breaks §1.1 or a
/// directory without any file is refused, naming the path.
pub(super) fn scan(root: &Path) -> Result<Vec<(RelPath, Metadata)>, StoreError> {
    let mut found = Vec::new();
    walk(root, &mut Vec::new(), &mut found)?;
    if !found.iter().any(|(_, m)| m.is_file()) {
        return Err(refuse(
            root,
            "an empty directory (a share needs at least one file)",
        ));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

fn walk(
    dir: &Path,
    at: &mut Vec<FileName>,
    found: &mut Vec<(RelPath, Metadata)>,
) -> Result<(), StoreError> {
    let io_err = |e| super::io_err(dir)(e);
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io_err)?
        .collect::<Result<_, _>>()
        .map_err(io_err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry
            .file_name()
            .to_str()
            .ok_or_else(|| refuse(&path, "a name that is not UTF-8"))
            .and_then(|n| {
                FileName::new(n)
                    .map_err(|e| refuse(&path, format!("a name the protocol refuses: {e}")))
            })?;
        let meta = fs::symlink_metadata(&path).map_err(super::io_err(&path))?;
        let kind = meta.file_type();
        at.push(name);
        if kind.is_symlink() {
            return Err(refuse(
                &path,
                "a directory holding a symbolic link; links are never shared (remove it or share what it points to)",
            ));
        } else if kind.is_dir() {
            if at.len() >= MAX_PATH_DEPTH {
                return Err(refuse(
                    &path,
                    format!("folders nested deeper than {MAX_PATH_DEPTH}"),
                ));
            }
            let before = found.len();
            walk(&path, at, found)?;
            if found.len() == before {
                // Nothing below it: an empty folder, listed so it comes back too.
                let rel = RelPath::new(at.clone()).map_err(|e| refuse(&path, e))?;
                found.push((rel, meta));
            }
        } else if kind.is_file() {
            if found.len() >= MAX_FILES {
                return Err(refuse(&path, format!("more than {MAX_FILES} files")));
            }
            let rel = RelPath::new(at.clone()).map_err(|e| refuse(&path, e))?;
            found.push((rel, meta));
        } else {
            return Err(refuse(
                &path,
                "a directory holding a special file (a FIFO, socket or device); only regular files can be shared",
            ));
        }
        at.pop();
    }
    Ok(())
}

/// Opens directory `root` itself, refusing a link.
pub(super) fn open_dir(root: &Path) -> io::Result<File> {
    match disk::entry(root)? {
        Some(m) if m.is_dir() => File::open(root),
        Some(_) => Err(disk::not_regular("not a directory (a link, or a file)")),
        None => Err(io::ErrorKind::NotFound.into()),
    }
}

/// Checks that every folder of `path` below `root` is a real folder (not a link), creating the
/// missing ones when `create`.
fn folders(root: &Path, path: &RelPath, create: bool) -> io::Result<()> {
    let mut at = root.to_owned();
    let parts = path.components();
    for c in &parts[..parts.len() - 1] {
        at.push(c.as_str());
        match disk::entry(&at)? {
            Some(m) if m.is_dir() => {}
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a folder (a link, or a file)", at.display()),
                ))
            }
            None if create => fs::create_dir(&at)?,
            None => return Err(io::ErrorKind::NotFound.into()),
        }
    }
    Ok(())
}

/// The files of a directory shared in place, opened for reading, each the very file recorded
/// (`Err` with the path of the first that is gone or changed).
pub(super) fn open_recorded(
    root: &Path,
    files: &[PlacedFile],
) -> Result<Storage, (PathBuf, &'static str)> {
    let dir = open_dir(root).map_err(|_| (root.to_owned(), "it is no longer a directory"))?;
    let mut open = Vec::with_capacity(files.len());
    for f in files {
        let path = f.path.under(root);
        if f.folder {
            match disk::entry(&path) {
                Ok(Some(m)) if m.is_dir() && FileStamp::of_dir(&m) == f.stamp => {}
                _ => return Err((path, "the empty folder is gone or was replaced")),
            }
            open.push(None);
            continue;
        }
        let opened = folders(root, &f.path, false).and_then(|()| disk::open_regular(&path));
        let (file, meta) =
            opened.map_err(|_| (path.clone(), "it is gone or no longer a regular file"))?;
        if FileStamp::of(&meta) != f.stamp {
            return Err((
                path,
                "its size, modification time or inode differ from when it was hashed",
            ));
        }
        open.push(Some(file));
    }
    let lens = files.iter().map(|f| f.stamp.size).collect();
    Storage::spread(dir, open, lens).map_err(|_| (root.to_owned(), "it is too large"))
}

/// The first file of a directory shared in place that is gone or changed, by `lstat` only.
pub(super) fn first_changed(root: &Path, files: &[PlacedFile]) -> Option<(PathBuf, &'static str)> {
    if !disk::entry(root).is_ok_and(|m| m.is_some_and(|m| m.is_dir())) {
        return Some((root.to_owned(), "it is no longer a directory"));
    }
    files.iter().find_map(|f| {
        let path = f.path.under(root);
        match disk::entry(&path) {
            Ok(Some(m)) if f.folder && m.is_dir() && FileStamp::of_dir(&m) == f.stamp => None,
            _ if f.folder => Some((path, "the empty folder is gone or was replaced")),
            Ok(Some(m)) if m.is_file() && FileStamp::of(&m) == f.stamp => None,
            Ok(Some(m)) if m.is_file() => Some((
                path,
                "its size, modification time or inode differ from when it was hashed",
            )),
            _ => Some((path, "it is gone or no longer a regular file")),
        }
    })
}

/// Opens (creating what is missing) the files of a download into directory `root`: every
/// folder, every file (empty ones too). Returns the storage and whether every file already had
/// its final length (else all were set to it and nothing of an earlier run is trusted).
pub(super) fn open_writable(root: &Path, files: &[FileEntry]) -> io::Result<(Storage, bool)> {
    match disk::entry(root)? {
        Some(m) if m.is_dir() => {}
        Some(_) => return Err(disk::not_regular("not a directory (a link, or a file)")),
        None => fs::create_dir(root)?,
    }
    let dir = open_dir(root)?;
    let mut open = Vec::with_capacity(files.len());
    let mut sized = true;
    for f in files {
        folders(root, &f.path, true)?;
        let path = f.path.under(root);
        if f.folder {
            match disk::entry(&path)? {
                Some(m) if m.is_dir() => {}
                Some(_) => return Err(with_path(&path, disk::not_regular("not a folder"))),
                None => fs::create_dir(&path)?,
            }
            open.push(None);
            continue;
        }
        let (file, meta) = disk::open_writable(&path).map_err(|e| with_path(&path, e))?;
        sized &= meta.len() == f.length;
        open.push(Some(file));
    }
    if !sized {
        for (file, f) in open.iter().zip(files) {
            if let Some(file) = file {
                file.set_len(f.length)?;
            }
        }
    }
    let lens = files.iter().map(|f| f.length).collect();
    Ok((Storage::spread(dir, open, lens)?, sized))
}

/// The files of a download into `root`, opened for reading (another process's download).
pub(super) fn open_readable(root: &Path, files: &[FileEntry]) -> io::Result<Storage> {
    let dir = open_dir(root)?;
    let mut open = Vec::with_capacity(files.len());
    for f in files {
        folders(root, &f.path, false)?;
        if f.folder {
            open.push(None);
            continue;
        }
        let (file, meta) = disk::open_regular(&f.path.under(root))?;
        if meta.len() != f.length {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong length"));
        }
        open.push(Some(file));
    }
    Storage::spread(dir, open, files.iter().map(|f| f.length).collect())
}

/// What a download's files are now, for the share record written when it completes.
pub(super) fn stamps(root: &Path, files: &[FileEntry]) -> io::Result<Vec<PlacedFile>> {
    files
        .iter()
        .map(|f| {
            let path = f.path.under(root);
            let stamp = if f.folder {
                match disk::entry(&path)? {
                    Some(m) if m.is_dir() => FileStamp::of_dir(&m),
                    _ => return Err(disk::not_regular("not a folder")),
                }
            } else {
                FileStamp::of(&disk::open_regular(&path)?.1)
            };
            Ok(PlacedFile {
                path: f.path.clone(),
                stamp,
                folder: f.folder,
            })
        })
        .collect()
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::tempdir;
    use super::*;

    #[test]
    fn a_directory_is_walked_in_path_order_and_links_and_fifos_are_refused() {
        let root = tempdir("tree-scan");
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::create_dir_all(root.join("empty-folder")).unwrap();
        fs::write(root.join("b/c/deep.txt"), b"deep").unwrap();
        fs::write(root.join("a.txt"), b"a").unwrap();
        fs::write(root.join("b.txt"), b"").unwrap();
        let paths: Vec<String> = scan(&root)
            .unwrap()
            .iter()
            .map(|(p, _)| p.to_string())
            .collect();
        assert_eq!(paths, ["a.txt", "b/c/deep.txt", "b.txt", "empty-folder"]);

        std::os::unix::fs::symlink("/etc/passwd", root.join("b/link")).unwrap();
        let err = scan(&root).unwrap_err().to_string();
        assert!(
            err.contains("b/link") && err.contains("symbolic link"),
            "{err}"
        );
        fs::remove_file(root.join("b/link")).unwrap();
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = scan(&root).unwrap_err().to_string();
        assert!(
            err.contains("fifo") && err.contains("special file"),
            "{err}"
        );
        fs::remove_file(root.join("fifo")).unwrap();
        fs::write(root.join("bad name"), b"").unwrap();
        let err = scan(&root).unwrap_err().to_string();
        assert!(err.contains("bad name") && err.contains("refuses"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_download_never_writes_through_a_linked_folder() {
        let root = tempdir("tree-link");
        let outside = tempdir("tree-link-outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        let files = vec![FileEntry {
            path: RelPath::parse("sub/x").unwrap(),
            length: 3,
            folder: false,
        }];
        let err = open_writable(&root, &files).unwrap_err();
        assert!(err.to_string().contains("not a folder"), "{err}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }
}

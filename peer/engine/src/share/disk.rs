//! How the share directory touches the disk.
//!
//! Every file of the directory is opened without following a symbolic link (`O_NOFOLLOW`) and
//! must then be a regular file, checked on the opened handle. The directory listing already
//! skips links; opening by name must too, or a link named like a shared file (to a private file,
//! to `/dev/zero`) would be served to whoever guesses the name, and a link in the state
//! directory would have us write through it. `O_NONBLOCK` makes opening a FIFO return at once
//! (to be refused) instead of waiting for a writer; it changes nothing for regular files.
//!
//! Every replacement is made durable the same way: write a temporary file, fsync it, rename it
//! over the old name, fsync the directory. Without the last step a crash can undo the rename.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufWriter, IoSlice, IoSliceMut};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::uio::{preadv, pwritev};

/// Flags of every open of a file in the share directory.
pub(super) fn no_follow() -> i32 {
    (OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits()
}

/// True when `e` says the path is a symbolic link we refused to follow.
fn is_link_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::ELOOP as i32)
}

/// The error for a path that exists but is not a regular file (a link, a directory, a FIFO).
pub(super) fn not_regular(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}, not a regular file: the share directory never follows links"),
    )
}

/// `e`, said plainly when it is the refusal to follow a link.
pub(super) fn explain(e: io::Error) -> io::Error {
    if is_link_refusal(&e) {
        not_regular("a symbolic link")
    } else {
        e
    }
}

/// The metadata of the open `file`, which must be a regular file.
fn regular(file: &File) -> io::Result<Metadata> {
    let meta = file.metadata()?;
    if meta.is_file() {
        Ok(meta)
    } else if meta.is_dir() {
        Err(not_regular("a directory"))
    } else {
        Err(not_regular("a special file"))
    }
}

/// Opens the existing regular file `path` for reading, never through a link.
pub(super) fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(no_follow())
        .open(path)
        .map_err(explain)?;
    let meta = regular(&file)?;
    Ok((file, meta))
}

/// Opens (creating if missing) the regular file `path` for reading and writing, never through
/// a link; an existing file keeps its content.
pub(super) fn open_writable(path: &Path) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(no_follow())
        .open(path)
        .map_err(explain)?;
    let meta = regular(&file)?;
    Ok((file, meta))
}

/// Creates `path` empty (truncating a previous file of ours), never through a link, with
/// permissions `mode` when it is new; open for reading too, so it can be hashed once written.
///
/// Temporary names are fixed, not unique per process: the writers of one name are serialised
/// (a download's files by its claim, the key by a hard link), except two processes caching the
/// manifest of one complete file at once, where the loser's file fails the reader's checks and
/// is computed again. Unique names would instead leave litter after every crash.
pub(super) fn create_truncated(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(no_follow())
        .open(path)
        .map_err(explain)
}

/// `lstat` of `path`: `None` when nothing is there.
pub(super) fn entry(path: &Path) -> io::Result<Option<Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes the entries of directory `dir` (renames, new and removed names) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path`, for [`sync_dir`].
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Renames `from` to `to` and makes the rename durable.
pub(super) fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(parent(to))
}

/// Replaces `dest` by what `fill` writes, through `tmp`, so that a crash leaves either the old
/// or the whole new content. `tmp` is removed when anything fails.
pub(crate) fn replace(
    tmp: &Path,
    dest: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let result = (|| {
        let mut out = BufWriter::new(create_truncated(tmp, 0o644)?);
        fill(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        rename_durably(tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Removes `path` if it exists; anything but "not there" is an error.
pub(super) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `parts` one after another at `offset` with as few `pwritev` calls as the kernel
/// allows: the chunks of a delivery go to disk straight from the buffers they arrived in.
pub(crate) fn write_all_vectored_at(
    file: &File,
    parts: &[impl AsRef<[u8]>],
    mut offset: u64,
) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p.as_ref())).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let batch = rest.len().min(MAX_IOV);
        let at = i64::try_from(offset).map_err(|_| io::Error::other("offset beyond 2^63"))?;
        let n = match pwritev(file, &rest[..batch], at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        offset += n as u64;
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Fills `slots` one after another from `file` at `offset` with as few `preadv` calls as the
/// kernel allows: a server reads chunks straight into the frames that carry them.
pub(crate) fn read_exact_vectored_at(
    file: &File,
    slots: Vec<&mut [u8]>,
    mut offset: u64,
) -> io::Result<()> {
    let mut slices: Vec<IoSliceMut<'_>> = slots.into_iter().map(IoSliceMut::new).collect();
    let mut rest = &mut slices[..];
    // Zero-length slots (an empty chunk) need no read.
    IoSliceMut::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        let batch = rest.len().min(MAX_IOV);
        let at = i64::try_from(offset).map_err(|_| io::Error::other("offset beyond 2^63"))?;
        let n = match preadv(file, &mut rest[..batch], at) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        offset += n as u64;
        IoSliceMut::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Slices per `pwritev`/`preadv` call (Linux's `IOV_MAX`).
const MAX_IOV: usize = 1024;

#[cfg(test)]
mod tests {
    use super::super::tests::tempdir;
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_and_special_files_are_refused() {
        let root = tempdir("disk");
        fs::create_dir_all(&root).unwrap();
        let private = root.join("private");
        fs::write(&private, b"secret").unwrap();
        symlink(&private, root.join("link")).unwrap();
        let err = open_regular(&root.join("link")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(open_writable(&root.join("link")).is_err());
        assert!(create_truncated(&root.join("link"), 0o600).is_err());
        assert_eq!(
            fs::read(&private).unwrap(),
            b"secret",
            "written through a link"
        );
        assert!(open_regular(&root)
            .unwrap_err()
            .to_string()
            .contains("directory"));
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = open_regular(&root.join("fifo")).unwrap_err();
        assert!(err.to_string().contains("special file"), "{err}");
        let (_, meta) = open_regular(&private).unwrap();
        assert_eq!(meta.len(), 6);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_failed_replacement_leaves_the_old_content_and_no_temporary() {
        let root = tempdir("disk-replace");
        fs::create_dir_all(&root).unwrap();
        let (tmp, dest) = (root.join("x.tmp"), root.join("x"));
        replace(&tmp, &dest, |out| out.write_all(b"one")).unwrap();
        let failed = replace(&tmp, &dest, |out| {
            out.write_all(b"two")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&dest).unwrap(), b"one");
        assert!(!tmp.exists());
        fs::remove_dir_all(&root).unwrap();
    }
}

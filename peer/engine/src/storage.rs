//! Where a share's bytes live: one file, or the files of a directory laid end to end
//! (protocol.txt §6.1), so chunk `i` covers the same bytes `[i*CHUNK, ...)` of the share
//! whatever the files, and may span the end of one file and the start of the next, as a
//! BitTorrent piece does.
//!
//! [`Spans`] is the pure half: it maps a byte range of the share to `(file, offset, length)`
//! pieces, skipping empty files. [`Storage`] is the I/O half the server, the downloader and
//! the hasher share: positioned reads and writes through that mapping, so a verified run of
//! chunks goes straight into the files it belongs to and nothing is copied at the end.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bitfield::Bitfield;
use crate::metainfo::{FileEntry, RelPath};
use crate::share::disk;
use crate::share::record::PartStamp;

/// One contiguous piece of a byte range inside one file of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index of the file in the layout.
    pub file: usize,
    /// Offset inside that file.
    pub offset: u64,
    pub len: u64,
}

/// The byte ranges of a directory's files inside the share: file `k` covers
/// `[starts[k], starts[k] + lens[k])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spans {
    starts: Vec<u64>,
    lens: Vec<u64>,
    total: u64,
}

impl Spans {
    /// The spans of files of these lengths, in this order; `None` when they add up past 2^64.
    pub fn new(lens: impl IntoIterator<Item = u64>) -> Option<Spans> {
        let lens: Vec<u64> = lens.into_iter().collect();
        let mut starts = Vec::with_capacity(lens.len());
        let mut total = 0u64;
        for &l in &lens {
            starts.push(total);
            total = total.checked_add(l)?;
        }
        Some(Spans {
            starts,
            lens,
            total,
        })
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The pieces of `[offset, offset + len)`, in order; `None` when it ends past the share.
    pub fn pieces(&self, mut offset: u64, mut len: u64) -> Option<Vec<Piece>> {
        if offset.checked_add(len)? > self.total {
            return None;
        }
        let mut out = Vec::new();
        // The last file starting at or before `offset`; an empty one there is skipped below.
        let mut k = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        while len > 0 {
            let (start, size) = (self.starts[k], self.lens[k]);
            if offset < start + size {
                let within = offset - start;
                let take = (size - within).min(len);
                out.push(Piece {
                    file: k,
                    offset: within,
                    len: take,
                });
                offset += take;
                len -= take;
            }
            k += 1;
        }
        Some(out)
    }
}

/// How much of one file of a directory is verified on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProgress {
    pub path: RelPath,
    pub length: u64,
    /// Bytes of it inside verified chunks.
    pub have: u64,
}

impl FileProgress {
    pub fn is_complete(&self) -> bool {
        self.have == self.length
    }
}

/// Per-file progress of a directory of `files` in chunks of `chunk_size` bytes, of which
/// `have` are verified: one pass over the files and the chunks each one touches. Empty
/// folders are left out (they hold nothing to download).
pub fn files_progress(files: &[FileEntry], chunk_size: u32, have: &Bitfield) -> Vec<FileProgress> {
    let cs = u64::from(chunk_size.max(1));
    let mut start = 0u64;
    files
        .iter()
        .filter(|f| !f.folder)
        .map(|f| {
            let end = start + f.length;
            let mut got = 0u64;
            if f.length > 0 {
                for chunk in start / cs..=(end - 1) / cs {
                    let index = u32::try_from(chunk).unwrap_or(u32::MAX);
                    if index < have.len() && have.get(index) {
                        let (from, to) = (chunk * cs, (chunk + 1) * cs);
                        got += to.min(end) - from.max(start);
                    }
                }
            }
            start = end;
            FileProgress {
                path: f.path.clone(),
                length: f.length,
                have: got,
            }
        })
        .collect()
}

/// The files of a directory share, open, with their spans.
#[derive(Debug)]
pub struct Spread {
    /// The directory itself: its identity stamps the whole.
    dir: File,
    /// One per entry of the layout; `None` for an empty folder.
    files: Vec<Option<File>>,
    spans: Spans,
    /// Files written since their last sync.
    dirty: Vec<AtomicBool>,
}

impl Spread {
    /// The file of entry `k`, which has bytes (an empty folder never has).
    fn file(&self, k: usize) -> io::Result<&File> {
        self.files[k]
            .as_ref()
            .ok_or_else(|| io::Error::other("a folder has no bytes"))
    }
}

/// Bytes of a share on disk.
#[derive(Debug)]
pub enum Storage {
    One(File),
    Many(Spread),
}

fn past_end() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "range past the end of the share",
    )
}

impl Storage {
    /// The files of a directory (`dir` open on the directory itself), in layout order, whose
    /// lengths are `lens`.
    pub fn spread(dir: File, files: Vec<Option<File>>, lens: Vec<u64>) -> io::Result<Storage> {
        let spans = Spans::new(lens)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "share too large"))?;
        let dirty = files.iter().map(|_| AtomicBool::new(false)).collect();
        Ok(Storage::Many(Spread {
            dir,
            files,
            spans,
            dirty,
        }))
    }

    /// Fills `slots` one after another from the share's bytes at `offset`.
    pub fn read_exact_vectored_at(&self, slots: Vec<&mut [u8]>, offset: u64) -> io::Result<()> {
        match self {
            Storage::One(f) => disk::read_exact_vectored_at(f, slots, offset),
            Storage::Many(s) => {
                let mut at = offset;
                for slot in slots {
                    let mut done = 0usize;
                    for p in s.spans.pieces(at, slot.len() as u64).ok_or_else(past_end)? {
                        let end = done + p.len as usize;
                        s.file(p.file)?
                            .read_exact_at(&mut slot[done..end], p.offset)?;
                        done = end;
                    }
                    at += slot.len() as u64;
                }
                Ok(())
            }
        }
    }

    /// Writes `parts` one after another into the share's bytes at `offset`.
    pub fn write_all_vectored_at(&self, parts: &[impl AsRef<[u8]>], offset: u64) -> io::Result<()> {
        match self {
            Storage::One(f) => disk::write_all_vectored_at(f, parts, offset),
            Storage::Many(s) => {
                let mut at = offset;
                for part in parts {
                    let part = part.as_ref();
                    let mut done = 0usize;
                    for p in s.spans.pieces(at, part.len() as u64).ok_or_else(past_end)? {
                        let end = done + p.len as usize;
                        s.dirty[p.file].store(true, Ordering::Release);
                        s.file(p.file)?.write_all_at(&part[done..end], p.offset)?;
                        done = end;
                    }
                    at += part.len() as u64;
                }
                Ok(())
            }
        }
    }

    /// Makes every byte written so far durable (`fdatasync` of each file written to).
    pub fn sync_data(&self) -> io::Result<()> {
        match self {
            Storage::One(f) => f.sync_data(),
            Storage::Many(s) => {
                for (f, dirty) in s.files.iter().zip(&s.dirty) {
                    let Some(f) = f else { continue };
                    if dirty.swap(false, Ordering::AcqRel) {
                        if let Err(e) = f.sync_data() {
                            dirty.store(true, Ordering::Release);
                            return Err(e);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Makes everything durable, metadata too.
    pub fn sync_all(&self) -> io::Result<()> {
        match self {
            Storage::One(f) => f.sync_all(),
            Storage::Many(s) => {
                for f in s.files.iter().flatten() {
                    f.sync_all()?;
                }
                s.dir.sync_all()
            }
        }
    }

    /// Device and inode of the file, or of the directory.
    pub fn identity(&self) -> io::Result<(u64, u64)> {
        let m = match self {
            Storage::One(f) => f.metadata()?,
            Storage::Many(s) => s.dir.metadata()?,
        };
        Ok((m.dev(), m.ino()))
    }

    /// Which `.part` this is and when it last changed: a directory's identity, the sum of its
    /// files' sizes and the latest change time of any of them (a write to any file moves it).
    pub fn stamp(&self) -> io::Result<PartStamp> {
        match self {
            Storage::One(f) => Ok(PartStamp::of(&f.metadata()?)),
            Storage::Many(s) => {
                let mut stamp = PartStamp::of(&s.dir.metadata()?);
                stamp.size = 0;
                for f in s.files.iter().flatten() {
                    let one = PartStamp::of(&f.metadata()?);
                    stamp.size = stamp.size.saturating_add(one.size);
                    stamp.changed_ns = stamp.changed_ns.max(one.changed_ns);
                }
                Ok(stamp)
            }
        }
    }
}

/// Positioned reads of a share's bytes, for hashing.
pub trait ReadAt: Sync {
    /// Fills `buf` from the bytes at `offset`.
    fn fill_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn fill_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for Storage {
    fn fill_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_vectored_at(vec![buf], offset)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn piece(file: usize, offset: u64, len: u64) -> Piece {
        Piece { file, offset, len }
    }

    #[test]
    fn a_chunk_spans_three_files_and_skips_empty_ones() {
        // Files of 3, 0, 2, 0, 0, 5 bytes: bytes 2..9 touch files 0, 2 and 5.
        let s = Spans::new([3, 0, 2, 0, 0, 5]).unwrap();
        assert_eq!(s.total(), 10);
        assert_eq!(
            s.pieces(2, 7).unwrap(),
            vec![piece(0, 2, 1), piece(2, 0, 2), piece(5, 0, 4)]
        );
        assert_eq!(s.pieces(3, 2).unwrap(), vec![piece(2, 0, 2)]);
        assert_eq!(s.pieces(5, 5).unwrap(), vec![piece(5, 0, 5)]);
        assert_eq!(s.pieces(10, 0).unwrap(), vec![]);
        assert_eq!(s.pieces(9, 2), None);
        assert_eq!(s.pieces(u64::MAX, 2), None);
        let empty = Spans::new([0, 0]).unwrap();
        assert_eq!(empty.pieces(0, 0).unwrap(), vec![]);
        assert_eq!(empty.pieces(0, 1), None);
        assert!(Spans::new([u64::MAX, 1]).is_none());
    }

    #[test]
    fn reads_and_writes_cross_file_boundaries() {
        let root = crate::share::tests::tempdir("storage");
        std::fs::create_dir_all(&root).unwrap();
        let lens = vec![3u64, 0, 2, 5];
        let files: Vec<Option<File>> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(root.join(format!("f{i}")))
                    .unwrap();
                f.set_len(l).unwrap();
                Some(f)
            })
            .collect();
        let s = Storage::spread(File::open(&root).unwrap(), files, lens).unwrap();
        s.write_all_vectored_at(&[&b"abcd"[..], &b"efghij"[..]], 0)
            .unwrap();
        s.sync_data().unwrap();
        assert_eq!(std::fs::read(root.join("f0")).unwrap(), b"abc");
        assert_eq!(std::fs::read(root.join("f1")).unwrap(), b"");
        assert_eq!(std::fs::read(root.join("f2")).unwrap(), b"de");
        assert_eq!(std::fs::read(root.join("f3")).unwrap(), b"fghij");
        let (mut a, mut b) = ([0u8; 2], [0u8; 5]);
        s.read_exact_vectored_at(vec![&mut a, &mut b], 2).unwrap();
        assert_eq!((&a, &b), (b"cd", b"efghi"));
        assert_eq!(s.stamp().unwrap().size, 10);
        assert!(s.read_exact_vectored_at(vec![&mut a], 9).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn progress_counts_the_bytes_of_each_file_inside_verified_chunks() {
        let files: Vec<FileEntry> = [("a", 3), ("b", 0), ("c", 6), ("d", 1)]
            .iter()
            .map(|&(p, length)| FileEntry {
                folder: false,
                path: RelPath::parse(p).unwrap(),
                length,
            })
            .collect();
        // 4-byte chunks over 10 bytes: 0 = a[0..3]+c[0], 1 = c[1..5], 2 = c[5]+d.
        let mut have = Bitfield::empty(3);
        have.set(0);
        have.set(2);
        let got: Vec<(u64, bool)> = files_progress(&files, 4, &have)
            .iter()
            .map(|p| (p.have, p.is_complete()))
            .collect();
        assert_eq!(got, [(3, true), (0, true), (2, false), (1, true)]);
    }

    proptest! {
        #[test]
        fn pieces_cover_every_byte_exactly_once(
            lens in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..50], 1..20),
            from in 0u64..1000,
            len in 0u64..1000,
        ) {
            let s = Spans::new(lens.clone()).unwrap();
            let from = from % (s.total() + 1);
            let len = len % (s.total() - from + 1);
            let pieces = s.pieces(from, len).unwrap();
            // In order, inside their files, never empty, adjacent in the share.
            let mut at = from;
            let mut starts = vec![0u64];
            for l in &lens { starts.push(starts.last().unwrap() + l); }
            for p in &pieces {
                prop_assert!(p.len > 0);
                prop_assert!(p.offset + p.len <= lens[p.file]);
                prop_assert_eq!(starts[p.file] + p.offset, at);
                at += p.len;
            }
            prop_assert_eq!(at, from + len);
        }
    }
}

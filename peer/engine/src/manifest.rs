//! Manifests: the SHA-256 of every chunk of a file, in order, and the file id derived from them.
//!
//! The manifest is what lets a downloader trust bytes from strangers: the tracker publishes the
//! file id (`sha256:` of the manifest), any peer may hand over the manifest, and every chunk is
//! checked against it before it is written or served. Hashing is the only CPU-heavy step of
//! sharing, so [`Manifest::from_file`] spreads it over every core.
//!
//! A manifest is 32 bytes per chunk (16 MiB for a 1 GiB file), so the ones kept for a long time
//! (downloads, served files) stay in their file on disk and hashes are read as needed; only
//! freshly computed manifests live in memory. That keeps a peer's memory flat whatever the size
//! of the files it moves.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::metainfo::{encode_files, FileEntry};
use crate::metrics::metrics;
use crate::storage::ReadAt;

/// Chunk size used when the user does not choose one (the seed protocol's 2048 bytes).
pub const DEFAULT_CHUNK_SIZE: u32 = 2048;

/// Largest chunk size a peer accepts: a chunk must fit one wire frame.
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;

/// Bytes of one chunk hash.
pub const HASH_LEN: usize = 32;

/// One chunk hash.
pub type ChunkHash = [u8; HASH_LEN];

/// Why a manifest or its description is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("chunk size {0} is outside 1..={MAX_CHUNK_SIZE}")]
    BadChunkSize(u32),
    #[error(
        "manifest has {got} hashes but a {size}-byte file in {chunk_size}-byte chunks has {want}"
    )]
    WrongCount {
        got: u64,
        want: u64,
        size: u64,
        chunk_size: u32,
    },
    #[error("manifest bytes are not a whole number of {HASH_LEN}-byte hashes")]
    Ragged,
}

/// `sha256:` of the concatenated chunk hashes; the same type the tracker protocol carries.
pub use tracker_proto::FileId;

/// Number of chunks of a `size`-byte file: the last one may be short; an empty file has none.
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size))
}

fn check_chunk_size(chunk_size: u32) -> Result<(), ManifestError> {
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return Err(ManifestError::BadChunkSize(chunk_size));
    }
    Ok(())
}

/// Where the hashes are.
enum Hashes {
    Memory(Vec<ChunkHash>),
    /// Concatenated hashes in `file` from byte `offset`, checked against the id when opened.
    File {
        file: File,
        offset: u64,
    },
}

/// The chunk hashes of one file plus the geometry needed to interpret them.
pub struct Manifest {
    size: u64,
    chunk_size: u32,
    count: u32,
    hashes: Hashes,
    /// SHA-256 of the concatenated hashes: a single file's id.
    digest: FileId,
    /// The content id: `digest`, or for a directory the commitment to it and its files.
    id: FileId,
    /// A directory's files, in the order their bytes run through the chunks.
    files: Option<Arc<[FileEntry]>>,
}

/// Two manifests are equal when they describe the same content the same way (the id covers
/// every hash).
impl PartialEq for Manifest {
    fn eq(&self, other: &Self) -> bool {
        (self.id, self.size, self.chunk_size) == (other.id, other.size, other.chunk_size)
    }
}

impl Eq for Manifest {}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("size", &self.size)
            .field("chunk_size", &self.chunk_size)
            .field("chunks", &self.count)
            .field("id", &self.id)
            .finish()
    }
}

impl Manifest {
    /// Builds a manifest from hashes received from someone else, checking that their number
    /// fits the announced size.
    pub fn from_hashes(
        size: u64,
        chunk_size: u32,
        hashes: Vec<ChunkHash>,
    ) -> Result<Self, ManifestError> {
        let count = check_geometry(size, chunk_size, hashes.len() as u64)?;
        let id = id_of(&hashes);
        Ok(Manifest {
            size,
            chunk_size,
            count,
            hashes: Hashes::Memory(hashes),
            digest: id,
            id,
            files: None,
        })
    }

    /// A manifest whose hashes stay in `file` from byte `offset` on. Reads them once to compute
    /// the id, so a damaged file shows up as another id, never as chunks that fail to verify.
    pub fn from_file_region(
        file: File,
        offset: u64,
        size: u64,
        chunk_size: u32,
    ) -> io::Result<Self> {
        let invalid = |e: ManifestError| io::Error::new(io::ErrorKind::InvalidData, e);
        let len = file.metadata()?.len().saturating_sub(offset);
        if len % HASH_LEN as u64 != 0 {
            return Err(invalid(ManifestError::Ragged));
        }
        let count = check_geometry(size, chunk_size, len / HASH_LEN as u64).map_err(invalid)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], offset + pos)?;
            h.update(&buf[..n]);
            pos += n as u64;
        }
        let id = FileId(h.finalize().into());
        Ok(Manifest {
            size,
            chunk_size,
            count,
            hashes: Hashes::File { file, offset },
            digest: id,
            id,
            files: None,
        })
    }

    /// Hashes data held in memory (tests and small files).
    pub fn from_data(data: &[u8], chunk_size: u32) -> Result<Self, ManifestError> {
        check_chunk_size(chunk_size)?;
        let chunks: Vec<&[u8]> = data.chunks(chunk_size as usize).collect();
        let mut hashes = vec![[0u8; HASH_LEN]; chunks.len()];
        hash_chunks(&chunks, &mut hashes);
        Self::from_hashes(data.len() as u64, chunk_size, hashes)
    }

    /// Hashes a file on disk with one thread per core, each reading its own contiguous share of
    /// the file in large positioned reads, so a 1 GiB file takes about a second on two cores.
    pub fn from_file(path: &Path, chunk_size: u32) -> io::Result<Self> {
        Self::from_open_file(&File::open(path)?, chunk_size)
    }

    /// [`Manifest::from_file`] of a file already open, so the caller hashes exactly the file it
    /// checked (the share directory opens without following links, then hashes that handle).
    pub fn from_open_file(file: &File, chunk_size: u32) -> io::Result<Self> {
        Self::from_reader(file, file.metadata()?.len(), chunk_size)
    }

    /// [`Manifest::from_open_file`] of the `size` bytes `file` reads (a file, or a directory's
    /// files laid end to end).
    pub fn from_reader(file: &impl ReadAt, size: u64, chunk_size: u32) -> io::Result<Self> {
        check_chunk_size(chunk_size).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let count = chunk_count(size, chunk_size);
        let count_usize = usize::try_from(count)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
        let mut hashes = vec![[0u8; HASH_LEN]; count_usize];
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_thread = count_usize.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = hashes
                .chunks_mut(per_thread)
                .enumerate()
                .map(|(i, out)| {
                    let first = (i * per_thread) as u64;
                    scope.spawn(move || hash_range(file, size, chunk_size, first, out))
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")))
            })
        })?;
        Self::from_hashes(size, chunk_size, hashes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Hashes the file at `path` again (all cores, as [`Manifest::from_file`]) and tells whether
    /// every chunk matches, without holding a second manifest in memory.
    pub fn verify_file(&self, path: &Path) -> io::Result<bool> {
        let file = File::open(path)?;
        if file.metadata()?.len() != self.size {
            return Ok(false);
        }
        let count = self.count;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let per_thread = count.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..count.div_ceil(per_thread))
                .map(|i| {
                    let file = &file;
                    let first = i * per_thread;
                    let end = (first + per_thread).min(count);
                    scope.spawn(move || {
                        let mut got = [[0u8; HASH_LEN]; 512];
                        let mut start = first;
                        while start < end {
                            let want = self.hashes(start, (end - start).min(got.len() as u32))?;
                            let got = &mut got[..want.len()];
                            hash_range(file, self.size, self.chunk_size, u64::from(start), got)?;
                            if *got != *want {
                                return Ok(false);
                            }
                            start += want.len() as u32;
                        }
                        Ok(true)
                    })
                })
                .collect();
            let mut all = true;
            for w in workers {
                all &= w
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")))?;
            }
            Ok(all)
        })
    }

    pub fn id(&self) -> FileId {
        self.id
    }

    /// This manifest as the one of a directory of `files` (protocol.txt §2.1): its id becomes
    /// SHA-256 of the manifest's digest followed by the bencoded file list, so the id commits
    /// to every path and length, not only to the chunks.
    pub fn with_files(mut self, files: Arc<[FileEntry]>) -> Manifest {
        self.id = directory_id(&self.digest, &files);
        self.files = Some(files);
        self
    }

    /// A directory's files, in layout order; `None` for a single file.
    pub fn files(&self) -> Option<&Arc<[FileEntry]>> {
        self.files.as_ref()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub fn chunk_count(&self) -> u32 {
        self.count
    }

    /// Hashes of chunks `start..start + count`, cut short at the last chunk.
    pub fn hashes(&self, start: u32, count: u32) -> io::Result<Vec<ChunkHash>> {
        let from = start.min(self.count) as usize;
        let to = (start as usize)
            .saturating_add(count as usize)
            .min(self.count as usize);
        match &self.hashes {
            Hashes::Memory(v) => Ok(v[from..to].to_vec()),
            Hashes::File { file, offset } => {
                let mut bytes = vec![0u8; (to - from) * HASH_LEN];
                file.read_exact_at(&mut bytes, offset + (from * HASH_LEN) as u64)?;
                Ok(bytes.chunks_exact(HASH_LEN).map(to_hash).collect())
            }
        }
    }

    /// Byte offset of chunk `index` in the file.
    pub fn offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.chunk_size)
    }

    /// Length of chunk `index` (only the last one may be short); 0 when out of range.
    pub fn chunk_len(&self, index: u32) -> usize {
        let start = self.offset(index);
        if start >= self.size {
            return 0;
        }
        (self.size - start).min(u64::from(self.chunk_size)) as usize
    }

    /// True when `data` is exactly chunk `index`; errors only when the manifest cannot be read.
    pub fn verify(&self, index: u32, data: &[u8]) -> io::Result<bool> {
        let want = self.hashes(index, 1)?;
        Ok(self.check_run(index, &[data], &want)[0])
    }

    /// For each of `chunks` (chunks `first`, `first + 1`, ...), whether it is exactly the chunk
    /// the manifest describes, given `want`, their hashes from [`Manifest::hashes`]. The run is
    /// hashed as one batch ([`hash_chunks`]); a chunk without a hash in `want` does not match.
    pub fn check_run(&self, first: u32, chunks: &[&[u8]], want: &[ChunkHash]) -> Vec<bool> {
        let mut got = vec![[0u8; HASH_LEN]; chunks.len()];
        hash_chunks(chunks, &mut got);
        chunks
            .iter()
            .zip(&got)
            .enumerate()
            .map(|(k, (data, hash))| {
                data.len() == self.chunk_len(first + k as u32) && want.get(k) == Some(hash)
            })
            .collect()
    }

    /// The first of `chunks` (chunks `first`, `first + 1`, ...) that is not the chunk the
    /// manifest describes, as [`Manifest::check_run`] judges them; `None` when all are.
    pub fn first_mismatch(&self, first: u32, chunks: &[&[u8]], want: &[ChunkHash]) -> Option<u32> {
        let verdicts = self.check_run(first, chunks, want);
        let bad = verdicts.iter().position(|&good| !good)?;
        Some(first + bad as u32)
    }

    /// Writes the concatenated hashes (the form the id is computed over) to `out`.
    pub fn write_hashes(&self, out: &mut impl io::Write) -> io::Result<()> {
        let mut start = 0;
        while start < self.count {
            for h in self.hashes(start, 4096)? {
                out.write_all(&h)?;
            }
            start = start.saturating_add(4096);
        }
        Ok(())
    }
}

fn to_hash(b: &[u8]) -> ChunkHash {
    let mut a = [0u8; HASH_LEN];
    a.copy_from_slice(b);
    a
}

/// Checks that `hashes` hashes describe a `size`-byte file in `chunk_size` chunks; the count.
fn check_geometry(size: u64, chunk_size: u32, hashes: u64) -> Result<u32, ManifestError> {
    check_chunk_size(chunk_size)?;
    let want = chunk_count(size, chunk_size);
    if hashes != want {
        return Err(ManifestError::WrongCount {
            got: hashes,
            want,
            size,
            chunk_size,
        });
    }
    u32::try_from(want).map_err(|_| ManifestError::WrongCount {
        got: hashes,
        want: u64::from(u32::MAX),
        size,
        chunk_size,
    })
}

/// SHA-256 of each of `chunks` into `out` (as long as `chunks`). Chunks are independent
/// messages, so they are hashed side by side in SIMD lanes (`tape-sha256` picks AVX-512, AVX2
/// or interleaved SHA-NI streams at run time): one stream is a serial chain of rounds that
/// leaves the core waiting, and batches of 2048-byte chunks hash about 1.8x as fast as one
/// `sha2` stream on the machines we measure on. Hashing is most of a download's CPU time.
pub fn hash_chunks(chunks: &[&[u8]], out: &mut [ChunkHash]) {
    tape_sha256::hash_many(chunks, out);
}

/// The id of a directory whose manifest has `digest` (SHA-256 of its hashes) and whose files
/// are `files` (protocol.txt §2.1).
pub fn directory_id(digest: &FileId, files: &[FileEntry]) -> FileId {
    let mut h = Sha256::new();
    h.update(digest.0);
    h.update(encode_files(files));
    FileId(h.finalize().into())
}

fn id_of(hashes: &[ChunkHash]) -> FileId {
    let mut h = Sha256::new();
    for c in hashes {
        h.update(c);
    }
    FileId(h.finalize().into())
}

/// Hashes chunks `first..first + out.len()` of `file` into `out`, reading about 1 MiB at a time.
fn hash_range(
    file: &(impl ReadAt + ?Sized),
    size: u64,
    chunk_size: u32,
    first: u64,
    out: &mut [ChunkHash],
) -> io::Result<()> {
    let cs = chunk_size as usize;
    let per_read = (1 << 20) / cs + 1;
    let mut buf = vec![0u8; per_read * cs];
    let mut done = 0usize;
    while done < out.len() {
        let n = per_read.min(out.len() - done);
        let start = (first + done as u64) * u64::from(chunk_size);
        let len = ((n * cs) as u64).min(size - start) as usize;
        file.fill_at(&mut buf[..len], start)?;
        let chunks: Vec<&[u8]> = buf[..len].chunks(cs).collect();
        hash_chunks(&chunks, &mut out[done..done + chunks.len()]);
        metrics().share_bytes_hashed.add(len as u64);
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn file_and_memory_hashing_agree() {
        let data: Vec<u8> = (0..(5 * 2048 + 77)).map(|i| (i * 7 % 251) as u8).collect();
        let dir = std::env::temp_dir().join(format!("manifest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let from_file = Manifest::from_file(&path, 2048).unwrap();
        let from_mem = Manifest::from_data(&data, 2048).unwrap();
        assert_eq!(from_file, from_mem);
        assert_eq!(from_file.chunk_count(), 6);
        assert_eq!(from_file.chunk_len(5), 77);
        assert!(from_file.verify(5, &data[5 * 2048..]).unwrap());
        assert!(!from_file.verify(4, &data[5 * 2048..]).unwrap());
        let mut region = Vec::from(*b"header");
        from_file.write_hashes(&mut region).unwrap();
        std::fs::write(dir.join("m"), &region).unwrap();
        let on_disk = Manifest::from_file_region(
            File::open(dir.join("m")).unwrap(),
            6,
            from_file.size(),
            2048,
        )
        .unwrap();
        assert_eq!(on_disk, from_file);
        assert!(on_disk.verify(5, &data[5 * 2048..]).unwrap());
        assert_eq!(
            on_disk.hashes(4, 10).unwrap(),
            from_file.hashes(4, 2).unwrap()
        );
        assert!(Manifest::from_file_region(
            File::open(dir.join("m")).unwrap(),
            5,
            from_file.size(),
            2048
        )
        .is_err());
        assert!(from_file.verify_file(&path).unwrap());
        let mut bad = data.clone();
        bad[3 * 2048 + 5] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(!from_file.verify_file(&path).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn id_round_trips_and_detects_tampering() {
        let m = Manifest::from_data(b"hello world, in chunks", 4).unwrap();
        let text = m.id().to_string();
        assert_eq!(text.parse::<FileId>().unwrap(), m.id());
        let hashes = m.hashes(0, u32::MAX).unwrap();
        let back = Manifest::from_hashes(m.size(), 4, hashes.clone()).unwrap();
        assert_eq!(back.id(), m.id());
        let mut forged = hashes.clone();
        forged[0][3] ^= 1;
        assert_ne!(
            Manifest::from_hashes(m.size(), 4, forged).unwrap().id(),
            m.id()
        );
        assert!(Manifest::from_hashes(m.size(), 4, hashes[1..].to_vec()).is_err());
        assert!(Manifest::from_hashes(m.size() + 4, 4, hashes).is_err());
        assert!("sha256:zz".parse::<FileId>().is_err());
        assert!("md5:00".parse::<FileId>().is_err());
    }

    proptest::proptest! {
        /// The batched hashing is a different SHA-256 implementation from `sha2`: they must
        /// agree on every length (all padding cases) and batch size (partly filled lanes).
        #[test]
        fn batched_hashes_equal_one_stream_sha256(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..40),
        ) {
            let slices: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
            let mut got = vec![[0u8; HASH_LEN]; slices.len()];
            hash_chunks(&slices, &mut got);
            let want: Vec<ChunkHash> = slices.iter().map(|c| Sha256::digest(c).into()).collect();
            proptest::prop_assert_eq!(got, want);
        }

        /// `check_run` passes exactly the chunks that are the file's, and flags a flipped
        /// byte, a chunk of the wrong length and a chunk the hashes do not cover.
        #[test]
        fn check_run_flags_exactly_the_bad_chunks(
            len in 1usize..(40 * 64),
            first in 0u32..40,
            flip in proptest::option::of((0usize..40, 0usize..64)),
            cut in proptest::option::of(0usize..40),
            missing in 0usize..3,
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
            let m = Manifest::from_data(&data, 64).unwrap();
            let first = first.min(m.chunk_count() - 1);
            let mut chunks: Vec<Vec<u8>> = data[m.offset(first) as usize..].chunks(64).map(<[u8]>::to_vec).collect();
            let mut bad = vec![false; chunks.len()];
            if let Some((k, at)) = flip {
                let k = k % chunks.len();
                let at = at % chunks[k].len();
                chunks[k][at] ^= 0x20;
                bad[k] = true;
            }
            if let Some(k) = cut {
                let k = k % chunks.len();
                chunks[k].pop();
                bad[k] = true;
            }
            let want = m.hashes(first, u32::MAX).unwrap();
            let want = &want[..want.len().saturating_sub(missing)];
            for flag in bad.iter_mut().skip(want.len()) {
                *flag = true;
            }
            let slices: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
            let verdicts = m.check_run(first, &slices, want);
            let expected: Vec<bool> = bad.iter().map(|b| !b).collect();
            proptest::prop_assert_eq!(verdicts, expected);
        }
    }

    #[test]
    fn empty_file_has_no_chunks() {
        let m = Manifest::from_data(b"", 2048).unwrap();
        assert_eq!(m.chunk_count(), 0);
        assert!(Manifest::from_data(b"x", 0).is_err());
    }
}

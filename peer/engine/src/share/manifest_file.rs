//! The on-disk manifest format (`DIR/.peer/NAME.manifest`, `NAME.part.manifest`): a header that
//! records what the file looked like when it was hashed and its geometry, then the hashes.
//!
//! ```text
//! "P2PM" | version u8 (1) | size u64 | mtime_ns u128 | file size u64 | chunk size u32 | hashes
//! ```
//! Integers are big-endian; the hashes are the 32-byte chunk hashes in order, exactly as many
//! as the geometry says. The stamp (size and mtime of the hashed file) makes a cached manifest
//! valid only while the file is unchanged; manifests of downloads carry a zero stamp.
//!
//! [`parse_header`] and [`read_bytes`] are pure (bytes in, value or typed error out); [`read`]
//! is the thin file wrapper the share directory uses, which leaves large manifests in their
//! file instead of memory.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use tracker_proto::MAX_CHUNKS;

use crate::manifest::{chunk_count, ChunkHash, Manifest, ManifestError, HASH_LEN};

use super::disk;

const MANIFEST_MAGIC: &[u8; 4] = b"P2PM";

/// Version of the manifest file format.
pub const MANIFEST_VERSION: u8 = 1;

/// Bytes before the hashes in a manifest file.
pub const MANIFEST_HEAD: usize = 4 + 1 + 8 + 16 + 8 + 4;

/// Manifests up to this many bytes of hashes are kept in memory; larger ones stay in their file.
const IN_MEMORY_MANIFEST: u64 = 64 * 1024;

/// What a complete file looked like when its manifest was cached: a change means rehash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: u128,
}

impl Stamp {
    /// The stamp of manifests that describe no file on disk (downloads).
    pub const NONE: Stamp = Stamp {
        size: 0,
        mtime_ns: 0,
    };

    pub fn of(meta: &fs::Metadata) -> Stamp {
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Stamp {
            size: meta.len(),
            mtime_ns,
        }
    }
}

/// The header of a manifest file: the stamp and the geometry of the file it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub stamp: Stamp,
    pub size: u64,
    pub chunk_size: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; MANIFEST_HEAD] {
        let mut h = [0u8; MANIFEST_HEAD];
        h[..4].copy_from_slice(MANIFEST_MAGIC);
        h[4] = MANIFEST_VERSION;
        h[5..13].copy_from_slice(&self.stamp.size.to_be_bytes());
        h[13..29].copy_from_slice(&self.stamp.mtime_ns.to_be_bytes());
        h[29..37].copy_from_slice(&self.size.to_be_bytes());
        h[37..41].copy_from_slice(&self.chunk_size.to_be_bytes());
        h
    }

    /// Bytes of hashes that must follow this header.
    pub fn hash_bytes(&self) -> u64 {
        chunk_count(self.size, self.chunk_size) * HASH_LEN as u64
    }
}

/// Why bytes are not a manifest file this peer can use.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestFileError {
    #[error("manifest file of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("not a manifest file (no P2PM magic)")]
    Magic,
    #[error("manifest file version {0}; this peer reads version {MANIFEST_VERSION} only")]
    Version(u8),
    #[error("manifest file: {0}")]
    Geometry(#[from] ManifestError),
    #[error("manifest file of {chunks} chunks; a file has at most {MAX_CHUNKS}")]
    TooManyChunks { chunks: u64 },
    #[error("manifest file holds {got} bytes of hashes, its header says {want}")]
    Length { got: u64, want: u64 },
}

/// Reads the header at the start of `bytes`; the hashes that follow are not looked at.
pub fn parse_header(bytes: &[u8]) -> Result<Header, ManifestFileError> {
    if bytes.len() < 5 {
        return Err(ManifestFileError::Short(bytes.len()));
    }
    if &bytes[..4] != MANIFEST_MAGIC {
        return Err(ManifestFileError::Magic);
    }
    if bytes[4] != MANIFEST_VERSION {
        return Err(ManifestFileError::Version(bytes[4]));
    }
    if bytes.len() < MANIFEST_HEAD {
        return Err(ManifestFileError::Short(bytes.len()));
    }
    let be = |r: std::ops::Range<usize>| {
        bytes[r]
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
    };
    let header = Header {
        stamp: Stamp {
            size: be(5..13) as u64,
            mtime_ns: be(13..29),
        },
        size: be(29..37) as u64,
        chunk_size: be(37..41) as u32,
    };
    if header.chunk_size == 0 || header.chunk_size > crate::manifest::MAX_CHUNK_SIZE {
        return Err(ManifestError::BadChunkSize(header.chunk_size).into());
    }
    let chunks = chunk_count(header.size, header.chunk_size);
    if chunks > u64::from(MAX_CHUNKS) {
        return Err(ManifestFileError::TooManyChunks { chunks });
    }
    Ok(header)
}

/// Reads a whole manifest file held in memory.
pub fn read_bytes(bytes: &[u8]) -> Result<(Header, Manifest), ManifestFileError> {
    let header = parse_header(bytes)?;
    let hashes = &bytes[MANIFEST_HEAD..];
    let want = header.hash_bytes();
    if hashes.len() as u64 != want {
        return Err(ManifestFileError::Length {
            got: hashes.len() as u64,
            want,
        });
    }
    let hashes: Vec<ChunkHash> = hashes
        .chunks_exact(HASH_LEN)
        .map(|h| {
            let mut a = [0u8; HASH_LEN];
            a.copy_from_slice(h);
            a
        })
        .collect();
    let manifest = Manifest::from_hashes(header.size, header.chunk_size, hashes)?;
    Ok((header, manifest))
}

/// `path` with `.tmp` appended: where a replacement is written before it is renamed over.
pub(super) fn tmp_beside(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Writes a manifest file durably: header (what the file looked like, its geometry), hashes.
pub(super) fn write(path: &Path, stamp: Stamp, m: &Manifest) -> io::Result<()> {
    let header = Header {
        stamp,
        size: m.size(),
        chunk_size: m.chunk_size(),
    };
    disk::replace(&tmp_beside(path), path, |out| {
        out.write_all(&header.encode())?;
        m.write_hashes(out)
    })
}

/// The header of a manifest file alone (cheap: one small read), if it describes `expect`.
pub(super) fn read_header(path: &Path, expect: Stamp) -> Option<Header> {
    let (file, _) = disk::open_regular(path).ok()?;
    let mut head = [0u8; MANIFEST_HEAD];
    file.read_exact_at(&mut head, 0).ok()?;
    parse_header(&head).ok().filter(|h| h.stamp == expect)
}

/// Opens a manifest file; `None` when it is missing, damaged, not a regular file, or (with
/// `expect`) describes another state of the file than `expect`.
pub(super) fn read(path: &Path, expect: Option<Stamp>) -> Option<Manifest> {
    let (file, meta) = disk::open_regular(path).ok()?;
    let mut head = [0u8; MANIFEST_HEAD];
    file.read_exact_at(&mut head, 0).ok()?;
    let header = match parse_header(&head) {
        Ok(h) => h,
        Err(e) => {
            log::debug!("{}: {e}", path.display());
            return None;
        }
    };
    if expect.is_some_and(|e| e != header.stamp) {
        return None;
    }
    let hash_bytes = meta.len().saturating_sub(MANIFEST_HEAD as u64);
    if hash_bytes != header.hash_bytes() {
        log::debug!(
            "{}: {} bytes of hashes, the header says {}",
            path.display(),
            hash_bytes,
            header.hash_bytes()
        );
        return None;
    }
    if hash_bytes <= IN_MEMORY_MANIFEST {
        let mut bytes = vec![0u8; MANIFEST_HEAD + hash_bytes as usize];
        file.read_exact_at(&mut bytes, 0).ok()?;
        return read_bytes(&bytes).ok().map(|(_, m)| m);
    }
    Manifest::from_file_region(file, MANIFEST_HEAD as u64, header.size, header.chunk_size).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file_bytes(data: &[u8], chunk_size: u32, stamp: Stamp) -> Vec<u8> {
        let m = Manifest::from_data(data, chunk_size).unwrap();
        let mut bytes = Header {
            stamp,
            size: m.size(),
            chunk_size,
        }
        .encode()
        .to_vec();
        m.write_hashes(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn malformed_manifest_files_are_typed_errors() {
        let stamp = Stamp {
            size: 5000,
            mtime_ns: 42,
        };
        let good = file_bytes(&[1u8; 5000], 2048, stamp);
        let (header, m) = read_bytes(&good).unwrap();
        assert_eq!((header.stamp, m.chunk_count()), (stamp, 3));
        assert_eq!(read_bytes(&good[..4]), Err(ManifestFileError::Short(4)));
        assert_eq!(read_bytes(&good[..30]), Err(ManifestFileError::Short(30)));
        let mut bad = good.clone();
        bad[1] = b'X';
        assert_eq!(read_bytes(&bad).unwrap_err(), ManifestFileError::Magic);
        bad = good.clone();
        bad[4] = 9;
        assert_eq!(read_bytes(&bad).unwrap_err(), ManifestFileError::Version(9));
        assert_eq!(
            read_bytes(&good[..good.len() - 1]).unwrap_err(),
            ManifestFileError::Length { got: 95, want: 96 }
        );
        bad = good.clone();
        bad[37..41].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            read_bytes(&bad).unwrap_err(),
            ManifestFileError::Geometry(ManifestError::BadChunkSize(0))
        );
        // A header announcing more chunks than a file may have is refused before any hash is
        // looked at (the hash bytes it would need are never allocated).
        bad = good;
        bad[29..37].copy_from_slice(&u64::MAX.to_be_bytes());
        bad[37..41].copy_from_slice(&1u32.to_be_bytes());
        assert!(matches!(
            read_bytes(&bad).unwrap_err(),
            ManifestFileError::TooManyChunks { .. }
        ));
    }

    #[test]
    fn the_file_reader_checks_the_stamp_and_refuses_links() {
        let root = super::super::tests::tempdir("manifest-file");
        fs::create_dir_all(&root).unwrap();
        let stamp = Stamp {
            size: 10,
            mtime_ns: 7,
        };
        let m = Manifest::from_data(&[3u8; 10_000], 2048).unwrap();
        let path = root.join("f.manifest");
        write(&path, stamp, &m).unwrap();
        assert_eq!(read(&path, Some(stamp)).unwrap(), m);
        assert_eq!(read(&path, None).unwrap(), m);
        assert!(read(&path, Some(Stamp::NONE)).is_none());
        std::os::unix::fs::symlink(&path, root.join("link.manifest")).unwrap();
        assert!(read(&root.join("link.manifest"), None).is_none());
        fs::remove_dir_all(&root).unwrap();
    }

    proptest! {
        #[test]
        fn round_trip(len in 0usize..20_000, chunk_size in 1u32..5000, size in any::<u64>(), mtime in any::<u128>()) {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let stamp = Stamp { size, mtime_ns: mtime };
            let bytes = file_bytes(&data, chunk_size, stamp);
            let (header, m) = read_bytes(&bytes).unwrap();
            prop_assert_eq!(header, Header { stamp, size: len as u64, chunk_size });
            prop_assert_eq!(m, Manifest::from_data(&data, chunk_size).unwrap());
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = data;
            if bytes.len() >= 5 {
                bytes[..5].copy_from_slice(b"P2PM\x01");
            }
            if let Ok((header, m)) = read_bytes(&bytes) {
                prop_assert_eq!(m.size(), header.size);
            }
        }
    }
}

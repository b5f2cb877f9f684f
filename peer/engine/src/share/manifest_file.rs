//! The on-disk manifest format (`DIR/.peer/NAME.manifest`, `NAME.part.manifest`): a header that
//! records what the file looked like when it was hashed and its geometry, then the hashes.
//!
//! ```text
//! "P2PM" | version u8 | size u64 | mtime_ns u128 | file size u64 | chunk size u32 | hashes
//! ```
//! The stamp (size and mtime of the hashed file) makes a cached manifest valid only while the
//! file is unchanged; manifests of downloads carry a zero stamp.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::manifest::Manifest;

use super::{io_err, StoreError, FORMAT_VERSION};

const MANIFEST_MAGIC: &[u8; 4] = b"P2PM";

/// Bytes before the hashes in a manifest file.
pub(super) const MANIFEST_HEAD: u64 = 4 + 1 + 8 + 16 + 8 + 4;

/// Manifests up to this many bytes of hashes are kept in memory; larger ones stay in their file.
const IN_MEMORY_MANIFEST: u64 = 64 * 1024;

/// What a complete file looked like when its manifest was cached: a change means rehash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
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

pub(super) fn header(stamp: Stamp, size: u64, chunk_size: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(MANIFEST_HEAD as usize);
    h.extend_from_slice(MANIFEST_MAGIC);
    h.push(FORMAT_VERSION);
    h.extend_from_slice(&stamp.size.to_be_bytes());
    h.extend_from_slice(&stamp.mtime_ns.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&chunk_size.to_be_bytes());
    h
}

/// `path` with `.tmp` appended: where a replacement is written before it is renamed over.
pub(super) fn tmp_beside(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Writes a manifest file atomically: header (what the file looked like, its geometry), hashes.
pub(super) fn write(path: &Path, stamp: Stamp, m: &Manifest) -> Result<(), StoreError> {
    let tmp = tmp_beside(path);
    let result = (|| {
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        out.write_all(&header(stamp, m.size(), m.chunk_size()))?;
        m.write_hashes(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(io_err(path))
}

/// Opens a manifest file; `None` when it is missing, damaged, or (with `expect`) describes
/// another state of the file than `expect`.
pub(super) fn read(path: &Path, expect: Option<Stamp>) -> Option<Manifest> {
    let file = File::open(path).ok()?;
    let mut head = [0u8; MANIFEST_HEAD as usize];
    file.read_exact_at(&mut head, 0).ok()?;
    if &head[..4] != MANIFEST_MAGIC || head[4] != FORMAT_VERSION {
        return None;
    }
    let stamp = Stamp {
        size: u64::from_be_bytes(head[5..13].try_into().ok()?),
        mtime_ns: u128::from_be_bytes(head[13..29].try_into().ok()?),
    };
    if expect.is_some_and(|e| e != stamp) {
        return None;
    }
    let file_size = u64::from_be_bytes(head[29..37].try_into().ok()?);
    let chunk_size = u32::from_be_bytes(head[37..41].try_into().ok()?);
    let small = file.metadata().ok()?.len() <= MANIFEST_HEAD + IN_MEMORY_MANIFEST;
    let m = Manifest::from_file_region(file, MANIFEST_HEAD, file_size, chunk_size).ok()?;
    if small {
        return Manifest::from_hashes(file_size, chunk_size, m.hashes(0, u32::MAX).ok()?).ok();
    }
    Some(m)
}

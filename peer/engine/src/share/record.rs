//! The resume record (`DIR/.peer/NAME.part.have`): which chunks of `NAME.part` are verified and
//! on disk.
//!
//! ```text
//! "P2PR" | version u8 | file id (32 raw bytes) | chunk count u32 | bitfield (wire layout)
//! ```
//! A record is only believed for the manifest it names (same id and chunk count), so a leftover
//! of another version of the file is never taken for this one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::bitfield::Bitfield;
use crate::manifest::{Manifest, HASH_LEN};

use super::FORMAT_VERSION;

const RECORD_MAGIC: &[u8; 4] = b"P2PR";
const HEAD: usize = 4 + 1 + HASH_LEN + 4;

pub(super) fn encode(manifest: &Manifest, have: &Bitfield) -> Vec<u8> {
    let field = have.as_wire();
    let mut rec = Vec::with_capacity(HEAD + field.len());
    rec.extend_from_slice(RECORD_MAGIC);
    rec.push(FORMAT_VERSION);
    rec.extend_from_slice(&manifest.id().0);
    rec.extend_from_slice(&manifest.chunk_count().to_be_bytes());
    rec.extend_from_slice(field);
    rec
}

/// The verified chunks a record lists, if it is a well-formed record of `manifest`.
pub(super) fn parse(bytes: &[u8], manifest: &Manifest) -> Option<Bitfield> {
    if bytes.len() < HEAD || &bytes[..4] != RECORD_MAGIC || bytes[4] != FORMAT_VERSION {
        return None;
    }
    if bytes[5..5 + HASH_LEN] != manifest.id().0 {
        return None;
    }
    let n = u32::from_be_bytes(bytes[5 + HASH_LEN..HEAD].try_into().ok()?);
    if n != manifest.chunk_count() {
        return None;
    }
    Bitfield::from_wire(&bytes[HEAD..], n).ok()
}

/// Replaces `dest` with `data` so that a crash leaves either the old or the new content.
pub(super) fn write_atomically(tmp: &Path, dest: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(tmp)?;
    f.write_all(data)?;
    f.sync_data()?;
    fs::rename(tmp, dest)
}

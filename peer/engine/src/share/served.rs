//! What the server hands out of one file: a complete file, or the verified part of a download
//! in progress as its resume record lists it.

use std::sync::Arc;

use crate::bitfield::Bitfield;
use crate::manifest::Manifest;
use crate::storage::Storage;

/// A file this peer can serve right now: its manifest, an open handle (a file, or a directory's files), and which chunks are
/// verified (`None`: all of them).
#[derive(Debug)]
pub struct Served {
    pub manifest: Arc<Manifest>,
    pub storage: Storage,
    pub have: Option<Bitfield>,
    /// Shared in place: the user may change the file under us at any time, so every chunk
    /// read is checked against the manifest before it is sent.
    pub in_place: bool,
}

impl Served {
    /// True when chunk `index` is verified and may be sent.
    pub fn has(&self, index: u32) -> bool {
        index < self.manifest.chunk_count() && self.have.as_ref().is_none_or(|h| h.get(index))
    }

    /// The BITFIELD of this file.
    pub fn bitfield(&self) -> Bitfield {
        match &self.have {
            Some(h) => h.clone(),
            None => Bitfield::full(self.manifest.chunk_count()),
        }
    }
}

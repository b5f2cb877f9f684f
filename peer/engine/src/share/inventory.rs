//! What the share directory holds, read from disk alone: complete files and unfinished
//! downloads with their resume records. `peer status` shows this without a running peer, and
//! the console starts from it before adding the live figures of its own transfers.

use std::fs;

use crate::bitfield::Bitfield;
use crate::chunking;
use crate::manifest::{chunk_count, MAX_CHUNK_SIZE};
use crate::name::{ShareName, PART_SUFFIX};
use crate::storage::{files_progress, FileProgress};

use super::manifest_file::{self, Stamp};
use super::record::{PartStamp, Standing};
use super::ShareDir;

/// One file of the share directory as the disk shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub name: ShareName,
    pub size: u64,
    pub chunk_size: u32,
    /// Chunks verified on disk (all of them for a complete file).
    pub chunks_have: u64,
    pub chunks_total: u64,
    /// False for an unfinished download (`NAME.part` with its resume record).
    pub complete: bool,
    /// A directory's files and how much of each is verified; empty for a single file.
    pub files: Vec<FileProgress>,
}

impl ShareDir {
    /// Every file of the directory, sorted by name: complete ones, then unfinished downloads
    /// with the chunks their resume record lists. Never hashes anything, so it is quick on any
    /// directory.
    pub fn inventory(&self) -> Vec<LocalFile> {
        let mut files = Vec::new();
        match self.complete_files() {
            Ok(names) => {
                for name in names {
                    let (size, chunk_size, per_file) =
                        match fs::symlink_metadata(self.complete_path(&name)) {
                            // The chunk size of its cached manifest (a download keeps the one it
                            // was shared with), else the one it would be hashed with.
                            Ok(meta) if meta.is_file() => (
                                meta.len(),
                                manifest_file::read_header(
                                    &self.manifest_path(&name),
                                    Stamp::of(&meta),
                                )
                                .map_or_else(
                                    || {
                                        chunking::for_file(meta.len(), None)
                                            .unwrap_or(MAX_CHUNK_SIZE)
                                    },
                                    |h| h.chunk_size,
                                ),
                                Vec::new(),
                            ),
                            // Shared in place: listed while it is unchanged, as it is served.
                            _ => match self.placed_unchanged(&name) {
                                Ok(p) => {
                                    let layout = p.layout();
                                    let size = layout.iter().map(|f| f.length).sum::<u64>();
                                    let total = chunk_count(size, p.chunk_size);
                                    let all = Bitfield::full(u32::try_from(total).unwrap_or(0));
                                    let per_file = files_progress(&layout, p.chunk_size, &all);
                                    let size = if p.is_dir() { size } else { p.stamp.size };
                                    (size, p.chunk_size, per_file)
                                }
                                Err(_) => continue,
                            },
                        };
                    let total = chunk_count(size, chunk_size);
                    files.push(LocalFile {
                        name,
                        size,
                        chunk_size,
                        chunks_have: total,
                        chunks_total: total,
                        complete: true,
                        files: per_file,
                    });
                }
            }
            Err(e) => log::warn!("listing {}: {e}", self.root().display()),
        }
        if let Ok(entries) = fs::read_dir(self.root()) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(name) = file_name
                    .to_str()
                    .and_then(|n| n.strip_suffix(PART_SUFFIX))
                    .and_then(|n| ShareName::new(n).ok())
                else {
                    continue;
                };
                let Some(manifest) = self.partial_manifest(&name) else {
                    continue;
                };
                let stamp = match manifest.files() {
                    Some(_) => self
                        .open_part(&name, &manifest)
                        .and_then(|s| s.stamp().ok()),
                    None => entry
                        .metadata()
                        .ok()
                        .filter(|m| m.is_file())
                        .map(|m| PartStamp::of(&m)),
                };
                let Some(stamp) = stamp else { continue };
                // What the record lists of this very .part, even if it changed since: a later
                // download may re-check them, but they are what the disk shows now.
                let have = self
                    .record_of(&name, &manifest)
                    .filter(|r| r.standing(&stamp) != Standing::Other)
                    .map_or_else(|| Bitfield::empty(manifest.chunk_count()), |r| r.have);
                let per_file = manifest.files().map_or_else(Vec::new, |f| {
                    files_progress(f, manifest.chunk_size(), &have)
                });
                files.push(LocalFile {
                    name,
                    size: manifest.size(),
                    chunk_size: manifest.chunk_size(),
                    chunks_have: u64::from(have.count()),
                    chunks_total: u64::from(manifest.chunk_count()),
                    complete: false,
                    files: per_file,
                });
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        files
    }
}

//! What the share directory holds, read from disk alone: complete files and unfinished
//! downloads with their resume records. `peer status` shows this without a running peer, and
//! the console starts from it before adding the live figures of its own transfers.

use std::fs;

use crate::manifest::chunk_count;
use crate::stats::{FileState, FileStats};
use crate::store::{check_name, ShareDir};
use crate::wire::bits;

/// Suffix of a download in progress (`NAME.part`), as the store names them.
const PART_SUFFIX: &str = ".part";

/// Every file of `dir`, sorted by name: complete ones as `complete_state` (seeding when a daemon
/// serves the directory, idle otherwise), unfinished downloads as stopped with the chunks their
/// resume record lists. Never hashes anything, so it is quick on any directory.
pub fn local_files(dir: &ShareDir, complete_state: FileState) -> Vec<FileStats> {
    let mut files = Vec::new();
    match dir.complete_files() {
        Ok(names) => {
            for name in names {
                let Ok(meta) = fs::metadata(dir.complete_path(&name)) else {
                    continue;
                };
                let chunk_size = crate::manifest::DEFAULT_CHUNK_SIZE;
                let total = chunk_count(meta.len(), chunk_size);
                files.push(FileStats {
                    size: meta.len(),
                    chunk_size: u64::from(chunk_size),
                    chunks_have: total,
                    chunks_total: total,
                    ..idle(name, complete_state.clone())
                });
            }
        }
        Err(e) => log::warn!("listing {}: {e}", dir.root().display()),
    }
    if let Ok(entries) = fs::read_dir(dir.root()) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(PART_SUFFIX)) else {
                continue;
            };
            if check_name(name).is_err() {
                continue;
            }
            let Some(manifest) = dir.partial_manifest(name) else {
                continue;
            };
            let have = dir
                .read_record(name, &manifest)
                .map(|record| {
                    (0..manifest.chunk_count())
                        .filter(|&i| bits::get(&record, i))
                        .count() as u64
                })
                .unwrap_or(0);
            files.push(FileStats {
                size: manifest.size(),
                chunk_size: u64::from(manifest.chunk_size()),
                chunks_have: have,
                chunks_total: u64::from(manifest.chunk_count()),
                ..idle(name.to_owned(), FileState::Stopped)
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

fn idle(name: String, state: FileState) -> FileStats {
    FileStats {
        name,
        size: 0,
        chunk_size: 0,
        chunks_have: 0,
        chunks_total: 0,
        downloaded: 0,
        uploaded: 0,
        down_rate: 0.0,
        up_rate: 0.0,
        peers: 0,
        state,
    }
}

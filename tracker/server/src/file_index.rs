//! Which file name a file id (`sha256:` of the manifest) is tracked under, for front ends that
//! name files by content (the HTTP API's `/api/files/{file_hash}/peers`, seed 000).
//!
//! The store is keyed by name and lists no ids, so the tracker learns the pair from every
//! description that passes through it (flag 4 shares, flag 7 queries, peer-list headers) from
//! either front end. An entry may outlive its file: a lookup is always confirmed by querying
//! the name, and a stale entry is dropped then. The map is bounded: past `cap` entries it
//! starts over and is refilled by what passes next.

use std::collections::HashMap;

use parking_lot::RwLock;
use tracker_proto::{FileId, FileInfo, FileName};

pub struct FileIndex {
    /// Read-mostly: every peer-list answer checks its file here, and only a new pair writes.
    names: RwLock<HashMap<FileId, FileName>>,
    cap: usize,
}

impl FileIndex {
    pub fn new(cap: usize) -> Self {
        FileIndex {
            names: RwLock::new(HashMap::new()),
            cap: cap.max(1),
        }
    }

    /// Remembers that `info`'s id is tracked under its name.
    pub fn learn(&self, info: &FileInfo) {
        if self.names.read().get(&info.id()) == Some(info.name()) {
            return;
        }
        let mut names = self.names.write();
        if names.len() >= self.cap {
            names.clear();
        }
        names.insert(info.id(), info.name().clone());
    }

    /// The name `id` was last seen under, if any.
    pub fn name_of(&self, id: &FileId) -> Option<FileName> {
        self.names.read().get(id).cloned()
    }

    /// Drops `id`'s entry when it still names `name` (found stale by a lookup).
    pub fn forget(&self, id: &FileId, name: &FileName) {
        let mut names = self.names.write();
        if names.get(id) == Some(name) {
            names.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, id: u8) -> FileInfo {
        FileInfo::new(FileName::new(name).unwrap(), 10, 2048, FileId([id; 32])).unwrap()
    }

    #[test]
    fn learns_forgets_and_stays_bounded() {
        let index = FileIndex::new(2);
        index.learn(&info("a", 1));
        index.learn(&info("b", 2));
        assert_eq!(index.name_of(&FileId([1; 32])).unwrap().as_str(), "a");
        index.forget(&FileId([1; 32]), &FileName::new("other").unwrap());
        assert!(index.name_of(&FileId([1; 32])).is_some());
        index.forget(&FileId([1; 32]), &FileName::new("a").unwrap());
        assert!(index.name_of(&FileId([1; 32])).is_none());
        index.learn(&info("c", 3));
        index.learn(&info("d", 4));
        assert!(index.names.read().len() <= 2);
        assert_eq!(index.name_of(&FileId([4; 32])).unwrap().as_str(), "d");
    }
}

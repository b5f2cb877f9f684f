//! The chunks a swarm verified, in order, for the HAVE frames each connection forwards.
//!
//! Every connection reads the log at its own pace, so the log cannot be a channel that drops
//! what one reader has seen; kept whole it would cost 4 bytes per chunk for the life of the swarm
//! (8 MiB for a 4 GiB file). Each connection's position is kept here, and the entries every
//! connection has read are dropped as the log grows, so it holds only what the slowest
//! connection has yet to forward.

use std::collections::HashMap;

use super::choker::LinkId;

/// Entries below which the log is never compacted: dropping a few is not worth the scan.
const COMPACT_MIN: usize = 1024;

#[derive(Debug)]
pub(super) struct HaveLog {
    /// Entries from position `start` on; positions count every entry ever appended.
    entries: Vec<u32>,
    start: usize,
    /// Where each connection's next read begins.
    cursors: HashMap<LinkId, usize>,
    /// Length at which the next compaction is tried: doubles while a slow reader holds the
    /// log, so appends stay amortized O(1).
    compact_at: usize,
}

impl Default for HaveLog {
    fn default() -> Self {
        HaveLog {
            entries: Vec::new(),
            start: 0,
            cursors: HashMap::new(),
            compact_at: COMPACT_MIN,
        }
    }
}

impl HaveLog {
    /// Position after the last entry: changes whenever chunks are appended.
    pub fn end(&self) -> usize {
        self.start + self.entries.len()
    }

    /// A connection starts reading at the current end: what was verified before is in the
    /// BITFIELD it was sent.
    pub fn join(&mut self, link: LinkId) {
        let end = self.end();
        self.cursors.insert(link, end);
    }

    pub fn leave(&mut self, link: LinkId) {
        self.cursors.remove(&link);
    }

    pub fn append(&mut self, chunks: &[u32]) {
        self.entries.extend_from_slice(chunks);
        if self.entries.len() >= self.compact_at {
            self.compact();
        }
    }

    /// The entries `link` has not read yet (none for a connection that never joined).
    pub fn take_unread(&mut self, link: LinkId) -> Vec<u32> {
        let end = self.end();
        let Some(cursor) = self.cursors.get_mut(&link) else {
            return Vec::new();
        };
        let from = *cursor - self.start;
        *cursor = end;
        self.entries[from..].to_vec()
    }

    /// Drops the entries every connection has read.
    fn compact(&mut self) {
        let end = self.end();
        let read_by_all = self.cursors.values().copied().min().unwrap_or(end);
        self.entries.drain(..read_by_all - self.start);
        self.start = read_by_all;
        self.entries.shrink_to(self.entries.len().max(COMPACT_MIN));
        self.compact_at = (2 * self.entries.len()).max(COMPACT_MIN);
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_reads_every_entry_appended_after_it_joined_once() {
        let mut log = HaveLog::default();
        log.append(&[1, 2]);
        log.join(7);
        log.append(&[3, 4]);
        log.join(8);
        log.append(&[5]);
        assert_eq!(log.take_unread(7), vec![3, 4, 5]);
        assert_eq!(log.take_unread(8), vec![5]);
        assert_eq!(log.take_unread(7), Vec::<u32>::new());
        assert_eq!(log.take_unread(9), Vec::<u32>::new());
        assert_eq!(log.end(), 5);
    }

    #[test]
    fn entries_read_by_every_connection_are_dropped() {
        let mut log = HaveLog::default();
        log.join(1);
        log.join(2);
        for chunk in 0..10_000u32 {
            log.append(&[chunk]);
            if chunk % 100 == 99 {
                assert_eq!(log.take_unread(1).len(), 100);
                assert_eq!(log.take_unread(2).len(), 100);
            }
        }
        assert!(log.held() <= 2 * COMPACT_MIN, "{} held", log.held());
        assert_eq!(log.end(), 10_000);
    }

    #[test]
    fn a_slow_connection_keeps_what_it_has_not_read() {
        let mut log = HaveLog::default();
        log.join(1);
        log.join(2);
        let all: Vec<u32> = (0..5_000).collect();
        for chunk in &all {
            log.append(&[*chunk]);
            log.take_unread(1);
        }
        assert_eq!(log.take_unread(2), all);
        log.leave(2);
        for chunk in &all {
            log.append(&[*chunk]);
            log.take_unread(1);
        }
        assert!(log.held() <= COMPACT_MIN, "{} held", log.held());
    }

    #[test]
    fn without_connections_nothing_is_kept() {
        let mut log = HaveLog::default();
        for chunk in 0..3 * COMPACT_MIN as u32 {
            log.append(&[chunk]);
        }
        assert!(log.held() < COMPACT_MIN);
        log.join(1);
        log.append(&[42]);
        assert_eq!(log.take_unread(1), vec![42]);
    }
}

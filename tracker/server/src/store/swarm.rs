//! One file's swarm: which peers hold which of its chunks, kept compactly. A seeder costs its
//! map entry and nothing more; a partial peer costs one bit per chunk of the file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use bitvec::prelude::{BitBox, BitVec, Lsb0};
use tracker_proto::{
    AnnounceEvent, ChunkRanges, FileInfo, FileSummary, ListedFile, PeerChunks, PeerEntry, PeerKey,
    SwarmStats, Transfer,
};

use super::kept::Kept;
use super::{Page, PeerSink, StoreError};
use crate::host::Host;

/// Longest chunk-range text listed for a partial peer; beyond it the peer is listed as
/// `have=<count>` so one peer cannot fill a page (protocol.txt §1.3).
pub const MAX_LISTED_RANGES_BYTES: usize = 200;

/// The chunks of a partial peer, with their count kept up to date so neither "is it complete
/// now?" nor listing needs a scan of the whole field.
pub(super) struct Bitfield {
    bits: BitBox<u64, Lsb0>,
    count: u32,
}

impl Bitfield {
    pub(super) fn new(chunks: u32) -> Self {
        Bitfield {
            bits: BitVec::repeat(false, chunks as usize).into_boxed_bitslice(),
            count: 0,
        }
    }

    pub(super) fn set(&mut self, ranges: &ChunkRanges) {
        for &(s, e) in ranges.ranges() {
            let range = &mut self.bits[s as usize..=e as usize];
            let before = range.count_ones() as u32;
            range.fill(true);
            self.count += (e - s + 1) - before;
        }
    }

    pub(super) fn complete(&self) -> bool {
        self.count as usize == self.bits.len()
    }

    /// The field as 64-bit words, chunk 0 in the lowest bit of the first (what a state file
    /// keeps).
    pub(super) fn words(&self) -> &[u64] {
        self.bits.as_raw_slice()
    }

    /// The field of a file of `chunks` chunks from [`Bitfield::words`]; `None` when there are
    /// not as many words as such a field has, or bits are set past the last chunk.
    pub(super) fn from_words(chunks: u32, words: Vec<u64>) -> Option<Self> {
        if words.len() != (chunks as usize).div_ceil(64) {
            return None;
        }
        let mut bits = BitVec::<u64, Lsb0>::from_vec(words);
        if bits[chunks as usize..].any() {
            return None;
        }
        bits.truncate(chunks as usize);
        let count = bits.count_ones() as u32;
        Some(Bitfield {
            bits: bits.into_boxed_bitslice(),
            count,
        })
    }

    pub(super) fn count(&self) -> u32 {
        self.count
    }

    /// Heap bytes held (what the bitfield budget counts).
    pub(super) fn cost(&self) -> usize {
        self.bits.as_raw_slice().len() * 8
    }
}

/// What one peer holds of a file.
pub(super) enum Holding {
    Seeder,
    Partial(Bitfield),
    /// A downloader that joined with flag 1 or 2 and reported nothing yet: listed `have=0`,
    /// costing no bitfield until its first chunk.
    Empty,
}

impl Holding {
    /// Bitfield bytes held (what the bitfield budgets count).
    pub(super) fn cost(&self) -> usize {
        match self {
            Holding::Partial(bits) => bits.cost(),
            Holding::Seeder | Holding::Empty => 0,
        }
    }
}

/// A tracked file and its swarm, in address order (the order listings page through).
pub(super) struct FileEntry {
    pub(super) info: FileInfo,
    /// Changed only through [`FileEntry::swarm_mut`], which forgets the kept page.
    swarm: BTreeMap<SocketAddr, Holding>,
    /// The lines of the last text page listed, while the swarm stays as it is.
    kept: Kept,
    /// How many of `swarm` are seeders, so counts need no scan.
    pub(super) seeders: u32,
    /// The host that shared it first: the file counts against that host's quota while tracked.
    pub(super) creator: Host,
    /// How many of `swarm` each host has (the per-host share of one swarm).
    members: HashMap<Host, u32>,
    /// Completed downloads and bytes moved (protocol.txt §1.2).
    pub(super) stats: SwarmStats,
    /// Per row that reported byte counters: the counters already added to `stats`, so a
    /// repeated report adds only what grew. Goes with the row.
    pub(super) counted: HashMap<SocketAddr, Counted>,
    /// Who completed a download of this file, so each counts once however often it says so.
    pub(super) completers: HashSet<Completer>,
}

/// A row's byte counters already added to its swarm's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counted {
    pub(super) up: u64,
    pub(super) down: u64,
}

/// Who completed a download: its key (the same across restarts and address changes), or its
/// address when it sends none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Completer {
    Key(PeerKey),
    Addr(SocketAddr),
}

impl Completer {
    pub(super) fn of(key: Option<PeerKey>, addr: SocketAddr) -> Completer {
        key.map_or(Completer::Addr(addr), Completer::Key)
    }
}

impl FileEntry {
    pub(super) fn new(info: FileInfo, creator: Host) -> Self {
        FileEntry {
            info,
            swarm: BTreeMap::new(),
            kept: Kept::default(),
            seeders: 0,
            creator,
            members: HashMap::new(),
            stats: SwarmStats::default(),
            counted: HashMap::new(),
            completers: HashSet::new(),
        }
    }

    /// Refuses a report that cannot be counted: a counter below what the row reported before
    /// (counters restart only with `event=started`), or more bytes left than the file has.
    /// Nothing is changed by a refused request, so this runs before any of its changes.
    pub(super) fn check_transfer(
        &self,
        addr: SocketAddr,
        transfer: &Transfer,
    ) -> Result<(), StoreError> {
        if let Some(left) = transfer.left.filter(|&l| l > self.info.size()) {
            return Err(StoreError::Counters(format!(
                "left={left} is more than the {} bytes of {}",
                self.info.size(),
                self.info.name()
            )));
        }
        if transfer.event == Some(AnnounceEvent::Started) {
            return Ok(());
        }
        let before = self.counted.get(&addr).copied().unwrap_or_default();
        for (field, now, was) in [
            ("up", transfer.up, before.up),
            ("down", transfer.down, before.down),
        ] {
            if let Some(now) = now.filter(|&n| n < was) {
                return Err(StoreError::Counters(format!(
                    "{field}={now} is less than the {was} this peer reported before (counters \
                     restart only with event=started)"
                )));
            }
        }
        Ok(())
    }

    /// Adds a checked report of the row at `addr` to the figures: what its counters grew by
    /// (`event=started` makes them its new base and adds nothing), and a completed download
    /// once per `who`. Returns whether the figures changed. `max_completers` bounds memory: a
    /// swarm remembers that many completers; later ones are counted without being remembered.
    pub(super) fn record_transfer(
        &mut self,
        addr: SocketAddr,
        who: Completer,
        transfer: &Transfer,
        max_completers: usize,
    ) -> bool {
        let before = self.stats;
        if transfer.has_counters() {
            let base = self.counted.entry(addr).or_default();
            let up = transfer.up.unwrap_or(base.up);
            let down = transfer.down.unwrap_or(base.down);
            if transfer.event != Some(AnnounceEvent::Started) {
                self.stats
                    .add(up.saturating_sub(base.up), down.saturating_sub(base.down));
            }
            *base = Counted { up, down };
        } else if transfer.event == Some(AnnounceEvent::Started) {
            self.counted.remove(&addr);
        }
        if transfer.event == Some(AnnounceEvent::Completed) && !self.completers.contains(&who) {
            if self.completers.len() < max_completers {
                self.completers.insert(who);
            }
            self.stats.completed = self.stats.completed.saturating_add(1);
        }
        self.stats != before
    }

    /// Every row, in address order.
    pub(super) fn swarm(&self) -> &BTreeMap<SocketAddr, Holding> {
        &self.swarm
    }

    /// The rows, to change: whatever the caller does, the kept page no longer shows them.
    pub(super) fn swarm_mut(&mut self) -> &mut BTreeMap<SocketAddr, Holding> {
        self.kept.forget();
        &mut self.swarm
    }

    /// Offers the swarm from `offset` to `sink`, leaving out `asker` (offsets still count
    /// it); the page's head is the file's summary, `next` the offset of the next page if the
    /// sink was full before the swarm ended. A text page listing for no asker gets the kept
    /// lines when they are for its offset and budget, and is kept otherwise.
    pub(super) fn list(
        &mut self,
        offset: u32,
        asker: Option<SocketAddr>,
        sink: &mut dyn PeerSink,
    ) -> Page<FileSummary> {
        let summary = self.summary();
        let keep = asker.is_none();
        if keep {
            if let Some(next) = sink.page(&summary).and_then(|p| self.kept.reuse(offset, p)) {
                return Page {
                    head: summary,
                    next,
                };
            }
        }
        let mut next = None;
        for (i, (addr, holding)) in self.swarm.iter().enumerate().skip(offset as usize) {
            if Some(*addr) == asker {
                continue;
            }
            let chunks = match holding {
                Holding::Seeder => PeerChunks::Seeder,
                Holding::Partial(bits) => listed_chunks(bits),
                Holding::Empty => PeerChunks::Count(0),
            };
            let entry = PeerEntry {
                addr: *addr,
                chunks,
            };
            if !sink.push(&summary, &entry) {
                next = Some(i as u32);
                break;
            }
        }
        if keep {
            if let Some(page) = sink.page(&summary) {
                self.kept.keep(offset, page, next);
            }
        }
        Page {
            head: summary,
            next,
        }
    }

    pub(super) fn members(&self, host: Host) -> usize {
        self.members.get(&host).map_or(0, |&n| n as usize)
    }

    pub(super) fn add_member(&mut self, host: Host) {
        *self.members.entry(host).or_default() += 1;
    }

    pub(super) fn remove_member(&mut self, host: Host) {
        if let Some(n) = self.members.get_mut(&host) {
            *n -= 1;
            if *n == 0 {
                self.members.remove(&host);
            }
        }
    }

    /// The header of flags 1 and 2 (without the figures, protocol.txt §1.3).
    pub(super) fn summary(&self) -> FileSummary {
        FileSummary {
            info: self.info.clone(),
            seeders: self.seeders,
            leechers: (self.swarm.len() as u32).saturating_sub(self.seeders),
            stats: None,
        }
    }

    /// Flag 7's answer: the summary with the figures.
    pub(super) fn described(&self) -> FileSummary {
        FileSummary {
            stats: Some(self.stats),
            ..self.summary()
        }
    }

    /// The file's catalogue line (flag 6).
    pub(super) fn listed(&self) -> ListedFile {
        ListedFile {
            name: self.info.name().clone(),
            size: self.info.size(),
            chunks: self.info.chunks(),
            seeders: self.seeders,
            leechers: (self.swarm.len() as u32).saturating_sub(self.seeders),
            stats: Some(self.stats),
        }
    }
}

/// Chunk ranges of a partial peer, or its count when they would not fit a page. Stops as soon
/// as every held chunk is accounted for, so a peer holding the first chunks of a big file costs
/// a few words of scanning, not the whole field.
pub(super) fn listed_chunks(field: &Bitfield) -> PeerChunks {
    let (words, len) = (field.words(), field.bits.len());
    let mut ranges = Vec::new();
    let mut text_len = 0;
    let mut found = 0usize;
    let mut pos = 0;
    while found < field.count as usize {
        let Some(start) = next_bit(words, len, pos, true) else {
            break;
        };
        let end = next_bit(words, len, start, false).unwrap_or(len) - 1;
        text_len += if start == end { 8 } else { 16 };
        if text_len > MAX_LISTED_RANGES_BYTES {
            return PeerChunks::Count(field.count);
        }
        ranges.push((start as u32, end as u32));
        found += end - start + 1;
        pos = end + 1;
    }
    match ChunkRanges::from_sorted(ranges) {
        Some(r) => PeerChunks::Ranges(r),
        None => PeerChunks::Count(0),
    }
}

/// The first bit at or after `from` that is `value`, below `len`, a word at a time (bitvec's
/// `first_one` on a re-sliced field was a fifth of a flag 1 page's cost).
fn next_bit(words: &[u64], len: usize, from: usize, value: bool) -> Option<usize> {
    let flip = if value { 0 } else { u64::MAX };
    let mut w = from / 64;
    let mut word = (words.get(w)? ^ flip) & (u64::MAX << (from % 64));
    loop {
        if word != 0 {
            let i = w * 64 + word.trailing_zeros() as usize;
            return (i < len).then_some(i);
        }
        w += 1;
        word = words.get(w)? ^ flip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfield_counts_overlapping_reports_once() {
        let mut b = Bitfield::new(1000);
        b.set(&"0-9,500".parse().unwrap());
        b.set(&"5-14,500,999".parse().unwrap());
        assert_eq!(b.count, 17);
        assert_eq!(b.count as usize, b.bits.count_ones());
        assert_eq!(
            listed_chunks(&b),
            PeerChunks::Ranges("0-14,500,999".parse().unwrap())
        );
        b.set(&ChunkRanges::full(1000).unwrap());
        assert!(b.complete());
    }

    proptest::proptest! {
        /// The ranges listed are exactly the bits set, whatever the field's size and pattern.
        #[test]
        fn listed_ranges_are_the_bits_set(chunks in 1u32..700, seed in proptest::collection::vec((0u32..700, 0u32..90), 0..12)) {
            let mut b = Bitfield::new(chunks);
            for (start, len) in seed {
                let s = start % chunks;
                let e = (s + len).min(chunks - 1);
                b.set(&ChunkRanges::from_sorted(vec![(s, e)]).unwrap());
            }
            let set: Vec<u32> = (0..chunks).filter(|&i| b.bits[i as usize]).collect();
            match listed_chunks(&b) {
                PeerChunks::Ranges(r) => proptest::prop_assert_eq!(r.iter().collect::<Vec<_>>(), set),
                PeerChunks::Count(n) => {
                    proptest::prop_assert_eq!(n as usize, set.len());
                    proptest::prop_assert!(set.is_empty() || set.len() > 12, "a short list was counted: {:?}", set);
                }
                PeerChunks::Seeder => proptest::prop_assert!(false, "a bitfield listed as a seeder"),
            }
        }
    }
}

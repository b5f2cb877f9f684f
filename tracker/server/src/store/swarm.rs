//! One file's swarm: which peers hold which of its chunks, kept compactly. A seeder costs its
//! map entry and nothing more; a partial peer costs one bit per chunk of the file.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use bitvec::prelude::{BitBox, BitVec, Lsb0};
use tracker_proto::{ChunkRanges, FileInfo, FileSummary, PeerChunks};

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
    pub(super) swarm: BTreeMap<SocketAddr, Holding>,
    /// How many of `swarm` are seeders, so counts need no scan.
    pub(super) seeders: u32,
    /// The host that shared it first: the file counts against that host's quota while tracked.
    pub(super) creator: Host,
    /// How many of `swarm` each host has (the per-host share of one swarm).
    members: HashMap<Host, u32>,
}

impl FileEntry {
    pub(super) fn new(info: FileInfo, creator: Host) -> Self {
        FileEntry {
            info,
            swarm: BTreeMap::new(),
            seeders: 0,
            creator,
            members: HashMap::new(),
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

    pub(super) fn summary(&self) -> FileSummary {
        FileSummary {
            info: self.info.clone(),
            seeders: self.seeders,
            leechers: (self.swarm.len() as u32).saturating_sub(self.seeders),
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

//! The in-memory store (the default backend): every file's swarm, each peer's liveness and
//! identity key, and the row and bitfield budgets of [`Limits`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracker_proto::{
    ChunkRanges, FileInfo, FileName, FileSummary, ListedFile, PeerChunks, PeerEntry, PeerKey,
};

use super::swarm::{listed_chunks, Bitfield, FileEntry, Holding};
use super::{Announcer, Limits, Page, StoreError, SwarmStore};

/// One serving address: its identity key, where its UDP socket answers (for PUNCH; none yet
/// when only `punch=keep` announcements were heard), when it was last heard from, and the
/// swarms it is in (so leaving or expiring touches only those).
struct PeerState {
    key: Option<PeerKey>,
    udp: Option<SocketAddr>,
    last_seen: Instant,
    files: Vec<FileName>,
}

/// The in-memory store (the default backend).
pub struct MemoryStore {
    limits: Limits,
    ttl: Duration,
    files: BTreeMap<FileName, FileEntry>,
    peers: HashMap<SocketAddr, PeerState>,
    keys: HashMap<PeerKey, SocketAddr>,
    bitfield_bytes: usize,
    rows: usize,
}

impl MemoryStore {
    pub fn new(ttl: Duration, limits: Limits) -> Self {
        MemoryStore {
            limits,
            ttl,
            files: BTreeMap::new(),
            peers: HashMap::new(),
            keys: HashMap::new(),
            bitfield_bytes: 0,
            rows: 0,
        }
    }

    /// Bytes held in partial-peer bitfields (what `--max-bitfield-mib` bounds).
    pub fn bitfield_bytes(&self) -> usize {
        self.bitfield_bytes
    }

    fn alive(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.peers
            .get(addr)
            .is_some_and(|p| now.saturating_duration_since(p.last_seen) <= self.ttl)
    }

    /// Makes `who` the current identity at `who.addr`, moving the rows of its key from an old
    /// address, and refreshes it. Returns whether the peer is known now (it is unless `create`
    /// is false and nothing was found).
    fn resolve(&mut self, who: Announcer, now: Instant, create: bool) -> bool {
        if let Some(key) = who.key {
            if let Some(&old) = self.keys.get(&key) {
                if old != who.addr {
                    self.move_peer(old, who.addr);
                }
            }
        }
        let peer = match self.peers.entry(who.addr) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if !create => return false,
            Entry::Vacant(e) => e.insert(PeerState {
                key: None,
                udp: who.udp,
                last_seen: now,
                files: Vec::new(),
            }),
        };
        if peer.key != who.key {
            if let Some(old_key) = peer.key.take() {
                self.keys.remove(&old_key);
            }
            if let Some(key) = who.key {
                self.keys.insert(key, who.addr);
            }
            peer.key = who.key;
        }
        if who.udp.is_some() {
            peer.udp = who.udp;
        }
        peer.last_seen = now;
        true
    }

    /// Renames peer `old` to `new` in every swarm (an address change of one key).
    fn move_peer(&mut self, old: SocketAddr, new: SocketAddr) {
        // Whoever was at `new` is being taken over by this key (same IP, see §1.7).
        self.remove_peer(new, None);
        let Some(state) = self.peers.remove(&old) else {
            return;
        };
        for name in &state.files {
            if let Some(entry) = self.files.get_mut(name) {
                if let Some(holding) = entry.swarm.remove(&old) {
                    entry.swarm.insert(new, holding);
                }
            }
        }
        if let Some(key) = state.key {
            self.keys.insert(key, new);
        }
        self.peers.insert(new, state);
    }

    /// Removes `addr` from one swarm, or from all swarms and forgets it.
    fn remove_peer(&mut self, addr: SocketAddr, only: Option<&FileName>) {
        let Some(state) = self.peers.get_mut(&addr) else {
            return;
        };
        let names: Vec<FileName> = match only {
            Some(name) => {
                let Some(i) = state.files.iter().position(|f| f == name) else {
                    return;
                };
                vec![state.files.swap_remove(i)]
            }
            None => std::mem::take(&mut state.files),
        };
        if only.is_none() {
            if let Some(state) = self.peers.remove(&addr) {
                if let Some(key) = state.key {
                    self.keys.remove(&key);
                }
            }
        }
        for name in names {
            let Some(entry) = self.files.get_mut(&name) else {
                continue;
            };
            match entry.swarm.remove(&addr) {
                Some(Holding::Seeder) => {
                    entry.seeders -= 1;
                    self.rows -= 1;
                }
                Some(Holding::Partial(bits)) => {
                    self.bitfield_bytes -= bits.cost();
                    self.rows -= 1;
                }
                None => {}
            }
            if entry.swarm.is_empty() {
                self.files.remove(&name);
            }
        }
    }

    /// Adds `addr` to `name`'s swarm bookkeeping on the peer side.
    fn note_membership(&mut self, addr: SocketAddr, name: &FileName) {
        if let Some(state) = self.peers.get_mut(&addr) {
            if !state.files.contains(name) {
                state.files.push(name.clone());
            }
        }
    }

    /// Drops a peer that holds nothing anywhere (a refused first announcement).
    fn forget_if_empty(&mut self, addr: SocketAddr) {
        if self.peers.get(&addr).is_some_and(|p| p.files.is_empty()) {
            self.remove_peer(addr, None);
        }
    }
}

impl SwarmStore for MemoryStore {
    fn share(&mut self, who: Announcer, info: &FileInfo, now: Instant) -> Result<(), StoreError> {
        match self.files.get(info.name()) {
            Some(entry) if entry.info != *info => {
                return Err(StoreError::HashMismatch(info.name().clone()))
            }
            Some(entry)
                if entry.swarm.len() >= self.limits.max_peers_per_file
                    && !entry.swarm.contains_key(&who.addr) =>
            {
                return Err(StoreError::Capacity("peers per file"))
            }
            None if self.files.len() >= self.limits.max_files => {
                return Err(StoreError::Capacity("files"))
            }
            _ => {}
        }
        let new_row = self
            .files
            .get(info.name())
            .is_none_or(|e| !e.swarm.contains_key(&who.addr));
        if new_row && self.rows >= self.limits.max_rows {
            return Err(StoreError::Capacity("rows"));
        }
        self.resolve(who, now, true);
        let entry = self
            .files
            .entry(info.name().clone())
            .or_insert_with(|| FileEntry {
                info: info.clone(),
                swarm: BTreeMap::new(),
                seeders: 0,
            });
        match entry.swarm.insert(who.addr, Holding::Seeder) {
            Some(Holding::Seeder) => {}
            Some(Holding::Partial(bits)) => {
                self.bitfield_bytes -= bits.cost();
                entry.seeders += 1;
            }
            None => {
                entry.seeders += 1;
                self.rows += 1;
            }
        }
        self.note_membership(who.addr, info.name());
        Ok(())
    }

    fn report(
        &mut self,
        who: Announcer,
        file: &FileName,
        chunks: &ChunkRanges,
        now: Instant,
    ) -> Result<(), StoreError> {
        let entry = self
            .files
            .get(file)
            .ok_or_else(|| StoreError::FileNotFound(file.clone()))?;
        let total = entry.info.chunks();
        if chunks.max() >= total {
            return Err(StoreError::ChunkOutOfRange {
                chunk: chunks.max(),
                chunks: total,
            });
        }
        // The key may move this peer; look the peer up under its final address afterwards.
        self.resolve(who, now, true);
        let budget_left = self
            .limits
            .max_bitfield_bytes
            .saturating_sub(self.bitfield_bytes);
        let max_peers = self.limits.max_peers_per_file;
        let rows_full = self.rows >= self.limits.max_rows;
        let Some(entry) = self.files.get_mut(file) else {
            self.forget_if_empty(who.addr);
            return Err(StoreError::FileNotFound(file.clone()));
        };
        let joined = !entry.swarm.contains_key(&who.addr);
        if joined {
            let cost = (total as usize).div_ceil(64) * 8;
            if entry.swarm.len() >= max_peers {
                self.forget_if_empty(who.addr);
                return Err(StoreError::Capacity("peers per file"));
            }
            if cost > budget_left {
                self.forget_if_empty(who.addr);
                return Err(StoreError::Capacity("bitfield memory"));
            }
            if rows_full {
                self.forget_if_empty(who.addr);
                return Err(StoreError::Capacity("rows"));
            }
            let bits = Bitfield::new(total);
            self.bitfield_bytes += bits.cost();
            entry.swarm.insert(who.addr, Holding::Partial(bits));
            self.rows += 1;
        }
        let mut freed = 0;
        if let Some(holding) = entry.swarm.get_mut(&who.addr) {
            if let Holding::Partial(bits) = holding {
                bits.set(chunks);
                if bits.complete() {
                    freed = bits.cost();
                    *holding = Holding::Seeder;
                    entry.seeders += 1;
                }
            }
        }
        self.bitfield_bytes -= freed;
        if joined {
            self.note_membership(who.addr, file);
        }
        Ok(())
    }

    fn exit(&mut self, who: Announcer, file: Option<&FileName>, now: Instant) {
        // Resolving first lets a key whose address changed leave under its current rows.
        if self.resolve(who, now, false) {
            self.remove_peer(who.addr, file);
            self.forget_if_empty(who.addr);
        }
    }

    fn heartbeat(&mut self, who: Announcer, now: Instant) -> Result<u32, StoreError> {
        if !self.resolve(who, now, false) {
            return Err(StoreError::PeerNotFound(who.addr));
        }
        let files = self.peers.get(&who.addr).map_or(0, |p| p.files.len());
        Ok(files as u32)
    }

    fn touch_key(&mut self, key: &PeerKey, now: Instant) {
        if let Some(addr) = self.keys.get(key) {
            if let Some(peer) = self.peers.get_mut(addr) {
                peer.last_seen = now;
            }
        }
    }

    fn peers(
        &self,
        file: &FileName,
        offset: u32,
        fits: &mut dyn FnMut(&PeerEntry) -> bool,
    ) -> Result<Page<FileSummary>, StoreError> {
        let entry = self
            .files
            .get(file)
            .ok_or_else(|| StoreError::FileNotFound(file.clone()))?;
        let mut next = None;
        for (i, (addr, holding)) in entry.swarm.iter().enumerate().skip(offset as usize) {
            let chunks = match holding {
                Holding::Seeder => PeerChunks::Seeder,
                Holding::Partial(bits) => listed_chunks(bits),
            };
            if matches!(chunks, PeerChunks::Count(0)) {
                continue;
            }
            if !fits(&PeerEntry {
                addr: *addr,
                chunks,
            }) {
                next = Some(i as u32);
                break;
            }
        }
        Ok(Page {
            head: entry.summary(),
            next,
        })
    }

    fn files(&self, offset: u32, fits: &mut dyn FnMut(&ListedFile) -> bool) -> Page<u32> {
        let mut next = None;
        for (i, entry) in self.files.values().enumerate().skip(offset as usize) {
            let s = entry.summary();
            let listed = ListedFile {
                name: s.info.name().clone(),
                size: s.info.size(),
                chunks: s.info.chunks(),
                seeders: s.seeders,
                leechers: s.leechers,
            };
            if !fits(&listed) {
                next = Some(i as u32);
                break;
            }
        }
        Page {
            head: self.files.len() as u32,
            next,
        }
    }

    fn query(&self, file: &FileName) -> Result<FileSummary, StoreError> {
        self.files
            .get(file)
            .map(FileEntry::summary)
            .ok_or_else(|| StoreError::FileNotFound(file.clone()))
    }

    fn punch_target(
        &self,
        file: &FileName,
        target: SocketAddr,
        now: Instant,
    ) -> Result<SocketAddr, StoreError> {
        let entry = self
            .files
            .get(file)
            .ok_or_else(|| StoreError::FileNotFound(file.clone()))?;
        if !entry.swarm.contains_key(&target) || !self.alive(&target, now) {
            return Err(StoreError::PeerNotFound(target));
        }
        self.peers
            .get(&target)
            .and_then(|p| p.udp)
            .ok_or(StoreError::PeerNotFound(target))
    }

    fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        let expired: Vec<SocketAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_seen) > ttl)
            .map(|(a, _)| *a)
            .collect();
        for addr in expired {
            self.remove_peer(addr, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_proto::FileId;

    fn who(addr: &str, key: Option<u8>) -> Announcer {
        let addr: SocketAddr = addr.parse().unwrap();
        Announcer {
            addr,
            key: key.map(|k| PeerKey([k; 16])),
            udp: Some(addr),
        }
    }

    fn info(name: &str, chunks: u32) -> FileInfo {
        FileInfo::new(
            FileName::new(name).unwrap(),
            u64::from(chunks) * 2048,
            2048,
            FileId([1; 32]),
        )
        .unwrap()
    }

    fn listing(store: &MemoryStore, name: &str) -> Vec<PeerEntry> {
        let mut out = Vec::new();
        store
            .peers(&FileName::new(name).unwrap(), 0, &mut |p| {
                out.push(p.clone());
                true
            })
            .unwrap();
        out
    }

    #[test]
    fn keep_punch_path_announcements_never_move_where_punches_go() {
        let now = Instant::now();
        let mut s = MemoryStore::new(Duration::from_secs(90), Limits::default());
        let f = info("a", 4);
        let name = f.name().clone();
        // A one-shot command shares for a daemon that has no rows yet: no return path at all,
        // so a punch towards it fails at once instead of going to a socket about to close.
        let mut one_shot = who("10.0.0.1:6881", Some(7));
        one_shot.udp = None;
        s.share(one_shot, &f, now).unwrap();
        assert_eq!(
            s.punch_target(&name, one_shot.addr, now),
            Err(StoreError::PeerNotFound(one_shot.addr))
        );
        // The daemon's own announcement sets it; later one-shot ones leave it alone.
        let mut daemon = who("10.0.0.1:6881", Some(7));
        daemon.udp = Some("10.0.0.1:40000".parse().unwrap());
        s.heartbeat(daemon, now).unwrap();
        s.report(one_shot, &name, &"0-1".parse().unwrap(), now)
            .unwrap();
        s.share(one_shot, &f, now).unwrap();
        assert_eq!(
            s.punch_target(&name, daemon.addr, now),
            Ok(daemon.udp.unwrap())
        );
    }

    #[test]
    fn partial_peer_becomes_seeder_and_frees_its_bitfield() {
        let now = Instant::now();
        let mut s = MemoryStore::new(Duration::from_secs(90), Limits::default());
        let f = info("a", 100);
        s.share(who("10.0.0.1:1", None), &f, now).unwrap();
        let name = f.name().clone();
        s.report(
            who("10.0.0.2:1", None),
            &name,
            &"0-49".parse().unwrap(),
            now,
        )
        .unwrap();
        assert_eq!(s.bitfield_bytes(), 16);
        let l = listing(&s, "a");
        assert_eq!(l[1].chunks, PeerChunks::Ranges("0-49".parse().unwrap()));
        s.report(
            who("10.0.0.2:1", None),
            &name,
            &"50-99".parse().unwrap(),
            now,
        )
        .unwrap();
        assert_eq!(s.bitfield_bytes(), 0);
        assert_eq!(s.query(&name).unwrap().seeders, 2);
        assert_eq!(
            s.report(who("10.0.0.2:1", None), &name, &"100".parse().unwrap(), now),
            Err(StoreError::ChunkOutOfRange {
                chunk: 100,
                chunks: 100
            })
        );
    }

    #[test]
    fn scattered_chunks_are_listed_as_a_count() {
        let now = Instant::now();
        let mut s = MemoryStore::new(Duration::from_secs(90), Limits::default());
        let f = info("a", 1000);
        s.share(who("10.0.0.1:1", None), &f, now).unwrap();
        let odd = ChunkRanges::from_indices((1..1000).step_by(2)).unwrap();
        s.report(who("10.0.0.2:1", None), f.name(), &odd, now)
            .unwrap();
        assert_eq!(listing(&s, "a")[1].chunks, PeerChunks::Count(500));
    }

    #[test]
    fn key_moves_rows_and_expiry_frees_them() {
        let t0 = Instant::now();
        let mut s = MemoryStore::new(Duration::from_secs(90), Limits::default());
        let f = info("a", 10);
        s.share(who("10.0.0.1:1", Some(7)), &f, t0).unwrap();
        assert_eq!(s.heartbeat(who("10.0.0.9:2", Some(7)), t0), Ok(1));
        let l = listing(&s, "a");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].addr, "10.0.0.9:2".parse().unwrap());
        assert_eq!(
            s.heartbeat(who("10.0.0.1:1", None), t0),
            Err(StoreError::PeerNotFound("10.0.0.1:1".parse().unwrap()))
        );
        let later = t0 + Duration::from_secs(91);
        s.expire(later);
        assert!(s.query(f.name()).is_err());
        assert!(s.peers.is_empty() && s.keys.is_empty());
    }

    #[test]
    fn limits_refuse_new_rows() {
        let now = Instant::now();
        let limits = Limits {
            max_files: 1,
            max_peers_per_file: 1,
            max_rows: 10,
            max_bitfield_bytes: 0,
        };
        let mut s = MemoryStore::new(Duration::from_secs(90), limits);
        s.share(who("10.0.0.1:1", None), &info("a", 10), now)
            .unwrap();
        assert_eq!(
            s.share(who("10.0.0.1:1", None), &info("b", 10), now),
            Err(StoreError::Capacity("files"))
        );
        assert_eq!(
            s.share(who("10.0.0.2:1", None), &info("a", 10), now),
            Err(StoreError::Capacity("peers per file"))
        );
        let mut other = info("a", 10);
        other = FileInfo::new(other.name().clone(), 7, 2048, FileId([1; 32])).unwrap();
        assert!(matches!(
            s.share(who("10.0.0.1:1", None), &other, now),
            Err(StoreError::HashMismatch(_))
        ));
        assert_eq!(s.peers.len(), 1);
    }

    #[test]
    fn the_row_cap_bounds_all_swarms_and_frees_on_exit() {
        let now = Instant::now();
        let limits = Limits {
            max_rows: 3,
            ..Limits::default()
        };
        let mut s = MemoryStore::new(Duration::from_secs(90), limits);
        s.share(who("10.0.0.1:1", None), &info("a", 10), now)
            .unwrap();
        s.share(who("10.0.0.1:1", None), &info("b", 10), now)
            .unwrap();
        let a = FileName::new("a").unwrap();
        s.report(who("10.0.0.2:1", Some(1)), &a, &"1".parse().unwrap(), now)
            .unwrap();
        assert_eq!(
            s.report(who("10.0.0.3:1", None), &a, &"1".parse().unwrap(), now),
            Err(StoreError::Capacity("rows"))
        );
        assert_eq!(
            s.share(who("10.0.0.3:1", None), &info("c", 10), now),
            Err(StoreError::Capacity("rows"))
        );
        // Existing rows still change; a key move keeps the count.
        s.report(who("10.0.0.2:1", Some(1)), &a, &"2".parse().unwrap(), now)
            .unwrap();
        assert_eq!(s.heartbeat(who("10.0.0.4:1", Some(1)), now), Ok(1));
        assert_eq!(s.rows, 3);
        s.exit(who("10.0.0.1:1", None), None, now);
        assert_eq!(s.rows, 1);
        s.share(who("10.0.0.3:1", None), &info("c", 10), now)
            .unwrap();
        assert_eq!(s.rows, 2);
        assert!(s.peers.contains_key(&"10.0.0.3:1".parse().unwrap()));
    }
}

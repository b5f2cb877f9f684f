//! The in-memory store (the default backend): every file's swarm, each peer's liveness and
//! identity key, the global caps of [`Limits`] and each host's share of them ([`Quotas`]).
//!
//! Every row change goes through `insert_row`, `set_holding` and `remove_row`, and every peer
//! through `add_peer` and `remove_peer`, so the counters the caps and quotas read (rows,
//! bitfield bytes, per-host usage, per-swarm members) cannot drift from the swarms.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracker_proto::{
    ChunkRanges, FileInfo, FileName, FileSummary, ListedFile, PeerChunks, PeerEntry, PeerKey,
};

use super::quota::{HostTable, Usage};
use super::swarm::{listed_chunks, Bitfield, FileEntry, Holding};
use super::{Announcer, Limits, Page, Quotas, StoreError, SwarmStore};
use crate::host::Host;

/// One serving address: its identity key, where its UDP socket answers (for PUNCH; none yet
/// when only `punch=keep` announcements were heard), the host its rows count against, when it
/// was last heard from, and the swarms it is in (so leaving or expiring touches only those).
struct PeerState {
    key: Option<PeerKey>,
    udp: Option<SocketAddr>,
    host: Host,
    last_seen: Instant,
    files: Vec<FileName>,
}

/// The in-memory store (the default backend).
pub struct MemoryStore {
    limits: Limits,
    quotas: Quotas,
    ttl: Duration,
    files: BTreeMap<FileName, FileEntry>,
    peers: HashMap<SocketAddr, PeerState>,
    keys: HashMap<PeerKey, SocketAddr>,
    hosts: HostTable,
    bitfield_bytes: usize,
    rows: usize,
}

impl MemoryStore {
    pub fn new(ttl: Duration, limits: Limits) -> Self {
        MemoryStore {
            quotas: Quotas::new(&limits),
            limits,
            ttl,
            files: BTreeMap::new(),
            peers: HashMap::new(),
            keys: HashMap::new(),
            hosts: HostTable::default(),
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

    /// Makes `who` the current identity at `who.addr` and refreshes it: moves the rows of its
    /// key from an old address, charges them to the announcing host, and creates the peer when
    /// `create`. Returns whether the peer is known now. Refuses (protocol.txt §1.7) when
    /// `who.addr`, or the address its key moves to, belongs to a peer with another key.
    fn resolve(&mut self, who: Announcer, now: Instant, create: bool) -> Result<bool, StoreError> {
        let host = who.host();
        if let Some(holder) = self.peers.get(&who.addr) {
            if holder.key.is_some() && holder.key != who.key {
                return Err(StoreError::Forbidden(who.addr));
            }
        }
        if let Some(key) = who.key {
            if let Some(&old) = self.keys.get(&key) {
                if old != who.addr {
                    self.check_rehome(old, host)?;
                    self.move_peer(old, who.addr);
                }
            }
        }
        if !self.peers.contains_key(&who.addr) {
            if !create {
                return Ok(false);
            }
            if self.peers.len() >= self.limits.max_peers {
                return Err(StoreError::Capacity("peers"));
            }
            self.quotas.check(self.hosts.usage(host), Usage::PORT)?;
            self.add_peer(who, now);
        }
        self.check_rehome(who.addr, host)?;
        self.rehome(who.addr, host);
        let Some(peer) = self.peers.get_mut(&who.addr) else {
            return Ok(false);
        };
        if peer.key.is_none() {
            if let Some(key) = who.key {
                peer.key = Some(key);
                self.keys.insert(key, who.addr);
            }
        }
        if who.udp.is_some() {
            peer.udp = who.udp;
        }
        peer.last_seen = now;
        Ok(true)
    }

    fn add_peer(&mut self, who: Announcer, now: Instant) {
        let host = who.host();
        self.hosts.add(host, Usage::PORT);
        self.peers.insert(
            who.addr,
            PeerState {
                key: None,
                udp: who.udp,
                host,
                last_seen: now,
                files: Vec::new(),
            },
        );
    }

    /// What the peer at `addr` holds, as a host's usage (its port, rows and bitfields).
    fn usage_of(&self, addr: SocketAddr) -> Usage {
        let Some(state) = self.peers.get(&addr) else {
            return Usage::default();
        };
        let bitfield_bytes = state
            .files
            .iter()
            .filter_map(|name| self.files.get(name)?.swarm.get(&addr))
            .map(Holding::cost)
            .sum();
        Usage {
            files: 0,
            rows: state.files.len(),
            ports: 1,
            bitfield_bytes,
        }
    }

    /// Whether the peer at `addr` may be charged to `host` from now on (a key that moved to
    /// another IP, or a LAN peer announced from another source under `--trust-ip-field`).
    fn check_rehome(&self, addr: SocketAddr, host: Host) -> Result<(), StoreError> {
        let Some(state) = self.peers.get(&addr) else {
            return Ok(());
        };
        if state.host == host {
            return Ok(());
        }
        self.quotas
            .check(self.hosts.usage(host), self.usage_of(addr))?;
        let crowded = state.files.iter().any(|name| {
            self.files
                .get(name)
                .is_some_and(|e| e.members(host) >= self.quotas.peers_per_file)
        });
        if crowded {
            return Err(StoreError::HostQuota("peers in one swarm"));
        }
        Ok(())
    }

    /// Charges the peer at `addr` to `host` (after [`MemoryStore::check_rehome`]).
    fn rehome(&mut self, addr: SocketAddr, host: Host) {
        // The common case, every announcement from the same host, costs one lookup.
        if self.peers.get(&addr).is_none_or(|s| s.host == host) {
            return;
        }
        let usage = self.usage_of(addr);
        let Some(state) = self.peers.get_mut(&addr) else {
            return;
        };
        let old = std::mem::replace(&mut state.host, host);
        self.hosts.sub(old, usage);
        self.hosts.add(host, usage);
        for name in &state.files {
            if let Some(entry) = self.files.get_mut(name) {
                entry.remove_member(old);
                entry.add_member(host);
            }
        }
    }

    /// Renames peer `old` to `new` in every swarm (an address change of one key). A keyless
    /// peer at `new` is taken over (its rows go); the caller has refused a keyed one.
    fn move_peer(&mut self, old: SocketAddr, new: SocketAddr) {
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
        let host = state.host;
        let names: Vec<FileName> = match only {
            Some(name) => {
                let Some(i) = state.files.iter().position(|f| f == name) else {
                    return;
                };
                vec![state.files.swap_remove(i)]
            }
            None => std::mem::take(&mut state.files),
        };
        for name in names {
            self.remove_row(&name, addr, host);
        }
        if only.is_none() {
            if let Some(state) = self.peers.remove(&addr) {
                self.hosts.sub(host, Usage::PORT);
                if let Some(key) = state.key {
                    self.keys.remove(&key);
                }
            }
        }
    }

    /// Drops a peer that holds nothing anywhere (a refused first announcement).
    fn forget_if_empty(&mut self, addr: SocketAddr) {
        if self.peers.get(&addr).is_some_and(|p| p.files.is_empty()) {
            self.remove_peer(addr, None);
        }
    }

    /// Whether the peer at `addr` (of `host`) may get a new row in `name`'s swarm, which need not
    /// exist yet.
    fn check_new_row(&self, name: &FileName, host: Host) -> Result<(), StoreError> {
        if self.rows >= self.limits.max_rows {
            return Err(StoreError::Capacity("rows"));
        }
        if let Some(entry) = self.files.get(name) {
            if entry.swarm.len() >= self.limits.max_peers_per_file {
                return Err(StoreError::Capacity("peers per file"));
            }
            if entry.members(host) >= self.quotas.peers_per_file {
                return Err(StoreError::HostQuota("peers in one swarm"));
            }
        }
        self.quotas.check(self.hosts.usage(host), Usage::ROW)
    }

    /// Whether `host` may hold `bytes` more of bitfields.
    fn check_bitfield(&self, host: Host, bytes: usize) -> Result<(), StoreError> {
        if bytes
            > self
                .limits
                .max_bitfield_bytes
                .saturating_sub(self.bitfield_bytes)
        {
            return Err(StoreError::Capacity("bitfield memory"));
        }
        self.quotas
            .check(self.hosts.usage(host), Usage::bitfield(bytes))
    }

    /// Adds the peer at `addr` to `name`'s swarm (which must exist) holding `holding`.
    fn insert_row(&mut self, name: &FileName, addr: SocketAddr, holding: Holding) {
        let Some(state) = self.peers.get_mut(&addr) else {
            return;
        };
        let Some(entry) = self.files.get_mut(name) else {
            return;
        };
        let host = state.host;
        let cost = holding.cost();
        if matches!(holding, Holding::Seeder) {
            entry.seeders += 1;
        }
        entry.swarm.insert(addr, holding);
        entry.add_member(host);
        state.files.push(name.clone());
        self.rows += 1;
        self.bitfield_bytes += cost;
        self.hosts.add(host, Usage::bitfield(cost));
        self.hosts.add(host, Usage::ROW);
    }

    /// Replaces what the peer at `addr` holds in `name`'s swarm.
    fn set_holding(&mut self, name: &FileName, addr: SocketAddr, holding: Holding) {
        let Some(host) = self.peers.get(&addr).map(|p| p.host) else {
            return;
        };
        let Some(entry) = self.files.get_mut(name) else {
            return;
        };
        let new_cost = holding.cost();
        let seeder = matches!(holding, Holding::Seeder);
        let Some(old) = entry.swarm.insert(addr, holding) else {
            return;
        };
        let old_cost = old.cost();
        entry.seeders =
            entry.seeders + u32::from(seeder) - u32::from(matches!(old, Holding::Seeder));
        self.bitfield_bytes = self.bitfield_bytes + new_cost - old_cost;
        self.hosts.sub(host, Usage::bitfield(old_cost));
        self.hosts.add(host, Usage::bitfield(new_cost));
    }

    /// Takes the row of `addr` (of `host`) out of `name`'s swarm, dropping the file when it was
    /// the last. The peer's own list of files is the caller's to update.
    fn remove_row(&mut self, name: &FileName, addr: SocketAddr, host: Host) {
        let Some(entry) = self.files.get_mut(name) else {
            return;
        };
        let Some(holding) = entry.swarm.remove(&addr) else {
            return;
        };
        let cost = holding.cost();
        if matches!(holding, Holding::Seeder) {
            entry.seeders -= 1;
        }
        entry.remove_member(host);
        self.rows -= 1;
        self.bitfield_bytes -= cost;
        self.hosts.sub(host, Usage::bitfield(cost));
        self.hosts.sub(host, Usage::ROW);
        if entry.swarm.is_empty() {
            let creator = entry.creator;
            self.files.remove(name);
            self.hosts.sub(creator, Usage::FILE);
        }
    }

    /// A fresh bitfield of a file of `chunks` chunks holding `chunks_held`, or a seeder mark
    /// when that is every chunk.
    fn holding_of(chunks: u32, chunks_held: &ChunkRanges) -> Holding {
        let mut bits = Bitfield::new(chunks);
        bits.set(chunks_held);
        if bits.complete() {
            Holding::Seeder
        } else {
            Holding::Partial(bits)
        }
    }
}

impl SwarmStore for MemoryStore {
    fn share(&mut self, who: Announcer, info: &FileInfo, now: Instant) -> Result<(), StoreError> {
        let name = info.name();
        let host = who.host();
        match self.files.get(name) {
            Some(entry) if entry.info != *info => {
                return Err(StoreError::HashMismatch(name.clone()))
            }
            Some(_) => {}
            None if self.files.len() >= self.limits.max_files => {
                return Err(StoreError::Capacity("files"))
            }
            None => self.quotas.check(self.hosts.usage(host), Usage::FILE)?,
        }
        self.resolve(who, now, true)?;
        let in_swarm = self
            .files
            .get(name)
            .is_some_and(|e| e.swarm.contains_key(&who.addr));
        if in_swarm {
            self.set_holding(name, who.addr, Holding::Seeder);
            return Ok(());
        }
        if let Err(e) = self.check_new_row(name, host) {
            self.forget_if_empty(who.addr);
            return Err(e);
        }
        if !self.files.contains_key(name) {
            self.files
                .insert(name.clone(), FileEntry::new(info.clone(), host));
            self.hosts.add(host, Usage::FILE);
        }
        self.insert_row(name, who.addr, Holding::Seeder);
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
        self.resolve(who, now, true)?;
        let host = who.host();
        let Some(entry) = self.files.get_mut(file) else {
            self.forget_if_empty(who.addr);
            return Err(StoreError::FileNotFound(file.clone()));
        };
        let cost = (total as usize).div_ceil(64) * 8;
        match entry.swarm.get_mut(&who.addr) {
            Some(Holding::Seeder) => Ok(()),
            Some(Holding::Partial(bits)) => {
                bits.set(chunks);
                if bits.complete() {
                    self.set_holding(file, who.addr, Holding::Seeder);
                }
                Ok(())
            }
            // A joined downloader's first chunks: its bitfield is made now.
            Some(Holding::Empty) => {
                self.check_bitfield(host, cost)?;
                self.set_holding(file, who.addr, Self::holding_of(total, chunks));
                Ok(())
            }
            None => {
                let allowed = self
                    .check_new_row(file, host)
                    .and_then(|()| self.check_bitfield(host, cost));
                if let Err(e) = allowed {
                    self.forget_if_empty(who.addr);
                    return Err(e);
                }
                self.insert_row(file, who.addr, Self::holding_of(total, chunks));
                Ok(())
            }
        }
    }

    fn join(&mut self, who: Announcer, file: &FileName, now: Instant) -> Result<(), StoreError> {
        if !self.files.contains_key(file) {
            return Err(StoreError::FileNotFound(file.clone()));
        }
        // The key may move this peer; look the peer up under its final address afterwards.
        self.resolve(who, now, true)?;
        let Some(entry) = self.files.get(file) else {
            self.forget_if_empty(who.addr);
            return Err(StoreError::FileNotFound(file.clone()));
        };
        if entry.swarm.contains_key(&who.addr) {
            return Ok(());
        }
        if let Err(e) = self.check_new_row(file, who.host()) {
            self.forget_if_empty(who.addr);
            return Err(e);
        }
        self.insert_row(file, who.addr, Holding::Empty);
        Ok(())
    }

    fn exit(
        &mut self,
        who: Announcer,
        file: Option<&FileName>,
        now: Instant,
    ) -> Result<(), StoreError> {
        // Resolving first lets a key whose address changed leave under its current rows.
        if self.resolve(who, now, false)? {
            self.remove_peer(who.addr, file);
            self.forget_if_empty(who.addr);
        }
        Ok(())
    }

    fn heartbeat(&mut self, who: Announcer, now: Instant) -> Result<u32, StoreError> {
        if !self.resolve(who, now, false)? {
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
        asker: Option<SocketAddr>,
        fits: &mut dyn FnMut(&PeerEntry) -> bool,
    ) -> Result<Page<FileSummary>, StoreError> {
        let entry = self
            .files
            .get(file)
            .ok_or_else(|| StoreError::FileNotFound(file.clone()))?;
        let mut next = None;
        for (i, (addr, holding)) in entry.swarm.iter().enumerate().skip(offset as usize) {
            if Some(*addr) == asker {
                continue;
            }
            let chunks = match holding {
                Holding::Seeder => PeerChunks::Seeder,
                Holding::Partial(bits) => listed_chunks(bits),
                Holding::Empty => PeerChunks::Count(0),
            };
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
            source: addr,
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
            .peers(&FileName::new(name).unwrap(), 0, None, &mut |p| {
                out.push(p.clone());
                true
            })
            .unwrap();
        out
    }

    /// Recomputes every counter from the swarms and compares: what the caps and quotas read
    /// must never drift from what is stored.
    fn assert_consistent(s: &MemoryStore) {
        let mut rows = 0;
        let mut bitfield = 0;
        let mut usage: HashMap<Host, Usage> = HashMap::new();
        for (name, entry) in &s.files {
            assert!(!entry.swarm.is_empty(), "empty file {name:?} kept");
            usage.entry(entry.creator).or_default().files += 1;
            let mut members: HashMap<Host, usize> = HashMap::new();
            let mut seeders = 0;
            for (addr, holding) in &entry.swarm {
                let peer = s.peers.get(addr).expect("row of an unknown peer");
                assert!(peer.files.contains(name), "peer does not list {name:?}");
                *members.entry(peer.host).or_default() += 1;
                let u = usage.entry(peer.host).or_default();
                u.rows += 1;
                u.bitfield_bytes += holding.cost();
                rows += 1;
                bitfield += holding.cost();
                seeders += u32::from(matches!(holding, Holding::Seeder));
            }
            assert_eq!(entry.seeders, seeders);
            for (host, n) in members {
                assert_eq!(entry.members(host), n);
            }
        }
        for (addr, peer) in &s.peers {
            usage.entry(peer.host).or_default().ports += 1;
            for name in &peer.files {
                assert!(s.files[name].swarm.contains_key(addr));
            }
            if let Some(key) = peer.key {
                assert_eq!(s.keys.get(&key), Some(addr));
            }
        }
        assert_eq!(
            s.keys.len(),
            s.peers.values().filter(|p| p.key.is_some()).count()
        );
        assert_eq!((s.rows, s.bitfield_bytes), (rows, bitfield));
        assert_eq!(s.hosts.hosts(), usage.len());
        for (host, u) in usage {
            assert_eq!(s.hosts.usage(host), u, "{host:?}");
        }
    }

    fn from(addr: &str, source: &str, key: Option<u8>) -> Announcer {
        Announcer {
            addr: addr.parse().unwrap(),
            key: key.map(|k| PeerKey([k; 16])),
            source: source.parse().unwrap(),
            udp: Some(source.parse().unwrap()),
        }
    }

    /// The motivating attack: one host filling `--max-files` locked everyone else out.
    #[test]
    fn one_host_holds_only_its_share_of_every_cap() {
        let now = Instant::now();
        let limits = Limits {
            max_files: 100,
            max_peers: 30,
            max_peers_per_file: 20,
            max_rows: 1000,
            max_bitfield_bytes: 1000,
            ip_share_percent: 10,
        };
        let mut s = MemoryStore::new(Duration::from_secs(90), limits);
        for i in 0..10 {
            s.share(who("10.0.0.1:1", None), &info(&format!("f{i}"), 10), now)
                .unwrap();
        }
        assert_eq!(
            s.share(who("10.0.0.1:1", None), &info("f10", 10), now),
            Err(StoreError::HostQuota("files created"))
        );
        s.share(who("10.0.0.2:1", None), &info("f10", 10), now)
            .unwrap();
        // Two peers of one host per swarm, three serving addresses per host.
        let f0 = FileName::new("f0").unwrap();
        let f1 = FileName::new("f1").unwrap();
        let f2 = FileName::new("f2").unwrap();
        s.join(who("10.0.0.3:1", None), &f0, now).unwrap();
        s.join(who("10.0.0.3:2", None), &f0, now).unwrap();
        assert_eq!(
            s.join(who("10.0.0.3:3", None), &f0, now),
            Err(StoreError::HostQuota("peers in one swarm"))
        );
        s.join(who("10.0.0.3:3", None), &f1, now).unwrap();
        assert_eq!(
            s.join(who("10.0.0.3:4", None), &f2, now),
            Err(StoreError::HostQuota("serving addresses"))
        );
        s.join(who("10.0.0.3:1", None), &f1, now).unwrap();
        s.join(who("10.0.0.4:1", None), &f1, now).unwrap();
        // A bitfield of 1000 chunks is 128 bytes, over the host's 100.
        s.share(who("10.0.0.5:1", None), &info("big", 1000), now)
            .unwrap();
        let big = FileName::new("big").unwrap();
        assert_eq!(
            s.report(who("10.0.0.6:1", None), &big, &"1".parse().unwrap(), now),
            Err(StoreError::HostQuota("bitfield memory"))
        );
        assert!(!s.peers.contains_key(&"10.0.0.6:1".parse().unwrap()));
        // An IPv6 /64 is one host.
        s.join(who("[2001:db8::1]:1", None), &f0, now).unwrap();
        s.join(who("[2001:db8::2]:1", None), &f0, now).unwrap();
        assert_eq!(
            s.join(who("[2001:db8::3]:1", None), &f0, now),
            Err(StoreError::HostQuota("peers in one swarm"))
        );
        s.join(who("[2001:db8:0:1::3]:1", None), &f0, now).unwrap();
        assert_consistent(&s);
        // Under --trust-ip-field the source is charged, not the announced address.
        assert_eq!(
            s.join(from("10.9.9.9:1", "10.0.0.3:5", None), &f2, now),
            Err(StoreError::HostQuota("serving addresses"))
        );
        s.join(from("10.9.9.9:1", "10.0.0.4:5", None), &f2, now)
            .unwrap();
        assert_consistent(&s);
    }

    /// Rows announced with a key change, move or go only with that key (protocol.txt §1.7).
    #[test]
    fn keyed_rows_answer_to_their_key_only() {
        let now = Instant::now();
        let mut s = MemoryStore::new(Duration::from_secs(90), Limits::default());
        let f = info("a", 10);
        s.share(who("10.0.0.1:1", Some(1)), &f, now).unwrap();
        let forbidden = Err(StoreError::Forbidden("10.0.0.1:1".parse().unwrap()));
        assert_eq!(s.exit(who("10.0.0.1:1", None), None, now), forbidden);
        assert_eq!(s.exit(who("10.0.0.1:1", Some(2)), None, now), forbidden);
        assert_eq!(s.share(who("10.0.0.1:1", None), &f, now), forbidden);
        assert_eq!(s.join(who("10.0.0.1:1", Some(2)), f.name(), now), forbidden);
        assert_eq!(
            s.heartbeat(who("10.0.0.1:1", None), now).map(drop),
            forbidden
        );
        // Another key cannot move its rows onto this address either.
        s.share(who("10.0.0.1:2", Some(2)), &f, now).unwrap();
        assert_eq!(
            s.heartbeat(who("10.0.0.1:1", Some(2)), now).map(drop),
            forbidden
        );
        assert_eq!(listing(&s, "a").len(), 2);
        // A keyless peer's rows are taken over by a key (a peer that got one).
        s.share(who("10.0.0.1:3", None), &f, now).unwrap();
        assert_eq!(s.heartbeat(who("10.0.0.1:3", Some(3)), now), Ok(1));
        assert_eq!(
            s.heartbeat(who("10.0.0.1:3", None), now),
            Err(StoreError::Forbidden("10.0.0.1:3".parse().unwrap()))
        );
        // The key itself may do everything, also from a new address.
        assert_eq!(s.heartbeat(who("10.0.0.7:1", Some(1)), now), Ok(1));
        assert_eq!(s.exit(who("10.0.0.7:1", Some(1)), None, now), Ok(()));
        assert_eq!(listing(&s, "a").len(), 2);
        assert_consistent(&s);
    }

    /// A key moving to a new IP takes its rows to that host's quota, or does not move.
    #[test]
    fn a_key_move_is_charged_to_the_new_host() {
        let now = Instant::now();
        let limits = Limits {
            max_peers: 10,
            ..Limits::default()
        };
        let mut s = MemoryStore::new(Duration::from_secs(90), limits);
        s.share(who("10.0.0.1:1", Some(1)), &info("a", 10), now)
            .unwrap();
        s.share(who("10.0.0.2:1", None), &info("b", 10), now)
            .unwrap();
        // 10.0.0.2 has its one serving address: the move is refused and nothing changes.
        assert_eq!(
            s.heartbeat(who("10.0.0.2:9", Some(1)), now),
            Err(StoreError::HostQuota("serving addresses"))
        );
        assert_eq!(listing(&s, "a")[0].addr, "10.0.0.1:1".parse().unwrap());
        assert_eq!(s.heartbeat(who("10.0.0.3:9", Some(1)), now), Ok(1));
        assert_eq!(listing(&s, "a")[0].addr, "10.0.0.3:9".parse().unwrap());
        assert_consistent(&s);
    }

    proptest::proptest! {
        /// Any sequence of announcements, departures and expiries leaves every counter equal to
        /// what the swarms hold.
        #[test]
        fn counters_never_drift(ops in proptest::collection::vec(
            (0u8..7, 0u8..4, 0u8..3, 0u8..4, proptest::option::of(0u8..3), 0u32..12), 1..80)
        ) {
            let t0 = Instant::now();
            let limits = Limits {
                max_files: 4,
                max_peers: 8,
                max_peers_per_file: 5,
                max_rows: 12,
                max_bitfield_bytes: 64,
                ip_share_percent: 50,
            };
            let mut s = MemoryStore::new(Duration::from_secs(90), limits);
            for (step, (op, file, ip, port, key, chunk)) in ops.into_iter().enumerate() {
                let now = t0 + Duration::from_secs(step as u64 * 10);
                let addr = format!("10.0.0.{ip}:{}", port + 1);
                let source = format!("10.0.0.{}:9", if op == 6 { 3 } else { ip });
                let a = from(&addr, &source, key);
                // Sizes differ per name so one name is always one file.
                let f = info(&format!("f{file}"), 8 + u32::from(file) * 64);
                let name = f.name().clone();
                let chunks = ChunkRanges::from_indices([chunk % f.chunks()]).unwrap();
                let _ = match op {
                    0 => s.share(a, &f, now),
                    1 | 6 => s.report(a, &name, &chunks, now),
                    2 => s.join(a, &name, now),
                    3 => s.exit(a, Some(&name), now),
                    4 => s.heartbeat(a, now).map(|_| ()),
                    _ => {
                        s.expire(now);
                        Ok(())
                    }
                };
                assert_consistent(&s);
            }
        }
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

    /// A joined downloader costs a row but no bitfield until its first chunk; sharing or
    /// reporting later turns its row into a seeder or a partial peer, leaving it makes it go.
    #[test]
    fn joined_peers_hold_a_row_and_no_bitfield() {
        let now = Instant::now();
        let mut s = MemoryStore::new(Duration::from_secs(90), Limits::default());
        let f = info("a", 100);
        s.share(who("10.0.0.1:1", None), &f, now).unwrap();
        let name = f.name().clone();
        s.join(who("10.0.0.2:1", None), &name, now).unwrap();
        s.join(who("10.0.0.3:1", None), &name, now).unwrap();
        s.join(who("10.0.0.3:1", None), &name, now).unwrap();
        assert_eq!((s.rows, s.bitfield_bytes()), (3, 0));
        assert_eq!(listing(&s, "a")[1].chunks, PeerChunks::Count(0));
        assert_eq!(s.query(&name).unwrap().leechers, 2);
        s.report(who("10.0.0.2:1", None), &name, &"7".parse().unwrap(), now)
            .unwrap();
        assert_eq!((s.rows, s.bitfield_bytes()), (3, 16));
        s.join(who("10.0.0.2:1", None), &name, now).unwrap();
        assert_eq!(
            listing(&s, "a")[1].chunks,
            PeerChunks::Ranges("7".parse().unwrap())
        );
        s.share(who("10.0.0.3:1", None), &f, now).unwrap();
        assert_eq!(s.query(&name).unwrap().seeders, 2);
        s.exit(who("10.0.0.2:1", None), None, now).unwrap();
        assert_eq!((s.rows, s.bitfield_bytes()), (2, 0));
        let mut asked = Vec::new();
        s.peers(&name, 0, Some("10.0.0.1:1".parse().unwrap()), &mut |p| {
            asked.push(p.addr);
            true
        })
        .unwrap();
        assert_eq!(asked, ["10.0.0.3:1".parse::<SocketAddr>().unwrap()]);
        assert_eq!(
            s.join(who("10.0.0.4:1", None), &FileName::new("b").unwrap(), now),
            Err(StoreError::FileNotFound(FileName::new("b").unwrap()))
        );
        assert!(!s.peers.contains_key(&"10.0.0.4:1".parse().unwrap()));
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
            max_peers: 10,
            max_peers_per_file: 1,
            max_rows: 10,
            max_bitfield_bytes: 0,
            ip_share_percent: 100,
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
            ip_share_percent: 100,
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
        s.exit(who("10.0.0.1:1", None), None, now).unwrap();
        assert_eq!(s.rows, 1);
        s.share(who("10.0.0.3:1", None), &info("c", 10), now)
            .unwrap();
        assert_eq!(s.rows, 2);
        assert!(s.peers.contains_key(&"10.0.0.3:1".parse().unwrap()));
    }
}

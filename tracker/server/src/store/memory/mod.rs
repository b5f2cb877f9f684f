//! The in-memory store (the default backend): every file's swarm, each peer's liveness and
//! identity key, the global caps of [`Limits`] and each host's share of them ([`Quotas`]).
//!
//! Swarms live in shards by file name, each behind its own lock, and the catalogue (flag 6) in
//! a read-mostly index of its own: listings, queries and catalogue pages take one shard's (or
//! the catalogue's) lock and nothing else (a catalogue page also, for a moment, the lock of its
//! kept page: `store/kept.rs`), so receive threads answering them never wait for each other.
//! What crosses files (peers, keys, hosts, counters) is the directory: announcements take its
//! lock for their bookkeeping, then the shard of their file (always in that order, shards one
//! at a time, the catalogue last). Expiry walks a time-ordered index, so a sweep costs what
//! expires, not a scan of every peer.
//!
//! Every row change goes through `insert_row`, `set_holding` and `remove_row`, and every peer
//! through `add_peer` and `remove_peer`, so the counters the caps and quotas read (rows,
//! bitfield bytes, per-host usage, per-swarm members) cannot drift from the swarms.
//!
//! Longer than most modules: that bookkeeping is one invariant and reads best in one place
//! (its tests and the state file are in submodules).

mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tracker_proto::{
    ChunkRanges, FileInfo, FileName, FileSummary, ListedFile, PeerEntry, PeerKey, Transfer,
};

use super::kept::Kept;
use super::quota::{HostTable, Usage};
use super::swarm::{Bitfield, Completer, FileEntry, Holding};
use super::{
    Announcer, Done, FileSink, Limits, Op, Page, PeerSink, Quotas, StoreError, SwarmStore, Task,
};
use crate::host::Host;

pub use snapshot::{Restored, SnapshotError};

/// Shards of the swarms: a few times more than the cores of a machine this runs on, so two
/// receive threads rarely want the same one.
const SHARDS: usize = 16;

/// Most expired peers freed under one hold of the directory lock; a sweep takes it again
/// until none is left, so announcements wait at most this much work.
const EXPIRE_PER_LOCK: usize = 512;

/// One serving address: its identity key, where its UDP socket answers (for PUNCH; none yet
/// when only `punch=keep` announcements were heard), the host its rows count against, when it
/// was last heard from, and the swarms it is in (so leaving or expiring touches only those).
struct PeerState {
    key: Option<PeerKey>,
    udp: Option<SocketAddr>,
    host: Host,
    last_seen: Instant,
    /// The time this peer is filed under in [`Directory::expiry`] (at most one expiry step
    /// before `last_seen`, so a busy peer moves in the index only now and then).
    indexed: Instant,
    files: Vec<FileName>,
}

/// What crosses files: peers, keys, hosts and the global counters.
#[derive(Default)]
struct Directory {
    peers: HashMap<SocketAddr, PeerState>,
    keys: HashMap<PeerKey, SocketAddr>,
    hosts: HostTable,
    bitfield_bytes: usize,
    rows: usize,
    files: usize,
    /// Every peer by its `indexed` time: expiry pops the front while it is older than the TTL.
    expiry: BTreeSet<(Instant, SocketAddr)>,
}

#[derive(Default)]
struct Shard {
    files: HashMap<FileName, FileEntry>,
}

/// The in-memory store (the default backend).
pub struct MemoryStore {
    limits: Limits,
    quotas: Quotas,
    ttl: Duration,
    /// How far `last_seen` may run ahead of a peer's place in the expiry index.
    step: Duration,
    directory: Mutex<Directory>,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Every file's line in the catalogue, in name order (the order flag 6 pages through).
    catalogue: RwLock<BTreeMap<FileName, ListedFile>>,
    /// The lines of the last text page of the catalogue, while it stays as it is.
    catalogue_page: Mutex<Kept>,
    /// Set by [`MemoryStore::seal`]; every batch holds it for reading while it runs.
    sealed: RwLock<bool>,
}

impl MemoryStore {
    pub fn new(ttl: Duration, limits: Limits) -> Self {
        MemoryStore {
            quotas: Quotas::new(&limits),
            limits,
            ttl,
            step: (ttl / 8).clamp(Duration::from_millis(10), Duration::from_secs(1)),
            directory: Mutex::new(Directory::default()),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            catalogue: RwLock::new(BTreeMap::new()),
            catalogue_page: Mutex::default(),
            sealed: RwLock::new(false),
        }
    }

    /// Stops all changes: batches running now finish, later ones are answered 1204
    /// UNAVAILABLE and expiry stops. A tracker that is shutting down seals its store before the
    /// final save, so nothing it acknowledged is missing from the file.
    pub fn seal(&self) {
        *self.sealed.write() = true;
    }

    /// Bytes held in partial-peer bitfields (what `--max-bitfield-mib` bounds).
    pub fn bitfield_bytes(&self) -> usize {
        self.directory.lock().bitfield_bytes
    }

    fn shard(&self, name: &FileName) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(name) as usize % SHARDS]
    }

    fn has_file(&self, name: &FileName) -> bool {
        self.shard(name).lock().files.contains_key(name)
    }

    /// Brings the catalogue line of `name` up to date (after its counts changed).
    fn relist(&self, name: &FileName, entry: Option<&FileEntry>) {
        let mut catalogue = self.catalogue.write();
        let changed = match entry {
            Some(entry) => {
                let line = entry.listed();
                let changed = catalogue.get(name) != Some(&line);
                if changed {
                    catalogue.insert(name.clone(), line);
                }
                changed
            }
            None => catalogue.remove(name).is_some(),
        };
        if changed {
            self.catalogue_page.lock().forget();
        }
    }

    /// Marks the peer at `addr` heard from now, moving it in the expiry index when its place
    /// there is more than one step old.
    fn refresh(&self, dir: &mut Directory, addr: SocketAddr, now: Instant) {
        let Some(peer) = dir.peers.get_mut(&addr) else {
            return;
        };
        peer.last_seen = peer.last_seen.max(now);
        if peer.last_seen.saturating_duration_since(peer.indexed) >= self.step {
            dir.expiry.remove(&(peer.indexed, addr));
            peer.indexed = peer.last_seen;
            dir.expiry.insert((peer.indexed, addr));
        }
    }

    /// Makes `who` the current identity at `who.addr` and refreshes it: moves the rows of its
    /// key from an old address, charges them to the announcing host, and creates the peer when
    /// `create`. Returns whether the peer is known now. Refuses (protocol.txt §1.7) when
    /// `who.addr`, or the address its key moves to, belongs to a peer with another key.
    fn resolve(
        &self,
        dir: &mut Directory,
        who: Announcer,
        now: Instant,
        create: bool,
    ) -> Result<bool, StoreError> {
        let host = who.host();
        if let Some(holder) = dir.peers.get(&who.addr) {
            if holder.key.is_some() && holder.key != who.key {
                return Err(StoreError::Forbidden(who.addr));
            }
        }
        if let Some(key) = who.key {
            if let Some(&old) = dir.keys.get(&key) {
                if old != who.addr {
                    self.check_rehome(dir, old, host)?;
                    self.move_peer(dir, old, who.addr);
                }
            }
        }
        if !dir.peers.contains_key(&who.addr) {
            if !create {
                return Ok(false);
            }
            if dir.peers.len() >= self.limits.max_peers {
                return Err(StoreError::Capacity("peers"));
            }
            self.quotas.check(dir.hosts.usage(host), Usage::PORT)?;
            add_peer(dir, who, now);
        }
        self.check_rehome(dir, who.addr, host)?;
        self.rehome(dir, who.addr, host);
        let Some(peer) = dir.peers.get_mut(&who.addr) else {
            return Ok(false);
        };
        if peer.key.is_none() {
            if let Some(key) = who.key {
                peer.key = Some(key);
                dir.keys.insert(key, who.addr);
            }
        }
        if who.udp.is_some() {
            peer.udp = who.udp;
        }
        self.refresh(dir, who.addr, now);
        Ok(true)
    }

    /// What the peer at `addr` holds, as a host's usage (its port, rows and bitfields).
    fn usage_of(&self, dir: &Directory, addr: SocketAddr) -> Usage {
        let Some(state) = dir.peers.get(&addr) else {
            return Usage::default();
        };
        let bitfield_bytes = state
            .files
            .iter()
            .map(|name| {
                let shard = self.shard(name).lock();
                shard
                    .files
                    .get(name)
                    .and_then(|e| e.swarm().get(&addr))
                    .map_or(0, Holding::cost)
            })
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
    fn check_rehome(
        &self,
        dir: &Directory,
        addr: SocketAddr,
        host: Host,
    ) -> Result<(), StoreError> {
        let Some(state) = dir.peers.get(&addr) else {
            return Ok(());
        };
        if state.host == host {
            return Ok(());
        }
        self.quotas
            .check(dir.hosts.usage(host), self.usage_of(dir, addr))?;
        let crowded = state.files.iter().any(|name| {
            let shard = self.shard(name).lock();
            shard
                .files
                .get(name)
                .is_some_and(|e| e.members(host) >= self.quotas.peers_per_file)
        });
        if crowded {
            return Err(StoreError::HostQuota("peers in one swarm"));
        }
        Ok(())
    }

    /// Charges the peer at `addr` to `host` (after [`MemoryStore::check_rehome`]).
    fn rehome(&self, dir: &mut Directory, addr: SocketAddr, host: Host) {
        // The common case, every announcement from the same host, costs one lookup.
        if dir.peers.get(&addr).is_none_or(|s| s.host == host) {
            return;
        }
        let usage = self.usage_of(dir, addr);
        let Some(state) = dir.peers.get_mut(&addr) else {
            return;
        };
        let old = std::mem::replace(&mut state.host, host);
        dir.hosts.sub(old, usage);
        dir.hosts.add(host, usage);
        for name in &state.files {
            let mut shard = self.shard(name).lock();
            if let Some(entry) = shard.files.get_mut(name) {
                entry.remove_member(old);
                entry.add_member(host);
            }
        }
    }

    /// Renames peer `old` to `new` in every swarm (an address change of one key). A keyless
    /// peer at `new` is taken over (its rows go); the caller has refused a keyed one.
    fn move_peer(&self, dir: &mut Directory, old: SocketAddr, new: SocketAddr) {
        self.remove_peer(dir, new, None);
        let Some(mut state) = dir.peers.remove(&old) else {
            return;
        };
        dir.expiry.remove(&(state.indexed, old));
        for name in &state.files {
            let mut shard = self.shard(name).lock();
            if let Some(entry) = shard.files.get_mut(name) {
                let swarm = entry.swarm_mut();
                if let Some(holding) = swarm.remove(&old) {
                    swarm.insert(new, holding);
                }
                if let Some(counted) = entry.counted.remove(&old) {
                    entry.counted.insert(new, counted);
                }
            }
        }
        if let Some(key) = state.key {
            dir.keys.insert(key, new);
        }
        state.indexed = state.last_seen;
        dir.expiry.insert((state.indexed, new));
        dir.peers.insert(new, state);
    }

    /// Removes `addr` from one swarm, or from all swarms and forgets it.
    fn remove_peer(&self, dir: &mut Directory, addr: SocketAddr, only: Option<&FileName>) {
        let Some(state) = dir.peers.get_mut(&addr) else {
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
            let mut shard = self.shard(&name).lock();
            self.remove_row(dir, &mut shard, &name, addr, host);
        }
        if only.is_none() {
            if let Some(state) = dir.peers.remove(&addr) {
                dir.hosts.sub(host, Usage::PORT);
                dir.expiry.remove(&(state.indexed, addr));
                if let Some(key) = state.key {
                    dir.keys.remove(&key);
                }
            }
        }
    }

    /// Drops a peer that holds nothing anywhere (a refused first announcement).
    fn forget_if_empty(&self, dir: &mut Directory, addr: SocketAddr) {
        if dir.peers.get(&addr).is_some_and(|p| p.files.is_empty()) {
            self.remove_peer(dir, addr, None);
        }
    }

    /// Whether a peer of `host` may get a new row in the swarm of `entry` (`None`: a file not
    /// tracked yet).
    fn check_new_row(
        &self,
        dir: &Directory,
        entry: Option<&FileEntry>,
        host: Host,
    ) -> Result<(), StoreError> {
        if dir.rows >= self.limits.max_rows {
            return Err(StoreError::Capacity("rows"));
        }
        if let Some(entry) = entry {
            if entry.swarm().len() >= self.limits.max_peers_per_file {
                return Err(StoreError::Capacity("peers per file"));
            }
            if entry.members(host) >= self.quotas.peers_per_file {
                return Err(StoreError::HostQuota("peers in one swarm"));
            }
        }
        self.quotas.check(dir.hosts.usage(host), Usage::ROW)
    }

    /// Whether `host` may hold `bytes` more of bitfields.
    fn check_bitfield(&self, dir: &Directory, host: Host, bytes: usize) -> Result<(), StoreError> {
        if bytes
            > self
                .limits
                .max_bitfield_bytes
                .saturating_sub(dir.bitfield_bytes)
        {
            return Err(StoreError::Capacity("bitfield memory"));
        }
        self.quotas
            .check(dir.hosts.usage(host), Usage::bitfield(bytes))
    }

    /// Adds the peer at `addr` to the swarm of `entry` (file `name`) holding `holding`.
    fn insert_row(
        &self,
        dir: &mut Directory,
        entry: &mut FileEntry,
        name: &FileName,
        addr: SocketAddr,
        holding: Holding,
    ) {
        let Some(state) = dir.peers.get_mut(&addr) else {
            return;
        };
        let host = state.host;
        let cost = holding.cost();
        if matches!(holding, Holding::Seeder) {
            entry.seeders += 1;
        }
        entry.swarm_mut().insert(addr, holding);
        entry.add_member(host);
        state.files.push(name.clone());
        dir.rows += 1;
        dir.bitfield_bytes += cost;
        dir.hosts.add(host, Usage::bitfield(cost));
        dir.hosts.add(host, Usage::ROW);
        self.relist(name, Some(entry));
    }

    /// Replaces what the peer at `addr` holds in the swarm of `entry` (file `name`).
    fn set_holding(
        &self,
        dir: &mut Directory,
        entry: &mut FileEntry,
        name: &FileName,
        addr: SocketAddr,
        holding: Holding,
    ) {
        let Some(host) = dir.peers.get(&addr).map(|p| p.host) else {
            return;
        };
        let new_cost = holding.cost();
        let seeder = matches!(holding, Holding::Seeder);
        let Some(old) = entry.swarm_mut().insert(addr, holding) else {
            return;
        };
        let old_cost = old.cost();
        let was_seeder = matches!(old, Holding::Seeder);
        entry.seeders = entry.seeders + u32::from(seeder) - u32::from(was_seeder);
        dir.bitfield_bytes = dir.bitfield_bytes + new_cost - old_cost;
        dir.hosts.sub(host, Usage::bitfield(old_cost));
        dir.hosts.add(host, Usage::bitfield(new_cost));
        if seeder != was_seeder {
            self.relist(name, Some(entry));
        }
    }

    /// Takes the row of `addr` (of `host`) out of `name`'s swarm, dropping the file when it was
    /// the last. The peer's own list of files is the caller's to update.
    fn remove_row(
        &self,
        dir: &mut Directory,
        shard: &mut Shard,
        name: &FileName,
        addr: SocketAddr,
        host: Host,
    ) {
        let Some(entry) = shard.files.get_mut(name) else {
            return;
        };
        let Some(holding) = entry.swarm_mut().remove(&addr) else {
            return;
        };
        entry.counted.remove(&addr);
        let cost = holding.cost();
        if matches!(holding, Holding::Seeder) {
            entry.seeders -= 1;
        }
        entry.remove_member(host);
        dir.rows -= 1;
        dir.bitfield_bytes -= cost;
        dir.hosts.sub(host, Usage::bitfield(cost));
        dir.hosts.sub(host, Usage::ROW);
        if entry.swarm().is_empty() {
            let creator = entry.creator;
            shard.files.remove(name);
            dir.files -= 1;
            dir.hosts.sub(creator, Usage::FILE);
            self.relist(name, None);
        } else {
            self.relist(name, Some(entry));
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

    /// Adds `who`'s checked report to the figures of `entry` (file `name`), and its
    /// catalogue line when they changed.
    fn record(&self, entry: &mut FileEntry, name: &FileName, who: Announcer, transfer: &Transfer) {
        if transfer.is_empty() {
            return;
        }
        let completer = Completer::of(who.key, who.addr);
        let max = self.limits.max_peers_per_file;
        if entry.record_transfer(who.addr, completer, transfer, max) {
            self.relist(name, Some(entry));
        }
    }

    /// The row `who` would report for: under its key's address, when the key moves it.
    fn reporting_addr(dir: &Directory, who: &Announcer) -> SocketAddr {
        who.key
            .and_then(|k| dir.keys.get(&k).copied())
            .unwrap_or(who.addr)
    }

    /// Refuses `transfer` before anything of its request changes (see
    /// [`FileEntry::check_transfer`]); a file not tracked has nothing to check against.
    fn check_transfer(
        &self,
        dir: &Directory,
        file: &FileName,
        who: &Announcer,
        transfer: &Transfer,
    ) -> Result<(), StoreError> {
        if transfer.is_empty() {
            return Ok(());
        }
        let shard = self.shard(file).lock();
        match shard.files.get(file) {
            Some(entry) => entry.check_transfer(Self::reporting_addr(dir, who), transfer),
            None => Ok(()),
        }
    }

    /// Flag 4: `who` seeds `info` (creating the file if new).
    pub fn share(
        &self,
        who: Announcer,
        info: &FileInfo,
        transfer: &Transfer,
        now: Instant,
    ) -> Result<(), StoreError> {
        let name = info.name();
        let host = who.host();
        let dir = &mut *self.directory.lock();
        let known = {
            let shard = self.shard(name).lock();
            shard.files.get(name).map(|e| e.info == *info)
        };
        match known {
            Some(false) => return Err(StoreError::HashMismatch(name.clone())),
            Some(true) => {}
            None if dir.files >= self.limits.max_files => {
                return Err(StoreError::Capacity("files"))
            }
            None => self.quotas.check(dir.hosts.usage(host), Usage::FILE)?,
        }
        self.check_transfer(dir, name, &who, transfer)?;
        self.resolve(dir, who, now, true)?;
        let mut shard = self.shard(name).lock();
        let entry = shard.files.get_mut(name);
        if let Some(entry) = entry {
            if entry.swarm().contains_key(&who.addr) {
                self.set_holding(dir, entry, name, who.addr, Holding::Seeder);
                self.record(entry, name, who, transfer);
                return Ok(());
            }
        }
        if let Err(e) = self.check_new_row(dir, shard.files.get(name), host) {
            drop(shard);
            self.forget_if_empty(dir, who.addr);
            return Err(e);
        }
        let entry = shard.files.entry(name.clone()).or_insert_with(|| {
            dir.files += 1;
            dir.hosts.add(host, Usage::FILE);
            FileEntry::new(info.clone(), host)
        });
        self.insert_row(dir, entry, name, who.addr, Holding::Seeder);
        self.record(entry, name, who, transfer);
        Ok(())
    }

    /// Flag 3: `who` holds `chunks` of `file`.
    pub fn report(
        &self,
        who: Announcer,
        file: &FileName,
        chunks: &ChunkRanges,
        transfer: &Transfer,
        now: Instant,
    ) -> Result<(), StoreError> {
        let dir = &mut *self.directory.lock();
        let total = {
            let shard = self.shard(file).lock();
            let entry = shard
                .files
                .get(file)
                .ok_or_else(|| StoreError::FileNotFound(file.clone()))?;
            entry.info.chunks()
        };
        if chunks.max() >= total {
            return Err(StoreError::ChunkOutOfRange {
                chunk: chunks.max(),
                chunks: total,
            });
        }
        self.check_transfer(dir, file, &who, transfer)?;
        // The key may move this peer; look the peer up under its final address afterwards.
        self.resolve(dir, who, now, true)?;
        let host = who.host();
        let mut shard = self.shard(file).lock();
        let Some(entry) = shard.files.get_mut(file) else {
            drop(shard);
            self.forget_if_empty(dir, who.addr);
            return Err(StoreError::FileNotFound(file.clone()));
        };
        let cost = (total as usize).div_ceil(64) * 8;
        match entry.swarm_mut().get_mut(&who.addr) {
            Some(Holding::Seeder) => {}
            Some(Holding::Partial(bits)) => {
                bits.set(chunks);
                if bits.complete() {
                    self.set_holding(dir, entry, file, who.addr, Holding::Seeder);
                }
            }
            // A joined downloader's first chunks: its bitfield is made now.
            Some(Holding::Empty) => {
                self.check_bitfield(dir, host, cost)?;
                let holding = Self::holding_of(total, chunks);
                self.set_holding(dir, entry, file, who.addr, holding);
            }
            None => {
                let allowed = self
                    .check_new_row(dir, Some(entry), host)
                    .and_then(|()| self.check_bitfield(dir, host, cost));
                if let Err(e) = allowed {
                    drop(shard);
                    self.forget_if_empty(dir, who.addr);
                    return Err(e);
                }
                let holding = Self::holding_of(total, chunks);
                self.insert_row(dir, entry, file, who.addr, holding);
            }
        }
        self.record(entry, file, who, transfer);
        Ok(())
    }

    /// Flags 1 and 2 with an address: `who` joins `file`'s swarm holding no chunk yet, or
    /// keeps what it holds there; either way it is refreshed like any announcement.
    pub fn join(
        &self,
        who: Announcer,
        file: &FileName,
        transfer: &Transfer,
        now: Instant,
    ) -> Result<(), StoreError> {
        let dir = &mut *self.directory.lock();
        if !self.has_file(file) {
            return Err(StoreError::FileNotFound(file.clone()));
        }
        self.check_transfer(dir, file, &who, transfer)?;
        // The key may move this peer; look the peer up under its final address afterwards.
        self.resolve(dir, who, now, true)?;
        let mut shard = self.shard(file).lock();
        let Some(entry) = shard.files.get_mut(file) else {
            drop(shard);
            self.forget_if_empty(dir, who.addr);
            return Err(StoreError::FileNotFound(file.clone()));
        };
        if !entry.swarm().contains_key(&who.addr) {
            if let Err(e) = self.check_new_row(dir, Some(entry), who.host()) {
                drop(shard);
                self.forget_if_empty(dir, who.addr);
                return Err(e);
            }
            self.insert_row(dir, entry, file, who.addr, Holding::Empty);
        }
        self.record(entry, file, who, transfer);
        Ok(())
    }

    /// Flag 5: `who` leaves `file`'s swarm, or every swarm.
    pub fn exit(
        &self,
        who: Announcer,
        file: Option<&FileName>,
        transfer: &Transfer,
        now: Instant,
    ) -> Result<(), StoreError> {
        let dir = &mut *self.directory.lock();
        if let Some(file) = file {
            self.check_transfer(dir, file, &who, transfer)?;
        }
        // Resolving first lets a key whose address changed leave under its current rows.
        if self.resolve(dir, who, now, false)? {
            // The last counters count before the row (and its base) goes.
            if let Some(file) = file {
                let mut shard = self.shard(file).lock();
                if let Some(entry) = shard.files.get_mut(file) {
                    if entry.swarm().contains_key(&who.addr) {
                        self.record(entry, file, who, transfer);
                    }
                }
            }
            self.remove_peer(dir, who.addr, file);
            self.forget_if_empty(dir, who.addr);
        }
        Ok(())
    }

    /// Flag 9: refresh (and maybe move) `who`; returns the number of swarms it is in.
    pub fn heartbeat(&self, who: Announcer, now: Instant) -> Result<u32, StoreError> {
        let dir = &mut *self.directory.lock();
        if !self.resolve(dir, who, now, false)? {
            return Err(StoreError::PeerNotFound(who.addr));
        }
        let files = dir.peers.get(&who.addr).map_or(0, |p| p.files.len());
        Ok(files as u32)
    }

    /// Refreshes the liveness of the peer holding `key`, if any.
    pub fn touch_key(&self, key: &PeerKey, now: Instant) {
        let dir = &mut *self.directory.lock();
        if let Some(&addr) = dir.keys.get(key) {
            self.refresh(dir, addr, now);
        }
    }

    /// Flags 1 and 2, listing only (see [`Op::Peers`]); `fits` as in [`super::PeerSink`].
    pub fn peers(
        &self,
        file: &FileName,
        offset: u32,
        asker: Option<SocketAddr>,
        fits: &mut dyn FnMut(&PeerEntry) -> bool,
    ) -> Result<Page<FileSummary>, StoreError> {
        self.list_peers(
            file,
            offset,
            asker,
            &mut |_: &FileSummary, e: &PeerEntry| fits(e),
        )
    }

    fn list_peers(
        &self,
        file: &FileName,
        offset: u32,
        asker: Option<SocketAddr>,
        sink: &mut dyn PeerSink,
    ) -> Result<Page<FileSummary>, StoreError> {
        let mut shard = self.shard(file).lock();
        let entry = shard
            .files
            .get_mut(file)
            .ok_or_else(|| StoreError::FileNotFound(file.clone()))?;
        Ok(entry.list(offset, asker, sink))
    }

    /// Flag 6: `head` is the total number of files; `fits` as in [`super::FileSink`].
    pub fn files(&self, offset: u32, mut fits: &mut dyn FnMut(&ListedFile) -> bool) -> Page<u32> {
        self.list_files(offset, &mut fits)
    }

    fn list_files(&self, offset: u32, sink: &mut dyn FileSink) -> Page<u32> {
        let catalogue = self.catalogue.read();
        let head = catalogue.len() as u32;
        // The kept page is filled and reused under the catalogue's read lock and forgotten
        // under its write lock, so it always shows the catalogue as it is; its own lock is
        // held only to copy it in or out, never while the catalogue is walked.
        let kept = sink
            .page()
            .and_then(|p| self.catalogue_page.lock().reuse(offset, p));
        if let Some(next) = kept {
            return Page { head, next };
        }
        let mut next = None;
        for (i, listed) in catalogue.values().enumerate().skip(offset as usize) {
            if !sink.push(listed) {
                next = Some(i as u32);
                break;
            }
        }
        if let Some(page) = sink.page() {
            self.catalogue_page.lock().keep(offset, page, next);
        }
        Page { head, next }
    }

    /// Flag 7.
    pub fn query(&self, file: &FileName) -> Result<FileSummary, StoreError> {
        self.shard(file)
            .lock()
            .files
            .get(file)
            .map(FileEntry::described)
            .ok_or_else(|| StoreError::FileNotFound(file.clone()))
    }

    /// Flag 8: the UDP address of `target`, a live member of `file`'s swarm.
    pub fn punch_target(
        &self,
        file: &FileName,
        target: SocketAddr,
        now: Instant,
    ) -> Result<SocketAddr, StoreError> {
        let dir = self.directory.lock();
        {
            let shard = self.shard(file).lock();
            let entry = shard
                .files
                .get(file)
                .ok_or_else(|| StoreError::FileNotFound(file.clone()))?;
            if !entry.swarm().contains_key(&target) {
                return Err(StoreError::PeerNotFound(target));
            }
        }
        dir.peers
            .get(&target)
            .filter(|p| now.saturating_duration_since(p.last_seen) <= self.ttl)
            .and_then(|p| p.udp)
            .ok_or(StoreError::PeerNotFound(target))
    }

    /// Frees the rows of peers silent for longer than the TTL, a bounded number per hold of
    /// the directory lock.
    pub fn expire(&self, now: Instant) {
        let Some(deadline) = now.checked_sub(self.ttl) else {
            return;
        };
        loop {
            let dir = &mut *self.directory.lock();
            let mut freed = 0;
            while freed < EXPIRE_PER_LOCK {
                let Some(&(indexed, addr)) = dir.expiry.first() else {
                    return;
                };
                if indexed >= deadline {
                    return;
                }
                dir.expiry.pop_first();
                let last_seen = dir.peers.get(&addr).map(|p| p.last_seen);
                match last_seen {
                    Some(seen) if seen < deadline => {
                        // Back in the index so remove_peer finds it where it looks.
                        dir.expiry.insert((indexed, addr));
                        self.remove_peer(dir, addr, None);
                        freed += 1;
                    }
                    Some(seen) => {
                        if let Some(peer) = dir.peers.get_mut(&addr) {
                            peer.indexed = seen;
                        }
                        dir.expiry.insert((seen, addr));
                    }
                    None => {}
                }
            }
        }
    }

    fn apply(&self, op: &mut Op<'_>, now: Instant) -> Result<Done, StoreError> {
        match op {
            Op::Share {
                who,
                info,
                transfer,
            } => self.share(*who, info, transfer, now).map(|()| Done::Ok),
            Op::Report {
                who,
                file,
                chunks,
                transfer,
            } => self
                .report(*who, file, chunks, transfer, now)
                .map(|()| Done::Ok),
            Op::Exit {
                who,
                file,
                transfer,
            } => self.exit(*who, *file, transfer, now).map(|()| Done::Ok),
            Op::Heartbeat { who } => self.heartbeat(*who, now).map(Done::Alive),
            Op::Peers {
                file,
                offset,
                join,
                transfer,
                sink,
            } => {
                if let Some(who) = join {
                    self.join(*who, file, transfer, now)?;
                }
                let asker = join.map(|w| w.addr);
                self.list_peers(file, *offset, asker, &mut **sink)
                    .map(Done::Peers)
            }
            Op::Files { offset, sink } => Ok(Done::Files(self.list_files(*offset, &mut **sink))),
            Op::Query { file } => self.query(file).map(Done::File),
            Op::PunchTarget { file, target } => {
                self.punch_target(file, *target, now).map(Done::PunchTo)
            }
        }
    }
}

fn add_peer(dir: &mut Directory, who: Announcer, now: Instant) {
    let host = who.host();
    dir.hosts.add(host, Usage::PORT);
    dir.expiry.insert((now, who.addr));
    dir.peers.insert(
        who.addr,
        PeerState {
            key: None,
            udp: who.udp,
            host,
            last_seen: now,
            indexed: now,
            files: Vec::new(),
        },
    );
}

impl SwarmStore for MemoryStore {
    fn run(&self, tasks: &mut [Task<'_>], now: Instant) -> Vec<Result<Done, StoreError>> {
        let sealed = self.sealed.read();
        if *sealed {
            let closing = StoreError::Unavailable("the tracker is shutting down".into());
            return tasks.iter().map(|_| Err(closing.clone())).collect();
        }
        tasks
            .iter_mut()
            .map(|task| {
                if let Some(key) = &task.touch {
                    self.touch_key(key, now);
                }
                self.apply(&mut task.op, now)
            })
            .collect()
    }

    fn expire(&self, now: Instant) {
        let sealed = self.sealed.read();
        if !*sealed {
            MemoryStore::expire(self, now);
        }
    }
}

//! The in-memory store written out and read back (`tracker --state FILE`, protocol.txt §1.11),
//! so a restarted tracker loses no swarm.
//!
//! The format is text, one record a line, readable with `less` and checked as a whole:
//!
//! ```text
//! tracker-state 2
//! saved-unix-ms 1764590000000
//! file <name> <size> <chunk size> sha256:<id hex> <ip of the creating host>
//! stats <completed> <up> <down>    the file's figures (protocol.txt §1.2)
//! done <key hex or addr>           who completed a download of the file above
//! counted <addr> <up> <down>       a row's byte counters already in the figures
//! seed <addr>                      a row: the peer holds every chunk
//! empty <addr>                     a row: the peer joined and holds nothing yet
//! part <addr> <hex>                a row: its bitfield, 64-bit little-endian words
//! peer <addr> <host ip> <silent ms> <key hex or -> <udp addr or ->
//! end <SHA-256 of every byte before this line>
//! ```
//!
//! Version 1 (before the figures: no `stats`, `done` or `counted` lines) still loads, with
//! every figure zero.
//!
//! Rows follow their file's line. Swarms are copied one shard at a time and the peers after
//! them, each under its own lock only, so a periodic save does not stop the tracker; a row
//! whose peer left in between is not restored (it left), and every counter is rebuilt from the
//! rows on loading, so such a file is still consistent. The final save at shutdown follows
//! [`MemoryStore::seal`] and is exact.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::str::{FromStr, SplitAsciiWhitespace};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use thiserror::Error;
use tracker_proto::{FileId, FileInfo, FileName, PeerKey, SwarmStats, MAX_COUNTER};

use super::{Directory, MemoryStore, PeerState, Usage};
use crate::host::Host;
use crate::store::swarm::{Bitfield, Completer, Counted, FileEntry, Holding};

const MAGIC: &str = "tracker-state 2";
/// The format before the swarm figures, still read.
const MAGIC_V1: &str = "tracker-state 1";

/// Why a state file cannot be loaded. Nothing of it is loaded then.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("not a tracker state file: it starts with {0:?}, not {MAGIC:?}")]
    NotState(String),
    #[error(
        "the file ends before its `end` line: it is truncated (a full disk, or a copy cut short)"
    )]
    Truncated,
    #[error("its checksum does not match its contents: the file was damaged or edited")]
    Checksum,
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
}

/// What a load restored, and what it left out because this run's limits are smaller.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub files: usize,
    pub peers: usize,
    pub rows: usize,
    /// Rows (and the files only they were in) over this run's caps or quotas.
    pub refused_rows: usize,
    /// Peers over this run's caps or quotas (their rows are not restored either).
    pub refused_peers: usize,
    /// When the state was saved, as Unix milliseconds.
    pub saved_unix_ms: u64,
}

enum Row {
    Seed,
    Empty,
    Part(Vec<u64>),
}

struct SavedFile {
    info: FileInfo,
    creator: Host,
    rows: Vec<(SocketAddr, Row)>,
    stats: SwarmStats,
    completers: Vec<Completer>,
    counted: Vec<(SocketAddr, Counted)>,
}

struct SavedPeer {
    addr: SocketAddr,
    host: Host,
    silent: Duration,
    key: Option<PeerKey>,
    udp: Option<SocketAddr>,
}

impl MemoryStore {
    /// The whole store as a state file's bytes.
    pub fn snapshot(&self, now: Instant) -> Vec<u8> {
        let mut files = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            files.extend(shard.files.values().map(|entry| {
                SavedFile {
                    info: entry.info.clone(),
                    creator: entry.creator,
                    stats: entry.stats,
                    completers: entry.completers.iter().copied().collect(),
                    counted: entry.counted.iter().map(|(a, c)| (*a, *c)).collect(),
                    rows: entry
                        .swarm()
                        .iter()
                        .map(|(addr, holding)| {
                            let row = match holding {
                                Holding::Seeder => Row::Seed,
                                Holding::Empty => Row::Empty,
                                Holding::Partial(bits) => Row::Part(bits.words().to_vec()),
                            };
                            (*addr, row)
                        })
                        .collect(),
                }
            }));
        }
        let peers: Vec<SavedPeer> = {
            let dir = self.directory.lock();
            dir.peers
                .iter()
                .map(|(addr, p)| SavedPeer {
                    addr: *addr,
                    host: p.host,
                    silent: now.saturating_duration_since(p.last_seen),
                    key: p.key,
                    udp: p.udp,
                })
                .collect()
        };
        let saved = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut out = format!("{MAGIC}\nsaved-unix-ms {saved}\n");
        for f in &files {
            let i = &f.info;
            let _ = writeln!(
                out,
                "file {} {} {} {} {}",
                i.name(),
                i.size(),
                i.chunk_size(),
                i.id(),
                f.creator.ip()
            );
            let st = &f.stats;
            let _ = writeln!(out, "stats {} {} {}", st.completed, st.up, st.down);
            for who in &f.completers {
                let _ = match who {
                    Completer::Key(key) => writeln!(out, "done {key}"),
                    Completer::Addr(addr) => writeln!(out, "done {addr}"),
                };
            }
            for (addr, c) in &f.counted {
                let _ = writeln!(out, "counted {addr} {} {}", c.up, c.down);
            }
            for (addr, row) in &f.rows {
                let _ = match row {
                    Row::Seed => writeln!(out, "seed {addr}"),
                    Row::Empty => writeln!(out, "empty {addr}"),
                    Row::Part(words) => {
                        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                        writeln!(out, "part {addr} {}", hex::encode(bytes))
                    }
                };
            }
        }
        for p in &peers {
            let key = p.key.map_or_else(|| "-".to_string(), |k| k.to_string());
            let udp = p.udp.map_or_else(|| "-".to_string(), |u| u.to_string());
            let _ = writeln!(
                out,
                "peer {} {} {} {key} {udp}",
                p.addr,
                p.host.ip(),
                p.silent.as_millis()
            );
        }
        let digest = hex::encode(Sha256::digest(out.as_bytes()));
        let _ = writeln!(out, "end {digest}");
        out.into_bytes()
    }

    /// Loads a state file into this store, which must be empty (a tracker at start). A peer's
    /// silence is restored as it was when the file was saved: the time the tracker was down
    /// does not count, since peers could not reach it to stay alive. Peers silent past the TTL
    /// by then are dropped, as expiry would have.
    pub fn restore(&self, bytes: &[u8], now: Instant) -> Result<Restored, SnapshotError> {
        let (saved_unix_ms, files, peers) = parse(bytes)?;
        let mut restored = Restored {
            saved_unix_ms,
            ..Restored::default()
        };
        let dir = &mut *self.directory.lock();
        for p in peers {
            if p.silent >= self.ttl {
                continue;
            }
            let fits = dir.peers.len() < self.limits.max_peers
                && self
                    .quotas
                    .check(dir.hosts.usage(p.host), Usage::PORT)
                    .is_ok();
            if !fits {
                restored.refused_peers += 1;
                continue;
            }
            let last_seen = now.checked_sub(p.silent).unwrap_or(now);
            dir.hosts.add(p.host, Usage::PORT);
            dir.expiry.insert((last_seen, p.addr));
            if let Some(key) = p.key {
                dir.keys.insert(key, p.addr);
            }
            dir.peers.insert(
                p.addr,
                PeerState {
                    key: p.key,
                    udp: p.udp,
                    host: p.host,
                    last_seen,
                    indexed: last_seen,
                    files: Vec::new(),
                },
            );
        }
        for f in files {
            let (rows, refused) = self.restore_file(dir, f);
            restored.rows += rows;
            restored.refused_rows += refused;
            restored.files += usize::from(rows > 0);
        }
        let idle: Vec<SocketAddr> = dir
            .peers
            .iter()
            .filter(|(_, p)| p.files.is_empty())
            .map(|(addr, _)| *addr)
            .collect();
        for addr in idle {
            self.remove_peer(dir, addr, None);
        }
        restored.peers = dir.peers.len();
        Ok(restored)
    }

    /// One file and the rows of it whose peers were restored, within this run's limits:
    /// (rows restored, rows refused).
    fn restore_file(&self, dir: &mut Directory, f: SavedFile) -> (usize, usize) {
        let name = f.info.name().clone();
        let chunks = f.info.chunks();
        let mut shard = self.shard(&name).lock();
        let allowed = dir.files < self.limits.max_files
            && self
                .quotas
                .check(dir.hosts.usage(f.creator), Usage::FILE)
                .is_ok();
        let known = f
            .rows
            .iter()
            .filter(|(a, _)| dir.peers.contains_key(a))
            .count();
        if !allowed {
            return (0, known);
        }
        dir.files += 1;
        dir.hosts.add(f.creator, Usage::FILE);
        let entry = shard
            .files
            .entry(name.clone())
            .or_insert_with(|| FileEntry::new(f.info, f.creator));
        entry.stats = f.stats;
        let max_completers = self.limits.max_peers_per_file;
        entry
            .completers
            .extend(f.completers.into_iter().take(max_completers));
        let (mut rows, mut refused) = (0, 0);
        for (addr, row) in f.rows {
            let Some(host) = dir.peers.get(&addr).map(|p| p.host) else {
                continue;
            };
            let holding = match row {
                Row::Seed => Holding::Seeder,
                Row::Empty => Holding::Empty,
                // Checked when parsed.
                Row::Part(words) => match Bitfield::from_words(chunks, words) {
                    Some(bits) if bits.complete() => Holding::Seeder,
                    Some(bits) if bits.count() == 0 => Holding::Empty,
                    Some(bits) => Holding::Partial(bits),
                    None => continue,
                },
            };
            let fits = self
                .check_new_row(dir, Some(entry), host)
                .and_then(|()| self.check_bitfield(dir, host, holding.cost()));
            if fits.is_err() {
                refused += 1;
                continue;
            }
            self.insert_row(dir, entry, &name, addr, holding);
            rows += 1;
        }
        // Counters go with their rows: only restored rows keep theirs.
        for (addr, c) in f.counted {
            if entry.swarm().contains_key(&addr) {
                entry.counted.insert(addr, c);
            }
        }
        // The catalogue line shows the restored figures.
        if !entry.swarm().is_empty() {
            self.relist(&name, Some(entry));
        }
        if entry.swarm().is_empty() {
            shard.files.remove(&name);
            dir.files -= 1;
            dir.hosts.sub(f.creator, Usage::FILE);
        }
        (rows, refused)
    }
}

/// Reads a whole state file into typed records, checking everything before anything is
/// loaded.
fn parse(bytes: &[u8]) -> Result<(u64, Vec<SavedFile>, Vec<SavedPeer>), SnapshotError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        SnapshotError::Line {
            line,
            why: "not UTF-8 text".into(),
        }
    })?;
    let first = text.lines().next().unwrap_or("");
    if first != MAGIC && first != MAGIC_V1 {
        return Err(SnapshotError::NotState(first.chars().take(40).collect()));
    }
    let body = text.strip_suffix('\n').ok_or(SnapshotError::Truncated)?;
    let (covered, end) = match body.rfind('\n') {
        Some(i) => (&text[..=i], &body[i + 1..]),
        None => return Err(SnapshotError::Truncated),
    };
    let digest = end.strip_prefix("end ").ok_or(SnapshotError::Truncated)?;
    if hex::encode(Sha256::digest(covered.as_bytes())) != digest {
        return Err(SnapshotError::Checksum);
    }

    let mut saved = None;
    let mut files: Vec<SavedFile> = Vec::new();
    let mut names = HashSet::new();
    let mut peers: Vec<SavedPeer> = Vec::new();
    let mut addrs = HashSet::new();
    let mut keys = HashMap::new();
    for (i, line) in covered.lines().enumerate().skip(1) {
        let err = |why: String| SnapshotError::Line { line: i + 1, why };
        let mut t = Tokens {
            line: i + 1,
            tokens: line.split_ascii_whitespace(),
        };
        let record = t.next("a record")?;
        match record {
            "saved-unix-ms" => saved = Some(t.parse::<u64>("a time")?),
            "file" => {
                let name: FileName = t.parse("a file name")?;
                let size: u64 = t.parse("a size")?;
                let chunk_size: u32 = t.parse("a chunk size")?;
                let id: FileId = t.parse("a file id")?;
                let creator = Host::of(t.parse::<IpAddr>("the creator's IP")?);
                let info = FileInfo::new(name.clone(), size, chunk_size, id)
                    .map_err(|e| err(e.to_string()))?;
                if !names.insert(name.clone()) {
                    return Err(err(format!("{name} is listed twice")));
                }
                files.push(SavedFile {
                    info,
                    creator,
                    rows: Vec::new(),
                    stats: SwarmStats::default(),
                    completers: Vec::new(),
                    counted: Vec::new(),
                });
            }
            "stats" | "done" | "counted" => {
                let Some(file) = files.last_mut() else {
                    return Err(err(format!("a {record} line before any file")));
                };
                let counter = |t: &mut Tokens<'_>, what: &str| -> Result<u64, SnapshotError> {
                    let n: u64 = t.parse(what)?;
                    if n > MAX_COUNTER {
                        return Err(err(format!("{n} is more than the largest figure kept")));
                    }
                    Ok(n)
                };
                match record {
                    "stats" => {
                        file.stats = SwarmStats {
                            completed: counter(&mut t, "a completed count")?,
                            up: counter(&mut t, "a byte count")?,
                            down: counter(&mut t, "a byte count")?,
                        }
                    }
                    "counted" => {
                        let addr: SocketAddr = t.parse("a peer address")?;
                        let up = counter(&mut t, "a byte count")?;
                        let down = counter(&mut t, "a byte count")?;
                        file.counted.push((addr, Counted { up, down }));
                    }
                    _ => {
                        let who = t.next("a key or an address")?;
                        let who = if who.contains(':') {
                            who.parse().map(Completer::Addr).ok()
                        } else {
                            who.parse().map(Completer::Key).ok()
                        }
                        .ok_or_else(|| err(format!("{who:?} is not a key or an address")))?;
                        file.completers.push(who);
                    }
                }
            }
            "seed" | "empty" | "part" => {
                let addr: SocketAddr = t.parse("a peer address")?;
                let Some(file) = files.last_mut() else {
                    return Err(err("a row before any file".into()));
                };
                let row = match record {
                    "seed" => Row::Seed,
                    "empty" => Row::Empty,
                    _ => {
                        let bytes = hex::decode(t.next("a bitfield")?)
                            .map_err(|_| err("the bitfield is not hex".into()))?;
                        let chunks = file.info.chunks();
                        let words: Vec<u64> = bytes
                            .chunks_exact(8)
                            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
                            .collect();
                        if bytes.len() % 8 != 0
                            || Bitfield::from_words(chunks, words.clone()).is_none()
                        {
                            return Err(err(format!(
                                "the bitfield does not fit a file of {chunks} chunks"
                            )));
                        }
                        Row::Part(words)
                    }
                };
                if file.rows.iter().any(|(a, _)| *a == addr) {
                    return Err(err(format!("{addr} is in the swarm twice")));
                }
                file.rows.push((addr, row));
            }
            "peer" => {
                let addr: SocketAddr = t.parse("a peer address")?;
                let host = Host::of(t.parse::<IpAddr>("the peer's host IP")?);
                let silent = Duration::from_millis(t.parse("a silence in ms")?);
                let key = match t.next("a key or -")? {
                    "-" => None,
                    k => Some(
                        k.parse::<PeerKey>()
                            .map_err(|_| err(format!("{k:?} is not a key")))?,
                    ),
                };
                let udp = match t.next("a UDP address or -")? {
                    "-" => None,
                    u => Some(
                        u.parse::<SocketAddr>()
                            .map_err(|_| err(format!("{u:?} is not an address")))?,
                    ),
                };
                if !addrs.insert(addr) {
                    return Err(err(format!("peer {addr} is listed twice")));
                }
                if let Some(k) = key {
                    if let Some(other) = keys.insert(k, addr) {
                        return Err(err(format!("{addr} and {other} have the same key")));
                    }
                }
                peers.push(SavedPeer {
                    addr,
                    host,
                    silent,
                    key,
                    udp,
                });
            }
            other => return Err(err(format!("unknown record {other:?}"))),
        }
        if let Some(extra) = t.tokens.next() {
            return Err(err(format!("unexpected {extra:?} at the end of the line")));
        }
    }
    let saved = saved.ok_or(SnapshotError::Line {
        line: 2,
        why: "no saved-unix-ms line".into(),
    })?;
    Ok((saved, files, peers))
}

/// The tokens of one line, with errors that say what was expected.
struct Tokens<'a> {
    line: usize,
    tokens: SplitAsciiWhitespace<'a>,
}

impl<'a> Tokens<'a> {
    fn next(&mut self, what: &str) -> Result<&'a str, SnapshotError> {
        self.tokens.next().ok_or_else(|| SnapshotError::Line {
            line: self.line,
            why: format!("missing {what}"),
        })
    }

    fn parse<T: FromStr>(&mut self, what: &str) -> Result<T, SnapshotError> {
        let token = self.next(what)?;
        token.parse().map_err(|_| SnapshotError::Line {
            line: self.line,
            why: format!("{token:?} is not {what}"),
        })
    }
}

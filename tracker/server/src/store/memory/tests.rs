use super::*;
use tracker_proto::{FileId, PeerChunks, SwarmStats};

fn who(addr: &str, key: Option<u8>) -> Announcer {
    let addr: SocketAddr = addr.parse().unwrap();
    Announcer {
        addr,
        key: key.map(|k| PeerKey([k; 16])),
        source: addr,
        udp: Some(addr),
    }
}

/// Flags 4 and 1 without announce-event figures, as most of these tests send them.
trait WithoutFigures {
    fn share_plain(&self, who: Announcer, info: &FileInfo, now: Instant) -> Result<(), StoreError>;
    fn join_plain(&self, who: Announcer, file: &FileName, now: Instant) -> Result<(), StoreError>;
}

impl WithoutFigures for MemoryStore {
    fn share_plain(&self, who: Announcer, info: &FileInfo, now: Instant) -> Result<(), StoreError> {
        self.share(who, info, &Transfer::default(), now)
    }

    fn join_plain(&self, who: Announcer, file: &FileName, now: Instant) -> Result<(), StoreError> {
        self.join(who, file, &Transfer::default(), now)
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
    let dir = s.directory.lock();
    let mut files: HashMap<FileName, usize> = HashMap::new();
    let shards: Vec<_> = s.shards.iter().map(|m| m.lock()).collect();
    for (i, shard) in shards.iter().enumerate() {
        for name in shard.files.keys() {
            assert!(
                std::ptr::eq(s.shard(name), &s.shards[i]),
                "{name:?} in the wrong shard"
            );
            files.insert(name.clone(), i);
        }
    }
    let entry_of = |name: &FileName| &shards[files[name]].files[name];
    let mut rows = 0;
    let mut bitfield = 0;
    let mut usage: HashMap<Host, Usage> = HashMap::new();
    let catalogue = s.catalogue.read();
    assert_eq!(catalogue.len(), files.len());
    assert_eq!(dir.files, files.len());
    for name in files.keys() {
        let entry = entry_of(name);
        assert_eq!(
            catalogue.get(name),
            Some(&entry.listed()),
            "stale catalogue line"
        );
        assert!(!entry.swarm().is_empty(), "empty file {name:?} kept");
        usage.entry(entry.creator).or_default().files += 1;
        let mut members: HashMap<Host, usize> = HashMap::new();
        let mut seeders = 0;
        for (addr, holding) in entry.swarm() {
            let peer = dir.peers.get(addr).expect("row of an unknown peer");
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
    for (addr, peer) in &dir.peers {
        usage.entry(peer.host).or_default().ports += 1;
        assert!(
            dir.expiry.contains(&(peer.indexed, *addr)),
            "{addr} not in the expiry index"
        );
        assert!(peer.indexed <= peer.last_seen);
        for name in &peer.files {
            assert!(entry_of(name).swarm().contains_key(addr));
        }
        if let Some(key) = peer.key {
            assert_eq!(dir.keys.get(&key), Some(addr));
        }
    }
    assert_eq!(dir.expiry.len(), dir.peers.len());
    assert_eq!(
        dir.keys.len(),
        dir.peers.values().filter(|p| p.key.is_some()).count()
    );
    assert_eq!((dir.rows, dir.bitfield_bytes), (rows, bitfield));
    assert_eq!(dir.hosts.hosts(), usage.len());
    for (host, u) in usage {
        assert_eq!(dir.hosts.usage(host), u, "{host:?}");
    }
}

/// Rows across all swarms.
fn rows(s: &MemoryStore) -> usize {
    s.directory.lock().rows
}

fn has_peer(s: &MemoryStore, addr: &str) -> bool {
    s.directory
        .lock()
        .peers
        .contains_key(&addr.parse().unwrap())
}

fn peer_count(s: &MemoryStore) -> usize {
    s.directory.lock().peers.len()
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
    let s = MemoryStore::new(Duration::from_secs(90), limits);
    for i in 0..10 {
        s.share_plain(who("10.0.0.1:1", None), &info(&format!("f{i}"), 10), now)
            .unwrap();
    }
    assert_eq!(
        s.share_plain(who("10.0.0.1:1", None), &info("f10", 10), now),
        Err(StoreError::HostQuota("files created"))
    );
    s.share_plain(who("10.0.0.2:1", None), &info("f10", 10), now)
        .unwrap();
    // Two peers of one host per swarm, three serving addresses per host.
    let f0 = FileName::new("f0").unwrap();
    let f1 = FileName::new("f1").unwrap();
    let f2 = FileName::new("f2").unwrap();
    s.join_plain(who("10.0.0.3:1", None), &f0, now).unwrap();
    s.join_plain(who("10.0.0.3:2", None), &f0, now).unwrap();
    assert_eq!(
        s.join_plain(who("10.0.0.3:3", None), &f0, now),
        Err(StoreError::HostQuota("peers in one swarm"))
    );
    s.join_plain(who("10.0.0.3:3", None), &f1, now).unwrap();
    assert_eq!(
        s.join_plain(who("10.0.0.3:4", None), &f2, now),
        Err(StoreError::HostQuota("serving addresses"))
    );
    s.join_plain(who("10.0.0.3:1", None), &f1, now).unwrap();
    s.join_plain(who("10.0.0.4:1", None), &f1, now).unwrap();
    // A bitfield of 1000 chunks is 128 bytes, over the host's 100.
    s.share_plain(who("10.0.0.5:1", None), &info("big", 1000), now)
        .unwrap();
    let big = FileName::new("big").unwrap();
    assert_eq!(
        s.report(
            who("10.0.0.6:1", None),
            &big,
            &"1".parse().unwrap(),
            &Transfer::default(),
            now
        ),
        Err(StoreError::HostQuota("bitfield memory"))
    );
    assert!(!has_peer(&s, "10.0.0.6:1"));
    // An IPv6 /64 is one host.
    s.join_plain(who("[2001:db8::1]:1", None), &f0, now)
        .unwrap();
    s.join_plain(who("[2001:db8::2]:1", None), &f0, now)
        .unwrap();
    assert_eq!(
        s.join_plain(who("[2001:db8::3]:1", None), &f0, now),
        Err(StoreError::HostQuota("peers in one swarm"))
    );
    s.join_plain(who("[2001:db8:0:1::3]:1", None), &f0, now)
        .unwrap();
    assert_consistent(&s);
    // Under --trust-ip-field the source is charged, not the announced address.
    assert_eq!(
        s.join_plain(from("10.9.9.9:1", "10.0.0.3:5", None), &f2, now),
        Err(StoreError::HostQuota("serving addresses"))
    );
    s.join_plain(from("10.9.9.9:1", "10.0.0.4:5", None), &f2, now)
        .unwrap();
    assert_consistent(&s);
}

/// Rows announced with a key change, move or go only with that key (protocol.txt §1.7).
#[test]
fn keyed_rows_answer_to_their_key_only() {
    let now = Instant::now();
    let s = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let f = info("a", 10);
    s.share_plain(who("10.0.0.1:1", Some(1)), &f, now).unwrap();
    let forbidden = Err(StoreError::Forbidden("10.0.0.1:1".parse().unwrap()));
    assert_eq!(
        s.exit(who("10.0.0.1:1", None), None, &Transfer::default(), now),
        forbidden
    );
    assert_eq!(
        s.exit(who("10.0.0.1:1", Some(2)), None, &Transfer::default(), now),
        forbidden
    );
    assert_eq!(s.share_plain(who("10.0.0.1:1", None), &f, now), forbidden);
    assert_eq!(
        s.join_plain(who("10.0.0.1:1", Some(2)), f.name(), now),
        forbidden
    );
    assert_eq!(
        s.heartbeat(who("10.0.0.1:1", None), now).map(drop),
        forbidden
    );
    // Another key cannot move its rows onto this address either.
    s.share_plain(who("10.0.0.1:2", Some(2)), &f, now).unwrap();
    assert_eq!(
        s.heartbeat(who("10.0.0.1:1", Some(2)), now).map(drop),
        forbidden
    );
    assert_eq!(listing(&s, "a").len(), 2);
    // A keyless peer's rows are taken over by a key (a peer that got one).
    s.share_plain(who("10.0.0.1:3", None), &f, now).unwrap();
    assert_eq!(s.heartbeat(who("10.0.0.1:3", Some(3)), now), Ok(1));
    assert_eq!(
        s.heartbeat(who("10.0.0.1:3", None), now),
        Err(StoreError::Forbidden("10.0.0.1:3".parse().unwrap()))
    );
    // The key itself may do everything, also from a new address.
    assert_eq!(s.heartbeat(who("10.0.0.7:1", Some(1)), now), Ok(1));
    assert_eq!(
        s.exit(who("10.0.0.7:1", Some(1)), None, &Transfer::default(), now),
        Ok(())
    );
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
    let s = MemoryStore::new(Duration::from_secs(90), limits);
    s.share_plain(who("10.0.0.1:1", Some(1)), &info("a", 10), now)
        .unwrap();
    s.share_plain(who("10.0.0.2:1", None), &info("b", 10), now)
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
        let s = MemoryStore::new(Duration::from_secs(90), limits);
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
                0 => s.share_plain(a, &f, now),
                1 | 6 => s.report(a, &name, &chunks, &Transfer::default(), now),
                2 => s.join_plain(a, &name, now),
                3 => s.exit(a, Some(&name), &Transfer::default(), now),
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

/// Receive threads announcing, listing and expiring at once on one store (each shard and the
/// directory under its own lock) leave it as consistent as one thread would.
#[test]
fn concurrent_threads_keep_the_counters_right() {
    let t0 = Instant::now();
    let limits = Limits {
        max_files: 40,
        max_peers: 60,
        max_peers_per_file: 30,
        max_rows: 400,
        max_bitfield_bytes: 4096,
        ip_share_percent: 100,
    };
    let s = MemoryStore::new(Duration::from_secs(5), limits);
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..3000u64 {
                    let r = (i * 4 + t).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
                    let now = t0 + Duration::from_millis(i * 7);
                    let addr = format!("10.0.{}.{}:{}", r % 3, (r >> 2) % 5, 1 + (r >> 5) % 4);
                    let key = ((r >> 8) % 4 != 0).then_some(((r >> 10) % 6) as u8);
                    let a = who(&addr, key);
                    let f = info(
                        &format!("f{}", (r >> 13) % 30),
                        8 + ((r >> 13) % 30) as u32 * 64,
                    );
                    let chunks =
                        ChunkRanges::from_indices([(r >> 18) as u32 % f.chunks()]).unwrap();
                    let _ = match (r >> 24) % 9 {
                        0 => s.share_plain(a, &f, now),
                        1 | 2 => s.report(a, f.name(), &chunks, &Transfer::default(), now),
                        3 => s.join_plain(a, f.name(), now),
                        4 => s.exit(a, Some(f.name()), &Transfer::default(), now),
                        5 => s.heartbeat(a, now).map(|_| ()),
                        6 => s.peers(f.name(), 0, None, &mut |_| true).map(|_| ()),
                        7 => {
                            s.files(0, &mut |_| true);
                            Ok(())
                        }
                        _ => {
                            s.expire(now);
                            Ok(())
                        }
                    };
                }
            });
        }
    });
    assert_consistent(&s);
    s.expire(t0 + Duration::from_secs(3600));
    assert_consistent(&s);
    assert_eq!((peer_count(&s), rows(&s)), (0, 0));
}

#[test]
fn keep_punch_path_announcements_never_move_where_punches_go() {
    let now = Instant::now();
    let s = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let f = info("a", 4);
    let name = f.name().clone();
    // A one-shot command shares for a daemon that has no rows yet: no return path at all,
    // so a punch towards it fails at once instead of going to a socket about to close.
    let mut one_shot = who("10.0.0.1:6881", Some(7));
    one_shot.udp = None;
    s.share_plain(one_shot, &f, now).unwrap();
    assert_eq!(
        s.punch_target(&name, one_shot.addr, now),
        Err(StoreError::PeerNotFound(one_shot.addr))
    );
    // The daemon's own announcement sets it; later one-shot ones leave it alone.
    let mut daemon = who("10.0.0.1:6881", Some(7));
    daemon.udp = Some("10.0.0.1:40000".parse().unwrap());
    s.heartbeat(daemon, now).unwrap();
    s.report(
        one_shot,
        &name,
        &"0-1".parse().unwrap(),
        &Transfer::default(),
        now,
    )
    .unwrap();
    s.share_plain(one_shot, &f, now).unwrap();
    assert_eq!(
        s.punch_target(&name, daemon.addr, now),
        Ok(daemon.udp.unwrap())
    );
}

#[test]
fn partial_peer_becomes_seeder_and_frees_its_bitfield() {
    let now = Instant::now();
    let s = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let f = info("a", 100);
    s.share_plain(who("10.0.0.1:1", None), &f, now).unwrap();
    let name = f.name().clone();
    s.report(
        who("10.0.0.2:1", None),
        &name,
        &"0-49".parse().unwrap(),
        &Transfer::default(),
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
        &Transfer::default(),
        now,
    )
    .unwrap();
    assert_eq!(s.bitfield_bytes(), 0);
    assert_eq!(s.query(&name).unwrap().seeders, 2);
    assert_eq!(
        s.report(
            who("10.0.0.2:1", None),
            &name,
            &"100".parse().unwrap(),
            &Transfer::default(),
            now
        ),
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
    let s = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let f = info("a", 100);
    s.share_plain(who("10.0.0.1:1", None), &f, now).unwrap();
    let name = f.name().clone();
    s.join_plain(who("10.0.0.2:1", None), &name, now).unwrap();
    s.join_plain(who("10.0.0.3:1", None), &name, now).unwrap();
    s.join_plain(who("10.0.0.3:1", None), &name, now).unwrap();
    assert_eq!((rows(&s), s.bitfield_bytes()), (3, 0));
    assert_eq!(listing(&s, "a")[1].chunks, PeerChunks::Count(0));
    assert_eq!(s.query(&name).unwrap().leechers, 2);
    s.report(
        who("10.0.0.2:1", None),
        &name,
        &"7".parse().unwrap(),
        &Transfer::default(),
        now,
    )
    .unwrap();
    assert_eq!((rows(&s), s.bitfield_bytes()), (3, 16));
    s.join_plain(who("10.0.0.2:1", None), &name, now).unwrap();
    assert_eq!(
        listing(&s, "a")[1].chunks,
        PeerChunks::Ranges("7".parse().unwrap())
    );
    s.share_plain(who("10.0.0.3:1", None), &f, now).unwrap();
    assert_eq!(s.query(&name).unwrap().seeders, 2);
    s.exit(who("10.0.0.2:1", None), None, &Transfer::default(), now)
        .unwrap();
    assert_eq!((rows(&s), s.bitfield_bytes()), (2, 0));
    let mut asked = Vec::new();
    s.peers(&name, 0, Some("10.0.0.1:1".parse().unwrap()), &mut |p| {
        asked.push(p.addr);
        true
    })
    .unwrap();
    assert_eq!(asked, ["10.0.0.3:1".parse::<SocketAddr>().unwrap()]);
    assert_eq!(
        s.join_plain(who("10.0.0.4:1", None), &FileName::new("b").unwrap(), now),
        Err(StoreError::FileNotFound(FileName::new("b").unwrap()))
    );
    assert!(!has_peer(&s, "10.0.0.4:1"));
}

#[test]
fn scattered_chunks_are_listed_as_a_count() {
    let now = Instant::now();
    let s = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let f = info("a", 1000);
    s.share_plain(who("10.0.0.1:1", None), &f, now).unwrap();
    let odd = ChunkRanges::from_indices((1..1000).step_by(2)).unwrap();
    s.report(
        who("10.0.0.2:1", None),
        f.name(),
        &odd,
        &Transfer::default(),
        now,
    )
    .unwrap();
    assert_eq!(listing(&s, "a")[1].chunks, PeerChunks::Count(500));
}

#[test]
fn key_moves_rows_and_expiry_frees_them() {
    let t0 = Instant::now();
    let s = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let f = info("a", 10);
    s.share_plain(who("10.0.0.1:1", Some(7)), &f, t0).unwrap();
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
    assert_eq!(peer_count(&s), 0);
    assert!(s.directory.lock().keys.is_empty());
    assert_consistent(&s);
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
    let s = MemoryStore::new(Duration::from_secs(90), limits);
    s.share_plain(who("10.0.0.1:1", None), &info("a", 10), now)
        .unwrap();
    assert_eq!(
        s.share_plain(who("10.0.0.1:1", None), &info("b", 10), now),
        Err(StoreError::Capacity("files"))
    );
    assert_eq!(
        s.share_plain(who("10.0.0.2:1", None), &info("a", 10), now),
        Err(StoreError::Capacity("peers per file"))
    );
    let mut other = info("a", 10);
    other = FileInfo::new(other.name().clone(), 7, 2048, FileId([1; 32])).unwrap();
    assert!(matches!(
        s.share_plain(who("10.0.0.1:1", None), &other, now),
        Err(StoreError::HashMismatch(_))
    ));
    assert_eq!(peer_count(&s), 1);
}

#[test]
fn the_row_cap_bounds_all_swarms_and_frees_on_exit() {
    let now = Instant::now();
    let limits = Limits {
        max_rows: 3,
        ip_share_percent: 100,
        ..Limits::default()
    };
    let s = MemoryStore::new(Duration::from_secs(90), limits);
    s.share_plain(who("10.0.0.1:1", None), &info("a", 10), now)
        .unwrap();
    s.share_plain(who("10.0.0.1:1", None), &info("b", 10), now)
        .unwrap();
    let a = FileName::new("a").unwrap();
    s.report(
        who("10.0.0.2:1", Some(1)),
        &a,
        &"1".parse().unwrap(),
        &Transfer::default(),
        now,
    )
    .unwrap();
    assert_eq!(
        s.report(
            who("10.0.0.3:1", None),
            &a,
            &"1".parse().unwrap(),
            &Transfer::default(),
            now
        ),
        Err(StoreError::Capacity("rows"))
    );
    assert_eq!(
        s.share_plain(who("10.0.0.3:1", None), &info("c", 10), now),
        Err(StoreError::Capacity("rows"))
    );
    // Existing rows still change; a key move keeps the count.
    s.report(
        who("10.0.0.2:1", Some(1)),
        &a,
        &"2".parse().unwrap(),
        &Transfer::default(),
        now,
    )
    .unwrap();
    assert_eq!(s.heartbeat(who("10.0.0.4:1", Some(1)), now), Ok(1));
    assert_eq!(rows(&s), 3);
    s.exit(who("10.0.0.1:1", None), None, &Transfer::default(), now)
        .unwrap();
    assert_eq!(rows(&s), 1);
    s.share_plain(who("10.0.0.3:1", None), &info("c", 10), now)
        .unwrap();
    assert_eq!(rows(&s), 2);
    assert!(has_peer(&s, "10.0.0.3:1"));
}

fn catalogue(s: &MemoryStore) -> Vec<ListedFile> {
    let mut out = Vec::new();
    s.files(0, &mut |f| {
        out.push(f.clone());
        true
    });
    out
}

/// A store with every kind of row, key and host a state file must carry.
fn populated(now: Instant) -> MemoryStore {
    let s = MemoryStore::new(Duration::from_secs(90), Limits::default());
    s.share_plain(who("10.0.0.1:6881", Some(1)), &info("movie.mkv", 300), now)
        .unwrap();
    s.report(
        who("10.0.0.2:6881", Some(2)),
        &FileName::new("movie.mkv").unwrap(),
        &"0-9,64,200-255".parse().unwrap(),
        &Transfer::default(),
        now,
    )
    .unwrap();
    s.join_plain(
        who("[2001:db8:1:2::7]:6881", None),
        &FileName::new("movie.mkv").unwrap(),
        now,
    )
    .unwrap();
    // Announced from another host (a relay or --trust-ip-field): the host is kept as is.
    s.share_plain(
        from("192.0.2.9:7000", "10.0.0.3:5000", Some(3)),
        &info("notes.txt", 1),
        now,
    )
    .unwrap();
    s
}

#[test]
fn a_state_file_brings_back_every_row_key_and_host() {
    let now = Instant::now();
    let s = populated(now);
    let bytes = s.snapshot(now);
    let later = now + Duration::from_secs(5);
    let t = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let restored = t.restore(&bytes, later).unwrap();
    assert_eq!(
        (restored.files, restored.peers, restored.rows),
        (2, 4, 4),
        "{restored:?}"
    );
    assert_consistent(&t);
    for name in ["movie.mkv", "notes.txt"] {
        assert_eq!(listing(&t, name), listing(&s, name), "{name}");
    }
    assert_eq!(catalogue(&t), catalogue(&s));
    assert_eq!(t.bitfield_bytes(), s.bitfield_bytes());
    // Keys are restored: another key may not take the address, its own key may.
    assert_eq!(
        t.heartbeat(who("10.0.0.2:6881", Some(9)), later),
        Err(StoreError::Forbidden("10.0.0.2:6881".parse().unwrap()))
    );
    assert_eq!(t.heartbeat(who("10.0.0.2:6881", Some(2)), later), Ok(1));
    // The charged host of the relayed peer came back, not its address's.
    let dir = t.directory.lock();
    let relayed = &dir.peers[&"192.0.2.9:7000".parse().unwrap()];
    assert_eq!(relayed.host, Host::of("10.0.0.3".parse().unwrap()));
    // Silence counts from the save, not from the load.
    assert_eq!(relayed.last_seen, later);
}

#[test]
fn peers_expire_after_a_restore_as_they_would_have() {
    let now = Instant::now();
    let s = populated(now);
    s.heartbeat(who("10.0.0.1:6881", Some(1)), now + Duration::from_secs(60))
        .unwrap();
    let bytes = s.snapshot(now + Duration::from_secs(89));
    let t = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let later = now + Duration::from_secs(1000);
    t.restore(&bytes, later).unwrap();
    assert_eq!(peer_count(&t), 4);
    t.expire(later + Duration::from_millis(1500));
    // Only the peer heard from 29 s before the save is left.
    assert_eq!(peer_count(&t), 1);
    assert!(has_peer(&t, "10.0.0.1:6881"));
    assert_consistent(&t);
}

#[test]
fn every_truncation_and_every_edit_of_a_state_file_is_refused() {
    let now = Instant::now();
    let bytes = populated(now).snapshot(now);
    for len in 0..bytes.len() {
        let t = MemoryStore::new(Duration::from_secs(90), Limits::default());
        assert!(
            t.restore(&bytes[..len], now).is_err(),
            "prefix of {len} bytes"
        );
        assert_eq!(peer_count(&t), 0, "a refused file loaded something");
    }
    for i in (0..bytes.len()).step_by(7) {
        let mut edited = bytes.clone();
        edited[i] ^= 0x01;
        let t = MemoryStore::new(Duration::from_secs(90), Limits::default());
        assert!(t.restore(&edited, now).is_err(), "byte {i} flipped");
    }
}

/// A state file is checked line by line too, as one written by hand (with a right checksum)
/// could be wrong in any field.
#[test]
fn a_well_sealed_but_wrong_state_file_names_its_line() {
    let seal = |body: &str| {
        let digest = hex::encode(sha2::Sha256::digest(body.as_bytes()));
        format!("{body}end {digest}\n").into_bytes()
    };
    use sha2::Digest;
    let head = "tracker-state 1\nsaved-unix-ms 1\n";
    let id = format!("sha256:{}", "5a".repeat(32));
    let cases = [
        (
            format!("{head}seed 10.0.0.1:1\n"),
            3,
            "a row before any file",
        ),
        (
            format!("{head}file a 4096 2048 {id} 10.0.0.1\npart 10.0.0.1:1 ff\n"),
            4,
            "bitfield",
        ),
        (
            format!("{head}file a 4096 2048 {id} 10.0.0.1\npart 10.0.0.1:1 0400000000000000\n"),
            4,
            "bitfield",
        ),
        (
            format!("{head}file a/b 4096 2048 {id} 10.0.0.1\n"),
            3,
            "file name",
        ),
        (
            format!("{head}peer 10.0.0.1:1 10.0.0.1 5 nokey -\n"),
            3,
            "not a key",
        ),
        (
            format!("{head}peer 10.0.0.1:1 10.0.0.1 5 - - extra\n"),
            3,
            "unexpected",
        ),
        (format!("{head}bogus\n"), 3, "unknown record"),
    ];
    for (body, line, says) in cases {
        let t = MemoryStore::new(Duration::from_secs(90), Limits::default());
        let e = t.restore(&seal(&body), Instant::now()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("line {line}:")) && text.contains(says),
            "{body:?}: {text}"
        );
    }
    let t = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let e = t
        .restore(b"{\"json\": true}\n", Instant::now())
        .unwrap_err();
    assert!(matches!(e, SnapshotError::NotState(_)), "{e}");
}

#[test]
fn a_restore_under_smaller_limits_keeps_within_them_and_says_so() {
    let now = Instant::now();
    let bytes = populated(now).snapshot(now);
    let limits = Limits {
        max_rows: 2,
        ..Limits::default()
    };
    let t = MemoryStore::new(Duration::from_secs(90), limits);
    let restored = t.restore(&bytes, now).unwrap();
    assert_eq!(restored.rows, 2);
    assert_eq!(restored.refused_rows, 2);
    assert_eq!(rows(&t), 2);
    assert_consistent(&t);
}

#[test]
fn a_sealed_store_changes_nothing_and_says_why() {
    let now = Instant::now();
    let s = populated(now);
    let before = s.snapshot(now);
    s.seal();
    let name = FileName::new("movie.mkv").unwrap();
    let mut tasks = [Task {
        touch: None,
        op: Op::Exit {
            who: who("10.0.0.1:6881", Some(1)),
            file: Some(&name),
            transfer: &Transfer::default(),
        },
    }];
    let done = SwarmStore::run(&s, &mut tasks, now);
    assert!(matches!(&done[..], [Err(StoreError::Unavailable(_))]));
    SwarmStore::expire(&s, now + Duration::from_secs(1000));
    let after = s.snapshot(now);
    // Only the save time line may differ.
    let body = |b: &[u8]| -> Vec<String> {
        String::from_utf8(b.to_vec())
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("saved-unix-ms") && !l.starts_with("end "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(body(&after), body(&before));
}

fn transfer(text: &str) -> Transfer {
    let flag = if text.contains("stopped") {
        "5 f"
    } else {
        "3 f 0"
    };
    let request = format!("REQUEST {flag} 1.2.3.4:1 {text}");
    tracker_proto::Request::parse(request.as_bytes())
        .unwrap()
        .transfer
}

fn figures(s: &MemoryStore, name: &str) -> SwarmStats {
    s.query(&FileName::new(name).unwrap())
        .unwrap()
        .stats
        .unwrap()
}

#[test]
fn figures_count_growth_once_and_completions_once_per_key() {
    let now = Instant::now();
    let s = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let f = info("a", 10);
    let name = f.name().clone();
    let seeder = who("10.0.0.1:1", Some(1));
    s.share(
        seeder,
        &f,
        &transfer("event=started up=0 down=0 left=0"),
        now,
    )
    .unwrap();
    let leecher = who("10.0.0.2:1", Some(2));
    s.join(leecher, &name, &transfer("event=started up=0 down=0"), now)
        .unwrap();
    s.report(
        leecher,
        &name,
        &"0-4".parse().unwrap(),
        &transfer("down=10240"),
        now,
    )
    .unwrap();
    // A retry reports the same counters: nothing more is counted.
    s.report(
        leecher,
        &name,
        &"0-4".parse().unwrap(),
        &transfer("down=10240"),
        now,
    )
    .unwrap();
    assert_eq!(
        figures(&s, "a"),
        SwarmStats {
            completed: 0,
            up: 0,
            down: 10240
        }
    );
    let done = transfer("event=completed up=100 down=20480 left=0");
    s.report(leecher, &name, &"0-9".parse().unwrap(), &done, now)
        .unwrap();
    s.report(leecher, &name, &"0-9".parse().unwrap(), &done, now)
        .unwrap();
    assert_eq!(
        figures(&s, "a"),
        SwarmStats {
            completed: 1,
            up: 100,
            down: 20480
        }
    );
    // Counters going backwards without event=started: refused, nothing changes.
    let backwards = s.report(
        leecher,
        &name,
        &"0".parse().unwrap(),
        &transfer("down=5"),
        now,
    );
    assert!(
        matches!(backwards, Err(StoreError::Counters(_))),
        "{backwards:?}"
    );
    assert_eq!(
        backwards.unwrap_err().code(),
        tracker_proto::ErrorCode::BadField
    );
    let too_much = s.join(
        who("10.0.0.3:1", Some(3)),
        &name,
        &transfer("left=20481"),
        now,
    );
    assert!(
        matches!(too_much, Err(StoreError::Counters(_))),
        "{too_much:?}"
    );
    assert!(!has_peer(&s, "10.0.0.3:1"), "a refused join leaves no row");
    // The leecher restarts (same key, new session): started sets a new base; its second
    // completion does not count again.
    s.join(leecher, &name, &transfer("event=started up=0 down=0"), now)
        .unwrap();
    s.share(
        leecher,
        &f,
        &transfer("event=completed up=50 down=0 left=0"),
        now,
    )
    .unwrap();
    assert_eq!(
        figures(&s, "a"),
        SwarmStats {
            completed: 1,
            up: 150,
            down: 20480
        }
    );
    // Stopping counts the last counters before the row goes.
    s.exit(
        seeder,
        Some(&name),
        &transfer("event=stopped up=20480"),
        now,
    )
    .unwrap();
    assert_eq!(
        figures(&s, "a"),
        SwarmStats {
            completed: 1,
            up: 20630,
            down: 20480
        }
    );
    assert_eq!(catalogue(&s)[0].stats, Some(figures(&s, "a")));
    assert_consistent(&s);
}

#[test]
fn a_key_move_keeps_its_counted_bytes_and_sums_saturate() {
    let now = Instant::now();
    let s = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let f = info("a", 10);
    s.share(who("10.0.0.1:1", Some(1)), &f, &transfer("up=1000"), now)
        .unwrap();
    // Its address changed: the base moved with the rows, so only the growth counts.
    s.share(who("10.0.0.1:2", Some(1)), &f, &transfer("up=1500"), now)
        .unwrap();
    assert_eq!(figures(&s, "a").up, 1500);
    let max = tracker_proto::MAX_COUNTER;
    for (port, key) in [(3, 3), (4, 4), (5, 5)] {
        let addr = format!("10.0.0.1:{port}");
        s.share(
            who(&addr, Some(key)),
            &f,
            &transfer(&format!("up={max}")),
            now,
        )
        .unwrap();
    }
    assert_eq!(figures(&s, "a").up, max);
    assert_consistent(&s);
}

#[test]
fn a_state_file_keeps_the_figures_and_an_old_one_still_loads() {
    let now = Instant::now();
    let s = populated(now);
    let movie = FileName::new("movie.mkv").unwrap();
    let leecher = who("10.0.0.2:6881", Some(2));
    s.report(
        leecher,
        &movie,
        &"11".parse().unwrap(),
        &transfer("event=completed up=7 down=9 left=0"),
        now,
    )
    .unwrap();
    let keyless = who("[2001:db8:1:2::7]:6881", None);
    s.join(keyless, &movie, &transfer("event=completed down=3"), now)
        .unwrap();
    let bytes = s.snapshot(now);
    assert!(bytes.starts_with(b"tracker-state 2\n"));
    let t = MemoryStore::new(Duration::from_secs(90), Limits::default());
    t.restore(&bytes, now).unwrap();
    assert_eq!(
        figures(&t, "movie.mkv"),
        SwarmStats {
            completed: 2,
            up: 7,
            down: 12
        }
    );
    assert_eq!(catalogue(&t), catalogue(&s));
    // Completers and counted bytes came back: repeating both reports changes nothing.
    t.report(
        leecher,
        &movie,
        &"11".parse().unwrap(),
        &transfer("event=completed up=7 down=9 left=0"),
        now,
    )
    .unwrap();
    t.join(keyless, &movie, &transfer("event=completed down=3"), now)
        .unwrap();
    assert_eq!(
        figures(&t, "movie.mkv"),
        SwarmStats {
            completed: 2,
            up: 7,
            down: 12
        }
    );
    assert_consistent(&t);

    // A version 1 file: the same rows, figures zero.
    use sha2::Digest as _;
    let text = String::from_utf8(populated(now).snapshot(now)).unwrap();
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("stats ") && !l.starts_with("end "))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replacen("tracker-state 2", "tracker-state 1", 1);
    let digest = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    let old = format!("{body}end {digest}\n");
    let u = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let restored = u.restore(old.as_bytes(), now).unwrap();
    assert_eq!(restored.rows, 4);
    assert_eq!(figures(&u, "movie.mkv"), SwarmStats::default());
}

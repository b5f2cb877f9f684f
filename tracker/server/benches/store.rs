//! Store benchmark: heap memory of the swarm store, measured with a counting allocator.
//!
//! 1. One 1 GiB file (524,288 chunks of 2048 bytes) and 1,000 peers: first every peer holds
//!    half the chunks (the bitfield-heavy state), then all of them (seeders, no bitfields).
//! 2. A 10,000-file catalogue listed page by page through the tracker's request handler with
//!    1400-byte answers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use tracker::store::{Announcer, Limits, MemoryStore};
use tracker::{ServerConfig, Tracker};
use tracker_proto::{ChunkRanges, FileId, FileInfo, FileName, Transfer};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn peer(i: u32) -> Announcer {
    let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881));
    Announcer {
        addr,
        key: None,
        source: addr,
        udp: Some(addr),
    }
}

fn big_swarm() {
    const PEERS: u32 = 1000;
    const CHUNKS: u32 = 524_288;
    let base = LIVE.load(Ordering::Relaxed);
    let now = Instant::now();
    let store = MemoryStore::new(Duration::from_secs(90), Limits::default());
    let name = FileName::new("one-gib.bin").unwrap();
    let info = FileInfo::new(
        name.clone(),
        u64::from(CHUNKS) * 2048,
        2048,
        FileId([7; 32]),
    )
    .unwrap();
    store
        .share(peer(0), &info, &Transfer::default(), now)
        .unwrap();
    let half = ChunkRanges::from_ranges([(0, CHUNKS / 2 - 1)]).unwrap();
    let rest = ChunkRanges::from_ranges([(CHUNKS / 2, CHUNKS - 1)]).unwrap();
    let t = Instant::now();
    for i in 1..PEERS {
        store
            .report(peer(i), &name, &half, &Transfer::default(), now)
            .unwrap();
    }
    let partial = LIVE.load(Ordering::Relaxed) - base;
    println!(
        "1 file x {CHUNKS} chunks, {PEERS} peers each holding half the chunks: {:.1} MiB of store memory ({} bitfield bytes), built in {:.2} s",
        mib(partial),
        store.bitfield_bytes(),
        t.elapsed().as_secs_f64()
    );
    for i in 1..PEERS {
        store
            .report(peer(i), &name, &rest, &Transfer::default(), now)
            .unwrap();
    }
    let complete = LIVE.load(Ordering::Relaxed) - base;
    let summary = store.query(&name).unwrap();
    assert_eq!(summary.seeders, PEERS);
    println!(
        "1 file x {CHUNKS} chunks, {PEERS} peers each holding all chunks: {:.3} MiB of store memory (target < 100 MiB), {} seeders",
        mib(complete),
        summary.seeders
    );
    assert!(partial < 100 << 20 && complete < 100 << 20);
}

fn catalogue() {
    const FILES: u32 = 10_000;
    let base = LIVE.load(Ordering::Relaxed);
    let tracker = Tracker::new(ServerConfig::default());
    let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let id = format!("sha256:{}", "ab".repeat(32));
    let now = Instant::now();
    for f in 0..FILES {
        let req =
            format!("REQUEST 4 catalogue-file-{f:05}.bin 512 127.0.0.1:6881 size=1048576 id={id}");
        let out = tracker.handle(req.as_bytes(), source, now);
        assert_eq!(out.reply.as_deref(), Some(&b"RESPONSE 4 OK"[..]));
    }
    let memory = LIVE.load(Ordering::Relaxed) - base;
    let t = Instant::now();
    let (mut offset, mut pages, mut listed, mut largest) = (0u32, 0, 0, 0);
    loop {
        let out = tracker.handle(format!("REQUEST 6 offset={offset}").as_bytes(), source, now);
        let text = String::from_utf8(out.reply.expect("an answer")).unwrap();
        largest = largest.max(text.len());
        pages += 1;
        listed += text.lines().count() - 1;
        match text
            .lines()
            .next()
            .unwrap()
            .split(' ')
            .find_map(|w| w.strip_prefix("next="))
        {
            Some(n) => offset = n.parse().unwrap(),
            None => break,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(listed, FILES as usize);
    println!(
        "catalogue of {FILES} files: {:.1} MiB of store memory; listed in {pages} pages of at most {largest} bytes in {:.1} ms ({:.0} pages/s)",
        mib(memory),
        secs * 1e3,
        f64::from(pages) / secs
    );
}

fn main() {
    big_swarm();
    catalogue();
}

//! The load benchmark's request mix, shared with the handler benchmark so both measure the
//! same work (one with sockets, one without).

pub const FILES: usize = 100;
pub const PEERS: u16 = 1000;
pub const CHUNKS: u32 = 4096;

/// The flag 4 of file `f`'s seeder.
pub fn share_request(f: usize) -> String {
    let size = u64::from(CHUNKS) * 2048;
    let id = format!("sha256:{}", "3c".repeat(32));
    format!(
        "REQUEST 4 file-{f:03}.bin {CHUNKS} 127.0.0.1:{} size={size} id={id}",
        20000 + f
    )
}

/// What shares file `f` before a run: its seeder's flag 4 and four partial peers' reports,
/// so flag 1 answers carry several peer lines from the start and flag 6 a full page.
pub fn populating_requests(f: usize) -> Vec<String> {
    let mut reqs = vec![share_request(f)];
    for p in 0..4 {
        reqs.push(format!(
            "REQUEST 3 file-{f:03}.bin {}-{} 127.0.0.1:{}",
            p * 100,
            p * 100 + 99,
            30000 + p
        ));
    }
    reqs
}

/// The i-th request of the mix, with `tid`. In the default scenario each simulated peer
/// downloads one file and reports its chunks in order, so swarms hold ~10 peers with compact
/// chunk ranges. In the `heavy` scenario every peer reports random chunks of random files: each
/// swarm grows to ~1000 peers with scattered chunks and every flag 1 answer is a full page.
pub fn request(i: u64, tid: u32, heavy: bool) -> String {
    let r = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
    match i % 5 {
        0 | 1 => format!("REQUEST 1 file-{:03}.bin tid={tid}", r % FILES as u64),
        2 | 3 if heavy => format!("{} tid={tid}", heavy_report(i)),
        2 | 3 => {
            let n = i / 5;
            let peer = (n % u64::from(PEERS)) as u16;
            let file = u64::from(peer) % FILES as u64;
            let chunk = ((n / u64::from(PEERS)) * 2 + i % 5 - 2) as u32 % CHUNKS;
            format!(
                "REQUEST 3 file-{file:03}.bin {chunk} 127.0.0.1:{} tid={tid}",
                40000 + peer
            )
        }
        _ => format!("REQUEST 6 tid={tid}"),
    }
}

/// The flag 3 (without a tid) that the heavy scenario sends as its i-th request: a random
/// chunk of a random file from one of PEERS peers.
pub fn heavy_report(i: u64) -> String {
    let r = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
    let file = r % FILES as u64;
    let peer = 40000 + (r >> 8) as u16 % PEERS;
    let chunk = (r >> 20) as u32 % CHUNKS;
    format!("REQUEST 3 file-{file:03}.bin {chunk} 127.0.0.1:{peer}")
}

//! Time to build the manifest of a 1 GiB file (the cost of `peer share`): SHA-256 of every
//! 2048-byte chunk on every core. Run with `cargo bench -p peer --bench manifest`.

use std::io::Write;
use std::time::Instant;

use peer_engine::manifest::{Manifest, DEFAULT_CHUNK_SIZE};

fn main() -> std::io::Result<()> {
    let size: usize = std::env::var("MANIFEST_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
        << 20;
    let path = std::env::temp_dir().join(format!("manifest-bench-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&path)?;
        let block: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for i in 0..size >> 20 {
            let mut b = block.clone();
            b[0] = i as u8;
            f.write_all(&b)?;
        }
    }
    // Once to fill the page cache (what a freshly written or recently read file looks like).
    Manifest::from_file(&path, DEFAULT_CHUNK_SIZE)?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let m = Manifest::from_file(&path, DEFAULT_CHUNK_SIZE)?;
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(m.size(), size as u64);
    }
    std::fs::remove_file(&path)?;
    println!(
        "manifest of a {} MiB file: {best:.2} s ({:.0} MB/s, {} threads, best of 3)",
        size >> 20,
        size as f64 / best / 1e6,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}

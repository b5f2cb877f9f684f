//! Hashing chunks of a `.part` again: which of the chunks a resume record lists are really
//! there (after the `.part` changed behind its record), and which chunks of a finished
//! download fail before it gets its name. Spread over every core, in large positioned reads,
//! like [`Manifest::from_file`].

use std::io;

use crate::bitfield::Bitfield;
use crate::manifest::Manifest;
use crate::storage::ReadAt;

/// Chunks hashed per read and per batch of manifest hashes: about 1 MiB at 2048 bytes.
const BATCH: u32 = 512;

/// The chunks of `candidates` whose bytes in `file` match `manifest`.
pub(super) fn matching(
    file: &(impl ReadAt + ?Sized),
    manifest: &Manifest,
    candidates: &Bitfield,
) -> io::Result<Bitfield> {
    let count = manifest.chunk_count();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let per_thread = count.div_ceil(threads.max(1)).max(1);
    let found: Vec<io::Result<Vec<u32>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..count.div_ceil(per_thread))
            .map(|i| {
                let first = i * per_thread;
                let end = first.saturating_add(per_thread).min(count);
                scope.spawn(move || good_in(file, manifest, candidates, first, end))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")))
            })
            .collect()
    });
    let mut good = Bitfield::empty(count);
    for share in found {
        for i in share? {
            good.set(i);
        }
    }
    Ok(good)
}

/// The chunks of `candidates` in `first..end` that verify.
fn good_in(
    file: &(impl ReadAt + ?Sized),
    manifest: &Manifest,
    candidates: &Bitfield,
    first: u32,
    end: u32,
) -> io::Result<Vec<u32>> {
    let chunk_size = manifest.chunk_size() as usize;
    let mut buf = vec![0u8; BATCH as usize * chunk_size];
    let mut good = Vec::new();
    let mut start = first;
    while start < end {
        if !candidates.get(start) {
            start += 1;
            continue;
        }
        // A run of candidates, at most one batch long.
        let mut stop = start + 1;
        while stop < end && stop - start < BATCH && candidates.get(stop) {
            stop += 1;
        }
        let len: usize = (start..stop).map(|i| manifest.chunk_len(i)).sum();
        file.fill_at(&mut buf[..len], manifest.offset(start))?;
        let want = manifest.hashes(start, stop - start)?;
        let chunks: Vec<&[u8]> = buf[..len].chunks(chunk_size).collect();
        let verdicts = manifest.check_run(start, &chunks, &want);
        good.extend(
            (start..stop)
                .zip(verdicts)
                .filter_map(|(index, ok)| ok.then_some(index)),
        );
        start = stop;
    }
    Ok(good)
}

#[cfg(test)]
mod tests {
    use super::super::tests::tempdir;
    use super::*;
    use std::fs::File;

    #[test]
    fn finds_exactly_the_chunks_that_verify() {
        let root = tempdir("recheck");
        std::fs::create_dir_all(&root).unwrap();
        let data: Vec<u8> = (0..(3000 * 2048 + 5)).map(|i| (i % 241) as u8).collect();
        let m = Manifest::from_data(&data, 2048).unwrap();
        let mut damaged = data.clone();
        damaged[7 * 2048 + 3] ^= 1;
        damaged[2999 * 2048] ^= 1;
        let path = root.join("f.part");
        std::fs::write(&path, &damaged).unwrap();
        let file = File::open(&path).unwrap();
        let good = matching(&file, &m, &Bitfield::full(m.chunk_count())).unwrap();
        assert_eq!(good.count(), m.chunk_count() - 2);
        assert!(!good.get(7) && !good.get(2999) && good.get(3000) && good.get(0));
        let mut some = Bitfield::empty(m.chunk_count());
        for i in [1, 7, 600, 3000] {
            some.set(i);
        }
        let good = matching(&file, &m, &some).unwrap();
        assert_eq!(good.ones().collect::<Vec<_>>(), vec![1, 600, 3000]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}

//! The manifest file reader (`share::manifest_file::read_bytes`) on arbitrary file contents: it
//! returns a manifest or a typed error, never allocates for hashes the bytes do not hold, and a
//! manifest it accepts writes back to exactly the bytes read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peer_engine::share::manifest_file::{self, MANIFEST_HEAD};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, manifest)) = manifest_file::read_bytes(data) {
        assert_eq!(
            (manifest.size(), manifest.chunk_size()),
            (header.size, header.chunk_size)
        );
        let mut written = header.encode().to_vec();
        manifest
            .write_hashes(&mut written)
            .expect("hashes in memory");
        assert_eq!(written, data);
        assert_eq!(
            written.len() - MANIFEST_HEAD,
            manifest.chunk_count() as usize * 32
        );
    }
});

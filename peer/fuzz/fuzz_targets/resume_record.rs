//! The resume record reader (`share::record::parse`) on arbitrary file contents: it returns a
//! record or a typed error, and a record it accepts encodes back to exactly the bytes read (so
//! nothing in a record is ignored or misread).
#![no_main]

use libfuzzer_sys::fuzz_target;
use peer_engine::share::record;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = record::parse(data) {
        assert_eq!(r.encode(), data);
        assert!(r.have.count() <= r.have.len());
        assert_eq!(r.standing(&r.part), record::Standing::Unchanged);
    }
});

//! The share record reader (`share::placed::parse`, `DIR/.peer/NAME.share`) on arbitrary file
//! contents: it returns a record or a typed error, and a record it accepts reads back the same
//! from its own encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peer_engine::share::placed;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = placed::parse(data) {
        assert!(p.path.is_absolute());
        assert_eq!(placed::parse(p.encode().as_bytes()), Ok(p));
    }
});

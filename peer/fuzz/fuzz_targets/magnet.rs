//! The magnet link parser on arbitrary text: a link or a typed error, never a panic; a link it
//! accepts prints to text that parses back to the same link.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peer_engine::magnet::Magnet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Magnet::parse(text) {
        assert_eq!(Magnet::parse(&m.to_string()).expect("own text"), m);
    }
});

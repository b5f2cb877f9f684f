//! The metainfo decoder (`Metainfo::parse`, `Info::parse`, `decode_files`) on arbitrary bytes:
//! a value or a typed error, never a panic or a stack overflow; whatever it accepts has only
//! relative paths of plain names (empty folders of length 0), fits the chunk limit, and encodes
//! to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peer_engine::metainfo::{
    decode_files, encode_files, FileEntry, Info, Layout, Metainfo, MAX_PATH_DEPTH,
};

fn check_files(files: &[FileEntry]) {
    for f in files {
        let c = f.path.components();
        assert!(!c.is_empty() && c.len() <= MAX_PATH_DEPTH);
        assert!(c.iter().all(|c| !c.as_str().contains(['/', '\\']) && c.as_str() != ".."));
        assert!(!f.folder || f.length == 0);
    }
    assert_eq!(decode_files(&encode_files(files)).expect("own encoding"), files);
}

fn check(info: &Info) {
    assert!(info.chunk_count() <= 1 << 22);
    if let Layout::Files(files) = &info.layout {
        check_files(files);
    }
    assert_eq!(&Info::parse(&info.encode()).expect("own encoding"), info);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::parse(data) {
        check(&m.info);
        assert_eq!(Metainfo::parse(&m.encode()).expect("own encoding"), m);
    }
    if let Ok(info) = Info::parse(data) {
        check(&info);
    }
    if let Ok(files) = decode_files(data) {
        check_files(&files);
    }
});

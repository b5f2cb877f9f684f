//! One frame of each type: the first byte picks one of the frame types of protocol.txt §2.3,
//! the rest is its payload, framed with the right length so parsing gets past the length
//! prefix (random bytes almost never do). A frame within its type's bounds either parses or is
//! refused with a typed error; one that parses must encode to bytes that `Frame::check`
//! delimits exactly and that parse to the same value.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use peer_engine::wire::{Frame, MAX_FRAME_LEN};

/// Frame types are 0x01 (HANDSHAKE) ..= 0x0e (KEEPALIVE).
const FRAME_TYPES: u8 = 14;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let payload = &payload[..payload.len().min(MAX_FRAME_LEN as usize - 1)];
    let mut frame = BytesMut::with_capacity(5 + payload.len());
    frame.put_u32(1 + payload.len() as u32);
    frame.put_u8(1 + selector % FRAME_TYPES);
    frame.put_slice(payload);
    // Outside its type's length bounds: refused from the header, before any parsing.
    let Ok(Some(n)) = Frame::check(&frame) else {
        return;
    };
    assert_eq!(n, frame.len());
    let Ok(value) = Frame::parse(frame.freeze()) else {
        return;
    };
    let mut encoded = BytesMut::new();
    value.encode(&mut encoded);
    assert_eq!(Frame::check(&encoded), Ok(Some(encoded.len())));
    let again = Frame::parse(encoded.freeze()).expect("an encoded frame parses");
    assert_eq!(again, value);
});

//! One frame of each type: the first byte picks one of the nine frame types of protocol.txt
//! §2.3, the rest is its payload, framed with the right length so parsing gets past the length
//! check (random bytes almost never do). A frame that parses must encode to bytes that
//! `Frame::check` delimits exactly and that parse to the same value.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use peer_engine::wire::{Frame, MAX_ERROR_LEN, MAX_FRAME_LEN};

/// Frame types are 0x01 (HANDSHAKE) ..= 0x09 (ERROR).
const FRAME_TYPES: u8 = 9;

/// What encoding `frame` keeps of it.
///
/// Known gap, reported to the owner of wire.rs (regression input:
/// corpus/wire_frame/regression-error-lossy-message): `Frame::parse` decodes a non-UTF-8 ERROR
/// message lossily, each bad byte becoming a 3-byte U+FFFD, so a message within MAX_ERROR_LEN
/// bytes on the wire can parse longer than that, and `Frame::encode` then cuts it. Once parse
/// bounds the message itself, this is the identity and should go.
fn kept_by_encoding(frame: &Frame) -> Frame {
    match frame {
        Frame::Error { code, message } if message.len() > MAX_ERROR_LEN => {
            let mut end = MAX_ERROR_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            Frame::Error {
                code: *code,
                message: message[..end].to_owned(),
            }
        }
        other => other.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let payload = &payload[..payload.len().min(MAX_FRAME_LEN as usize - 1)];
    let mut frame = BytesMut::with_capacity(5 + payload.len());
    frame.put_u32(1 + payload.len() as u32);
    frame.put_u8(1 + selector % FRAME_TYPES);
    frame.put_slice(payload);
    assert_eq!(Frame::check(&frame), Ok(Some(frame.len())));
    let Ok(value) = Frame::parse(frame.freeze()) else {
        return;
    };
    let mut encoded = BytesMut::new();
    value.encode(&mut encoded);
    assert_eq!(Frame::check(&encoded), Ok(Some(encoded.len())));
    let again = Frame::parse(encoded.freeze()).expect("an encoded frame parses");
    assert_eq!(again, kept_by_encoding(&value));
});

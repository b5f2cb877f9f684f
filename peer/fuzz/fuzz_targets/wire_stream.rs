//! Arbitrary bytes arriving on a connection, cut into frames as `Connection` does: `Frame::check`
//! on the buffer, `Frame::parse` of exactly the bytes it delimits, until a frame is invalid. The
//! first input byte sets the size of each read. Whatever the reads, the frames (and the error
//! that ends the stream) must be the same as when all bytes arrive at once, and a frame that
//! `check` delimited never fails `parse` on its length.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use peer_engine::wire::{Frame, WireError};

/// What a connection makes of `stream` read `step` bytes at a time.
fn frames(stream: &[u8], step: usize) -> Vec<Result<Frame, WireError>> {
    let mut rbuf = BytesMut::new();
    let mut out = Vec::new();
    for read in stream.chunks(step) {
        rbuf.extend_from_slice(read);
        loop {
            match Frame::check(&rbuf) {
                Ok(Some(n)) => {
                    let parsed = Frame::parse(rbuf.split_to(n).freeze());
                    if let Err(WireError::BadLength { len, .. }) = parsed {
                        panic!("check delimited a frame that parse says has length {len}");
                    }
                    let failed = parsed.is_err();
                    out.push(parsed);
                    if failed {
                        return out;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let whole = frames(stream, stream.len().max(1));
    let piecewise = frames(stream, usize::from(step) + 1);
    assert_eq!(whole, piecewise);
});

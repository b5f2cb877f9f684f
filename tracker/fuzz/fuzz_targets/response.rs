//! The parser the client runs on whatever arrives from the tracker. A message that parses
//! re-encodes to text that parses to the same value (unless normalising made it longer than a
//! datagram: a bare IP gains its port).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracker_proto::{ParseError, TrackerMessage, MAX_DATAGRAM_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = TrackerMessage::parse(data) else {
        return;
    };
    let text = match &message {
        TrackerMessage::Response(response) => response.encode(),
        TrackerMessage::Punch(notice) => notice.to_string(),
    };
    let again = TrackerMessage::parse(text.as_bytes());
    if text.len() <= MAX_DATAGRAM_BYTES {
        assert_eq!(again.as_ref(), Ok(&message), "{text:?}");
    } else {
        assert!(matches!(again, Err(ParseError::TooLong { .. })), "{text:?}");
    }
});

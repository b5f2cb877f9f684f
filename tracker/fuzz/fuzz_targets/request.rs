//! The tracker's request parser on arbitrary bytes. A request that parses re-encodes to text that
//! parses to the same value (unless normalising made it longer than a request may be: a bare IP
//! gains its port, flag 4 its chunk size); a request that does not gets an error the tracker can
//! send and a client can read back with the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracker_proto::{
    ParseError, Request, Response, ResponseKind, TrackerMessage, MAX_REQUEST_BYTES,
};

fuzz_target!(|data: &[u8]| {
    match Request::parse(data) {
        Ok(request) => {
            let text = request.encode();
            let again = Request::parse(text.as_bytes());
            if text.len() <= MAX_REQUEST_BYTES {
                assert_eq!(again.as_ref(), Ok(&request), "{text:?}");
            } else {
                assert!(matches!(again, Err(ParseError::TooLong { .. })), "{text:?}");
            }
        }
        Err(e) => {
            let answer = Response::error(Some(7), e.code(), &e.to_string()).encode();
            match TrackerMessage::parse(answer.as_bytes()) {
                Ok(TrackerMessage::Response(Response {
                    tid: Some(7),
                    kind: ResponseKind::Error(reply),
                })) => assert_eq!(reply.code, e.code()),
                other => panic!("error answer {answer:?} reads back as {other:?}"),
            }
        }
    }
});

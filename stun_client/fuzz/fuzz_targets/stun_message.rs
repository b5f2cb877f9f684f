//! The STUN codec on arbitrary bytes, from both ends. As the responder: a request that decodes
//! gets an answer of bounded size that decodes as the reply to that transaction, with the
//! source's address. As a client: a reply that decodes (under the transaction id it carries)
//! re-encodes to a message that decodes to the same address or error code.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use stun::codec::{
    decode_reply, decode_request, encode_binding_error, encode_binding_success, Reply, Request,
    TransactionId,
};

fuzz_target!(|data: &[u8]| {
    let source: SocketAddr = "203.0.113.9:4242".parse().unwrap();
    if let Ok(request) = decode_request(data) {
        let (id, expect_error) = match &request {
            Request::Binding(id) => (*id, false),
            Request::UnknownAttributes(id, unknown) => {
                assert!(!unknown.is_empty());
                (*id, true)
            }
        };
        let answer = stun::responder::answer_binding(data, source).expect("a request is answered");
        // No reflection amplifier: a success is 32 or 44 bytes, a 420 lists at most 16
        // attributes (header 20, ERROR-CODE 28, UNKNOWN-ATTRIBUTES 36).
        assert!(answer.len() <= 84, "{} bytes", answer.len());
        match decode_reply(&answer, &id) {
            Ok(Reply::Success(s)) => {
                assert!(!expect_error);
                assert_eq!(s.mapped, source);
            }
            Ok(Reply::Error { code, .. }) => {
                assert!(expect_error);
                assert_eq!(code, 420);
            }
            Err(e) => panic!("our own answer does not decode: {e}"),
        }
    }
    let Some(id_bytes) = data.get(8..20) else {
        return;
    };
    let id = TransactionId::from(<[u8; 12]>::try_from(id_bytes).unwrap());
    match decode_reply(data, &id) {
        Ok(Reply::Success(s)) => {
            let again = encode_binding_success(&id, s.mapped);
            match decode_reply(&again, &id) {
                Ok(Reply::Success(t)) => assert_eq!(t.mapped, s.mapped),
                other => panic!("re-encoded success decodes as {other:?}"),
            }
        }
        Ok(Reply::Error { code, reason }) => {
            let again = encode_binding_error(&id, code, &reason, &[]);
            match decode_reply(&again, &id) {
                Ok(Reply::Error { code: c, .. }) => {
                    // Codes outside 300..=699 cannot be encoded; the answer is then a bare error.
                    if (300..=699).contains(&code) {
                        assert_eq!(c, code);
                    }
                }
                other => panic!("re-encoded error decodes as {other:?}"),
            }
        }
        Err(_) => {}
    }
});

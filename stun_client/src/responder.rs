//! A minimal STUN Binding responder, embedded in the tracker (`tracker --stun`): a small network
//! needs no separate STUN server.
//!
//! It answers well-formed Binding requests and nothing else (no TURN, no RFC 5780 CHANGE-REQUEST:
//! one address cannot offer them). Answers are small, so the responder is no useful reflection
//! amplifier; malformed input gets silence (UDP) or a closed connection (TCP).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, warn};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::binding::{read_message, FrameError};
use crate::codec::{decode_request, encode_binding_error, encode_binding_success, Request};

/// STUN magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// Whether a datagram looks like a STUN message: the first two bits are zero and bytes 4..8 hold
/// the magic cookie. Text-protocol datagrams start with ASCII letters, so they never match.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] & 0xC0 == 0 && datagram[4..8] == MAGIC_COOKIE
}

/// The Binding response to `request` received from `source`, or `None` when `request` is not a
/// well-formed Binding request (such input is never answered). A Binding request with unknown
/// comprehension-required attributes gets the 420 error RFC 8489 §6.3.1 asks for.
pub fn answer_binding(request: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    match decode_request(request) {
        Ok(Request::Binding(transaction_id)) => {
            Some(encode_binding_success(&transaction_id, source))
        }
        Ok(Request::UnknownAttributes(transaction_id, unknown)) => Some(encode_binding_error(
            &transaction_id,
            420,
            "Unknown Attribute",
            &unknown,
        )),
        Err(e) => {
            debug!("not answering STUN message from {source}: {e}");
            None
        }
    }
}

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;

/// A Binding request is 20 bytes plus optional attributes; anything longer is not worth reading.
const MAX_REQUEST_SIZE: usize = 2048;

/// A client that says nothing for this long is disconnected, so idle connections cannot pin
/// all connection slots.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves STUN Binding over TCP (RFC 8489 §6.2.2 framing) on `listener` until the future is
/// dropped, which also ends every connection it serves. Returns an error only when accepting
/// keeps failing after backing off (as mini-redis does: 1, 2, 4 ... 32 s).
pub async fn serve_tcp(listener: TcpListener) -> io::Result<()> {
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_secs(1);
    loop {
        // Finished connections are reaped here, so the set holds live ones only.
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            connections.join_next().await;
            continue;
        }
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_secs(1);
                connections.spawn(serve_connection(stream, peer));
            }
            Err(e) if backoff > Duration::from_secs(32) => return Err(e),
            Err(e) => {
                warn!("STUN over TCP: accept failed, retrying in {backoff:?}: {e}");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}

async fn serve_connection(mut stream: TcpStream, peer: SocketAddr) {
    loop {
        let request = match timeout(IDLE_TIMEOUT, read_message(&mut stream, MAX_REQUEST_SIZE)).await
        {
            Ok(Ok(request)) => request,
            Ok(Err(FrameError::Closed)) => return,
            Ok(Err(FrameError::Io(e))) => {
                debug!("STUN over TCP from {peer}: {e}");
                return;
            }
            Ok(Err(FrameError::Invalid(e))) => {
                debug!("STUN over TCP from {peer}: closing, {e}");
                return;
            }
            Err(_) => {
                debug!("STUN over TCP from {peer}: idle, closing");
                return;
            }
        };
        // Well-framed messages that are not Binding requests (indications, responses) are
        // skipped; the stream is still in sync.
        if let Some(answer) = answer_binding(&request, peer) {
            if let Err(e) = stream.write_all(&answer).await {
                debug!("STUN over TCP to {peer}: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_reply, encode_binding_request, new_transaction_id, Reply};
    use proptest::prelude::*;

    fn source() -> SocketAddr {
        "203.0.113.7:40000".parse().unwrap()
    }

    #[test]
    fn tells_stun_from_tracker_text() {
        let request = encode_binding_request(&new_transaction_id());
        assert!(is_stun(&request));
        assert!(!is_stun(b"REQUEST 6 tid=1 and some more text"));
        assert!(!is_stun(&request[..19]));
    }

    #[test]
    fn answers_a_binding_request_with_the_source_address() {
        let tid = new_transaction_id();
        let answer = answer_binding(&encode_binding_request(&tid), source()).unwrap();
        assert!(
            matches!(decode_reply(&answer, &tid), Ok(Reply::Success(s)) if s.mapped == source())
        );
        // Small answers: no reflection amplification worth the name.
        assert_eq!(answer.len(), 32);
    }

    #[test]
    fn stays_silent_on_anything_else() {
        let tid = new_transaction_id();
        let response = answer_binding(&encode_binding_request(&tid), source()).unwrap();
        assert_eq!(answer_binding(&response, source()), None);
        let request = encode_binding_request(&tid);
        assert_eq!(answer_binding(&request[..19], source()), None);
        let mut padded = request.clone();
        padded.extend_from_slice(&[0; 4]);
        assert_eq!(answer_binding(&padded, source()), None);
        assert_eq!(answer_binding(b"REQUEST 6", source()), None);
    }

    #[test]
    fn unknown_required_attributes_get_420() {
        let tid = new_transaction_id();
        let mut request = encode_binding_request(&tid);
        request[3] = 8;
        request.extend_from_slice(&[0x7f, 0xf0, 0x00, 0x04, 1, 2, 3, 4]);
        let answer = answer_binding(&request, source()).unwrap();
        assert!(matches!(
            decode_reply(&answer, &tid),
            Ok(Reply::Error { code: 420, .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = answer_binding(&bytes, source());
        }
    }
}

//! Pure STUN Binding codec: bytes in, typed value or typed error out. No I/O lives here, so the
//! client, the responder and the tests share one definition of "well-formed".
//!
//! Encoding and attribute parsing are delegated to `stun-rs`; this module adds the checks RFC 8489
//! asks of a Binding client or server that a generic decoder does not make: the message length
//! is a multiple of four and covers the whole datagram, the transaction is ours, unknown
//! comprehension-required attributes make a message unusable, and FINGERPRINT, when present,
//! matches.
//!
//! `message` frames and checks whole messages, `attributes` reads what a message carries; this
//! module is the Binding API the client and the responder call.

mod attributes;
mod error;
mod message;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use stun_rs::attributes::stun::{ErrorCode, UnknownAttributes, XorMappedAddress};
use stun_rs::methods::BINDING;
use stun_rs::{MessageClass, MessageHeader, StunMessageBuilder};

pub(crate) use attributes::canonical;
pub use attributes::BindingSuccess;
use attributes::{decode_error, decode_success, unknown_required};
pub use error::DecodeError;
use message::{check_framing, decode_message, encode, header_of, unexpected, SMALL_MESSAGE};
pub use message::{message_size, HEADER_SIZE, MAX_MESSAGE_SIZE};
pub use stun_rs::TransactionId;

/// How many unknown attributes a 420 response lists at most.
pub const MAX_UNKNOWN_LISTED: usize = 16;

/// A decoded reply to our Binding request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Success(BindingSuccess),
    /// An error response (RFC 8489 §14.8); `reason` is the server's text.
    Error {
        code: u16,
        reason: String,
    },
}

/// What the responder should do with a decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A well-formed Binding request: answer with the mapped address.
    Binding(TransactionId),
    /// A Binding request with comprehension-required attributes we do not know: RFC 8489
    /// §6.3.1 says answer 420 listing them.
    UnknownAttributes(TransactionId, Vec<u16>),
}

/// A fresh random transaction id (96 bits from a CSPRNG, as RFC 8489 §5 asks).
pub fn new_transaction_id() -> TransactionId {
    TransactionId::default()
}

/// A Binding request without attributes: 20 bytes, the smallest message a server answers.
pub fn encode_binding_request(transaction_id: &TransactionId) -> Vec<u8> {
    let msg = StunMessageBuilder::new(BINDING, MessageClass::Request)
        .with_transaction_id(*transaction_id)
        .build();
    encode(&msg, SMALL_MESSAGE)
}

/// The Binding success response telling `source` its address, in XOR-MAPPED-ADDRESS only: the
/// answer stays small (32 bytes for IPv4) so the responder is no useful reflection amplifier.
pub fn encode_binding_success(transaction_id: &TransactionId, source: SocketAddr) -> Vec<u8> {
    let msg = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
        .with_transaction_id(*transaction_id)
        .with_attribute(XorMappedAddress::from(canonical(source)))
        .build();
    encode(&msg, SMALL_MESSAGE)
}

/// A Binding error response with `code` and `reason`, listing `unknown` attributes for 420.
/// At most [`MAX_UNKNOWN_LISTED`] of them are listed: a hostile request cannot grow the answer.
pub fn encode_binding_error(
    transaction_id: &TransactionId,
    code: u16,
    reason: &str,
    unknown: &[u16],
) -> Vec<u8> {
    let mut builder = StunMessageBuilder::new(BINDING, MessageClass::ErrorResponse)
        .with_transaction_id(*transaction_id);
    // Codes outside 300..=699 or over-long reasons are rejected by stun-rs; callers pass
    // constants, so the fallback to a bare header is never taken in practice.
    if let Ok(error) = stun_rs::ErrorCode::new(code, reason) {
        builder = builder.with_attribute(ErrorCode::new(error));
    }
    let unknown = &unknown[..unknown.len().min(MAX_UNKNOWN_LISTED)];
    if !unknown.is_empty() {
        let mut list = UnknownAttributes::default();
        for &attr in unknown {
            list.add(attr);
        }
        builder = builder.with_attribute(list);
    }
    encode(
        &builder.build(),
        SMALL_MESSAGE + reason.len() + 2 * MAX_UNKNOWN_LISTED,
    )
}

/// Decodes a reply to the Binding request `expected`. Only the header is looked at before the
/// transaction id is compared, so a caller can tell strays (`NotStun`, `WrongTransaction`),
/// which it ignores, from broken replies to its own request (any other error).
pub fn decode_reply(bytes: &[u8], expected: &TransactionId) -> Result<Reply, DecodeError> {
    if MessageHeader::try_from(header_of(bytes)?).is_err() {
        return Err(DecodeError::NotStun);
    }
    if bytes[8..HEADER_SIZE] != expected.as_bytes()[..] {
        return Err(DecodeError::WrongTransaction);
    }
    check_framing(bytes)?;
    let msg = decode_message(bytes)?;
    if msg.method() != BINDING {
        return Err(unexpected("response", &msg));
    }
    match msg.class() {
        MessageClass::SuccessResponse => decode_success(&msg).map(Reply::Success),
        MessageClass::ErrorResponse => Ok(decode_error(&msg)),
        _ => Err(unexpected("response", &msg)),
    }
}

/// Decodes a request the responder received. Anything but a well-formed Binding request is an
/// error, and the responder stays silent on errors.
pub fn decode_request(bytes: &[u8]) -> Result<Request, DecodeError> {
    check_framing(bytes)?;
    let msg = decode_message(bytes)?;
    if msg.method() != BINDING || msg.class() != MessageClass::Request {
        return Err(unexpected("request", &msg));
    }
    let transaction_id = *msg.transaction_id();
    match unknown_required(&msg) {
        unknown if unknown.is_empty() => Ok(Request::Binding(transaction_id)),
        unknown => Ok(Request::UnknownAttributes(transaction_id, unknown)),
    }
}

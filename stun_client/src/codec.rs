//! Pure STUN Binding codec: bytes in, typed value or typed error out. No I/O lives here, so the
//! client, the responder and the tests share one definition of "well-formed".
//!
//! Encoding and attribute parsing are delegated to `stun-rs`; this module adds the checks RFC 8489
//! asks of a Binding client or server that a generic decoder does not make: the message length
//! is a multiple of four and covers the whole datagram, the transaction is ours, unknown
//! comprehension-required attributes make a message unusable, and FINGERPRINT, when present,
//! matches.

use std::net::SocketAddr;

use stun_rs::attributes::discovery::{OtherAddress, ResponseOrigin};
use stun_rs::attributes::stun::{
    ErrorCode, Fingerprint, MappedAddress, Software, UnknownAttributes, XorMappedAddress,
};
use stun_rs::error::StunDecodeError;
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, MessageHeader, StunAttribute,
    StunMessage, StunMessageBuilder, MESSAGE_HEADER_SIZE,
};

pub use stun_rs::TransactionId;

/// Size of the fixed STUN header; a TCP reader needs it to find the message length.
pub const HEADER_SIZE: usize = MESSAGE_HEADER_SIZE;

/// The largest STUN message: the length field is 16 bits.
pub const MAX_MESSAGE_SIZE: usize = HEADER_SIZE + u16::MAX as usize;

/// How many unknown attributes a 420 response lists at most.
pub const MAX_UNKNOWN_LISTED: usize = 16;

/// Why bytes are not a usable STUN message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a STUN message (shorter than a header, leading bits set or wrong magic cookie)")]
    NotStun,
    #[error("STUN message length {0} is not a multiple of 4")]
    UnalignedLength(usize),
    #[error("STUN message declares {declared} bytes but {actual} arrived")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("STUN message of {size} bytes exceeds the limit of {max}")]
    TooLong { size: usize, max: usize },
    #[error("transaction id does not match the request")]
    WrongTransaction,
    #[error("not a Binding {expected} (method 0x{method:03x}, class {class:?})")]
    UnexpectedType {
        expected: &'static str,
        method: u16,
        class: MessageClass,
    },
    #[error("invalid STUN attributes: {0}")]
    Attributes(StunDecodeError),
    #[error("unknown comprehension-required attributes {0:04x?}")]
    UnknownRequired(Vec<u16>),
    #[error("FINGERPRINT does not match the message")]
    BadFingerprint,
    #[error("success response carries neither XOR-MAPPED-ADDRESS nor MAPPED-ADDRESS")]
    NoAddress,
}

/// What a Binding success response told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSuccess {
    /// The address the server saw the request come from: our public address.
    pub mapped: SocketAddr,
    /// Whether `mapped` came from XOR-MAPPED-ADDRESS (false: the RFC 3489 MAPPED-ADDRESS fallback).
    pub from_xor: bool,
    /// RFC 5780 OTHER-ADDRESS: the server's alternate IP and port, used by the NAT probe.
    pub other_address: Option<SocketAddr>,
    /// RFC 5780 RESPONSE-ORIGIN: the address the response was sent from.
    pub response_origin: Option<SocketAddr>,
    /// The server's SOFTWARE description, shown by `stun-probe`.
    pub software: Option<String>,
}

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

/// The total size of the message whose header starts `bytes`, once the header has arrived: TCP
/// framing (RFC 8489 §6.2.2) is nothing but this.
pub fn message_size(header: &[u8]) -> Result<usize, DecodeError> {
    let parsed = MessageHeader::try_from(header_of(header)?).map_err(|_| DecodeError::NotStun)?;
    let length = usize::from(parsed.msg_length);
    if length % 4 != 0 {
        return Err(DecodeError::UnalignedLength(length));
    }
    Ok(HEADER_SIZE + length)
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

/// Room for a header, an IPv6 XOR-MAPPED-ADDRESS and the fixed part of an ERROR-CODE.
const SMALL_MESSAGE: usize = 512;

fn encode(msg: &StunMessage, capacity: usize) -> Vec<u8> {
    let encoder = MessageEncoderBuilder::default().build();
    let mut buffer = vec![0; capacity];
    // Our messages are a header plus a few short attributes sized by the callers' capacity, and
    // every attribute was validated when it was built, so encoding cannot fail.
    let size = encoder
        .encode(&mut buffer, msg)
        .expect("a Binding message with validated attributes always encodes");
    buffer.truncate(size);
    buffer
}

fn header_of(bytes: &[u8]) -> Result<&[u8; HEADER_SIZE], DecodeError> {
    bytes
        .get(..HEADER_SIZE)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::NotStun)
}

fn check_framing(bytes: &[u8]) -> Result<(), DecodeError> {
    let declared = message_size(bytes)?;
    if declared != bytes.len() {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: bytes.len(),
        });
    }
    Ok(())
}

fn decode_message(bytes: &[u8]) -> Result<StunMessage, DecodeError> {
    let decoder = MessageDecoderBuilder::default().build();
    let (msg, _) = decoder.decode(bytes).map_err(DecodeError::Attributes)?;
    if let Some(attr) = msg.get::<Fingerprint>() {
        let valid = match (attr, stun_rs::get_input_text::<Fingerprint>(bytes)) {
            (StunAttribute::Fingerprint(fingerprint), Some(input)) => fingerprint.validate(&input),
            _ => false,
        };
        if !valid {
            return Err(DecodeError::BadFingerprint);
        }
    }
    Ok(msg)
}

fn decode_success(msg: &StunMessage) -> Result<BindingSuccess, DecodeError> {
    let unknown = unknown_required(msg);
    if !unknown.is_empty() {
        return Err(DecodeError::UnknownRequired(unknown));
    }
    let xor = msg
        .get::<XorMappedAddress>()
        .and_then(|a| a.as_xor_mapped_address().ok())
        .map(|a| *a.socket_address());
    let plain = msg
        .get::<MappedAddress>()
        .and_then(|a| a.as_mapped_address().ok())
        .map(|a| *a.socket_address());
    let (mapped, from_xor) = match (xor, plain) {
        (Some(addr), _) => (addr, true),
        (None, Some(addr)) => (addr, false),
        (None, None) => return Err(DecodeError::NoAddress),
    };
    Ok(BindingSuccess {
        mapped,
        from_xor,
        other_address: msg
            .get::<OtherAddress>()
            .and_then(|a| a.as_other_address().ok())
            .map(|a| *a.socket_address()),
        response_origin: msg
            .get::<ResponseOrigin>()
            .and_then(|a| a.as_response_origin().ok())
            .map(|a| *a.socket_address()),
        software: msg
            .get::<Software>()
            .and_then(|a| a.as_software().ok())
            .map(|s| s.as_str().to_owned()),
    })
}

fn decode_error(msg: &StunMessage) -> Reply {
    match msg.get::<ErrorCode>().and_then(|a| a.as_error_code().ok()) {
        Some(attr) => Reply::Error {
            code: attr.error_code().error_code(),
            reason: attr.error_code().reason().to_owned(),
        },
        // RFC 8489 requires ERROR-CODE in an error response; without it all we know is that
        // the server refused, which 500 (server error) describes best.
        None => Reply::Error {
            code: 500,
            reason: "error response without ERROR-CODE".to_owned(),
        },
    }
}

fn unknown_required(msg: &StunMessage) -> Vec<u16> {
    msg.attributes()
        .iter()
        .filter_map(|attr| match attr {
            StunAttribute::Unknown(unknown)
                if unknown.attribute_type().is_comprehension_required() =>
            {
                Some(unknown.attribute_type().as_u16())
            }
            _ => None,
        })
        .collect()
}

fn unexpected(expected: &'static str, msg: &StunMessage) -> DecodeError {
    DecodeError::UnexpectedType {
        expected,
        method: msg.method().as_u16(),
        class: msg.class(),
    }
}

/// An IPv4 peer reaching a dual-stack socket shows up as `::ffff:a.b.c.d`; the mapped address we
/// report is the IPv4 one the peer actually has.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

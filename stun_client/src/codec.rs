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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn v4() -> SocketAddr {
        "192.0.2.1:32853".parse().unwrap()
    }

    fn v6() -> SocketAddr {
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap()
    }

    fn message(class: MessageClass, tid: &TransactionId, attrs: Vec<StunAttribute>) -> Vec<u8> {
        let mut builder = StunMessageBuilder::new(BINDING, class).with_transaction_id(*tid);
        for attr in attrs {
            builder = builder.with_attribute(attr);
        }
        encode(&builder.build(), 1024)
    }

    /// Appends a raw attribute and fixes the header length: stun-rs will not build unknown ones.
    fn with_raw_attribute(mut msg: Vec<u8>, kind: u16, value: &[u8]) -> Vec<u8> {
        msg.extend_from_slice(&kind.to_be_bytes());
        msg.extend_from_slice(&(value.len() as u16).to_be_bytes());
        msg.extend_from_slice(value);
        msg.resize(msg.len().next_multiple_of(4), 0);
        let length = (msg.len() - HEADER_SIZE) as u16;
        msg[2..4].copy_from_slice(&length.to_be_bytes());
        msg
    }

    #[test]
    fn request_is_a_bare_twenty_byte_binding_request() {
        let tid = new_transaction_id();
        let bytes = encode_binding_request(&tid);
        assert_eq!(bytes.len(), 20);
        assert_eq!(&bytes[..4], &[0x00, 0x01, 0x00, 0x00]);
        assert_eq!(&bytes[8..], &tid.as_bytes()[..]);
        assert_eq!(decode_request(&bytes).unwrap(), Request::Binding(tid));
    }

    #[test]
    fn transaction_ids_differ() {
        assert_ne!(new_transaction_id(), new_transaction_id());
    }

    #[test]
    fn success_round_trips_ipv4_and_ipv6() {
        for addr in [v4(), v6()] {
            let tid = new_transaction_id();
            let bytes = encode_binding_success(&tid, addr);
            match decode_reply(&bytes, &tid).unwrap() {
                Reply::Success(s) => {
                    assert_eq!(s.mapped, addr);
                    assert!(s.from_xor);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn success_reports_ipv4_mapped_ipv6_sources_as_ipv4() {
        let tid = new_transaction_id();
        let source = SocketAddr::new(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped().into(), 7);
        let bytes = encode_binding_success(&tid, source);
        let Reply::Success(s) = decode_reply(&bytes, &tid).unwrap() else {
            panic!("not a success")
        };
        assert_eq!(s.mapped, "10.1.2.3:7".parse().unwrap());
    }

    /// RFC 5769 §2.2: a real server's response with SOFTWARE, MESSAGE-INTEGRITY and FINGERPRINT.
    #[test]
    fn decodes_rfc5769_ipv4_response_vector() {
        let vector: [u8; 80] = [
            0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
            0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
            0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99,
            0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b,
            0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
        ];
        let tid = TransactionId::from(<[u8; 12]>::try_from(&vector[8..20]).unwrap());
        let Reply::Success(s) = decode_reply(&vector, &tid).unwrap() else {
            panic!("not a success")
        };
        assert_eq!(s.mapped, v4());
        assert_eq!(s.software.as_deref(), Some("test vector"));

        let mut corrupted = vector;
        corrupted[79] ^= 1;
        assert!(matches!(
            decode_reply(&corrupted, &tid),
            Err(DecodeError::BadFingerprint)
        ));
    }

    #[test]
    fn falls_back_to_mapped_address() {
        let tid = new_transaction_id();
        let bytes = message(
            MessageClass::SuccessResponse,
            &tid,
            vec![MappedAddress::from(v6()).into()],
        );
        let Reply::Success(s) = decode_reply(&bytes, &tid).unwrap() else {
            panic!("not a success")
        };
        assert_eq!(s.mapped, v6());
        assert!(!s.from_xor);
    }

    #[test]
    fn prefers_xor_mapped_address_and_reads_rfc5780_attributes() {
        let tid = new_transaction_id();
        let other: SocketAddr = "198.51.100.2:3479".parse().unwrap();
        let origin: SocketAddr = "198.51.100.1:3478".parse().unwrap();
        let bytes = message(
            MessageClass::SuccessResponse,
            &tid,
            vec![
                MappedAddress::from(v6()).into(),
                XorMappedAddress::from(v4()).into(),
                OtherAddress::from(other).into(),
                ResponseOrigin::from(origin).into(),
            ],
        );
        let Reply::Success(s) = decode_reply(&bytes, &tid).unwrap() else {
            panic!("not a success")
        };
        assert_eq!((s.mapped, s.from_xor), (v4(), true));
        assert_eq!(s.other_address, Some(other));
        assert_eq!(s.response_origin, Some(origin));
    }

    #[test]
    fn success_without_address_is_an_error() {
        let tid = new_transaction_id();
        let bytes = message(MessageClass::SuccessResponse, &tid, vec![]);
        assert!(matches!(
            decode_reply(&bytes, &tid),
            Err(DecodeError::NoAddress)
        ));
    }

    #[test]
    fn error_response_gives_code_and_reason() {
        let tid = new_transaction_id();
        let bytes = encode_binding_error(&tid, 401, "Unauthorized", &[]);
        assert_eq!(
            decode_reply(&bytes, &tid).unwrap(),
            Reply::Error {
                code: 401,
                reason: "Unauthorized".to_owned()
            }
        );
        let bare = message(MessageClass::ErrorResponse, &tid, vec![]);
        assert!(matches!(
            decode_reply(&bare, &tid),
            Ok(Reply::Error { code: 500, .. })
        ));
    }

    #[test]
    fn wrong_transaction_is_recognised_before_anything_else() {
        let tid = new_transaction_id();
        let bytes = encode_binding_success(&tid, v4());
        assert!(matches!(
            decode_reply(&bytes, &new_transaction_id()),
            Err(DecodeError::WrongTransaction)
        ));
        // Even broken messages of another transaction are strays, not broken replies.
        assert!(matches!(
            decode_reply(&bytes[..24], &new_transaction_id()),
            Err(DecodeError::WrongTransaction)
        ));
    }

    #[test]
    fn truncated_garbage_and_misframed_input_is_rejected() {
        let tid = new_transaction_id();
        let bytes = encode_binding_success(&tid, v4());
        assert!(matches!(
            decode_reply(&bytes[..19], &tid),
            Err(DecodeError::NotStun)
        ));
        assert!(matches!(
            decode_reply(&bytes[..bytes.len() - 4], &tid),
            Err(DecodeError::LengthMismatch { .. })
        ));
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(&[0; 4]);
        assert!(matches!(
            decode_reply(&trailing, &tid),
            Err(DecodeError::LengthMismatch { .. })
        ));
        let mut unaligned = bytes.clone();
        unaligned[3] += 1;
        unaligned.push(0);
        assert!(matches!(
            decode_reply(&unaligned, &tid),
            Err(DecodeError::UnalignedLength(_))
        ));
        let mut bad_cookie = bytes.clone();
        bad_cookie[4] ^= 0xff;
        assert!(matches!(
            decode_reply(&bad_cookie, &tid),
            Err(DecodeError::NotStun)
        ));
        assert!(matches!(
            decode_reply(b"RESPONSE 6 hello world, not stun", &tid),
            Err(DecodeError::NotStun)
        ));
        // An attribute running past the end of the message.
        let mut overrun = bytes.clone();
        overrun[22..24].copy_from_slice(&64u16.to_be_bytes());
        assert!(matches!(
            decode_reply(&overrun, &tid),
            Err(DecodeError::Attributes(_))
        ));
    }

    #[test]
    fn requests_and_indications_are_not_replies() {
        let tid = new_transaction_id();
        for class in [MessageClass::Request, MessageClass::Indication] {
            let bytes = message(class, &tid, vec![]);
            assert!(matches!(
                decode_reply(&bytes, &tid),
                Err(DecodeError::UnexpectedType { .. })
            ));
        }
        let response = encode_binding_success(&tid, v4());
        assert!(matches!(
            decode_request(&response),
            Err(DecodeError::UnexpectedType { .. })
        ));
    }

    #[test]
    fn unknown_comprehension_required_attributes() {
        let tid = new_transaction_id();
        let request = with_raw_attribute(encode_binding_request(&tid), 0x7ff0, &[1, 2, 3]);
        assert_eq!(
            decode_request(&request).unwrap(),
            Request::UnknownAttributes(tid, vec![0x7ff0])
        );
        // Comprehension-optional unknown attributes are simply ignored.
        let optional = with_raw_attribute(encode_binding_request(&tid), 0xfff0, &[1]);
        assert_eq!(decode_request(&optional).unwrap(), Request::Binding(tid));

        let reply = with_raw_attribute(encode_binding_success(&tid, v4()), 0x7ff0, &[]);
        assert!(matches!(
            decode_reply(&reply, &tid),
            Err(DecodeError::UnknownRequired(list)) if list == vec![0x7ff0]
        ));

        let answer = encode_binding_error(&tid, 420, "Unknown Attribute", &[0x7ff0, 0x7ff1]);
        assert!(matches!(
            decode_reply(&answer, &tid),
            Ok(Reply::Error { code: 420, .. })
        ));
    }

    #[test]
    fn error_answer_lists_a_bounded_number_of_attributes() {
        let tid = new_transaction_id();
        let many: Vec<u16> = (0..1000).collect();
        let answer = encode_binding_error(&tid, 420, "Unknown Attribute", &many);
        // Header, ERROR-CODE (4 + 4 + 17 bytes of reason, padded), UNKNOWN-ATTRIBUTES.
        assert_eq!(
            answer.len(),
            20 + (4 + 4 + 20) + (4 + 2 * MAX_UNKNOWN_LISTED)
        );
    }

    #[test]
    fn message_size_reads_the_header() {
        let tid = new_transaction_id();
        let bytes = encode_binding_success(&tid, v6());
        assert_eq!(message_size(&bytes[..20]).unwrap(), bytes.len());
        assert!(matches!(
            message_size(&bytes[..10]),
            Err(DecodeError::NotStun)
        ));
    }

    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
            (any::<[u8; 16]>(), any::<u16>()).prop_filter_map(
                "IPv4-mapped addresses are reported as IPv4",
                |(ip, port)| {
                    let ip = Ipv6Addr::from(ip);
                    ip.to_ipv4_mapped()
                        .is_none()
                        .then(|| SocketAddr::new(IpAddr::V6(ip), port))
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn any_address_round_trips(addr in socket_addr(), tid in any::<[u8; 12]>()) {
            let tid = TransactionId::from(tid);
            let bytes = encode_binding_success(&tid, addr);
            let reply = decode_reply(&bytes, &tid).unwrap();
            prop_assert!(matches!(reply, Reply::Success(s) if s.mapped == addr));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let tid = new_transaction_id();
            let _ = decode_reply(&bytes, &tid);
            let _ = decode_request(&bytes);
            let _ = message_size(&bytes);
        }

        /// Random attribute bytes behind a valid header reach stun-rs's attribute parsers.
        #[test]
        fn garbage_attributes_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..400),
            class in 0u16..4,
        ) {
            let tid = new_transaction_id();
            let mut bytes = encode_binding_request(&tid);
            let class_bits = ((class & 2) << 7) | ((class & 1) << 4);
            bytes[0..2].copy_from_slice(&(0x0001 | class_bits).to_be_bytes());
            bytes.extend_from_slice(&body);
            bytes.resize(bytes.len().next_multiple_of(4), 0);
            let length = (bytes.len() - HEADER_SIZE) as u16;
            bytes[2..4].copy_from_slice(&length.to_be_bytes());
            let _ = decode_reply(&bytes, &tid);
            let _ = decode_request(&bytes);
        }

        /// Well-framed attributes of every type stun-rs knows (and others) with random values:
        /// each attribute parser sees hostile input, as the responder does.
        #[test]
        fn hostile_attribute_values_never_panic(
            attrs in proptest::collection::vec(
                (
                    prop_oneof![
                        proptest::sample::select(vec![
                            0x0001u16, 0x0006, 0x0008, 0x0009, 0x000A, 0x0014, 0x0015, 0x0020,
                            0x001C, 0x001D, 0x001E, 0x0003, 0x0026, 0x0027, 0x8002, 0x8003,
                            0x8022, 0x8023, 0x8027, 0x8028, 0x802B, 0x802C, 0x8029, 0x802A,
                        ]),
                        any::<u16>(),
                    ],
                    proptest::collection::vec(any::<u8>(), 0..48),
                ),
                0..6,
            ),
            class in 0u16..4,
        ) {
            let tid = new_transaction_id();
            let mut bytes = encode_binding_request(&tid);
            let class_bits = ((class & 2) << 7) | ((class & 1) << 4);
            bytes[0..2].copy_from_slice(&(0x0001 | class_bits).to_be_bytes());
            for (kind, value) in &attrs {
                bytes = with_raw_attribute(bytes, *kind, value);
            }
            let _ = decode_reply(&bytes, &tid);
            let _ = decode_request(&bytes);
        }
    }
}

//! The codec's contract: round trips, RFC 5769 vectors, and hostile input of every shape.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use stun_rs::attributes::discovery::{OtherAddress, ResponseOrigin};
use stun_rs::attributes::stun::MappedAddress;
use stun_rs::StunAttribute;

use super::*;

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
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
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

/// Found by the fuzzer: a server's `::ffff:a.b.c.d` used to come back as an IPv6 address, which
/// the peer would announce and then see "change" when re-encoded or reported as IPv4.
#[test]
fn ipv4_mapped_ipv6_in_a_reply_reads_as_ipv4() {
    let tid = new_transaction_id();
    let mapped = SocketAddr::new(Ipv4Addr::new(255, 255, 0, 1).to_ipv6_mapped().into(), 2048);
    for attr in [
        XorMappedAddress::from(mapped).into(),
        MappedAddress::from(mapped).into(),
    ] {
        let bytes = message(MessageClass::SuccessResponse, &tid, vec![attr]);
        let Reply::Success(s) = decode_reply(&bytes, &tid).unwrap() else {
            panic!("not a success")
        };
        assert_eq!(s.mapped, "255.255.0.1:2048".parse().unwrap());
    }
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

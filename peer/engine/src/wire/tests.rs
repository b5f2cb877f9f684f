use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use tracker_proto::FileName;

use super::encode::put_header;
use super::*;
use crate::manifest::FileId;

fn encoded(f: &Frame) -> Bytes {
    let mut b = BytesMut::new();
    f.encode(&mut b);
    b.freeze()
}

fn arb_listen() -> impl Strategy<Value = Option<SocketAddr>> {
    prop_oneof![
        Just(None),
        (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| Some(SocketAddr::from((ip, port)))),
        (any::<[u8; 16]>(), 1u16..).prop_map(|(ip, port)| Some(SocketAddr::from((ip, port)))),
    ]
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u8>(),
            any::<[u8; 16]>(),
            any::<[u8; 32]>(),
            "[a-zA-Z0-9._-]{1,60}".prop_filter_map("a valid file name", |n| FileName::new(&n).ok()),
            arb_listen(),
        )
            .prop_map(|(version, peer_id, id, name, listen)| Frame::Handshake {
                version,
                peer_id: PeerId(peer_id),
                file_id: FileId(id),
                name,
                listen,
            }),
        proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(|v| Frame::Bitfield(Bytes::from(v))),
        proptest::collection::vec(any::<u32>(), 1..50).prop_map(Frame::Have),
        (any::<u32>(), 1..=MAX_MANIFEST_HASHES)
            .prop_map(|(start, count)| Frame::GetManifest { start, count }),
        (
            any::<u32>(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..20)
        )
            .prop_map(|(start, hashes)| Frame::Manifest { start, hashes }),
        (any::<u32>(), 1..=MAX_REQUEST_CHUNKS)
            .prop_map(|(index, count)| Frame::Request(ChunkRun::new(index, count))),
        (
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..3000)
        )
            .prop_map(|(index, d)| {
                Frame::Chunk {
                    index,
                    data: Bytes::from(d),
                }
            }),
        (any::<u32>(), 1..=MAX_REQUEST_CHUNKS)
            .prop_map(|(index, count)| Frame::Reject(ChunkRun::new(index, count))),
        (any::<u16>(), "[ -~]{0,100}").prop_map(|(c, message)| Frame::Error {
            code: ErrorCode::from_u16(c),
            message
        }),
        prop_oneof![
            Just(Frame::Choke),
            Just(Frame::Unchoke),
            Just(Frame::Interested),
            Just(Frame::NotInterested),
            Just(Frame::KeepAlive),
            any::<u32>().prop_map(|piece| Frame::GetMetainfo { piece }),
            (
                any::<u32>(),
                0u32..=16_777_216,
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(piece, total, d)| Frame::Metainfo {
                    piece,
                    total,
                    data: Bytes::from(d)
                }),
        ],
    ]
}

/// Every frame type byte with a payload that fits its length bounds, for the property below.
fn arb_typed_payload() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (
        0x01u8..=0x0e,
        proptest::collection::vec(any::<u8>(), 0..400),
    )
}

proptest! {
    #[test]
    fn round_trip(frame in arb_frame()) {
        let bytes = encoded(&frame);
        prop_assert_eq!(Frame::check(&bytes), Ok(Some(bytes.len())));
        for cut in 0..bytes.len().min(64) {
            prop_assert_eq!(Frame::check(&bytes[..cut]), Ok(None));
        }
        prop_assert_eq!(Frame::parse(bytes).unwrap(), frame);
    }

    /// Correctly framed payloads of every type (so the header check passes and the payload
    /// parser really runs): never a panic, and whatever parses re-encodes to the same frame.
    #[test]
    fn framed_garbage_parses_or_is_refused((kind, payload) in arb_typed_payload()) {
        let mut b = BytesMut::new();
        put_header(&mut b, kind, payload.len());
        b.put_slice(&payload);
        let b = b.freeze();
        if let Ok(Some(n)) = Frame::check(&b) {
            prop_assert_eq!(n, b.len());
            if let Ok(frame) = Frame::parse(b.clone()) {
                prop_assert_eq!(Frame::parse(encoded(&frame)).unwrap(), frame);
            }
        }
    }

    #[test]
    fn laid_out_chunk_frames_parse_as_the_chunks_written_into_them(
        first in 0u32..1_000_000,
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
    ) {
        let lens: Vec<usize> = chunks.iter().map(Vec::len).collect();
        let mut frames = vec![0u8; lens.iter().map(|l| CHUNK_HEADER + l).sum()];
        for (slot, data) in chunk_frames(&mut frames, first, &lens).into_iter().zip(&chunks) {
            slot.copy_from_slice(data);
        }
        let mut buf = BytesMut::from(&frames[..]);
        for (index, data) in (first..).zip(&chunks) {
            let n = Frame::check(&buf).unwrap().unwrap();
            let frame = Frame::parse(buf.split_to(n).freeze()).unwrap();
            prop_assert_eq!(frame, Frame::Chunk { index, data: Bytes::from(data.clone()) });
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(Some(n)) = Frame::check(&data) {
            let _ = Frame::parse(Bytes::copy_from_slice(&data[..n]));
        }
        let _ = Frame::check_opening(&data);
        let _ = Frame::parse(Bytes::from(data));
    }
}

#[test]
fn oversized_and_unknown_frames_are_refused_from_the_header() {
    let mut huge = (MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
    huge.push(ty::CHUNK);
    assert_eq!(
        Frame::check(&huge),
        Err(WireError::BadLength {
            kind: ty::CHUNK,
            len: MAX_FRAME_LEN + 1
        })
    );
    assert_eq!(
        Frame::check(&[0, 0, 0, 0, ty::CHOKE]),
        Err(WireError::BadLength {
            kind: ty::CHOKE,
            len: 0
        })
    );
    assert_eq!(
        Frame::check(&[0, 0, 0, 1, 0x7f]),
        Err(WireError::UnknownType(0x7f))
    );
    assert_eq!(
        Frame::check(b"GET / HTTP/1.1\r\n"),
        Err(WireError::UnknownType(b'/'))
    );
}

#[test]
fn each_type_has_its_own_length_bounds() {
    let header = |len: u32, kind: u8| {
        let mut h = len.to_be_bytes().to_vec();
        h.push(kind);
        h
    };
    // A REQUEST is exactly 9 bytes long, not "anything up to a chunk".
    assert!(Frame::check(&header(10, ty::REQUEST)).is_err());
    assert_eq!(Frame::check(&header(9, ty::REQUEST)), Ok(None));
    // CHOKE and friends carry nothing.
    assert!(Frame::check(&header(2, ty::UNCHOKE)).is_err());
    // A HAVE of more than MAX_HAVE_INDICES indices, a MANIFEST of more than 4096 hashes.
    assert!(Frame::check(&header(1 + 4 * MAX_HAVE_INDICES as u32 + 4, ty::HAVE)).is_err());
    assert!(Frame::check(&header(1 + 4 + 32 * 4097, ty::MANIFEST)).is_err());
    // A HANDSHAKE larger than the longest possible one.
    assert!(Frame::check(&header(400, ty::HANDSHAKE)).is_err());
    assert_eq!(Frame::check(&header(329, ty::HANDSHAKE)), Ok(None));
}

#[test]
fn only_a_handshake_may_open_a_connection() {
    let mut chunk = BytesMut::new();
    encode_chunk(&mut chunk, 0, &[0; 100]);
    assert_eq!(
        Frame::check_opening(&chunk),
        Err(WireError::NotHandshake("CHUNK"))
    );
    let hs = encoded(&Frame::Handshake {
        version: VERSION,
        peer_id: PeerId([1; 16]),
        file_id: FileId([2; 32]),
        name: FileName::new("a.bin").unwrap(),
        listen: Some("203.0.113.5:6881".parse().unwrap()),
    });
    assert_eq!(Frame::check_opening(&hs), Ok(Some(hs.len())));
    let err = encoded(&Frame::Error {
        code: ErrorCode::ConnectionRefused,
        message: "busy".into(),
    });
    assert_eq!(Frame::check_opening(&err), Ok(Some(err.len())));
}

#[test]
fn malformed_payloads_are_typed_errors() {
    let parse = |kind: u8, payload: &[u8]| {
        let mut b = BytesMut::new();
        put_header(&mut b, kind, payload.len());
        b.put_slice(payload);
        Frame::parse(b.freeze())
    };
    assert_eq!(
        parse(ty::REQUEST, &[0; 7]),
        Err(WireError::BadLength {
            kind: ty::REQUEST,
            len: 8
        })
    );
    assert_eq!(
        parse(ty::REQUEST, &[0, 0, 0, 0, 0, 0, 0, 0]),
        Err(WireError::Malformed("REQUEST"))
    );
    assert_eq!(parse(ty::HAVE, &[0; 5]), Err(WireError::Malformed("HAVE")));
    assert_eq!(
        parse(ty::MANIFEST, &[0; 5 + 32]),
        Err(WireError::Malformed("MANIFEST"))
    );
    assert!(parse(ty::CHUNK, &[0; 3]).is_err());
    let handshake = |magic: &[u8], tail: &[u8]| {
        let mut hs = magic.to_vec();
        hs.extend_from_slice(&[1; 1 + 16 + 32]);
        hs.extend_from_slice(tail);
        parse(ty::HANDSHAKE, &hs)
    };
    assert_eq!(handshake(b"XXXX", &[1, b'a', 0]), Err(WireError::BadMagic));
    assert_eq!(
        handshake(&MAGIC, &[3, b'a', 0]),
        Err(WireError::Malformed("HANDSHAKE"))
    );
    assert!(matches!(
        handshake(&MAGIC, &[3, b'a', b'/', b'b', 0]),
        Err(WireError::BadName(_))
    ));
    // An address of a length that is neither IPv4 nor IPv6, or port 0.
    assert_eq!(
        handshake(&MAGIC, &[1, b'a', 3, 1, 2, 3]),
        Err(WireError::Malformed("HANDSHAKE"))
    );
    assert_eq!(
        handshake(&MAGIC, &[1, b'a', 6, 10, 0, 0, 1, 0, 0]),
        Err(WireError::Malformed("HANDSHAKE"))
    );
}

#[test]
fn chunk_frame_layout_is_byte_exact() {
    let b = encoded(&Frame::Chunk {
        index: 0x01020304,
        data: Bytes::from_static(b"ab"),
    });
    assert_eq!(&b[..], &[0, 0, 0, 7, 0x07, 1, 2, 3, 4, b'a', b'b']);
}

#[test]
fn a_lossy_error_message_stays_within_its_bound() {
    // Found by the wire_frame fuzz target: 1024 invalid bytes decode to 3072 bytes of U+FFFD.
    let mut b = BytesMut::new();
    put_header(&mut b, ty::ERROR, 2 + MAX_ERROR_LEN);
    b.put_u16(2001);
    b.put_slice(&[0xff; MAX_ERROR_LEN]);
    let frame = Frame::parse(b.freeze()).unwrap();
    let Frame::Error { message, .. } = &frame else {
        panic!("{frame:?}")
    };
    assert!(message.len() <= MAX_ERROR_LEN);
    assert_eq!(Frame::parse(encoded(&frame)).unwrap(), frame);
}

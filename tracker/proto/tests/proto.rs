//! Round-trip property tests of the tracker protocol codec and one test per malformed-input class.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use tracker_proto::*;

fn file_name() -> impl Strategy<Value = FileName> {
    "[a-zA-Z0-9_][a-zA-Z0-9_.\\-é]{0,40}"
        .prop_filter_map("valid names only", |s| FileName::new(&s).ok())
}

fn chunk_ranges() -> impl Strategy<Value = ChunkRanges> {
    prop::collection::vec((0u32..MAX_CHUNKS, 0u32..1000), 1..20).prop_map(|v| {
        ChunkRanges::from_ranges(
            v.into_iter()
                .map(|(s, len)| (s, s.saturating_add(len).min(MAX_CHUNKS - 1))),
        )
        .expect("non-empty, ordered ranges")
    })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    ]
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    (ip(), 1u16..).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// An address a peer can be reached at (a PUNCH's target and sender).
fn unicast_addr() -> impl Strategy<Value = SocketAddr> {
    addr().prop_filter("unicast", |a| is_unicast(a.ip()))
}

/// A flag 8 MY ADDR: unicast, or unspecified (the source's IP).
fn own_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        unicast_addr(),
        (1u16..).prop_map(|port| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)),
    ]
}

fn file_info() -> impl Strategy<Value = FileInfo> {
    (
        file_name(),
        0u64..(1 << 33),
        1u32..=MAX_CHUNK_SIZE,
        any::<[u8; 32]>(),
    )
        .prop_filter_map("chunk count within limits", |(name, size, chunk, id)| {
            FileInfo::new(name, size, chunk, FileId(id)).ok()
        })
}

fn summary() -> impl Strategy<Value = FileSummary> {
    (file_info(), any::<u32>(), any::<u32>()).prop_map(|(info, seeders, leechers)| FileSummary {
        info,
        seeders,
        leechers,
        stats: None,
    })
}

fn swarm_stats() -> impl Strategy<Value = Option<SwarmStats>> {
    prop::option::of((any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(completed, up, down)| SwarmStats {
            completed,
            up,
            down,
        },
    ))
}

/// Flag 7's summary, with or without the swarm's figures.
fn summary_with_stats() -> impl Strategy<Value = FileSummary> {
    (summary(), swarm_stats()).prop_map(|(mut s, stats)| {
        s.stats = stats;
        s
    })
}

fn counter() -> impl Strategy<Value = Option<u64>> {
    prop::option::of(0..=MAX_COUNTER)
}

/// A transfer report `kind` may carry (protocol.txt §1.2).
fn transfer_for(kind: &RequestKind) -> BoxedStrategy<Transfer> {
    let event = prop::option::of(prop_oneof![
        Just(AnnounceEvent::Started),
        Just(AnnounceEvent::Completed)
    ]);
    match kind {
        RequestKind::Exit { file: None, .. } => prop::option::of(Just(AnnounceEvent::Stopped))
            .prop_map(|event| Transfer {
                event,
                ..Transfer::default()
            })
            .boxed(),
        RequestKind::Exit { .. } => (
            prop::option::of(Just(AnnounceEvent::Stopped)),
            counter(),
            counter(),
            counter(),
        )
            .prop_map(|(event, up, down, left)| Transfer {
                event,
                up,
                down,
                left,
            })
            .boxed(),
        k if k.reports_transfer() => (event, counter(), counter(), counter())
            .prop_map(|(event, up, down, left)| Transfer {
                event,
                up,
                down,
                left: if event == Some(AnnounceEvent::Completed) {
                    left.map(|_| 0)
                } else {
                    left
                },
            })
            .boxed(),
        _ => Just(Transfer::default()).boxed(),
    }
}

fn conn_stats_for(kind: &RequestKind) -> BoxedStrategy<ConnStats> {
    match kind {
        RequestKind::Heartbeat { .. } => (
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>()),
        )
            .prop_map(|(conns, failed)| ConnStats { conns, failed })
            .boxed(),
        _ => Just(ConnStats::default()).boxed(),
    }
}

fn request_kind() -> impl Strategy<Value = RequestKind> {
    prop_oneof![
        (file_name(), prop::option::of(addr()), any::<u32>()).prop_map(
            |(file, announce, offset)| RequestKind::Peers {
                file,
                announce,
                offset
            }
        ),
        (file_name(), prop::option::of(addr()), any::<u32>()).prop_map(
            |(file, announce, offset)| RequestKind::Refresh {
                file,
                announce,
                offset
            }
        ),
        (file_name(), chunk_ranges(), addr()).prop_map(|(file, chunks, announce)| {
            RequestKind::Chunks {
                file,
                chunks,
                announce,
            }
        }),
        (file_info(), addr()).prop_map(|(info, announce)| RequestKind::Share { info, announce }),
        (prop::option::of(file_name()), addr())
            .prop_map(|(file, announce)| RequestKind::Exit { file, announce }),
        (any::<u32>(), prop::option::of("[a-z.*?]{1,20}")).prop_map(|(offset, pattern)| {
            RequestKind::ListFiles {
                offset,
                pattern: pattern.map(|p| NamePattern::new(&p).unwrap()),
            }
        }),
        file_name().prop_map(|file| RequestKind::Query { file }),
        (file_name(), unicast_addr(), own_addr())
            .prop_map(|(file, target, me)| RequestKind::Punch { file, target, me }),
        addr().prop_map(|announce| RequestKind::Heartbeat { announce }),
        Just(RequestKind::RelayOffer),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        request_kind(),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<[u8; 16]>().prop_map(PeerKey)),
        prop::option::of(any::<[u8; 8]>().prop_map(Cookie)),
        any::<bool>(),
    )
        .prop_flat_map(|(kind, tid, key, cookie, keep_punch_path)| {
            (transfer_for(&kind), conn_stats_for(&kind)).prop_map(move |(transfer, conn_stats)| {
                Request {
                    tid,
                    key,
                    cookie,
                    keep_punch_path,
                    transfer,
                    conn_stats,
                    kind: kind.clone(),
                }
            })
        })
}

fn peer_entry() -> impl Strategy<Value = PeerEntry> {
    (
        addr(),
        prop_oneof![
            Just(PeerChunks::Seeder),
            chunk_ranges().prop_map(PeerChunks::Ranges),
            any::<u32>().prop_map(PeerChunks::Count),
        ],
    )
        .prop_map(|(addr, chunks)| PeerEntry { addr, chunks })
}

fn listed() -> impl Strategy<Value = ListedFile> {
    (
        file_name(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        swarm_stats(),
    )
        .prop_map(
            |(name, size, chunks, seeders, leechers, stats)| ListedFile {
                name,
                size,
                chunks,
                seeders,
                leechers,
                stats,
            },
        )
}

fn intervals() -> impl Strategy<Value = Option<AnnounceIntervals>> {
    prop::option::of(
        (any::<u32>(), any::<u32>()).prop_map(|(interval, min_interval)| AnnounceIntervals {
            interval,
            min_interval,
        }),
    )
}

fn response_kind() -> impl Strategy<Value = ResponseKind> {
    prop_oneof![
        (
            any::<bool>(),
            summary(),
            intervals(),
            prop::option::of(any::<u32>()),
            prop::collection::vec(peer_entry(), 0..8)
        )
            .prop_map(
                |(refresh, file, intervals, next, peers)| ResponseKind::Peers {
                    refresh,
                    file,
                    intervals,
                    next,
                    peers
                }
            ),
        (
            any::<u32>(),
            prop::option::of(any::<u32>()),
            prop::collection::vec(listed(), 0..8)
        )
            .prop_map(|(total, next, files)| ResponseKind::Files { total, next, files }),
        summary_with_stats().prop_map(ResponseKind::File),
        prop_oneof![
            Just(Ack::Chunks),
            Just(Ack::Share),
            Just(Ack::Exit),
            Just(Ack::Punch)
        ]
        .prop_map(ResponseKind::Ok),
        any::<u32>().prop_map(|files| ResponseKind::Alive { files }),
        Just(ResponseKind::Relay(None)),
        (
            unicast_addr(),
            "[!-~]{1,40}",
            "[!-~]{1,40}",
            any::<u32>(),
            prop::collection::vec(ip(), 1..4)
        )
            .prop_map(|(server, username, password, ttl, relay_ips)| {
                ResponseKind::Relay(Some(RelayOffer {
                    server,
                    username,
                    password,
                    ttl,
                    relay_ips,
                }))
            }),
        (
            prop::sample::select(ErrorCode::ALL.to_vec()),
            "[ -~]{0,60}",
            prop::option::of(any::<[u8; 8]>())
        )
            .prop_map(|(code, text, cookie)| {
                let mut e = ErrorReply::new(code, &text);
                e.cookie = cookie.map(Cookie);
                ResponseKind::Error(e)
            }),
    ]
}

proptest! {
    #[test]
    fn request_round_trips(req in request()) {
        let text = req.encode();
        prop_assert_eq!(Request::parse(text.as_bytes()), Ok(req));
    }

    #[test]
    fn response_round_trips(kind in response_kind(), tid in prop::option::of(any::<u32>())) {
        let resp = Response::new(tid, kind);
        let text = resp.encode();
        prop_assert_eq!(&text, &resp.to_string());
        prop_assert_eq!(TrackerMessage::parse(text.as_bytes()), Ok(TrackerMessage::Response(resp)));
    }

    #[test]
    fn pages_render_like_responses(
        file in summary(),
        peers in prop::collection::vec(peer_entry(), 0..8),
        files in prop::collection::vec(listed(), 0..8),
        refresh in any::<bool>(),
        intervals in intervals(),
        next in prop::option::of(any::<u32>()),
        tid in prop::option::of(any::<u32>()),
    ) {
        let header = PeersHeader { refresh, file: &file, intervals };
        let mut body = PageBody::for_peers(usize::MAX, header, tid);
        for p in &peers {
            prop_assert!(body.push(p));
        }
        let expected = Response::new(
            tid,
            ResponseKind::Peers { refresh, file: file.clone(), intervals, next, peers },
        );
        prop_assert_eq!(body.finish_peers(next, tid), expected.encode());
        let mut body = PageBody::for_files(usize::MAX, tid);
        for f in &files {
            prop_assert!(body.push(f));
        }
        let expected = Response::new(tid, ResponseKind::Files { total: 99, next, files });
        prop_assert_eq!(body.finish_files(99, next, tid), expected.encode());
    }

    #[test]
    fn pages_stay_within_their_budget(
        file in summary(),
        intervals in intervals(),
        peers in prop::collection::vec(peer_entry(), 0..40),
        max in 768usize..2000,
    ) {
        let header = PeersHeader { refresh: false, file: &file, intervals };
        let mut body = PageBody::for_peers(max, header, Some(1));
        let taken = peers.iter().take_while(|p| body.push(*p)).count();
        let text = body.finish_peers(Some(u32::MAX), Some(u32::MAX));
        prop_assert!(text.len() <= max, "{} > {}", text.len(), max);
        prop_assert_eq!(text.lines().count() - 1, taken);
    }

    #[test]
    fn punch_round_trips(file in file_name(), from in unicast_addr()) {
        let notice = PunchNotice { file, from };
        let text = notice.to_string();
        prop_assert_eq!(TrackerMessage::parse(text.as_bytes()), Ok(TrackerMessage::Punch(notice)));
    }

    #[test]
    fn chunk_ranges_round_trip_and_normalise(r in chunk_ranges()) {
        let text = r.to_string();
        let parsed: ChunkRanges = text.parse().unwrap();
        prop_assert_eq!(&parsed, &r);
        let ranges = parsed.ranges();
        for w in ranges.windows(2) {
            prop_assert!(w[0].1 + 1 < w[1].0, "ranges must be merged: {:?}", ranges);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Request::parse(&bytes);
        let _ = TrackerMessage::parse(&bytes);
    }

    #[test]
    fn truncated_requests_are_errors_or_valid(req in request(), cut in 0usize..200) {
        let text = req.encode();
        let cut = cut.min(text.len());
        let _ = Request::parse(&text.as_bytes()[..cut]);
    }
}

fn err(text: &[u8]) -> ErrorCode {
    match Request::parse(text) {
        Ok(r) => panic!("{:?} parsed as {r:?}", String::from_utf8_lossy(text)),
        Err(e) => e.code(),
    }
}

#[test]
fn seed_forms_parse() {
    let r = Request::parse(b"REQUEST 3 movie.mkv 5 10.0.0.7").unwrap();
    assert_eq!(
        r.kind,
        RequestKind::Chunks {
            file: FileName::new("movie.mkv").unwrap(),
            chunks: ChunkRanges::from_indices([5]).unwrap(),
            announce: "10.0.0.7:6881".parse().unwrap(),
        }
    );
    let r = Request::parse(b"REQUEST 6\n").unwrap();
    assert_eq!(
        r.kind,
        RequestKind::ListFiles {
            offset: 0,
            pattern: None
        }
    );
    let r = Request::parse(b"REQUEST 6 match=*temps* offset=3").unwrap();
    assert_eq!(
        r.kind,
        RequestKind::ListFiles {
            offset: 3,
            pattern: Some(NamePattern::new("*temps*").unwrap())
        }
    );
    assert_eq!(r.to_string(), "REQUEST 6 offset=3 match=*temps*");
    for bad in [
        &b"REQUEST 6 match="[..],
        b"REQUEST 6 match=a/b",
        b"REQUEST 6 match=*.mkv match=*.mp4",
    ] {
        let e = Request::parse(bad).unwrap_err();
        assert!(
            matches!(e.code(), ErrorCode::BadField | ErrorCode::ExtraField),
            "{e:?}"
        );
    }
    let long = format!("REQUEST 6 match={}", "*".repeat(65));
    assert_eq!(
        Request::parse(long.as_bytes()).unwrap_err().code(),
        ErrorCode::BadField
    );
    let r = Request::parse(b"REQUEST 1 a.txt offset=20 tid=9\r\n").unwrap();
    assert_eq!(
        r.kind,
        RequestKind::Peers {
            file: FileName::new("a.txt").unwrap(),
            announce: None,
            offset: 20
        }
    );
    assert_eq!(r.tid, Some(9));
}

/// Flags 1 and 2 with an address announce the sender (it joins the swarm); without one they are
/// the seed's hand-typed look-ups.
#[test]
fn joining_forms_of_flags_1_and_2() {
    let r = Request::parse(b"REQUEST 2 a.txt 0.0.0.0:7000 offset=3").unwrap();
    assert_eq!(
        r.kind,
        RequestKind::Refresh {
            file: FileName::new("a.txt").unwrap(),
            announce: Some("0.0.0.0:7000".parse().unwrap()),
            offset: 3
        }
    );
    assert_eq!(r.kind.announce(), Some("0.0.0.0:7000".parse().unwrap()));
    let r = Request::parse(b"REQUEST 1 a.txt 10.0.0.7").unwrap();
    assert_eq!(r.kind.announce(), Some("10.0.0.7:6881".parse().unwrap()));
    assert_eq!(
        Request::parse(b"REQUEST 1 a.txt").unwrap().kind.announce(),
        None
    );
    assert_eq!(
        err(b"REQUEST 1 a.txt 1.2.3.4:5 6.7.8.9:1"),
        ErrorCode::ExtraField
    );
    assert_eq!(err(b"REQUEST 2 a.txt host:5"), ErrorCode::BadAddress);
    assert_eq!(err(b"REQUEST 1 a.txt 1.2.3.4:0"), ErrorCode::BadAddress);
    assert_eq!(
        err(b"REQUEST 1 a.txt offset=1 1.2.3.4:5"),
        ErrorCode::ExtraField
    );
    // The first token is always the name, even one that looks like an address.
    assert_eq!(
        Request::parse(b"REQUEST 2 1.2.3.4:5")
            .unwrap()
            .kind
            .announce(),
        None
    );
}

/// RESPONSE 1/2 carry both intervals or neither; a tracker that sends neither is read as
/// having said nothing (the client then assumes 30 s and 5 s).
#[test]
fn peer_list_headers_carry_both_intervals_or_none() {
    let id = format!("sha256:{}", "ab".repeat(32));
    let head = format!("RESPONSE 1 a size=1 chunks=1 chunk=2048 id={id} seeders=1 leechers=0");
    let intervals = |text: &str| match TrackerMessage::parse(text.as_bytes()) {
        Ok(TrackerMessage::Response(Response {
            kind: ResponseKind::Peers { intervals, .. },
            ..
        })) => Ok(intervals),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(e) => Err(e.code()),
    };
    assert_eq!(intervals(&head), Ok(None));
    assert_eq!(
        intervals(&format!("{head} min_interval=5 interval=30 tid=1")),
        Ok(Some(AnnounceIntervals {
            interval: 30,
            min_interval: 5
        }))
    );
    assert_eq!(
        intervals(&format!("{head} interval=30")),
        Err(ErrorCode::MissingField)
    );
    assert_eq!(
        intervals(&format!("{head} min_interval=5")),
        Err(ErrorCode::MissingField)
    );
    assert_eq!(
        intervals(&format!("{head} interval=-1 min_interval=5")),
        Err(ErrorCode::BadNumber)
    );
    assert_eq!(
        intervals(&format!("{head} interval=30 min_interval=5 interval=30")),
        Err(ErrorCode::ExtraField)
    );
}

#[test]
fn malformed_requests_give_typed_errors() {
    assert_eq!(err(b"REQUEST 0"), ErrorCode::UnknownFlag);
    assert_eq!(err(b"REQUEST 11"), ErrorCode::UnknownFlag);
    assert_eq!(err(b"REQUEST x"), ErrorCode::UnknownFlag);
    assert_eq!(err(b"REQUEST"), ErrorCode::MissingField);
    assert_eq!(err(b"REQUEST 1"), ErrorCode::MissingField);
    assert_eq!(err(b"REQUEST 3 a 1"), ErrorCode::MissingField);
    assert_eq!(
        err(b"REQUEST 4 a 1 1.2.3.4:5 size=10"),
        ErrorCode::MissingField
    );
    assert_eq!(err(b"REQUEST 6 extra"), ErrorCode::ExtraField);
    assert_eq!(err(b"REQUEST 7 a b"), ErrorCode::ExtraField);
    assert_eq!(err(b"REQUEST 7 a size=1"), ErrorCode::ExtraField);
    assert_eq!(err(b"REQUEST 7 a tid=1 tid=2"), ErrorCode::ExtraField);
    assert_eq!(err(b"REQUEST 7 a tid=1 b"), ErrorCode::ExtraField);
    assert_eq!(err(b"REQUEST 1 a offset=-1"), ErrorCode::BadNumber);
    assert_eq!(err(b"REQUEST 1 a tid=99999999999"), ErrorCode::BadNumber);
    assert_eq!(
        err(b"REQUEST 4 a x 1.2.3.4:5 size=1 id=sha256:00"),
        ErrorCode::BadNumber
    );
    assert_eq!(err(b"REQUEST 3 a 5-3 1.2.3.4"), ErrorCode::BadChunks);
    assert_eq!(err(b"REQUEST 3 a 1,,2 1.2.3.4"), ErrorCode::BadChunks);
    assert_eq!(
        err(b"REQUEST 3 a 99999999999 1.2.3.4"),
        ErrorCode::BadChunks
    );
    assert_eq!(err(b"REQUEST 3 a 1 1.2.3.4:0"), ErrorCode::BadAddress);
    assert_eq!(err(b"REQUEST 3 a 1 host:80"), ErrorCode::BadAddress);
    assert_eq!(
        err(b"REQUEST 8 a 0.0.0.0:1 1.2.3.4:5"),
        ErrorCode::BadAddress
    );
    for bad in [
        "REQUEST 8 a 224.0.0.1:1 1.2.3.4:5",
        "REQUEST 8 a 255.255.255.255:1 1.2.3.4:5",
        "REQUEST 8 a [ff02::1]:1 1.2.3.4:5",
        "REQUEST 8 a 0.1.2.3:1 1.2.3.4:5",
        "REQUEST 8 a 1.2.3.4:5 239.1.1.1:5",
        "REQUEST 8 a 1.2.3.4:5 [::ffff:224.0.0.1]:5",
    ] {
        assert_eq!(err(bad.as_bytes()), ErrorCode::BadAddress, "{bad}");
    }
    assert!(Request::parse(b"REQUEST 8 a 127.0.0.1:5 0.0.0.0:5").is_ok());
    assert_eq!(err(b"REQUEST 1 a/b"), ErrorCode::BadFileName);
    assert_eq!(err(b"REQUEST 1 a\\b"), ErrorCode::BadFileName);
    assert_eq!(err(b"REQUEST 1 .."), ErrorCode::BadFileName);
    assert_eq!(err(b"REQUEST 1 a..b"), ErrorCode::BadFileName);
    assert_eq!(err(b"REQUEST 1 a\0b"), ErrorCode::BadFileName);
    assert_eq!(err(b"REQUEST 1 a\x07b"), ErrorCode::BadFileName);
    assert_eq!(err(b"REQUEST 1 a\tb"), ErrorCode::BadFileName);
    assert_eq!(
        err(format!("REQUEST 1 {}", "a".repeat(256)).as_bytes()),
        ErrorCode::BadFileName
    );
    assert_eq!(err(b"REQUEST 1 \xff\xfe"), ErrorCode::NotUtf8);
    assert_eq!(err(&[b'A'; MAX_REQUEST_BYTES + 1]), ErrorCode::TooLong);
    assert_eq!(err(b"GET / HTTP/1.1"), ErrorCode::BadRequest);
    assert_eq!(err(b"REQUEST  6"), ErrorCode::BadRequest);
    assert_eq!(err(b""), ErrorCode::BadRequest);
    assert_eq!(err(b"REQUEST 7 a key=zz"), ErrorCode::BadField);
    assert_eq!(
        err(b"REQUEST 4 a 1 1.2.3.4:5 size=10 id=md5:00"),
        ErrorCode::BadField
    );
    let id = format!("sha256:{}", "ab".repeat(32));
    // 4096 bytes in 2048-byte chunks is 2 chunks, not 3.
    assert_eq!(
        err(format!("REQUEST 4 a 3 1.2.3.4 size=4096 id={id}").as_bytes()),
        ErrorCode::BadField
    );
    assert!(Request::parse(format!("REQUEST 4 a 2 1.2.3.4 size=4096 id={id}").as_bytes()).is_ok());
}

/// Names that would display as something they are not are refused, here and in peers (the
/// type is shared): `exe.txt` with a right-to-left override shows as `txt.exe`.
#[test]
fn names_with_bidi_controls_or_invisible_characters_are_refused() {
    for bad in [
        "invoice\u{202E}fdp.exe",
        "a\u{202A}b",
        "a\u{2066}b\u{2069}",
        "a\u{200E}",
        "\u{200F}a",
        "\u{061C}a",
        "a\u{200B}b",
        "a\u{200C}b",
        "a\u{200D}b",
        "a\u{2060}b",
        "\u{FEFF}a",
        "a\u{00AD}b",
        "a\u{180E}b",
        "a\u{FE0F}",
        "a\u{E0041}",
        "\u{3164}",
    ] {
        let e = FileName::new(bad).unwrap_err();
        assert!(matches!(e, FileNameError::Invisible(_)), "{bad:?}: {e}");
        assert!(e.to_string().contains("U+"), "{e}");
        let request = format!("REQUEST 7 {bad}");
        assert_eq!(err(request.as_bytes()), ErrorCode::BadFileName, "{bad:?}");
        let listed = format!("RESPONSE 6 files=1\n{bad} size=1 chunks=1 seeders=1 leechers=0");
        assert!(TrackerMessage::parse(listed.as_bytes()).is_err(), "{bad:?}");
    }
    for good in [
        "résumé.pdf",
        "日本語.txt",
        "файл.bin",
        "ملف.txt",
        "a-b_c.d",
        "1.2.3.4:5",
    ] {
        assert!(FileName::new(good).is_ok(), "{good:?}");
    }
}

/// A PUNCH notice tells a peer to connect somewhere: never to a multicast, broadcast or
/// unspecified address, whatever a tracker sends.
#[test]
fn punch_notices_name_unicast_addresses_only() {
    for bad in [
        "PUNCH a 0.0.0.0:5",
        "PUNCH a [::]:5",
        "PUNCH a 224.0.0.1:5",
        "PUNCH a 255.255.255.255:5",
        "PUNCH a [ff02::1]:5",
    ] {
        assert!(TrackerMessage::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    assert!(TrackerMessage::parse(b"PUNCH a 127.0.0.1:5").is_ok());
}

#[test]
fn error_text_cannot_forge_fields() {
    let resp = Response::error(
        Some(4),
        ErrorCode::BadField,
        "bad key=value\nline two cookie=00",
    );
    let text = resp.encode();
    assert!(!text.contains('\n'));
    match TrackerMessage::parse(text.as_bytes()).unwrap() {
        TrackerMessage::Response(Response {
            tid,
            kind: ResponseKind::Error(e),
        }) => {
            assert_eq!(tid, Some(4));
            assert_eq!(e.cookie, None);
            assert_eq!(e.code, ErrorCode::BadField);
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The store hands over ranges read off a bitfield without re-sorting them; anything that is
/// not already sorted, merged and in bounds is refused rather than trusted.
#[test]
fn from_sorted_takes_only_sorted_merged_ranges() {
    assert_eq!(
        ChunkRanges::from_sorted(vec![(0, 3), (5, 5), (7, 9)]),
        Some("0-3,5,7-9".parse().unwrap())
    );
    assert_eq!(ChunkRanges::from_sorted(vec![]), None);
    assert_eq!(ChunkRanges::from_sorted(vec![(5, 5), (0, 3)]), None);
    assert_eq!(ChunkRanges::from_sorted(vec![(0, 3), (4, 6)]), None);
    assert_eq!(ChunkRanges::from_sorted(vec![(3, 1)]), None);
    assert_eq!(ChunkRanges::from_sorted(vec![(0, MAX_CHUNKS)]), None);
}

#[test]
fn punch_keep_is_an_envelope_field_of_any_request() {
    let r = Request::parse(b"REQUEST 3 f.bin 0-3 0.0.0.0:6881 punch=keep tid=4").unwrap();
    assert!(r.keep_punch_path);
    assert_eq!(
        r.encode(),
        "REQUEST 3 f.bin 0-3 0.0.0.0:6881 punch=keep tid=4"
    );
    assert!(
        !Request::parse(b"REQUEST 9 0.0.0.0:6881")
            .unwrap()
            .keep_punch_path
    );
    let err = Request::parse(b"REQUEST 9 0.0.0.0:6881 punch=yes").unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadField);
}

#[test]
fn flag_10_asks_for_the_relay_offer() {
    let r = Request::parse(b"REQUEST 10 tid=9").unwrap();
    assert_eq!(r.kind, RequestKind::RelayOffer);
    assert_eq!(r.encode(), "REQUEST 10 tid=9");
    assert_eq!(
        Request::parse(b"REQUEST 10 f.bin").unwrap_err().code(),
        ErrorCode::ExtraField
    );
    assert_eq!(
        Request::parse(b"REQUEST 11").unwrap_err().code(),
        ErrorCode::UnknownFlag
    );
}

#[test]
fn relay_offers_parse_and_malformed_ones_are_refused() {
    let text = "RESPONSE 10 203.0.113.2:3478 user=1700000000:p0a1b2c3d pass=d8soP47RbdIKLDUOpnJPVQyq5Ts= ttl=86400 relay=203.0.113.2,203.0.113.3 tid=5";
    match TrackerMessage::parse(text.as_bytes()).unwrap() {
        TrackerMessage::Response(Response {
            tid: Some(5),
            kind: ResponseKind::Relay(Some(offer)),
        }) => {
            assert_eq!(offer.server, "203.0.113.2:3478".parse().unwrap());
            assert_eq!(offer.username, "1700000000:p0a1b2c3d");
            assert_eq!(offer.password, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
            assert_eq!(offer.ttl, 86400);
            assert_eq!(offer.relay_ips.len(), 2);
            assert!(
                !format!("{offer:?}").contains("d8so"),
                "Debug hides the password"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        TrackerMessage::parse(b"RESPONSE 10 none"),
        Ok(TrackerMessage::Response(Response {
            kind: ResponseKind::Relay(None),
            ..
        }))
    ));
    for bad in [
        "RESPONSE 10",
        "RESPONSE 10 203.0.113.2:3478 pass=x ttl=1 relay=203.0.113.2",
        "RESPONSE 10 203.0.113.2:3478 user=u pass=x ttl=-1 relay=203.0.113.2",
        "RESPONSE 10 203.0.113.2:3478 user=u pass=x ttl=1 relay=nope",
        "RESPONSE 10 203.0.113.2:3478 user=u pass=x ttl=1",
        "RESPONSE 10 0.0.0.0:3478 user=u pass=x ttl=1 relay=203.0.113.2",
        "RESPONSE 10 203.0.113.2:3478 user= pass=x ttl=1 relay=203.0.113.2",
        "RESPONSE 10 203.0.113.2:3478 user=u pass=x ttl=1 relay=203.0.113.2 extra=1",
    ] {
        assert!(TrackerMessage::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn announce_events_and_counters_parse_on_the_flags_that_announce() {
    let id = format!("sha256:{}", "ab".repeat(32));
    let parse = |t: &str| Request::parse(t.as_bytes()).unwrap();
    let r = parse("REQUEST 1 movie.mkv 0.0.0.0:6881 event=started up=0 down=0 left=5000");
    assert_eq!(r.transfer.event, Some(AnnounceEvent::Started));
    assert_eq!(r.transfer.left, Some(5000));
    let r = parse("REQUEST 3 movie.mkv 0-2 10.0.0.8:6881 up=4096 down=5000 left=0");
    assert_eq!((r.transfer.up, r.transfer.down), (Some(4096), Some(5000)));
    let r = parse(&format!(
        "REQUEST 4 movie.mkv 3 0.0.0.0:6881 size=5000 id={id} event=completed down=5000 left=0"
    ));
    assert_eq!(r.transfer.event, Some(AnnounceEvent::Completed));
    let r = parse("REQUEST 5 movie.mkv 10.0.0.8:6881 event=stopped up=1 down=2");
    assert_eq!(r.transfer.event, Some(AnnounceEvent::Stopped));
    let r = parse("REQUEST 5 10.0.0.8:6881 event=stopped");
    assert_eq!(r.transfer.event, Some(AnnounceEvent::Stopped));
    let r = parse("REQUEST 9 10.0.0.8:6881 conns=3 failed=1");
    assert_eq!(
        r.conn_stats,
        ConnStats {
            conns: Some(3),
            failed: Some(1)
        }
    );
    // What was typed is what is sent back out.
    let text = "REQUEST 2 movie.mkv 10.0.0.8:6881 event=started up=1 down=2 left=3 key=00112233445566778899aabbccddeeff tid=9";
    assert_eq!(parse(text).encode(), text);
}

#[test]
fn hostile_counters_and_events_get_clear_errors() {
    let cases: &[(&str, ErrorCode)] = &[
        ("REQUEST 3 f 0 1.2.3.4:1 event=bogus", ErrorCode::BadField),
        ("REQUEST 3 f 0 1.2.3.4:1 up=-5", ErrorCode::BadNumber),
        ("REQUEST 3 f 0 1.2.3.4:1 down=lots", ErrorCode::BadNumber),
        (
            "REQUEST 3 f 0 1.2.3.4:1 up=99999999999999999999999999",
            ErrorCode::BadNumber,
        ),
        (
            "REQUEST 3 f 0 1.2.3.4:1 up=9007199254740992",
            ErrorCode::BadNumber,
        ),
        (
            "REQUEST 3 f 0 1.2.3.4:1 event=completed left=7",
            ErrorCode::BadField,
        ),
        ("REQUEST 3 f 0 1.2.3.4:1 event=stopped", ErrorCode::BadField),
        ("REQUEST 5 f 1.2.3.4:1 event=started", ErrorCode::BadField),
        ("REQUEST 5 1.2.3.4:1 up=5", ErrorCode::BadField),
        ("REQUEST 3 f 0 1.2.3.4:1 up=1 up=1", ErrorCode::ExtraField),
        // Looking is not announcing: no counters on flags 1/2 without an address, 6, 7.
        ("REQUEST 1 f up=1", ErrorCode::ExtraField),
        ("REQUEST 7 f event=started", ErrorCode::ExtraField),
        ("REQUEST 9 1.2.3.4:1 up=1", ErrorCode::ExtraField),
        ("REQUEST 3 f 0 1.2.3.4:1 conns=1", ErrorCode::ExtraField),
        ("REQUEST 9 1.2.3.4:1 conns=-1", ErrorCode::BadNumber),
        (
            "REQUEST 9 1.2.3.4:1 failed=4294967296",
            ErrorCode::BadNumber,
        ),
    ];
    for (text, code) in cases {
        assert_eq!(err(text.as_bytes()), *code, "{text}");
    }
}

#[test]
fn swarm_figures_follow_the_existing_fields_and_old_answers_still_parse() {
    let id = format!("sha256:{}", "ab".repeat(32));
    let new = format!(
        "RESPONSE 7 movie.mkv size=5000 chunks=3 chunk=2048 id={id} seeders=1 leechers=2 completed=2 up=10000 down=10000 tid=3"
    );
    let TrackerMessage::Response(r) = TrackerMessage::parse(new.as_bytes()).unwrap() else {
        panic!("not a response")
    };
    let ResponseKind::File(s) = &r.kind else {
        panic!("not flag 7")
    };
    assert_eq!(
        s.stats,
        Some(SwarmStats {
            completed: 2,
            up: 10000,
            down: 10000
        })
    );
    assert_eq!(r.encode(), new);
    let old =
        format!("RESPONSE 7 movie.mkv size=5000 chunks=3 chunk=2048 id={id} seeders=1 leechers=2");
    let TrackerMessage::Response(r) = TrackerMessage::parse(old.as_bytes()).unwrap() else {
        panic!("not a response")
    };
    assert!(matches!(
        r.kind,
        ResponseKind::File(FileSummary { stats: None, .. })
    ));
    let listing = "RESPONSE 6 files=1\nmovie.mkv size=5000 chunks=3 seeders=1 leechers=2 completed=2 up=1 down=2";
    let TrackerMessage::Response(r) = TrackerMessage::parse(listing.as_bytes()).unwrap() else {
        panic!("not a response")
    };
    let ResponseKind::Files { files, .. } = r.kind else {
        panic!("not flag 6")
    };
    assert_eq!(files[0].stats.map(|s| s.completed), Some(2));
    // All three or none.
    let partial =
        "RESPONSE 6 files=1\nmovie.mkv size=5000 chunks=3 seeders=1 leechers=2 completed=2";
    assert!(TrackerMessage::parse(partial.as_bytes()).is_err());
}

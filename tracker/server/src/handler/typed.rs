//! The typed entry point of the request logic, for front ends that render their own format
//! (the HTTP/JSON API): [`Tracker::handle_typed`] runs a typed request through the same
//! planning, trust rules and store operation as a datagram, and answers a [`Reply`].

use std::net::SocketAddr;
use std::time::Instant;

use tracker_proto::{
    ErrorCode, FileSummary, ListedFile, PeerEntry, RelayOffer, Request, RequestKind, ResponseKind,
};

use super::{unavailable, Answer, AnswerResult, Parsed, Tracker};
use crate::store::SwarmStore;

/// The answer to a typed request ([`Tracker::handle_typed`]), for a front end to render.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Flags 1 and 2: the file and one page of its swarm; `next` is the offset of the rest.
    Peers {
        file: FileSummary,
        peers: Vec<PeerEntry>,
        next: Option<u32>,
    },
    /// Flag 6: `total` files in the catalogue, one page of them (only names matching the
    /// request's pattern, if it has one).
    Files {
        total: u32,
        files: Vec<ListedFile>,
        next: Option<u32>,
    },
    /// Flag 7.
    File(FileSummary),
    /// Flags 3, 4 and 5.
    Ok,
    /// Flag 9: the number of swarms the peer is in.
    Alive(u32),
    /// Flag 10.
    Relay(Option<RelayOffer>),
}

/// Why a request was refused: the protocol's error code and a text for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: ErrorCode,
    pub text: String,
}

impl<S: SwarmStore> Tracker<S> {
    /// Handles one request that reached the tracker over a connection (HTTP over TCP), which
    /// proves its source address: no cookie is needed and no answer can amplify. It goes
    /// through the same trust rules (addresses, keys, limits) and the same store operation
    /// as the datagram would; listings hold at most `page` entries. Flag 8 is refused: the
    /// PUNCH notice it relays goes out of the UDP socket.
    pub fn handle_typed(
        &self,
        request: Request,
        source: SocketAddr,
        now: Instant,
        page: usize,
    ) -> Result<Reply, Refused> {
        self.handle_typed_batch(vec![request], source, now, page)
            .pop()
            .unwrap_or_else(|| Err(refused(unavailable("the store gave no answer"))))
    }

    /// [`Tracker::handle_typed`] for many requests of one source, handed to the store at once
    /// (one round trip for a store behind a network); one answer per request, in order.
    pub fn handle_typed_batch(
        &self,
        requests: Vec<Request>,
        source: SocketAddr,
        now: Instant,
        page: usize,
    ) -> Vec<Result<Reply, Refused>> {
        let source = SocketAddr::new(source.ip().to_canonical(), source.port());
        let mut answers: Vec<Option<Result<Reply, Refused>>> = Vec::with_capacity(requests.len());
        let mut parsed = Vec::with_capacity(requests.len());
        for request in requests {
            if matches!(request.kind, RequestKind::Punch { .. }) {
                answers.push(Some(Err(Refused {
                    code: ErrorCode::BadRequest,
                    text: "PUNCH relays (flag 8) go over UDP only".into(),
                })));
                continue;
            }
            answers.push(None);
            parsed.push(Parsed {
                request,
                source,
                reply_to: source,
                verified: true,
                len: 0,
                typed_page: Some(page),
            });
        }
        let mut finished = if parsed.is_empty() {
            Vec::new()
        } else {
            self.finish(&parsed, now)
        }
        .into_iter();
        answers
            .into_iter()
            .map(|answer| match answer {
                Some(refusal) => refusal,
                None => match finished.next() {
                    Some((answer, _)) => typed(answer),
                    None => Err(refused(unavailable("the store gave no answer"))),
                },
            })
            .collect()
    }

    /// The serving address an announcement from `source` files rows under, or why it may not
    /// (protocol.txt §1.7): for a front end that checks an address before it builds requests.
    pub fn serving_addr(
        &self,
        addr: SocketAddr,
        source: SocketAddr,
    ) -> Result<SocketAddr, Refused> {
        let source = SocketAddr::new(source.ip().to_canonical(), source.port());
        self.announced(addr, source)
            .map_err(|(code, text)| Refused { code, text })
    }
}

/// The typed form of an answer (flags 1, 2 and 6 are typed already when planned so).
pub(super) fn typed(answer: AnswerResult) -> Result<Reply, Refused> {
    match answer {
        Ok(Answer::Typed(reply)) => Ok(reply),
        Ok(Answer::Kind(kind)) => match kind {
            ResponseKind::File(summary) => Ok(Reply::File(summary)),
            ResponseKind::Ok(_) => Ok(Reply::Ok),
            ResponseKind::Alive { files } => Ok(Reply::Alive(files)),
            ResponseKind::Relay(offer) => Ok(Reply::Relay(offer)),
            other => Err(refused(unavailable(&format!("no typed form of {other:?}")))),
        },
        Ok(Answer::Text(_)) => Err(refused(unavailable("a typed request was answered as text"))),
        Err(e) => Err(refused(e)),
    }
}

fn refused((code, text): (ErrorCode, String)) -> Refused {
    Refused { code, text }
}

/// The entries of a typed listing, at most `limit` of them.
pub(super) struct Listing {
    pub(super) limit: usize,
    pub(super) peers: Vec<PeerEntry>,
    pub(super) files: Vec<ListedFile>,
}

impl Listing {
    pub(super) fn push_peer(&mut self, peer: &PeerEntry) -> bool {
        if self.peers.len() >= self.limit {
            return false;
        }
        self.peers.push(peer.clone());
        true
    }

    pub(super) fn push_file(&mut self, file: &ListedFile) -> bool {
        if self.files.len() >= self.limit {
            return false;
        }
        self.files.push(file.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;

    fn parse(text: &str) -> Request {
        Request::parse(text.as_bytes()).expect("a valid request")
    }

    /// A typed request meets the rules a datagram meets (addresses, keys), without the
    /// cookie round trip a connection makes needless, and lists what the datagram lists.
    #[test]
    fn typed_requests_follow_the_datagram_rules() {
        let tracker = Tracker::new(ServerConfig::default());
        let now = Instant::now();
        let source: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let id = format!("sha256:{}", "ab".repeat(32));
        let key = "11".repeat(16);
        let foreign = parse(&format!(
            "REQUEST 4 f.bin 2 198.51.100.1:6881 size=4000 id={id} key={key}"
        ));
        let refused = tracker.handle_typed(foreign, source, now, 10).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden);
        let share = format!("REQUEST 4 f.bin 2 0.0.0.0:6881 size=4000 id={id} key={key}");
        // Over UDP a public source must prove its address first; a connection already has.
        let udp = tracker.handle(share.as_bytes(), source, now).reply.unwrap();
        assert!(udp.starts_with(b"ERROR 1200 COOKIE_REQUIRED"));
        assert_eq!(
            tracker.handle_typed(parse(&share), source, now, 10),
            Ok(Reply::Ok)
        );
        // The rows are keyed: the same address without the key may not remove them.
        let keyless_exit = parse("REQUEST 5 203.0.113.5:6881");
        let refused = tracker
            .handle_typed(keyless_exit, source, now, 10)
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden);
        match tracker.handle_typed(parse("REQUEST 1 f.bin"), source, now, 10) {
            Ok(Reply::Peers { file, peers, next }) => {
                assert_eq!(file.info.name().as_str(), "f.bin");
                assert_eq!(file.seeders, 1);
                assert_eq!(peers.len(), 1);
                assert_eq!(peers[0].addr, "203.0.113.5:6881".parse().unwrap());
                assert_eq!(next, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            tracker.files_by_id().name_of(&id.parse().unwrap()),
            Some(tracker_proto::FileName::new("f.bin").unwrap())
        );
        let punch = parse("REQUEST 8 f.bin 203.0.113.5:6881 0.0.0.0:6882");
        let refused = tracker.handle_typed(punch, source, now, 10).unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadRequest);
    }

    /// Typed listings stop at the page size and say where to go on; a pattern keeps only
    /// matching names.
    #[test]
    fn typed_listings_page_and_filter() {
        let tracker = Tracker::new(ServerConfig::default());
        let now = Instant::now();
        let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        for (i, name) in ["a.mkv", "b.txt", "c.mkv", "d.mkv"].iter().enumerate() {
            let share = format!(
                "REQUEST 4 {name} 1 0.0.0.0:{} size=10 id=sha256:{}",
                7000 + i,
                "cd".repeat(32)
            );
            assert_eq!(
                tracker.handle_typed(parse(&share), source, now, 10),
                Ok(Reply::Ok)
            );
        }
        let list = |text: &str, page| match tracker.handle_typed(parse(text), source, now, page) {
            Ok(Reply::Files { total, files, next }) => (
                total,
                files.iter().map(|f| f.name.to_string()).collect::<Vec<_>>(),
                next,
            ),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            list("REQUEST 6", 2),
            (4, vec!["a.mkv".into(), "b.txt".into()], Some(2))
        );
        assert_eq!(
            list("REQUEST 6 match=*.mkv", 2),
            (4, vec!["a.mkv".into(), "c.mkv".into()], Some(3))
        );
        assert_eq!(
            list("REQUEST 6 match=*.mkv offset=3", 2),
            (4, vec!["d.mkv".into()], None)
        );
    }
}

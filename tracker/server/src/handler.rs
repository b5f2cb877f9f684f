//! The tracker's request logic, without I/O: turns each request datagram into exactly one
//! answer datagram (or deliberate silence) and relays PUNCH notices.
//!
//! [`Tracker::handle`] is the whole protocol decision: bytes and source in, an [`Outcome`] out
//! ([`Tracker::handle_batch`] does a receive batch, handing the store all of its work at once),
//! so tests and benches need no sockets. [`Tracker::handle_typed`] is the same decision for a
//! front end that renders its own format (the HTTP/JSON API): a typed request in, a [`Reply`]
//! out, through the same planning, trust rules and store. Every trust rule (cookies, whose
//! addresses a source may announce, PUNCH origins, rate limits) is applied here, before the
//! store sees a request; answers never amplify towards an unverified source (protocol.txt §1.6).
//!
//! Here: parsing, the trust rules and the store round trip of a batch. Its two halves around
//! the store live beside it and share this module's per-request state (`Parsed`, `Body`):
//! `handler/plan.rs` (what the store does for each request) and `handler/render.rs` (the
//! answer from what it did); the typed entry point for the HTTP front end is
//! `handler/typed.rs`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::debug;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tracker_proto::{
    ErrorCode, ErrorReply, RelayOffer, Request, Response, ResponseKind, MAX_REQUEST_BYTES,
};

use crate::config::ServerConfig;
use crate::cookie::{exempt, CookieJar};
use crate::file_index::FileIndex;
use crate::metrics::{Counters, Withheld};
use crate::rate_limit::PunchLimiter;
use crate::store::{MemoryStore, StoreError, SwarmStore};

mod plan;
mod render;
mod sinks;
mod typed;

use sinks::Body;
use typed::Listing;
pub use typed::{Refused, Reply};

/// What to send after handling one datagram.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The answer to the source, if any.
    pub reply: Option<Vec<u8>>,
    /// A PUNCH notice and the UDP address to send it to (flag 8).
    pub punch: Option<(SocketAddr, Vec<u8>)>,
}

/// The tracker's state and request logic.
pub struct Tracker<S: SwarmStore = MemoryStore> {
    config: ServerConfig,
    store: S,
    cookies: CookieJar,
    punches: Mutex<PunchLimiter>,
    files_by_id: FileIndex,
    counters: Counters,
}

impl Tracker<MemoryStore> {
    pub fn new(config: ServerConfig) -> Self {
        let store = MemoryStore::new(config.ttl, config.limits);
        Tracker::with_store(config, store)
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Finds `tid=<n>` in a request that failed to parse, so even the error can be matched.
fn salvage_tid(datagram: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(&datagram[..datagram.len().min(MAX_REQUEST_BYTES)]).ok()?;
    text.split([' ', '\n', '\r'])
        .find_map(|t| t.strip_prefix("tid=")?.parse().ok())
}

impl<S: SwarmStore> Tracker<S> {
    pub fn with_store(config: ServerConfig, store: S) -> Self {
        Tracker {
            files_by_id: FileIndex::new(config.limits.max_files.saturating_mul(2)),
            counters: Counters::default(),
            config,
            cookies: store
                .cookie_secret()
                .map_or_else(CookieJar::new, CookieJar::with_secret),
            store,
            punches: Mutex::new(PunchLimiter::new()),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The store the tracker answers from.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// What the UDP front end counted (requests, errors, withheld answers).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The ids of the files this tracker has seen described, to find a file by content.
    pub fn files_by_id(&self) -> &FileIndex {
        &self.files_by_id
    }

    /// Frees the rows of peers silent for longer than the TTL.
    pub fn expire(&self, now: Instant) {
        self.store.expire(now);
        self.punches.lock().forget_idle(now);
    }

    /// Handles one datagram from `source`.
    pub fn handle(&self, datagram: &[u8], source: SocketAddr, now: Instant) -> Outcome {
        match self.prepare(datagram, source) {
            Prepared::Done(outcome) => outcome,
            Prepared::Apply(p) => {
                let p = [p];
                let (answer, punch) = self
                    .finish(&p, now)
                    .pop()
                    .unwrap_or_else(|| (Err(unavailable("the store gave no answer")), None));
                self.outcome(&p[0], answer, punch)
            }
        }
    }

    /// Handles many datagrams, handing the store the work of all of them at once (one round
    /// trip for a store behind a network). Answers (and PUNCH notices) are appended to `out`
    /// as (destination, datagram).
    pub fn handle_batch<'a>(
        &self,
        datagrams: impl Iterator<Item = (&'a [u8], SocketAddr)>,
        now: Instant,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let mut pending = Vec::new();
        for (datagram, source) in datagrams {
            match self.prepare(datagram, source) {
                Prepared::Done(outcome) => push_outcome(out, source, outcome),
                Prepared::Apply(p) => pending.push(p),
            }
        }
        if pending.is_empty() {
            return;
        }
        for (p, (answer, punch)) in pending.iter().zip(self.finish(&pending, now)) {
            push_outcome(out, p.reply_to, self.outcome(p, answer, punch));
        }
    }

    /// Everything that needs no store: STUN, parsing, cookies.
    fn prepare(&self, datagram: &[u8], source: SocketAddr) -> Prepared {
        // Decisions use the canonical form (an IPv4 client of a dual-stack socket is its IPv4
        // address); datagrams go back to the address exactly as the socket reported it.
        let reply_to = source;
        let source = SocketAddr::new(source.ip().to_canonical(), source.port());
        if stun::responder::is_stun(datagram) {
            let reply = if self.config.stun {
                stun::responder::answer_binding(datagram, source)
            } else {
                debug!("dropping STUN datagram from {source}: --stun is off");
                None
            };
            return Prepared::Done(Outcome { reply, punch: None });
        }
        let exempt = !self.config.require_cookies && exempt(source.ip());
        let request = match Request::parse(datagram) {
            Ok(r) => {
                self.counters.request(Some(r.kind.flag()));
                r
            }
            Err(e) => {
                debug!("bad request from {source}: {e}");
                self.counters.request(None);
                self.counters.error(e.code());
                let tid = salvage_tid(datagram);
                let text = Response::error(tid, e.code(), &e.to_string()).encode();
                return Prepared::Done(self.guarded(
                    text,
                    true,
                    tid,
                    datagram.len(),
                    exempt,
                    source.ip(),
                ));
            }
        };
        let verified = exempt
            || request
                .cookie
                .is_some_and(|c| self.cookies.check(source.ip(), c, unix_secs()));
        // An unverified source reaches the store only when nothing can come of it that would be
        // dropped: a request that changes nothing, at least a third as long as the longest
        // answer. Anything else gets its cookie now, before any work is done (protocol.txt §1.6).
        let answer_may_amplify = 3 * datagram.len() < self.config.max_response_bytes;
        if !verified && (request.kind.announce().is_some() || answer_may_amplify) {
            return Prepared::Done(self.cookie_required(request.tid, datagram.len(), source.ip()));
        }
        Prepared::Apply(Parsed {
            request,
            source,
            reply_to,
            verified,
            len: datagram.len(),
            typed_page: None,
        })
    }

    /// Plans every parsed request, runs the store's part of all of them at once, and renders
    /// each answer (with the PUNCH notice to relay, if any).
    fn finish(&self, batch: &[Parsed], now: Instant) -> Vec<(AnswerResult, Punch)> {
        let mut bodies: Vec<Body> = batch
            .iter()
            .map(|p| match p.typed_page {
                None => Body::Text(None),
                Some(limit) => Body::Typed(Listing {
                    limit,
                    peers: Vec::new(),
                    files: Vec::new(),
                }),
            })
            .collect();
        let mut planned = Vec::with_capacity(batch.len());
        let mut results = {
            let mut tasks = Vec::with_capacity(batch.len());
            for (p, body) in batch.iter().zip(bodies.iter_mut()) {
                planned.push(match self.plan(p, body) {
                    Ok(Some(task)) => {
                        tasks.push(task);
                        Ok(Some(tasks.len() - 1))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                });
            }
            if tasks.is_empty() {
                Vec::new()
            } else {
                self.store.run(&mut tasks, now)
            }
        }
        .into_iter()
        .map(Some)
        .collect::<Vec<_>>();
        batch
            .iter()
            .zip(planned)
            .zip(bodies)
            .map(|((p, plan), body)| {
                let mut punch = None;
                let answer = match plan {
                    Err(e) => Err(e),
                    Ok(None) => Ok(Answer::Kind(ResponseKind::Relay(
                        self.relay_offer(p.source.ip()),
                    ))),
                    Ok(Some(i)) => match results.get_mut(i).and_then(Option::take) {
                        Some(done) => self.render(p, done, body, now, &mut punch),
                        None => Err(unavailable("the store gave no answer")),
                    },
                };
                (answer, punch)
            })
            .collect()
    }

    /// The answer datagram for `answer`, guarded against amplification.
    fn outcome(&self, p: &Parsed, answer: AnswerResult, punch: Punch) -> Outcome {
        let tid = p.request.tid;
        let (text, is_error) = match answer {
            Ok(Answer::Text(text)) => (text, false),
            Ok(Answer::Typed(reply)) => {
                let (code, text) = unavailable(&format!("a datagram was answered with {reply:?}"));
                (Response::error(tid, code, &text).encode(), true)
            }
            Ok(Answer::Kind(kind)) => (Response::new(tid, kind).encode(), false),
            Err((code, text)) => {
                self.counters.error(code);
                debug!(
                    "refused flag {} from {}: {text}",
                    p.request.kind.flag(),
                    p.source
                );
                (Response::error(tid, code, &text).encode(), true)
            }
        };
        let mut outcome = self.guarded(text, is_error, tid, p.len, p.verified, p.source.ip());
        outcome.punch = punch;
        outcome
    }

    /// Sends `text` unless it would amplify towards an unverified source (protocol.txt §1.6).
    fn guarded(
        &self,
        text: String,
        is_error: bool,
        tid: Option<u32>,
        request_len: usize,
        verified: bool,
        ip: IpAddr,
    ) -> Outcome {
        if verified || text.len() <= 3 * request_len {
            return Outcome {
                reply: Some(text.into_bytes()),
                punch: None,
            };
        }
        if is_error {
            self.counters.withheld(Withheld::Silent);
            debug!("not answering {ip}: error would amplify");
            return Outcome::default();
        }
        self.cookie_required(tid, request_len, ip)
    }

    fn cookie_required(&self, tid: Option<u32>, request_len: usize, ip: IpAddr) -> Outcome {
        let mut reply = ErrorReply::new(
            ErrorCode::CookieRequired,
            "repeat the request with this cookie",
        );
        reply.cookie = Some(self.cookies.issue(ip, unix_secs()));
        let text = Response::new(tid, ResponseKind::Error(reply)).encode();
        if text.len() > 3 * request_len {
            self.counters.withheld(Withheld::Silent);
            debug!("not answering {ip}: even the cookie answer would amplify");
            return Outcome::default();
        }
        self.counters.withheld(Withheld::Cookie);
        Outcome {
            reply: Some(text.into_bytes()),
            punch: None,
        }
    }

    /// The serving address an announcement files rows under (protocol.txt §1.7).
    fn announced(
        &self,
        addr: SocketAddr,
        source: SocketAddr,
    ) -> Result<SocketAddr, (ErrorCode, String)> {
        if addr.ip().is_unspecified() {
            return Ok(SocketAddr::new(source.ip(), addr.port()));
        }
        let ip = addr.ip().to_canonical();
        if ip != source.ip() && !self.config.trust_ip_field && !self.is_relay_ip(ip) {
            return Err((
                ErrorCode::Forbidden,
                format!(
                    "{addr} is not your address (requests come from {})",
                    source.ip()
                ),
            ));
        }
        Ok(SocketAddr::new(ip, addr.port()))
    }

    /// The serving address a PUNCH names as its sender (protocol.txt §1.8): the announcement
    /// rules of §1.7, a unicast address, and under `--trust-ip-field` another address than the
    /// source's only from a LAN address to a LAN address or to a relayed address of our own
    /// TURN server (a relayed peer asking to be connected back), so no one can make a peer
    /// send SYNs to a victim of their choice.
    fn punch_origin(
        &self,
        me: SocketAddr,
        source: SocketAddr,
    ) -> Result<SocketAddr, (ErrorCode, String)> {
        let me = self.announced(me, source)?;
        if !tracker_proto::is_unicast(me.ip()) {
            return Err((
                ErrorCode::BadAddress,
                format!("{me} is not a unicast address a peer can connect to"),
            ));
        }
        let (ip, from) = (me.ip(), source.ip());
        let lan_to_lan = exempt(from) && exempt(ip) && (!ip.is_loopback() || from.is_loopback());
        if ip != from && !lan_to_lan && !self.is_relay_ip(ip) {
            return Err((
                ErrorCode::Forbidden,
                format!(
                    "a PUNCH from {from} may name {from} only (another LAN address only from a \
                     LAN address)"
                ),
            ));
        }
        Ok(me)
    }

    /// Refuses a page offset beyond the longest list this tracker keeps (`cap` entries).
    fn check_offset(offset: u32, cap: usize) -> Result<(), (ErrorCode, String)> {
        if offset as usize > cap {
            return Err((
                ErrorCode::BadNumber,
                format!("offset {offset} is beyond the longest list this tracker keeps ({cap})"),
            ));
        }
        Ok(())
    }

    /// Whether `ip` is one of the relayed-address IPs of the TURN server this tracker hands
    /// out: announcements may carry such an address though it is not the sender's (§1.7).
    fn is_relay_ip(&self, ip: IpAddr) -> bool {
        self.config
            .relay
            .as_ref()
            .is_some_and(|r| r.relay_ips.contains(&ip))
    }

    /// The TURN server and fresh REST-API credentials for the peer at `ip` (flag 10). The
    /// username names the peer's IP by a keyed hash, so the server's per-user quotas count
    /// per host without telling anyone which host.
    fn relay_offer(&self, ip: IpAddr) -> Option<RelayOffer> {
        let relay = self.config.relay.as_ref()?;
        let ttl = relay.credential_ttl.as_secs();
        let mut hash = Sha256::new();
        hash.update(relay.secret.as_bytes());
        hash.update(ip.to_string().as_bytes());
        let user = format!("peer-{}", hex::encode(&hash.finalize()[..5]));
        let credentials =
            stun::turn::Credentials::rest_api(&relay.secret, &user, unix_secs() + ttl);
        Some(RelayOffer {
            server: relay.server,
            username: credentials.username,
            password: credentials.password,
            ttl: u32::try_from(ttl).unwrap_or(u32::MAX),
            relay_ips: relay.relay_ips.clone(),
        })
    }
}

/// The error of a store that could not do its part.
fn unavailable(why: &str) -> (ErrorCode, String) {
    log::error!("{why}");
    (
        ErrorCode::Unavailable,
        StoreError::Unavailable(why.to_string()).to_string(),
    )
}

/// A request that passed parsing and the cookie check, waiting for the store.
struct Parsed {
    request: Request,
    source: SocketAddr,
    reply_to: SocketAddr,
    verified: bool,
    len: usize,
    /// For a typed request ([`Tracker::handle_typed`]): the most entries a listing holds.
    typed_page: Option<usize>,
}

type AnswerResult = Result<Answer, (ErrorCode, String)>;
type Punch = Option<(SocketAddr, Vec<u8>)>;

// A request is prepared and taken apart at once (only `Parsed` is kept for the batch): boxing
// the large variant would cost an allocation per datagram to save a moment's stack.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    Done(Outcome),
    Apply(Parsed),
}

fn push_outcome(out: &mut Vec<(SocketAddr, Vec<u8>)>, reply_to: SocketAddr, outcome: Outcome) {
    if let Some(reply) = outcome.reply {
        out.push((reply_to, reply));
    }
    out.extend(outcome.punch);
}

/// An answer as the request logic produces it: a value, a page already rendered to text, or
/// a typed listing.
enum Answer {
    Kind(ResponseKind),
    Text(String),
    Typed(Reply),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RelayConfig, MAX_INTERVAL_SECS, MIN_RESPONSE_BYTES};
    use std::time::Duration;

    /// Pages of the smallest allowed size still make progress in the worst case: a 255-byte
    /// name, IPv6 peers, scattered chunks, every header number wide.
    #[test]
    fn smallest_pages_hold_at_least_one_line() {
        let config = ServerConfig {
            max_response_bytes: MIN_RESPONSE_BYTES,
            trust_ip_field: true,
            intervals: tracker_proto::AnnounceIntervals {
                interval: MAX_INTERVAL_SECS,
                min_interval: MAX_INTERVAL_SECS,
            },
            ..ServerConfig::default()
        };
        let tracker = Tracker::new(config);
        let source: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let now = Instant::now();
        let name = "n".repeat(255);
        let id = format!("sha256:{}", "ab".repeat(32));
        let share = format!("REQUEST 4 {name} 4194303 [ffff::1]:65535 size=8589932544 id={id}");
        let out = tracker.handle(share.as_bytes(), source, now);
        assert_eq!(out.reply.as_deref(), Some(&b"RESPONSE 4 OK"[..]));
        // Twelve two-chunk ranges: the longest range list still listed as ranges.
        let scattered: Vec<String> = (0..12)
            .map(|i| format!("{}-{}", 4_194_000 + i * 7, 4_194_001 + i * 7))
            .collect();
        for p in 0..20 {
            let addr = format!("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:{p:x}]:65535");
            let report = format!("REQUEST 3 {name} {} {addr}", scattered.join(","));
            let out = tracker.handle(report.as_bytes(), source, now);
            assert_eq!(out.reply.as_deref(), Some(&b"RESPONSE 3 OK"[..]));
        }
        let (mut offset, mut listed) = (0u32, 0usize);
        loop {
            let req = format!("REQUEST 1 {name} offset={offset} tid=4294967295");
            let reply = tracker.handle(req.as_bytes(), source, now).reply.unwrap();
            let text = String::from_utf8(reply).unwrap();
            assert!(!text.contains("have="), "ranges expected: {text}");
            assert!(text.len() <= MIN_RESPONSE_BYTES, "{} bytes", text.len());
            let lines = text.lines().count() - 1;
            assert!(lines >= 1, "empty page: {text}");
            listed += lines;
            match text
                .lines()
                .next()
                .unwrap()
                .split(' ')
                .find_map(|w| w.strip_prefix("next="))
            {
                Some(n) => offset = n.parse().unwrap(),
                None => break,
            }
        }
        assert_eq!(listed, 21);
    }

    /// A peer behind a symmetric NAT asks a seeder behind a port-restricted one to connect back
    /// to its TURN-relayed address: with public addresses (no LAN exemption) the PUNCH goes
    /// through for the relay's IP and for no other foreign IP.
    #[test]
    fn a_punch_may_name_the_requesters_relayed_address() {
        let relay_ip: IpAddr = "203.0.113.2".parse().unwrap();
        let tracker = Tracker::new(ServerConfig {
            relay: Some(RelayConfig {
                server: SocketAddr::new(relay_ip, 3478),
                secret: "s".into(),
                credential_ttl: Duration::from_secs(600),
                relay_ips: vec![relay_ip],
            }),
            ..ServerConfig::default()
        });
        let now = Instant::now();
        let cookie = |source: SocketAddr| tracker.cookies.issue(source.ip(), unix_secs());
        let seeder: SocketAddr = "203.0.113.13:40000".parse().unwrap();
        let share = format!(
            "REQUEST 4 f.bin 2 0.0.0.0:6881 size=4096 id=sha256:{} key={} cookie={}",
            "ab".repeat(32),
            "11".repeat(16),
            cookie(seeder)
        );
        let out = tracker.handle(share.as_bytes(), seeder, now);
        assert_eq!(out.reply.as_deref(), Some(&b"RESPONSE 4 OK"[..]));
        let leecher: SocketAddr = "203.0.113.18:41000".parse().unwrap();
        let punch = |me: &str| {
            let request = format!(
                "REQUEST 8 f.bin 203.0.113.13:6881 {me} cookie={}",
                cookie(leecher)
            );
            tracker.handle(request.as_bytes(), leecher, now)
        };
        let out = punch("203.0.113.2:55645");
        assert_eq!(out.reply.as_deref(), Some(&b"RESPONSE 8 OK"[..]));
        let (to, notice) = out.punch.expect("the seeder is told");
        assert_eq!(to, seeder);
        assert_eq!(notice, b"PUNCH f.bin 203.0.113.2:55645");
        let out = punch("198.51.100.7:55645");
        let reply = String::from_utf8(out.reply.unwrap()).unwrap();
        assert!(reply.starts_with("ERROR 1201 FORBIDDEN"), "{reply}");
        assert!(out.punch.is_none());
    }
}

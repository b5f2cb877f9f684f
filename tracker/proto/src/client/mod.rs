//! The async tracker client peers use: one method per flag, typed answers and errors, over
//! one tracker or several in tiers (BEP 12; protocol.txt §6.4-6.5).
//!
//! Each tracker address has its own UDP socket, retries and cookie ([`endpoint`]); a tracker
//! named by host is every address it resolves to, a bare domain the trackers its SRV records
//! list ([`dns`], [`tiers`]). [`failover`] decides where each flag goes: announcements (flags
//! 1/2 with ADDR, 3, 4, 5, 9) to every tracker of the first tier where one answers, so each of
//! them lists this peer; queries (flags 1/2 without ADDR, 6, 7, 10) to the first tracker that
//! answers; flag 8 to a tracker that lists this peer. The call sites see one client.

mod dns;
mod endpoint;
mod failover;
mod ops;
mod spec;
mod tiers;

#[cfg(test)]
mod scripted_tests;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

pub use dns::Resolver;
pub use spec::{SpecError, TrackerSpec, SRV_SERVICE};

use endpoint::Endpoint;
pub(crate) use endpoint::Report;
use failover::{first_ok, Trackers};
use tiers::{Context, Tier, Tracker};

use crate::transfer::Transfer;
use crate::{
    AnnounceIntervals, ChunkRanges, ErrorCode, ErrorReply, FileInfo, FileName, FileSummary,
    ListedFile, NamePattern, PeerEntry, PeerKey, PunchNotice, RelayOffer, RequestKind,
    ResponseKind,
};

/// How the client talks to the tracker.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The peer's identity across address changes, sent as `key=` on every request. Two
    /// clients with the same key are one peer to the tracker: its rows follow the latest
    /// announced address. Persist it to keep a peer's identity across restarts. Every
    /// tracker gets the same key; each keeps its own rows for it (protocol.txt §1.7).
    pub key: PeerKey,
    /// Wait for the first attempt; each retry doubles it.
    pub timeout: Duration,
    /// Attempts per request and address before giving up with [`ClientError::Timeout`].
    pub attempts: u32,
    /// Announce with `punch=keep` (protocol.txt §1.7): this client's socket never becomes the
    /// one the tracker sends PUNCH notices to. For one-shot commands beside a daemon that
    /// listens for them on its own socket.
    pub keep_punch_path: bool,
}

impl Default for ClientConfig {
    /// A fresh random key, 500 ms first wait, 4 attempts (7.5 s in all before giving up); the
    /// socket takes PUNCH notices.
    fn default() -> Self {
        ClientConfig {
            key: PeerKey::random(),
            timeout: Duration::from_millis(500),
            attempts: 4,
            keep_punch_path: false,
        }
    }
}

/// Why a tracker call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "tracker {tracker} did not answer after {attempts} attempts (is it running and reachable?)"
    )]
    Timeout { tracker: SocketAddr, attempts: u32 },
    #[error("tracker answered {0}")]
    Tracker(ErrorReply),
    #[error("tracker sent an answer that does not fit the request: {0}")]
    Unexpected(String),
    #[error("UDP socket error talking to the tracker: {0}")]
    Io(#[from] io::Error),
    #[error("cannot resolve tracker {spec}: {reason}")]
    Resolve { spec: String, reason: String },
    /// Every tracker of every tier failed; the message names each and why.
    #[error("no tracker answered: {0}")]
    NoTracker(String),
    #[error("no tracker to ask")]
    NoTrackers,
}

impl ClientError {
    /// The tracker's error code, when the tracker refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Tracker(e) => Some(e.code),
            _ => None,
        }
    }
}

/// A file's description and every peer of its swarm (all pages of flag 1 or 2; with several
/// trackers, the peers every tracker asked lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swarm {
    pub file: FileSummary,
    pub peers: Vec<PeerEntry>,
    /// How often to ask again ([`TrackerClient::refresh_as`]) while the download runs: 30 s
    /// from a tracker that says nothing; never below `min_interval`.
    pub interval: Duration,
    /// The least time between two asks, even for a starved downloader: 5 s from a tracker
    /// that says nothing, at least 1 s whatever the tracker says, so a hostile or broken
    /// tracker cannot make its peers busy-loop.
    pub min_interval: Duration,
}

impl Swarm {
    fn new(file: FileSummary, peers: Vec<PeerEntry>, intervals: AnnounceIntervals) -> Self {
        let min_interval = Duration::from_secs(u64::from(intervals.min_interval.max(1)));
        let interval = Duration::from_secs(u64::from(intervals.interval)).max(min_interval);
        Swarm {
            file,
            peers,
            interval,
            min_interval,
        }
    }

    /// The swarm the first tracker gave, with the peers only the others list added.
    fn merge(answers: failover::Answers<Swarm>) -> Result<Swarm, ClientError> {
        let mut merged: Option<Swarm> = None;
        let mut others = Vec::new();
        for (label, answer) in answers {
            match (answer, merged.as_mut()) {
                (Ok(s), None) => merged = Some(s),
                (Ok(s), Some(m)) if s.file.info == m.file.info => {
                    for p in s.peers {
                        if !m.peers.iter().any(|q| q.addr == p.addr) {
                            m.peers.push(p);
                        }
                    }
                }
                (Ok(s), Some(_)) => log::warn!(
                    "tracker {label} lists {} as other content than the first tracker; its peers are not used",
                    s.file.info.name()
                ),
                (Err(e), _) => others.push((label, Err(e))),
            }
        }
        match merged {
            Some(s) => Ok(s),
            None => first_ok(others),
        }
    }
}

/// An async client of one tracker or of tiers of them. Cheap to share behind an `Arc`; calls
/// may run concurrently.
pub struct TrackerClient {
    trackers: Trackers,
}

impl TrackerClient {
    /// One tracker at `tracker`: binds a UDP socket on an ephemeral port of its family.
    pub async fn bind(tracker: SocketAddr, config: ClientConfig) -> io::Result<Self> {
        let (punches, _) = broadcast::channel(64);
        let endpoint = Endpoint::bind(tracker, config.clone(), punches.clone()).await?;
        Ok(Self::single(tracker, endpoint, config, punches))
    }

    /// One tracker over an existing socket (for example one whose public mapping STUN has
    /// learned). The client takes over its receive side: datagrams from other sources are
    /// dropped. Must be called within a tokio runtime.
    pub fn from_socket(socket: UdpSocket, tracker: SocketAddr, config: ClientConfig) -> Self {
        let (punches, _) = broadcast::channel(64);
        let endpoint = Endpoint::from_socket(socket, tracker, config.clone(), punches.clone());
        Self::single(tracker, endpoint, config, punches)
    }

    fn single(
        tracker: SocketAddr,
        endpoint: Endpoint,
        config: ClientConfig,
        punches: broadcast::Sender<PunchNotice>,
    ) -> Self {
        TrackerClient {
            trackers: Trackers {
                cx: Context {
                    config,
                    resolver: Resolver::libc(),
                    punches,
                },
                tiers: vec![Tier::single(Tracker::with_endpoint(tracker, endpoint))],
            },
        }
    }

    /// Tiers of trackers, each tried in order (protocol.txt §6.5). Names are resolved by
    /// `resolver` when first used and again when their DNS answer runs out or every address
    /// fails; sockets are opened as addresses are first asked. Empty tiers are dropped.
    /// Must be called within a tokio runtime.
    pub fn with_tiers(
        tiers: Vec<Vec<TrackerSpec>>,
        config: ClientConfig,
        resolver: Resolver,
    ) -> Result<Self, ClientError> {
        let tiers: Vec<Tier> = tiers
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(Tier::new)
            .collect();
        if tiers.is_empty() {
            return Err(ClientError::NoTrackers);
        }
        let (punches, _) = broadcast::channel(64);
        Ok(TrackerClient {
            trackers: Trackers {
                cx: Context {
                    config,
                    resolver,
                    punches,
                },
                tiers,
            },
        })
    }

    /// The tiers as given (what `peer share` writes into a metainfo's announce-list).
    pub fn tiers(&self) -> Vec<Vec<TrackerSpec>> {
        self.trackers
            .tiers
            .iter()
            .map(|t| t.specs().to_vec())
            .collect()
    }

    /// The tiers for people: trackers of a tier joined by ", ", tiers by " then ".
    pub fn describe(&self) -> String {
        self.trackers
            .tiers
            .iter()
            .map(|t| {
                t.specs()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect::<Vec<_>>()
            .join(" then ")
    }

    /// The address asked first now: the front tracker of the first tier with a resolved
    /// address (0.0.0.0:0 before any name is resolved).
    pub fn tracker(&self) -> SocketAddr {
        self.trackers
            .tiers
            .iter()
            .flat_map(Tier::known)
            .find_map(|t| t.first_addr())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The first address of each tracker of the first tier, resolving names (and SRV
    /// records) as needed; a tracker that does not resolve is left out.
    pub async fn first_tier_addresses(&self) -> Vec<SocketAddr> {
        let cx = &self.trackers.cx;
        let Some(tier) = self.trackers.tiers.first() else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for tracker in tier.trackers(cx).await {
            if let Ok(addrs) = tracker.addresses(cx).await {
                found.extend(addrs.first().copied());
            }
        }
        found
    }

    /// The local address of the first socket opened to a tracker.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.trackers
            .tiers
            .iter()
            .flat_map(Tier::known)
            .find_map(|t| t.local_addr())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no tracker asked yet"))
    }

    /// `PUNCH` notices the trackers relay from peers that want a simultaneous TCP open.
    /// Only notices received after subscribing are delivered.
    pub fn punch_notices(&self) -> broadcast::Receiver<PunchNotice> {
        self.trackers.cx.punches.subscribe()
    }

    /// Flag 1: the file and every peer in its swarm, asked by someone who does not join it
    /// (a catalogue look-up, a person typing).
    pub async fn peers(&self, file: &FileName) -> Result<Swarm, ClientError> {
        let cx = &self.trackers.cx;
        self.trackers
            .query(|t| async move { t.swarm(cx, file, false, None, Transfer::default()).await })
            .await
    }

    /// Flag 2: the same list, for a downloader refreshing the one it has without joining.
    pub async fn refresh(&self, file: &FileName) -> Result<Swarm, ClientError> {
        let cx = &self.trackers.cx;
        self.trackers
            .query(|t| async move { t.swarm(cx, file, true, None, Transfer::default()).await })
            .await
    }

    /// Flag 1 with an address: this peer, serving at `announce`, joins `file`'s swarm (listed
    /// as `have=0` until it reports chunks, so other downloaders find it at once) and gets every
    /// other peer of it. Its own address is not listed back to it.
    pub async fn peers_as(
        &self,
        file: &FileName,
        announce: SocketAddr,
    ) -> Result<Swarm, ClientError> {
        self.join_swarm(file, false, announce, Transfer::default())
            .await
    }

    /// Flag 2 with an address: the refresh a downloader sends every [`Swarm::interval`]; it
    /// also keeps this peer in the swarm (and alive) with the chunks it already reported.
    pub async fn refresh_as(
        &self,
        file: &FileName,
        announce: SocketAddr,
    ) -> Result<Swarm, ClientError> {
        self.join_swarm(file, true, announce, Transfer::default())
            .await
    }

    /// Flag 3: this peer, serving at `announce`, now holds `chunks` of `file`. Long lists are
    /// sent in several datagrams.
    pub async fn report_chunks(
        &self,
        file: &FileName,
        chunks: &ChunkRanges,
        announce: SocketAddr,
    ) -> Result<(), ClientError> {
        let cx = &self.trackers.cx;
        first_ok(
            self.trackers
                .announce(|t| async move { t.report_chunks(cx, file, chunks, announce).await })
                .await?,
        )
    }

    /// Flag 4: this peer seeds the complete file `info` at `announce`.
    pub async fn share(&self, info: &FileInfo, announce: SocketAddr) -> Result<(), ClientError> {
        self.announce_ok(
            RequestKind::Share {
                info: info.clone(),
                announce,
            },
            Report::default(),
        )
        .await
    }

    /// Flag 5: this peer leaves every swarm at once, at every tracker that lists it.
    pub async fn exit(&self, announce: SocketAddr) -> Result<(), ClientError> {
        self.leave_with(
            true,
            RequestKind::Exit {
                file: None,
                announce,
            },
            Report::default(),
        )
        .await
    }

    /// Flag 5 with a file name: this peer leaves one swarm (it no longer has the file).
    pub async fn leave(&self, file: &FileName, announce: SocketAddr) -> Result<(), ClientError> {
        self.leave_with(
            false,
            RequestKind::Exit {
                file: Some(file.clone()),
                announce,
            },
            Report::default(),
        )
        .await
    }

    /// Flag 6: the whole catalogue, following every page.
    pub async fn list_files(&self) -> Result<Vec<ListedFile>, ClientError> {
        self.list_files_matching(None).await
    }

    /// Flag 6 with `match=`: the files whose names `pattern` matches (every file for `None`),
    /// following every page.
    pub async fn list_files_matching(
        &self,
        pattern: Option<&NamePattern>,
    ) -> Result<Vec<ListedFile>, ClientError> {
        let cx = &self.trackers.cx;
        self.trackers
            .query(|t| async move { t.list_files(cx, pattern).await })
            .await
    }

    /// Flag 7: one file's description and swarm counts.
    pub async fn query(&self, file: &FileName) -> Result<FileSummary, ClientError> {
        match self.ask(RequestKind::Query { file: file.clone() }).await? {
            ResponseKind::File(summary) => Ok(summary),
            other => Err(ops::unexpected(&other)),
        }
    }

    /// Flag 8: asks a tracker to tell `target` (a peer of `file`'s swarm) that this peer,
    /// serving at `me`, is connecting to it now, so both sides open at the same time. Goes to
    /// the trackers that list this peer first; one that does not know `target` passes it on.
    pub async fn punch(
        &self,
        file: &FileName,
        target: SocketAddr,
        me: SocketAddr,
    ) -> Result<(), ClientError> {
        let cx = &self.trackers.cx;
        let kind = RequestKind::Punch {
            file: file.clone(),
            target,
            me,
        };
        let kind = &kind;
        self.trackers
            .relay(|t| async move { t.expect_ok(cx, kind.clone(), Report::default()).await })
            .await
    }

    /// Flag 9: keeps every row of this peer alive and, when `announce` differs from the
    /// address the tracker has for this key, moves them there. Returns how many swarms the
    /// tracker has this peer in (the most any tracker of the tier says); `PEER_NOT_FOUND`
    /// means a tracker forgot it (restart or expiry) and the peer should share and report
    /// again.
    pub async fn heartbeat(&self, announce: SocketAddr) -> Result<u32, ClientError> {
        self.heartbeat_with(announce, Report::default()).await
    }

    /// Flag 9 with `report` (a heartbeat's connection figures) to every tracker of the tier.
    pub(crate) async fn heartbeat_with(
        &self,
        announce: SocketAddr,
        report: Report,
    ) -> Result<u32, ClientError> {
        let cx = &self.trackers.cx;
        let answers = self
            .trackers
            .announce(|t| async move {
                match t
                    .request(cx, RequestKind::Heartbeat { announce }, report)
                    .await?
                {
                    ResponseKind::Alive { files } => Ok(files),
                    other => Err(ops::unexpected(&other)),
                }
            })
            .await?;
        let forgot = answers
            .iter()
            .position(|(_, a)| matches!(a, Err(e) if e.code() == Some(ErrorCode::PeerNotFound)));
        let mut answers = answers;
        if let Some(pos) = forgot {
            return answers.swap_remove(pos).1;
        }
        let most = answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().ok().copied())
            .max();
        match most {
            Some(n) => Ok(n),
            None => first_ok(answers),
        }
    }

    /// Flag 10: the TURN relay the tracker offers to peers nobody can reach directly, with
    /// short-lived credentials; `None` when it offers none.
    pub async fn relay_offer(&self) -> Result<Option<RelayOffer>, ClientError> {
        match self.ask(RequestKind::RelayOffer).await? {
            ResponseKind::Relay(offer) => Ok(offer),
            other => Err(ops::unexpected(&other)),
        }
    }

    /// Flag 1 or 2 with an address, to every tracker of the tier; their peers merged.
    pub(crate) async fn join_swarm(
        &self,
        file: &FileName,
        refresh: bool,
        announce: SocketAddr,
        transfer: Transfer,
    ) -> Result<Swarm, ClientError> {
        let cx = &self.trackers.cx;
        let answers = self
            .trackers
            .announce(|t| async move { t.swarm(cx, file, refresh, Some(announce), transfer).await })
            .await?;
        Swarm::merge(answers)
    }

    /// A one-datagram query to the first tracker that answers.
    async fn ask(&self, kind: RequestKind) -> Result<ResponseKind, ClientError> {
        let cx = &self.trackers.cx;
        let kind = &kind;
        self.trackers
            .query(|t| async move { t.request(cx, kind.clone(), Report::default()).await })
            .await
    }

    /// `kind` with `report` to every tracker of the tier; fine when one of them took it.
    pub(crate) async fn announce_ok(
        &self,
        kind: RequestKind,
        report: Report,
    ) -> Result<(), ClientError> {
        let cx = &self.trackers.cx;
        let kind = &kind;
        first_ok(
            self.trackers
                .announce(|t| async move { t.expect_ok(cx, kind.clone(), report).await })
                .await?,
        )
    }

    /// Flag 5 (`kind`) with `report` to every tracker that lists this peer.
    pub(crate) async fn leave_with(
        &self,
        gone: bool,
        kind: RequestKind,
        report: Report,
    ) -> Result<(), ClientError> {
        let cx = &self.trackers.cx;
        let kind = &kind;
        self.trackers
            .leave(gone, |t| async move {
                t.expect_ok(cx, kind.clone(), report).await
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileId, FileInfo};
    use ops::{split_ranges, MAX_CHUNK_LIST_BYTES};

    #[test]
    fn intervals_are_kept_sane_whatever_the_tracker_says() {
        let info = FileInfo::new(FileName::new("a").unwrap(), 1, 2048, FileId([0; 32])).unwrap();
        let summary = FileSummary {
            info,
            seeders: 1,
            leechers: 0,
            stats: None,
        };
        let swarm = |interval, min_interval| {
            let s = Swarm::new(
                summary.clone(),
                Vec::new(),
                AnnounceIntervals {
                    interval,
                    min_interval,
                },
            );
            (s.interval.as_secs(), s.min_interval.as_secs())
        };
        assert_eq!(swarm(30, 5), (30, 5));
        assert_eq!(swarm(0, 0), (1, 1));
        assert_eq!(swarm(10, 60), (60, 60));
        assert_eq!(swarm(u32::MAX, 1), (u64::from(u32::MAX), 1));
    }

    #[test]
    fn long_reports_split_into_datagram_sized_lists() {
        let chunks = ChunkRanges::from_indices((0..100_000).step_by(2)).unwrap();
        let batches = split_ranges(&chunks, MAX_CHUNK_LIST_BYTES);
        assert!(batches.len() > 1);
        let total: u64 = batches.iter().map(|b| b.count()).sum();
        assert_eq!(total, chunks.count());
        for b in &batches {
            assert!(
                b.to_string().len() <= MAX_CHUNK_LIST_BYTES,
                "{}",
                b.to_string().len()
            );
        }
        let rejoined = ChunkRanges::from_ranges(batches.iter().flat_map(|b| b.ranges().to_vec()));
        assert_eq!(rejoined.unwrap(), chunks);
    }
}

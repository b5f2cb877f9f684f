//! The async tracker client peers use: one method per flag, typed answers and errors.
//!
//! A background task owns the receive side of the UDP socket. It hands each `RESPONSE`/`ERROR`
//! to the request waiting for its `tid` and forwards unsolicited `PUNCH` notices to subscribers
//! ([`TrackerClient::punch_notices`]). Requests are retried with exponential backoff under the
//! same `tid`, so a late answer to an earlier attempt still completes the call; every flag is
//! idempotent on the tracker side, so a retry never does harm. Cookies (protocol.txt §1.6) are
//! handled here: a `COOKIE_REQUIRED` answer is stored and the request re-sent with it.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::debug;
use parking_lot::Mutex;
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::transfer::{ConnStats, Transfer};
use crate::{
    AnnounceIntervals, ChunkRanges, Cookie, ErrorCode, ErrorReply, FileInfo, FileName, FileSummary,
    ListedFile, NamePattern, PeerEntry, PeerKey, PunchNotice, RelayOffer, Request, RequestKind,
    Response, ResponseKind, TrackerMessage, MAX_DATAGRAM_BYTES,
};

/// How the client talks to the tracker.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The peer's identity across address changes, sent as `key=` on every request. Two
    /// clients with the same key are one peer to the tracker: its rows follow the latest
    /// announced address. Persist it to keep a peer's identity across restarts.
    pub key: PeerKey,
    /// Wait for the first attempt; each retry doubles it.
    pub timeout: Duration,
    /// Attempts per request before giving up with [`ClientError::Timeout`].
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

/// A file's description and every peer of its swarm (all pages of flag 1 or 2).
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
}

/// Bound on pages followed for one listing, so a misbehaving tracker cannot keep a call busy
/// forever (a 1400-byte page holds at least ~10 entries, so this allows about a million).
const MAX_PAGES: usize = 100_000;
/// Bound on `COOKIE_REQUIRED` round trips per request: one is normal, two happen when the
/// cookie's time slot turns over mid-request; more means something is wrong.
const MAX_COOKIE_ROUNDS: u32 = 3;
/// Longest chunk list put in one flag 3 datagram; longer reports are split. Leaves room for
/// a 255-byte name, an IPv6 address, key, cookie and tid within `MAX_REQUEST_BYTES`.
const MAX_CHUNK_LIST_BYTES: usize = 900;

pub(crate) struct Shared {
    socket: Arc<UdpSocket>,
    tracker: SocketAddr,
    config: ClientConfig,
    next_tid: AtomicU32,
    pending: Mutex<HashMap<u32, mpsc::Sender<Response>>>,
    cookie: Mutex<Option<Cookie>>,
    punches: broadcast::Sender<PunchNotice>,
    /// Set when the tracker refused a request's transfer fields as unknown (a tracker older
    /// than protocol.txt §1.2's events): later requests go without them.
    pub(crate) plain_only: AtomicBool,
}

/// An async client of one tracker. Cheap to share behind an `Arc`; calls may run concurrently.
pub struct TrackerClient {
    pub(crate) shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

impl Drop for TrackerClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Removes a request's slot from the pending table however the call ends.
struct PendingGuard<'a> {
    shared: &'a Shared,
    tid: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending.lock().remove(&self.tid);
    }
}

impl TrackerClient {
    /// Binds a UDP socket on an ephemeral port of the tracker's address family.
    pub async fn bind(tracker: SocketAddr, config: ClientConfig) -> io::Result<Self> {
        let local: SocketAddr = if tracker.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        Ok(Self::from_socket(
            UdpSocket::bind(local).await?,
            tracker,
            config,
        ))
    }

    /// Uses an existing socket (for example one whose public mapping STUN has learned). The
    /// client takes over its receive side: datagrams from other sources are dropped.
    /// Must be called within a tokio runtime.
    pub fn from_socket(socket: UdpSocket, tracker: SocketAddr, config: ClientConfig) -> Self {
        let (punches, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            socket: Arc::new(socket),
            tracker,
            config,
            next_tid: AtomicU32::new(rand::random()),
            pending: Mutex::new(HashMap::new()),
            cookie: Mutex::new(None),
            punches,
            plain_only: AtomicBool::new(false),
        });
        let reader = tokio::spawn(read_loop(Arc::clone(&shared)));
        TrackerClient { shared, reader }
    }

    pub fn tracker(&self) -> SocketAddr {
        self.shared.tracker
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    /// `PUNCH` notices the tracker relays from peers that want a simultaneous TCP open.
    /// Only notices received after subscribing are delivered.
    pub fn punch_notices(&self) -> broadcast::Receiver<PunchNotice> {
        self.shared.punches.subscribe()
    }

    /// Flag 1: the file and every peer in its swarm, asked by someone who does not join it
    /// (a catalogue look-up, a person typing).
    pub async fn peers(&self, file: &FileName) -> Result<Swarm, ClientError> {
        self.swarm(file, false, None, Transfer::default()).await
    }

    /// Flag 2: the same list, for a downloader refreshing the one it has without joining.
    pub async fn refresh(&self, file: &FileName) -> Result<Swarm, ClientError> {
        self.swarm(file, true, None, Transfer::default()).await
    }

    /// Flag 1 with an address: this peer, serving at `announce`, joins `file`'s swarm (listed
    /// as `have=0` until it reports chunks, so other downloaders find it at once) and gets every
    /// other peer of it. Its own address is not listed back to it.
    pub async fn peers_as(
        &self,
        file: &FileName,
        announce: SocketAddr,
    ) -> Result<Swarm, ClientError> {
        self.swarm(file, false, Some(announce), Transfer::default())
            .await
    }

    /// Flag 2 with an address: the refresh a downloader sends every [`Swarm::interval`]; it
    /// also keeps this peer in the swarm (and alive) with the chunks it already reported.
    pub async fn refresh_as(
        &self,
        file: &FileName,
        announce: SocketAddr,
    ) -> Result<Swarm, ClientError> {
        self.swarm(file, true, Some(announce), Transfer::default())
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
        for batch in split_ranges(chunks, MAX_CHUNK_LIST_BYTES) {
            let kind = RequestKind::Chunks {
                file: file.clone(),
                chunks: batch,
                announce,
            };
            self.expect_ok(kind).await?;
        }
        Ok(())
    }

    /// Flag 4: this peer seeds the complete file `info` at `announce`.
    pub async fn share(&self, info: &FileInfo, announce: SocketAddr) -> Result<(), ClientError> {
        self.expect_ok(RequestKind::Share {
            info: info.clone(),
            announce,
        })
        .await
    }

    /// Flag 5: this peer leaves every swarm at once.
    pub async fn exit(&self, announce: SocketAddr) -> Result<(), ClientError> {
        self.expect_ok(RequestKind::Exit {
            file: None,
            announce,
        })
        .await
    }

    /// Flag 5 with a file name: this peer leaves one swarm (it no longer has the file).
    pub async fn leave(&self, file: &FileName, announce: SocketAddr) -> Result<(), ClientError> {
        self.expect_ok(RequestKind::Exit {
            file: Some(file.clone()),
            announce,
        })
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
        let mut all = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0;
        for _ in 0..MAX_PAGES {
            match self
                .request(RequestKind::ListFiles {
                    offset,
                    pattern: pattern.cloned(),
                })
                .await?
            {
                ResponseKind::Files { files, next, .. } => {
                    all.extend(files.into_iter().filter(|f| seen.insert(f.name.clone())));
                    match next {
                        Some(n) if n > offset => offset = n,
                        _ => return Ok(all),
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
        Err(ClientError::Unexpected(
            "catalogue paging does not end".into(),
        ))
    }

    /// Flag 7: one file's description and swarm counts.
    pub async fn query(&self, file: &FileName) -> Result<FileSummary, ClientError> {
        match self
            .request(RequestKind::Query { file: file.clone() })
            .await?
        {
            ResponseKind::File(summary) => Ok(summary),
            other => Err(unexpected(&other)),
        }
    }

    /// Flag 8: asks the tracker to tell `target` (a peer of `file`'s swarm) that this peer,
    /// serving at `me`, is connecting to it now, so both sides open at the same time.
    pub async fn punch(
        &self,
        file: &FileName,
        target: SocketAddr,
        me: SocketAddr,
    ) -> Result<(), ClientError> {
        self.expect_ok(RequestKind::Punch {
            file: file.clone(),
            target,
            me,
        })
        .await
    }

    /// Flag 9: keeps every row of this peer alive and, when `announce` differs from the
    /// address the tracker has for this key, moves them there. Returns how many swarms the
    /// tracker has this peer in; `PEER_NOT_FOUND` means the tracker forgot it (restart or
    /// expiry) and the peer should share and report again.
    pub async fn heartbeat(&self, announce: SocketAddr) -> Result<u32, ClientError> {
        match self.request(RequestKind::Heartbeat { announce }).await? {
            ResponseKind::Alive { files } => Ok(files),
            other => Err(unexpected(&other)),
        }
    }

    /// Flag 10: the TURN relay the tracker offers to peers nobody can reach directly, with
    /// short-lived credentials; `None` when it offers none.
    pub async fn relay_offer(&self) -> Result<Option<RelayOffer>, ClientError> {
        match self.request(RequestKind::RelayOffer).await? {
            ResponseKind::Relay(offer) => Ok(offer),
            other => Err(unexpected(&other)),
        }
    }

    /// Follows every page of flag 1 or 2. Each page carries `announce`: joining is idempotent,
    /// and so every page refreshes the peer's liveness.
    pub(crate) async fn swarm(
        &self,
        file: &FileName,
        refresh: bool,
        announce: Option<SocketAddr>,
        transfer: Transfer,
    ) -> Result<Swarm, ClientError> {
        let mut summary = None;
        let mut intervals = AnnounceIntervals::DEFAULT;
        let mut peers = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0;
        for _ in 0..MAX_PAGES {
            let kind = if refresh {
                RequestKind::Refresh {
                    file: file.clone(),
                    announce,
                    offset,
                }
            } else {
                RequestKind::Peers {
                    file: file.clone(),
                    announce,
                    offset,
                }
            };
            match self
                .request_reporting(kind, transfer, ConnStats::default())
                .await?
            {
                ResponseKind::Peers {
                    file: page_file,
                    intervals: page_intervals,
                    next,
                    peers: page,
                    ..
                } => {
                    if let Some(i) = page_intervals {
                        intervals = i;
                    }
                    if page_file.info.name() != file {
                        return Err(ClientError::Unexpected(format!(
                            "asked for {file}, got {}",
                            page_file.info.name()
                        )));
                    }
                    peers.extend(page.into_iter().filter(|p| seen.insert(p.addr)));
                    summary = Some(page_file);
                    match next {
                        Some(n) if n > offset => offset = n,
                        _ => break,
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
        match summary {
            Some(file) => Ok(Swarm::new(file, peers, intervals)),
            None => Err(ClientError::Unexpected(
                "peer list paging does not end".into(),
            )),
        }
    }

    async fn expect_ok(&self, kind: RequestKind) -> Result<(), ClientError> {
        match self.request(kind).await? {
            ResponseKind::Ok(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends one request until its answer arrives or the attempts run out.
    async fn request(&self, kind: RequestKind) -> Result<ResponseKind, ClientError> {
        self.request_reporting(kind, Transfer::default(), ConnStats::default())
            .await
    }

    /// [`TrackerClient::request`] with what the request reports (protocol.txt §1.2). A tracker
    /// that answers 1103 EXTRA_FIELD to the report (one from before the events) gets the
    /// request again without it, and no report from then on: the announcement matters more.
    pub(crate) async fn request_reporting(
        &self,
        kind: RequestKind,
        transfer: Transfer,
        conn_stats: ConnStats,
    ) -> Result<ResponseKind, ClientError> {
        let reports = !(transfer.is_empty() && conn_stats.is_empty());
        if reports && !self.shared.plain_only.load(Ordering::Relaxed) {
            match self.send(kind.clone(), transfer, conn_stats).await {
                Err(ClientError::Tracker(e)) if e.code == ErrorCode::ExtraField => {
                    log::info!(
                        "{}: the tracker takes no announce events or counters ({e}); sending \
                         requests without them",
                        self.shared.tracker
                    );
                    self.shared.plain_only.store(true, Ordering::Relaxed);
                }
                answer => return answer,
            }
        }
        self.send(kind, Transfer::default(), ConnStats::default())
            .await
    }

    /// Sends one request until its answer arrives or the attempts run out.
    async fn send(
        &self,
        kind: RequestKind,
        transfer: Transfer,
        conn_stats: ConnStats,
    ) -> Result<ResponseKind, ClientError> {
        let shared = &*self.shared;
        let tid = shared.next_tid.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(4);
        shared.pending.lock().insert(tid, tx);
        let _guard = PendingGuard { shared, tid };
        let mut request = Request {
            tid: Some(tid),
            key: Some(shared.config.key),
            cookie: None,
            keep_punch_path: shared.config.keep_punch_path && kind.announce().is_some(),
            transfer,
            conn_stats,
            kind,
        };
        let mut wait = shared.config.timeout;
        let mut cookie_rounds = 0;
        let mut attempt = 0;
        while attempt < shared.config.attempts {
            request.cookie = *shared.cookie.lock();
            let text = request.encode();
            shared
                .socket
                .send_to(text.as_bytes(), shared.tracker)
                .await?;
            let deadline = tokio::time::Instant::now() + wait;
            let mut got_cookie = false;
            while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                match answer.kind {
                    ResponseKind::Error(ErrorReply {
                        code: ErrorCode::CookieRequired,
                        cookie: Some(cookie),
                        ..
                    }) if cookie_rounds < MAX_COOKIE_ROUNDS => {
                        if request.cookie == Some(cookie) {
                            // Answer to an attempt sent before we had this cookie.
                            continue;
                        }
                        cookie_rounds += 1;
                        *shared.cookie.lock() = Some(cookie);
                        got_cookie = true;
                        break;
                    }
                    ResponseKind::Error(e) => return Err(ClientError::Tracker(e)),
                    kind => return Ok(kind),
                }
            }
            // A cookie answer is not a lost datagram: resend at once without using an attempt.
            if !got_cookie {
                attempt += 1;
                wait = wait.saturating_mul(2);
            }
        }
        Err(ClientError::Timeout {
            tracker: shared.tracker,
            attempts: shared.config.attempts,
        })
    }
}

pub(crate) fn unexpected(kind: &ResponseKind) -> ClientError {
    let text = Response::new(None, kind.clone()).encode();
    ClientError::Unexpected(
        text.lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect(),
    )
}

/// Splits `chunks` into lists whose text is at most `max_bytes` long.
fn split_ranges(chunks: &ChunkRanges, max_bytes: usize) -> Vec<ChunkRanges> {
    let mut batches = Vec::new();
    let mut current: Vec<(u32, u32)> = Vec::new();
    let mut len = 0;
    for &(s, e) in chunks.ranges() {
        // "4194303-4194303," is the longest a range can print.
        let range_len = if s == e { 8 } else { 16 };
        if len + range_len > max_bytes && !current.is_empty() {
            batches.extend(ChunkRanges::from_ranges(std::mem::take(&mut current)).ok());
            len = 0;
        }
        current.push((s, e));
        len += range_len;
    }
    batches.extend(ChunkRanges::from_ranges(current).ok());
    batches
}

async fn read_loop(shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES];
    loop {
        let (len, from) = match shared.socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors surface here on some platforms; the waiting request times out.
                debug!("tracker client receive error: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if from != shared.tracker {
            debug!("ignoring datagram from {from}, not the tracker");
            continue;
        }
        match TrackerMessage::parse(&buf[..len]) {
            Ok(TrackerMessage::Response(resp)) => {
                let Some(tid) = resp.tid else {
                    debug!("ignoring tracker answer without tid");
                    continue;
                };
                let sender = shared.pending.lock().get(&tid).cloned();
                if let Some(sender) = sender {
                    // A full channel means duplicates of answers already queued.
                    let _ = sender.try_send(resp);
                }
            }
            Ok(TrackerMessage::Punch(notice)) => {
                // No subscriber means nobody punches: dropping the notice is correct.
                let _ = shared.punches.send(notice);
            }
            Err(e) => debug!("ignoring malformed tracker datagram: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileId, FileInfo};

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

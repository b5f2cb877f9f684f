//! One tracker address over one UDP socket: the request/answer exchange with retries under one
//! `tid`, and the anti-amplification cookie that address handed us (protocol.txt §1.6; cookies
//! are per tracker, so each address keeps its own).
//!
//! A background task owns the receive side of the socket. It hands each `RESPONSE`/`ERROR` to
//! the request waiting for its `tid` and forwards unsolicited `PUNCH` notices to the client's
//! subscribers. Requests are retried with exponential backoff under the same `tid`, so a late
//! answer to an earlier attempt still completes the call; every flag is idempotent on the
//! tracker side, so a retry never does harm.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::debug;
use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::{ClientConfig, ClientError};
use crate::transfer::{ConnStats, Transfer};
use crate::{
    Cookie, ErrorCode, ErrorReply, PunchNotice, Request, RequestKind, Response, ResponseKind,
    TrackerMessage, MAX_DATAGRAM_BYTES,
};

/// Bound on `COOKIE_REQUIRED` round trips per request: one is normal, two happen when the
/// cookie's time slot turns over mid-request; more means something is wrong.
const MAX_COOKIE_ROUNDS: u32 = 3;

struct Shared {
    socket: Arc<UdpSocket>,
    tracker: SocketAddr,
    config: ClientConfig,
    next_tid: AtomicU32,
    pending: Mutex<HashMap<u32, mpsc::Sender<Response>>>,
    cookie: Mutex<Option<Cookie>>,
    punches: broadcast::Sender<PunchNotice>,
    /// Set when this tracker refused a request's report as unknown fields (a tracker older
    /// than protocol.txt §1.2's events): later requests go without one.
    plain_only: AtomicBool,
}

/// What a request reports beside its flag: a file's announce event and byte counters, or a
/// heartbeat's connection figures (protocol.txt §1.2). Empty for most requests.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Report {
    pub transfer: Transfer,
    pub conn_stats: ConnStats,
}

impl Report {
    pub(crate) fn transfer(transfer: Transfer) -> Report {
        Report {
            transfer,
            ..Report::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.transfer.is_empty() && self.conn_stats.is_empty()
    }
}

/// The exchange with one tracker address. Dropping it stops its receive task.
pub(super) struct Endpoint {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

impl Drop for Endpoint {
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

impl Endpoint {
    /// Binds a UDP socket on an ephemeral port of the tracker's address family.
    pub(super) async fn bind(
        tracker: SocketAddr,
        config: ClientConfig,
        punches: broadcast::Sender<PunchNotice>,
    ) -> io::Result<Self> {
        let local: SocketAddr = if tracker.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        Ok(Self::from_socket(socket, tracker, config, punches))
    }

    /// Takes over `socket`'s receive side. Must be called within a tokio runtime.
    pub(super) fn from_socket(
        socket: UdpSocket,
        tracker: SocketAddr,
        config: ClientConfig,
        punches: broadcast::Sender<PunchNotice>,
    ) -> Self {
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
        Endpoint { shared, reader }
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    /// Sends `kind` with what it reports (protocol.txt §1.2). A tracker that answers 1103
    /// EXTRA_FIELD to the report (one from before the events) gets the request again without
    /// it, and no report from then on: the announcement matters more.
    pub(super) async fn request(
        &self,
        kind: RequestKind,
        report: Report,
    ) -> Result<ResponseKind, ClientError> {
        if !report.is_empty() && !self.shared.plain_only.load(Ordering::Relaxed) {
            match self.send(kind.clone(), report).await {
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
        self.send(kind, Report::default()).await
    }

    /// Sends one request until its answer arrives or the attempts run out. A tracker's ERROR
    /// comes back as [`ClientError::Tracker`].
    async fn send(&self, kind: RequestKind, report: Report) -> Result<ResponseKind, ClientError> {
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
            transfer: report.transfer,
            conn_stats: report.conn_stats,
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

//! One connection of a swarm, both ways at once: a single task that reads frames, writes
//! frames, serves the peer's requests ([`super::serving`]), requests what it has and we lack
//! and stores what it sends ([`super::storing`]), forwards our new chunks as HAVE, and carries
//! out the choker's decisions.
//!
//! Everything slow (file reads, hashing, writes, rate-limit waits) runs as futures the task
//! polls beside its socket, so one direction never stalls the other. Memory per connection is
//! bounded: the task stops reading while its answers or writes back up (TCP then slows the
//! peer), and a peer that takes none of our bytes for `write_timeout` is dropped.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::watch;

use crate::bitfield::Bitfield;
use crate::connection::{ConnError, Connection, FrameReader, FrameWriter};
use crate::metrics::metrics;
use crate::rate::RateMeter;
use crate::share::PartialFile;
use crate::wire::{ChunkRun, ErrorCode, Frame, MAX_HAVE_INDICES, MAX_REQUEST_CHUNKS};

use super::budget::BudgetError;
use super::handshake::Remote;
use super::limit::{book_all, RateLimit};
use super::link::Link;
use super::serving::{self, Answer, Answers};
use super::storing::{self, Delivery, Stored};
use super::{Holdings, LinkOutcome, Refusal, Swarm};

/// Bytes of answers (read or being read) and unsent output beyond which we stop reading the
/// peer's requests.
const MAX_OUTPUT: u64 = 2 * 1024 * 1024;

/// Deliveries being verified and written at once per connection: with [`MAX_DELIVERY`] this
/// bounds the unverified bytes a connection holds (1 MiB of 2048-byte chunks).
const MAX_STORES: usize = 4;

/// Most chunks in one delivery (one `pwritev`). Every delivery gathered from one read of the
/// socket goes to the blocking pool in one trip, however many requests they answer: each trip
/// costs two thread wake-ups, which at 2 KiB per chunk outweigh the hashing if taken per run.
const MAX_DELIVERY: usize = 128;

/// Duplicate HAVEs (chunks the peer had already announced) tolerated before it counts as a flood.
const MAX_REPEATED_HAVES: u32 = 64;

/// REJECTs of chunks the peer announced, while it had us unchoked, tolerated before it counts as
/// lying about what it holds.
const MAX_FALSE_CLAIMS: u32 = 16;

/// How often the task looks at its timers and re-checks its interest.
const TICK: Duration = Duration::from_millis(250);

/// How long bytes may wait for a peer that takes none of them before its upload slot goes to
/// another peer (it is closed only after `write_timeout`). Longer than TCP's first few
/// retransmission timeouts, so a peer on a lossy link keeps its slot.
const STALLED_AFTER: Duration = Duration::from_secs(2);

/// How much of a peer's delivery we keep requested: about this long at its recent rate. Deep
/// queues at a slow peer (a rate-limited seeder shared by many) are what make several
/// downloaders fetch the same chunk from it before any of them can say it has it.
const QUEUE_TIME: Duration = Duration::from_millis(500);

/// Window of the delivery rate that sizes the request queue.
const DELIVERY_WINDOW: Duration = Duration::from_secs(2);

/// Fewest chunks kept requested from a peer that serves us (a new or slow one).
const MIN_WINDOW: u32 = 16;

/// Longest endgame request: endgame copies are duplicates by design, so they stay small.
const ENDGAME_RUN: u32 = 8;

/// Why one peer connection ended.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{0}")]
    Conn(ConnError),
    #[error("peer answered error {0:?}: {1}")]
    Remote(ErrorCode, String),
    #[error("misbehaved: {0}")]
    Hostile(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("writing the download: {0}")]
    Write(String),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("{0}")]
    NoSlot(#[from] BudgetError),
    #[error("closed: {0}")]
    Closed(&'static str),
}

impl PeerError {
    /// A malformed frame is the peer's fault, never ours: it is dropped for this file.
    pub fn hostile_if_garbage(e: ConnError) -> PeerError {
        match e {
            ConnError::Wire(w) => PeerError::Hostile(w.to_string()),
            other => PeerError::Conn(other),
        }
    }
}

impl From<ConnError> for PeerError {
    fn from(e: ConnError) -> Self {
        PeerError::Conn(e)
    }
}

impl From<io::Error> for PeerError {
    fn from(e: io::Error) -> Self {
        PeerError::Conn(ConnError::Io(e))
    }
}

impl Refusal {
    fn code(self) -> ErrorCode {
        match self {
            Refusal::Ourselves | Refusal::Duplicate => ErrorCode::Duplicate,
            Refusal::Full | Refusal::Banned => ErrorCode::ConnectionRefused,
        }
    }
}

/// Runs a connection whose HANDSHAKE exchange is done (ours is sent here when we accepted it)
/// until it ends, then takes it out of the swarm.
pub(super) async fn run(
    swarm: Arc<Swarm>,
    mut conn: Connection,
    remote: Remote,
    addr: SocketAddr,
    initiated: bool,
) -> Result<LinkOutcome, PeerError> {
    let link = match swarm.register(&remote, addr, initiated) {
        Ok(link) => link,
        Err(refusal) => {
            conn.send_error(refusal.code(), &refusal.to_string()).await;
            return Err(PeerError::Refused(refusal));
        }
    };
    if !initiated {
        let hello = swarm.local.hello(&swarm.name, swarm.id());
        conn.queue(&hello.frame());
    }
    conn.queue(&Frame::Bitfield(bytes::Bytes::copy_from_slice(
        swarm.bitfield().as_wire(),
    )));
    let (reader, writer) = conn.into_split();
    let mut task = Task::new(swarm.clone(), link.clone(), reader, writer);
    let result = task.run(remote.bitfield).await;
    task.wind_down().await;
    swarm.unregister(&link);
    if let Err(PeerError::Hostile(why)) = &result {
        log::warn!("{addr}: dropped for {}: {why}", swarm.name);
        let addrs: Vec<SocketAddr> = [Some(addr), link.listen].into_iter().flatten().collect();
        swarm.ban(remote.peer_id, &addrs);
        // Tell the peer why (protocol.txt §2.4: a bad frame is ERROR 2001 and close).
        task.writer.send_error(ErrorCode::BadFrame, why).await;
    } else if link.is_replaced() {
        task.writer
            .send_error(
                ErrorCode::Duplicate,
                "a newer connection between the same peers replaced this one",
            )
            .await;
    }
    result.map(|()| LinkOutcome {
        delivered: link.received(),
    })
}

struct Task {
    swarm: Arc<Swarm>,
    link: Arc<Link>,
    reader: FrameReader,
    writer: FrameWriter,
    /// The upload limits every answer books its bytes on: the process's, then this connection's.
    upload_limits: Vec<Arc<RateLimit>>,
    /// An answer taken from the queue that the upload limits hold back until the instant given.
    held: Option<(Answer, Instant)>,
    have_seq: watch::Receiver<usize>,
    /// The peer's chunks; `None` until its BITFIELD arrived.
    theirs: Option<Bitfield>,
    /// Their chunks are counted in the picker's availability.
    counted: bool,
    // Serving.
    am_choking: bool,
    answers: Answers,
    // Downloading.
    peer_choking: bool,
    we_interested: bool,
    /// Requests sent and not fully answered, oldest first.
    inflight: VecDeque<ChunkRun>,
    /// Where our last request to this peer ended: the picker continues there on a tie.
    next_pick: Option<u32>,
    outstanding: u32,
    /// Chunks of the oldest request received so far, not yet gathered.
    received: Delivery,
    /// Deliveries of this read of the socket, for one trip to a store, and where they go.
    gathered: Vec<Delivery>,
    gathered_into: Option<Arc<PartialFile>>,
    stores: FuturesOrdered<storing::Pending>,
    /// Runs being stored (so their chunks go back to the picker if the connection ends first).
    storing: VecDeque<ChunkRun>,
    /// Reading is paused until then by the download limit.
    paused_until: Option<Instant>,
    repeated_haves: u32,
    false_claims: u32,
    /// The peer's recent delivery rate to us, which sizes our request queue.
    delivery: RateMeter,
    last_received: Instant,
    last_sent: Instant,
    /// When the output last shrank (or was empty): a peer that stops reading is caught by it.
    last_drain: Instant,
}

impl Task {
    fn new(swarm: Arc<Swarm>, link: Arc<Link>, reader: FrameReader, writer: FrameWriter) -> Task {
        let mut limits = vec![swarm.local.upload.clone()];
        if let Some(rate) = swarm.local.config.upload_rate {
            limits.push(Arc::new(RateLimit::new(Some(rate))));
        }
        let have_seq = swarm.have_seq.subscribe();
        let now = Instant::now();
        Task {
            have_seq,
            swarm,
            link,
            reader,
            writer,
            upload_limits: limits,
            held: None,
            theirs: None,
            counted: false,
            am_choking: true,
            answers: Answers::new(),
            peer_choking: true,
            we_interested: false,
            inflight: VecDeque::new(),
            outstanding: 0,
            next_pick: None,
            received: Delivery::default(),
            gathered: Vec::new(),
            gathered_into: None,
            stores: FuturesOrdered::new(),
            storing: VecDeque::new(),
            paused_until: None,
            repeated_haves: 0,
            false_claims: 0,
            delivery: RateMeter::new(DELIVERY_WINDOW),
            last_received: now,
            last_sent: now,
            last_drain: now,
        }
    }

    async fn run(&mut self, their_bitfield: Option<bytes::Bytes>) -> Result<(), PeerError> {
        if let Some(bits) = their_bitfield {
            self.on_bitfield(&bits)?;
        }
        // The handshake may have read past its own frames (an UNCHOKE sent with the BITFIELD).
        self.read_frames()?;
        let cfg = self.swarm.local.config.clone();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = self.swarm.stop.clone();
        loop {
            let output = self.answers.bytes() + self.writer.pending() as u64;
            let can_read = self.paused_until.is_none()
                && output < MAX_OUTPUT
                && self.stores.len() < MAX_STORES;
            let pending_before = self.writer.pending();
            tokio::select! {
                () = stop.cancelled() => return Err(PeerError::Closed("the swarm closed")),
                () = self.link.woken() => self.apply_link()?,
                filled = self.reader.fill(), if can_read => {
                    filled.map_err(PeerError::hostile_if_garbage)?;
                    self.last_received = Instant::now();
                    self.read_frames()?;
                }
                written = self.writer.write_some(), if self.writer.pending() > 0 => {
                    written?;
                    self.last_sent = Instant::now();
                }
                Some(answer) = self.answers.next(), if !self.answers.is_empty() && self.held.is_none() => {
                    let answer = answer?;
                    match book_all(&self.upload_limits, answer.bytes(), Instant::now()) {
                        Some(until) => self.held = Some((answer, until)),
                        None => self.emit(answer),
                    }
                }
                () = sleep_until_held(&self.held), if self.held.is_some() => {
                    if let Some((answer, _)) = self.held.take() {
                        self.emit(answer);
                    }
                }
                Some(stored) = self.stores.next(), if !self.stores.is_empty() => {
                    // Every delivery of the trip is accounted for before an error ends us.
                    let mut first_error = None;
                    for stored in stored {
                        self.storing.pop_front();
                        if let Err(e) = self.on_stored(stored) {
                            first_error.get_or_insert(e);
                        }
                    }
                    if let Some(e) = first_error {
                        return Err(e);
                    }
                }
                changed = self.have_seq.changed() => {
                    if changed.is_ok() {
                        self.forward_haves();
                    }
                }
                _ = tick.tick() => self.on_tick(&cfg)?,
            }
            if self.writer.pending() < pending_before || self.writer.pending() == 0 {
                self.last_drain = Instant::now();
            }
            // Frames read while our output was full wait in the buffer: once it drains they are
            // taken from there, since the peer may have nothing more to send until answered.
            if self.reader.has_buffered() {
                self.read_frames()?;
            }
            self.request_more();
        }
    }

    /// Sends an answer the upload limits let through.
    fn emit(&mut self, answer: Answer) {
        let sent = serving::emit(answer, &mut self.writer);
        self.link.add_sent(sent);
        self.swarm.uploaded.fetch_add(sent, Ordering::Relaxed);
        self.swarm.local.uploads.add(&self.swarm.name, sent);
    }

    /// Carries out what the choker or the swarm decided.
    fn apply_link(&mut self) -> Result<(), PeerError> {
        if self.link.is_closing() {
            return Err(PeerError::Closed("no longer needed"));
        }
        let unchoke = self.link.unchoked();
        if unchoke == self.am_choking {
            self.am_choking = !unchoke;
            if unchoke {
                self.writer.queue(&Frame::Unchoke);
            } else {
                self.writer.queue(&Frame::Choke);
                let held = self.held.take().map(|(answer, _)| answer);
                self.answers
                    .reject_all(held, &self.swarm.manifest, &mut self.writer);
            }
            self.link.set_unchoked_now(unchoke);
        }
        Ok(())
    }

    fn read_frames(&mut self) -> Result<(), PeerError> {
        loop {
            if self.answers.bytes() + self.writer.pending() as u64 >= MAX_OUTPUT
                || self.paused_until.is_some()
            {
                break;
            }
            let Some(frame) = self
                .reader
                .next_frame()
                .map_err(PeerError::hostile_if_garbage)?
            else {
                break;
            };
            self.on_frame(frame)?;
        }
        self.gather_delivery();
        self.dispatch_gathered();
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), PeerError> {
        if self.theirs.is_none() {
            return match frame {
                Frame::Bitfield(bits) => self.on_bitfield(&bits),
                Frame::Error { code, message } => Err(PeerError::Remote(code, message)),
                other => Err(PeerError::Hostile(format!(
                    "expected BITFIELD, got {}",
                    other.name()
                ))),
            };
        }
        match frame {
            Frame::Request(run) => self.on_request(run),
            Frame::GetManifest { start, count } => {
                self.answers
                    .manifest(self.swarm.manifest.clone(), start, count);
                Ok(())
            }
            Frame::GetMetainfo { piece } => {
                self.writer.queue(&self.swarm.metainfo_piece(piece));
                Ok(())
            }
            Frame::Chunk { index, data } => self.on_chunk(index, data),
            Frame::Reject(run) => self.on_reject(run),
            Frame::Have(list) => self.on_have(&list),
            Frame::Choke => {
                self.peer_choking = true;
                self.link.set_peer_choking(true);
                Ok(())
            }
            Frame::Unchoke => {
                self.peer_choking = false;
                self.link.set_peer_choking(false);
                if self.link.peer_interested() {
                    self.swarm.admit(&self.link);
                }
                Ok(())
            }
            Frame::Interested => {
                self.link.set_peer_interested(true);
                self.swarm.admit(&self.link);
                Ok(())
            }
            Frame::NotInterested => {
                self.link.set_peer_interested(false);
                Ok(())
            }
            Frame::KeepAlive => Ok(()),
            Frame::Error { code, message } => Err(PeerError::Remote(code, message)),
            other => Err(PeerError::Hostile(format!("unexpected {}", other.name()))),
        }
    }

    fn on_bitfield(&mut self, bits: &[u8]) -> Result<(), PeerError> {
        let theirs = Bitfield::from_wire(bits, self.swarm.manifest.chunk_count())
            .map_err(|e| PeerError::Hostile(e.to_string()))?;
        let mut state = self.swarm.state.lock();
        if let Some(picker) = state.picker.as_mut() {
            picker.add_peer(&theirs);
            self.counted = true;
        }
        drop(state);
        self.link.set_peer_complete(theirs.count() == theirs.len());
        self.theirs = Some(theirs);
        self.update_interest();
        Ok(())
    }

    fn on_request(&mut self, run: ChunkRun) -> Result<(), PeerError> {
        let total = self.swarm.manifest.chunk_count();
        if run.first >= total || run.count > total - run.first {
            return Err(PeerError::Hostile(format!(
                "REQUEST {}+{} beyond {total} chunks",
                run.first, run.count
            )));
        }
        self.answers.request(&self.swarm, run, !self.am_choking);
        Ok(())
    }

    fn on_chunk(&mut self, index: u32, data: bytes::Bytes) -> Result<(), PeerError> {
        let Some(front) = self.inflight.front().copied() else {
            return Err(PeerError::Hostile(format!("unrequested CHUNK {index}")));
        };
        if index != front.first {
            return Err(PeerError::Hostile(format!(
                "CHUNK {index} out of order, expected {}",
                front.first
            )));
        }
        if self.received.run().end() != index {
            // Not consecutive with the chunks held: they form a delivery of their own.
            self.gather_delivery();
        }
        if self.received.chunks.is_empty() {
            self.received.first = index;
        }
        let len = data.len() as u64;
        self.received.chunks.push(data);
        self.outstanding -= 1;
        self.advance(1);
        if let Some(until) = self.swarm.local.download.book(len, Instant::now()) {
            self.paused_until = Some(until);
        }
        if self.received.chunks.len() >= MAX_DELIVERY {
            self.gather_delivery();
        }
        Ok(())
    }

    fn on_reject(&mut self, rejected: ChunkRun) -> Result<(), PeerError> {
        let Some(front) = self.inflight.front().copied() else {
            return Err(PeerError::Hostile("unrequested REJECT".into()));
        };
        if rejected.first != front.first || rejected.count > front.count {
            return Err(PeerError::Hostile(format!(
                "REJECT {}+{} out of order",
                rejected.first, rejected.count
            )));
        }
        // Chunks delivered before this REJECT form one run; the rejected ones break it.
        self.gather_delivery();
        let mut state = self.swarm.state.lock();
        if let Some(picker) = state.picker.as_mut() {
            picker.release(rejected);
        }
        // Between a CHOKE and the next UNCHOKE a REJECT only means "choked" (protocol.txt
        // §2.4); otherwise the peer does not hold these chunks, whatever it announced.
        if !self.peer_choking {
            if let Some(theirs) = self.theirs.as_mut() {
                for i in rejected.indices() {
                    if theirs.get(i) {
                        self.false_claims += 1;
                        theirs.clear(i);
                        if let Some(picker) = state.picker.as_mut() {
                            picker.forget_one(i);
                        }
                    }
                }
            }
        }
        drop(state);
        if self.false_claims > MAX_FALSE_CLAIMS {
            return Err(PeerError::Hostile(format!(
                "rejected {} chunks it claimed to have",
                self.false_claims
            )));
        }
        self.outstanding -= rejected.count;
        self.advance(rejected.count);
        Ok(())
    }

    fn on_have(&mut self, list: &[u32]) -> Result<(), PeerError> {
        let total = self.swarm.manifest.chunk_count();
        let Some(theirs) = self.theirs.as_mut() else {
            return Ok(());
        };
        let mut state = self.swarm.state.lock();
        let mut fresh = false;
        for &i in list {
            if i >= total {
                return Err(PeerError::Hostile(format!(
                    "HAVE {i} beyond {total} chunks"
                )));
            }
            if theirs.set(i) {
                fresh = true;
                if let Some(picker) = state.picker.as_mut() {
                    picker.add_one(i);
                }
            } else {
                self.repeated_haves += 1;
            }
        }
        drop(state);
        if self.repeated_haves > MAX_REPEATED_HAVES {
            return Err(PeerError::Hostile(format!(
                "flooded {} HAVEs of chunks it had announced",
                self.repeated_haves
            )));
        }
        if theirs.count() == total {
            self.link.set_peer_complete(true);
        }
        if fresh && !self.we_interested {
            self.update_interest();
        }
        Ok(())
    }

    /// The oldest request got `by` more chunks answered.
    fn advance(&mut self, by: u32) {
        if let Some(front) = self.inflight.front_mut() {
            *front = front.skip(by);
            if front.count == 0 {
                self.inflight.pop_front();
            }
        }
    }

    /// Sets the chunks received so far aside for the next trip to a store.
    fn gather_delivery(&mut self) {
        if self.received.chunks.is_empty() {
            return;
        }
        let delivery = std::mem::take(&mut self.received);
        if self.gathered_into.is_none() {
            self.gathered_into = match &self.swarm.state.lock().holdings {
                Holdings::Downloading(p) => Some(p.clone()),
                // The download finished meanwhile (another peer delivered the last chunks).
                _ => return,
            };
        }
        if let Some(picker) = self.swarm.state.lock().picker.as_mut() {
            picker.received(delivery.run());
        }
        self.storing.push_back(delivery.run());
        self.gathered.push(delivery);
    }

    /// Hands the gathered deliveries to a store (verify, then write), in one trip.
    fn dispatch_gathered(&mut self) {
        let Some(partial) = self.gathered_into.take() else {
            return;
        };
        self.stores.push_back(storing::store(
            partial,
            self.swarm.manifest.clone(),
            std::mem::take(&mut self.gathered),
        ));
    }

    fn on_stored(&mut self, stored: Stored) -> Result<(), PeerError> {
        match stored {
            Stored::Written { run, newly, bytes } => {
                metrics().chunks_verified.add(u64::from(run.count));
                self.link.add_received(bytes);
                self.swarm.stored(run, &newly, self.source_addr(), bytes);
                Ok(())
            }
            Stored::Corrupt { run, index } => {
                metrics().chunks_rejected.inc();
                self.release(run);
                Err(PeerError::Hostile(format!(
                    "chunk {index} does not match the manifest"
                )))
            }
            Stored::Failed { run, error } => {
                self.release(run);
                self.swarm.fail_write(error.clone());
                Err(PeerError::Write(error))
            }
        }
    }

    /// Where this peer is reached, for per-peer statistics: its serving address if it gave one.
    fn source_addr(&self) -> SocketAddr {
        self.link.listen.unwrap_or(self.link.addr)
    }

    fn release(&self, run: ChunkRun) {
        if let Some(picker) = self.swarm.state.lock().picker.as_mut() {
            picker.release(run);
        }
    }

    /// Keeps our window of requests full while the peer serves us and has what we need.
    fn request_more(&mut self) {
        if self.peer_choking || !self.we_interested {
            return;
        }
        let Some(theirs) = self.theirs.as_ref() else {
            return;
        };
        let cfg = &self.swarm.local.config;
        let chunk = f64::from(self.swarm.manifest.chunk_size());
        let queue = (self.delivery.rate() * QUEUE_TIME.as_secs_f64() / chunk) as u32;
        let window = queue.clamp(MIN_WINDOW, cfg.window.max(MIN_WINDOW));
        // Runs no longer than half the window, so a slow peer's queue holds several small ones.
        let run_len = cfg.run_len.min(window / 2).clamp(1, MAX_REQUEST_CHUNKS);
        let mut state = self.swarm.state.lock();
        let Some(picker) = state.picker.as_mut() else {
            return;
        };
        while self.outstanding < window {
            let Some(run) = picker.pick(theirs, run_len, self.next_pick) else {
                break;
            };
            self.next_pick = Some(run.end());
            self.writer.queue(&Frame::Request(run));
            self.inflight.push_back(run);
            self.outstanding += run.count;
        }
        // Endgame: everything is claimed; ask this idle peer too for chunks others still owe,
        // so one slow or stalled peer does not hold up the end of the download.
        if self.inflight.is_empty() {
            if let Some(run) = picker.endgame(theirs, run_len.min(ENDGAME_RUN)) {
                self.writer.queue(&Frame::Request(run));
                self.inflight.push_back(run);
                self.outstanding += run.count;
            }
        }
    }

    /// Sends INTERESTED or NOT_INTERESTED when that changed.
    fn update_interest(&mut self) {
        let wanted = self
            .theirs
            .as_ref()
            .is_some_and(|theirs| self.swarm.wants_any_of(theirs));
        if wanted != self.we_interested {
            self.we_interested = wanted;
            self.link.set_we_interested(wanted);
            self.writer.queue(if wanted {
                &Frame::Interested
            } else {
                &Frame::NotInterested
            });
        }
    }

    /// Tells the peer of chunks we verified since last time (those it lacks), in HAVE frames.
    fn forward_haves(&mut self) {
        let fresh = self.swarm.unread_haves(&self.link);
        let Some(theirs) = self.theirs.as_ref() else {
            return;
        };
        let news: Vec<u32> = fresh.into_iter().filter(|&i| !theirs.get(i)).collect();
        for batch in news.chunks(MAX_HAVE_INDICES) {
            self.writer.queue(&Frame::Have(batch.to_vec()));
        }
    }

    fn on_tick(&mut self, cfg: &super::SwarmConfig) -> Result<(), PeerError> {
        let now = Instant::now();
        self.delivery.record(now, self.link.received());
        if self.paused_until.is_some_and(|t| t <= now) {
            self.paused_until = None;
            self.read_frames()?;
        }
        let waiting = if self.writer.pending() > 0 {
            now.duration_since(self.last_drain)
        } else {
            Duration::ZERO
        };
        if waiting > cfg.write_timeout {
            return Err(PeerError::Conn(ConnError::WriteStalled(cfg.write_timeout)));
        }
        let stalled = waiting > STALLED_AFTER;
        if stalled != self.link.stalled() {
            self.link.set_stalled(stalled);
            if stalled && self.link.unchoked() {
                self.swarm.replace_stalled(&self.link);
            }
        }
        let quiet = now.duration_since(self.last_received);
        if self.outstanding > 0 && quiet > cfg.stall_timeout {
            return Err(PeerError::Conn(ConnError::Timeout(cfg.stall_timeout)));
        }
        if quiet > cfg.idle_timeout {
            return Err(PeerError::Conn(ConnError::Timeout(cfg.idle_timeout)));
        }
        if self.theirs.is_none() && quiet > cfg.handshake_timeout {
            return Err(PeerError::Conn(ConnError::Timeout(cfg.handshake_timeout)));
        }
        if self.writer.pending() == 0 && now.duration_since(self.last_sent) > cfg.keepalive {
            self.writer.queue(&Frame::KeepAlive);
        }
        if self.we_interested {
            // Interest is gained at once (BITFIELD, HAVE) and lost here, once our chunks cover
            // theirs; checking it periodically costs one pass over the bitfields.
            self.update_interest();
        }
        if self.swarm.is_complete() && self.link.peer_complete() {
            return Err(PeerError::Closed("both sides are complete"));
        }
        Ok(())
    }

    /// After the connection ended: waits for deliveries being stored (what verified is kept),
    /// then gives every chunk still claimed by this connection back to the picker.
    async fn wind_down(&mut self) {
        // Chunks received but not yet stored are as good as those being stored.
        self.gather_delivery();
        self.dispatch_gathered();
        while let Some(trip) = self.stores.next().await {
            for stored in trip {
                self.storing.pop_front();
                match stored {
                    Stored::Written { run, newly, bytes } => {
                        metrics().chunks_verified.add(u64::from(run.count));
                        self.link.add_received(bytes);
                        self.swarm.stored(run, &newly, self.source_addr(), bytes);
                    }
                    Stored::Corrupt { run, .. } => {
                        metrics().chunks_rejected.inc();
                        self.release(run);
                    }
                    Stored::Failed { run, .. } => self.release(run),
                }
            }
        }
        let mut state = self.swarm.state.lock();
        if let Some(picker) = state.picker.as_mut() {
            for run in self.inflight.iter().chain(&self.storing) {
                picker.release(*run);
            }
            picker.release(self.received.run());
            if self.counted {
                if let Some(theirs) = &self.theirs {
                    picker.remove_peer(theirs);
                }
            }
        }
    }
}

/// Resolves when the answer held back by the upload limits may leave.
async fn sleep_until_held(held: &Option<(Answer, Instant)>) {
    match held {
        Some((_, until)) => tokio::time::sleep_until((*until).into()).await,
        None => std::future::pending().await,
    }
}

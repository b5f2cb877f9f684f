//! One connection of a swarm, both ways at once: a single task that reads frames, writes
//! frames, serves the peer's requests ([`super::serving`]), requests what it has and we lack
//! and stores what it sends ([`super::storing`]), forwards our new chunks as HAVE, and carries
//! out the choker's decisions. The downloading half of the task's methods (CHUNK, REJECT and
//! HAVE frames, store trips, requests) is in `peer/downloading.rs`.
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
use crate::rate::RateMeter;
use crate::share::PartialFile;
use crate::wire::{ChunkRun, ErrorCode, Frame, MAX_HAVE_INDICES};

use super::budget::BudgetError;
use super::handshake::Remote;
use super::limit::{book_all, RateLimit};
use super::link::Link;
use super::serving::{self, Answer, Answers};
use super::storing::{self, Delivery};
use super::{LinkOutcome, Refusal, Swarm};

mod downloading;

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
}

/// Resolves when the answer held back by the upload limits may leave.
async fn sleep_until_held(held: &Option<(Answer, Instant)>) {
    match held {
        Some((_, until)) => tokio::time::sleep_until((*until).into()).await,
        None => std::future::pending().await,
    }
}

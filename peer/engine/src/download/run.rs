//! One download's main loop: keeps up to `max_peers` peer connections running, replaces the
//! ones that end (asking the tracker again, flag 2), makes verified chunks durable and reports
//! them (flag 3) about once a second, publishes progress, and gives up when nothing arrives
//! for too long.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracker_proto::ChunkRanges;

use crate::manifest::FileId;
use crate::name::ShareName;
use crate::rate::RateMeter;
use crate::reach::Dialer;
use crate::share::PartialFile;
use crate::wire::PeerId;

use super::fetch::{fetch_from, PeerError};
use super::peer_set::PeerSet;
use super::picker::Picker;
use super::{Context, DownloadConfig, DownloadError, Progress};

/// Window of the download rate shown as progress.
const RATE_WINDOW: Duration = Duration::from_secs(3);

/// How often the loop publishes progress and checks for a stall.
const TICK: Duration = Duration::from_millis(250);

/// State shared by every connection of one download.
pub(super) struct Shared {
    pub name: ShareName,
    pub id: FileId,
    pub partial: Arc<PartialFile>,
    pub picker: Mutex<Picker>,
    pub config: DownloadConfig,
    pub peer_id: PeerId,
    pub dialer: Option<Arc<Dialer>>,
    /// Verified chunk bytes received in this run, all peers together.
    pub fetched: AtomicU64,
    /// Verified chunks received in this run (an endgame duplicate counts twice).
    pub fetched_chunks: AtomicU32,
}

impl Shared {
    pub fn new(ctx: &Context, name: ShareName, id: FileId, partial: Arc<PartialFile>) -> Self {
        Shared {
            name,
            id,
            picker: Mutex::new(Picker::new(&partial.have_bits())),
            partial,
            config: ctx.config.clone(),
            peer_id: ctx.peer_id,
            dialer: ctx.dialer.clone(),
            fetched: AtomicU64::new(0),
            fetched_chunks: AtomicU32::new(0),
        }
    }
}

/// One download's main loop and its bookkeeping.
pub(super) struct Run<'a> {
    pub ctx: &'a Context,
    pub shared: &'a Arc<Shared>,
    pub progress: &'a watch::Sender<Progress>,
}

impl Run<'_> {
    pub async fn drive(&self, peers: &mut PeerSet) -> Result<(), DownloadError> {
        let cfg = &self.ctx.config;
        let name = &self.shared.name;
        let mut tasks: JoinSet<(SocketAddr, Result<(), PeerError>, u64)> = JoinSet::new();
        let mut report = tokio::time::interval(cfg.report_interval);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = tokio::time::interval(TICK);
        let mut rate = RateMeter::new(RATE_WINDOW);
        let mut last_progress = Instant::now();
        let mut last_refresh = Instant::now();
        let mut need_refresh = false;
        loop {
            if self.shared.partial.is_complete() {
                // Connections notice completion within their idle poll; collect what each delivered.
                let drain = async {
                    while let Some(joined) = tasks.join_next().await {
                        if let Ok((addr, _, got)) = joined {
                            *peers.delivered.entry(addr).or_default() += got;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                tasks.shutdown().await;
                self.publish(&mut rate, 0);
                return Ok(());
            }
            for addr in peers.candidates(cfg.max_peers.saturating_sub(peers.active.len())) {
                peers.active.insert(addr);
                let shared = self.shared.clone();
                tasks.spawn(async move {
                    let mut got = 0u64;
                    let r = fetch_from(&shared, addr, &mut got).await;
                    (addr, r, got)
                });
            }
            if (need_refresh || peers.active.is_empty())
                && last_refresh.elapsed() >= Duration::from_secs(1)
            {
                last_refresh = Instant::now();
                need_refresh = false;
                match self.ctx.tracker.refresh(name.file_name()).await {
                    Ok(s) => {
                        peers.learn(&s.peers);
                        // Peers that failed before get another chance once the tracker lists them again.
                        if peers.candidates(1).is_empty() && peers.active.is_empty() {
                            peers.forgive();
                        }
                    }
                    Err(e) => log::warn!("{name}: refreshing the peer list: {e}"),
                }
                continue;
            }
            tokio::select! {
                Some(joined) = tasks.join_next() => {
                    let Ok((addr, result, got)) = joined else { continue };
                    peers.active.remove(&addr);
                    *peers.delivered.entry(addr).or_default() += got;
                    if got > 0 {
                        last_progress = Instant::now();
                    }
                    match result {
                        Ok(()) => {}
                        Err(PeerError::Hostile(why)) => {
                            log::warn!("{addr}: dropped for {name}: {why}");
                            peers.hostile.insert(addr);
                        }
                        Err(PeerError::Write(e)) => {
                            return Err(DownloadError::Write {
                                name: name.clone(),
                                path: self.ctx.dir.part_path(name).display().to_string(),
                                error: e,
                            });
                        }
                        Err(e) => {
                            log::info!("{addr}: {name}: {e}");
                            if got == 0 {
                                peers.failed(addr);
                            }
                            need_refresh = true;
                        }
                    }
                }
                _ = report.tick() => self.persist_and_report().await,
                _ = tick.tick() => {
                    if self.publish(&mut rate, peers.active.len()) {
                        last_progress = Instant::now();
                    }
                    if last_progress.elapsed() > cfg.give_up_after {
                        tasks.shutdown().await;
                        let p = &self.shared.partial;
                        return Err(DownloadError::Stalled {
                            name: name.clone(),
                            have: p.have_count(),
                            total: p.manifest().chunk_count(),
                            secs: cfg.give_up_after.as_secs(),
                        });
                    }
                    if peers.active.is_empty() {
                        need_refresh = true;
                    }
                }
            }
        }
    }

    /// Publishes progress; true when bytes arrived since the last call.
    fn publish(&self, rate: &mut RateMeter, peers: usize) -> bool {
        let bytes = self.shared.fetched.load(Ordering::Relaxed);
        let moved = rate.record(Instant::now(), bytes);
        let have = self.shared.partial.have_count();
        self.progress.send_modify(|p| {
            p.have = have;
            p.bytes = bytes;
            p.rate = rate.rate();
            p.peers = peers;
        });
        moved
    }

    /// Makes verified chunks durable, then tells the tracker about them (never the other way
    /// round, so the tracker never lists a chunk we could lose).
    pub async fn persist_and_report(&self) {
        let partial = self.shared.partial.clone();
        let newly = match tokio::task::spawn_blocking(move || partial.persist()).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                log::warn!("{}: saving the resume record: {e}", self.shared.name);
                return;
            }
            Err(_) => return,
        };
        let Some(ranges) = ChunkRanges::from_indices(newly) else {
            return;
        };
        let announce = *self.ctx.announce.borrow();
        if let Err(e) = self
            .ctx
            .tracker
            .report_chunks(self.shared.name.file_name(), &ranges, announce)
            .await
        {
            log::warn!("{}: reporting chunks to the tracker: {e}", self.shared.name);
        }
    }
}

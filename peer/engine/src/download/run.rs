//! One download's main loop around its swarm: keeps up to `max_peers` connections (ours and
//! theirs together), replaces the ones that end, asks the tracker for peers on its interval and
//! sooner while starved, makes verified chunks durable and has them reported about once a
//! second, publishes progress, and gives up when nothing arrives for too long.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracker_proto::client::{ClientError, Swarm as TrackerSwarm};

use crate::connection::Connection;
use crate::name::ShareName;
use crate::rate::RateMeter;
use crate::share::{PartialFile, StoreError};
use crate::storage::files_progress;
use crate::swarm::{initiate, LinkOutcome, PeerError, Refusal, Swarm};

use super::peer_set::PeerSet;
use super::report::Reporter;
use super::{blocking, dial, Context, DownloadError, Progress};

/// Window of the download rate shown as progress.
const RATE_WINDOW: Duration = Duration::from_secs(3);

/// How often the loop publishes progress, dials, and checks for a stall.
const TICK: Duration = Duration::from_millis(250);

/// After this long without a verified chunk the loop says where the swarm stands (once).
const STALL_REPORT: Duration = Duration::from_secs(10);

/// How long the end of a download waits for its last report to reach the tracker.
const FINAL_REPORT: Duration = Duration::from_secs(10);

type Dialled = (SocketAddr, Result<LinkOutcome, PeerError>);
type Refreshed = Result<TrackerSwarm, ClientError>;

pub(super) struct Run<'a> {
    pub ctx: &'a Context,
    pub swarm: &'a Arc<Swarm>,
    pub partial: &'a Arc<PartialFile>,
    pub progress: &'a watch::Sender<Progress>,
    pub peers: &'a mut PeerSet,
}

impl Run<'_> {
    /// Runs the download to its end; the tracker is asked for peers every `interval`, and every
    /// `min_interval` while starved or in a small swarm (the tracker's announce intervals),
    /// counted from `listed_at`, when the listing the download started from arrived: fetching
    /// the manifest may have taken long enough that peers who joined meanwhile are due now.
    pub async fn drive(
        self,
        interval: Duration,
        min_interval: Duration,
        listed_at: Instant,
    ) -> Result<(), DownloadError> {
        let Run {
            ctx,
            swarm,
            partial,
            progress,
            peers,
        } = self;
        let name = swarm.name().clone();
        let reporter = Reporter::spawn(
            ctx.tracker.clone(),
            name.clone(),
            ctx.local.announce.clone(),
        );
        let mut dials: JoinSet<Dialled> = JoinSet::new();
        let mut refresh: JoinSet<Refreshed> = JoinSet::new();
        let mut persist = tokio::time::interval(ctx.config.report_interval);
        persist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = tokio::time::interval(TICK);
        let mut rates = Rates::default();
        let mut last_progress = Instant::now();
        let mut last_refresh = listed_at;
        let mut changes = swarm.changes();
        let outcome = loop {
            if let Some(error) = swarm.write_error() {
                break Err(DownloadError::Write {
                    path: ctx.dir.part_path(&name).display().to_string(),
                    name: name.clone(),
                    error,
                });
            }
            if swarm.is_complete() {
                break Ok(());
            }
            let room = ctx
                .local
                .config
                .max_peers
                .saturating_sub(swarm.link_count() + dials.len());
            for addr in peers.candidates(room, &swarm.connected_addrs(), |a| ctx.local.is_own(a)) {
                peers.dialing.insert(addr);
                dials.spawn(connect_and_run(ctx.clone(), swarm.clone(), addr));
            }
            // Starved (no connected peer has what we need) or in a small swarm (fewer peers known
            // than we would connect to): ask again soon, others may have joined meanwhile.
            let starved = !swarm.has_useful_peer() && dials.is_empty();
            let small = peers.usable() < ctx.local.config.max_peers;
            let due = if starved || small {
                min_interval
            } else {
                interval
            };
            if refresh.is_empty() && last_refresh.elapsed() >= due {
                last_refresh = Instant::now();
                let (tracker, file) = (ctx.tracker.clone(), name.file_name().clone());
                let announce = *ctx.local.announce.borrow();
                let transfer = crate::publish::transfer_of(swarm, None, Some(left(partial)));
                refresh.spawn(async move {
                    tracker
                        .join_reporting(&file, announce, true, transfer)
                        .await
                });
            }
            tokio::select! {
                // Completion and write errors are looked at above, at once.
                _ = changes.changed() => {}
                Some(joined) = dials.join_next() => {
                    let Ok((addr, result)) = joined else { continue };
                    peers.dialing.remove(&addr);
                    match result {
                        Ok(outcome) => {
                            if outcome.delivered > 0 {
                                last_progress = Instant::now();
                            }
                        }
                        Err(PeerError::Hostile(_)) => {
                            peers.hostile.insert(addr);
                        }
                        Err(PeerError::Refused(Refusal::Ourselves)) => peers.forget(addr),
                        Err(e @ (PeerError::Refused(_) | PeerError::NoSlot(_))) => {
                            log::debug!("{addr}: {name}: {e}");
                        }
                        Err(e) => {
                            log::info!("{addr}: {name}: {e}");
                            peers.failed(addr);
                        }
                    }
                }
                Some(joined) = refresh.join_next() => {
                    match joined {
                        Ok(Ok(list)) => {
                            peers.learn(&list.peers);
                            // Peers that failed before get another chance once the tracker
                            // lists them again and nobody else is left.
                            if peers.usable() == 0 && swarm.link_count() == 0 {
                                peers.forgive();
                            }
                        }
                        Ok(Err(e)) => log::warn!("{name}: refreshing the peer list: {e}"),
                        Err(_) => {}
                    }
                }
                _ = persist.tick() => {
                    match persist_now(partial, &name).await {
                        Ok(recorded) => reporter.send(recorded),
                        Err(e) => break Err(e),
                    }
                }
                _ = tick.tick() => {
                    if publish(swarm, partial, progress, &mut rates) {
                        last_progress = Instant::now();
                    }
                    let quiet = last_progress.elapsed();
                    if quiet >= STALL_REPORT && quiet < STALL_REPORT + TICK {
                        log::info!("{name}: nothing arrived for {} s: {}", STALL_REPORT.as_secs(), swarm.describe());
                    }
                    if quiet > ctx.config.give_up_after {
                        break Err(DownloadError::Stalled {
                            name: name.clone(),
                            have: partial.have_count(),
                            total: partial.manifest().chunk_count(),
                            secs: ctx.config.give_up_after.as_secs(),
                        });
                    }
                }
            }
        };
        // Whatever happened, what was verified is made durable and reported.
        let last = persist_now(partial, &name).await;
        if let Ok(recorded) = &last {
            reporter.send(recorded.clone());
        }
        publish(swarm, partial, progress, &mut rates);
        reporter.finish(FINAL_REPORT).await;
        dials.abort_all();
        outcome.and(last.map(|_| ()))
    }
}

/// Dials `addr`, opens the connection for the swarm's file and runs it in the swarm.
async fn connect_and_run(ctx: Context, swarm: Arc<Swarm>, addr: SocketAddr) -> Dialled {
    let result = async {
        let _permit = ctx.budget.try_acquire(addr.ip())?;
        let limit = ctx.config.connect_timeout;
        let stream = match ctx.dialer.as_deref() {
            Some(d) => d
                .connect(swarm.name().file_name(), addr)
                .await
                .map_err(|e| PeerError::Unreachable(e.to_string()))?,
            None => dial(addr, limit).await?,
        };
        let hello = ctx.local.hello(swarm.name(), swarm.id());
        let (conn, remote) = initiate(Connection::new(stream), &hello, limit).await?;
        swarm.run_link(conn, remote, addr, true).await
    }
    .await;
    (addr, result)
}

/// Makes verified chunks durable (fdatasync, then the resume record) and returns the ones newly
/// recorded: only those may be reported, so the tracker never lists a chunk we could lose. A
/// failed fdatasync (or a `.part` replaced under us) ends the download: the kernel may have
/// dropped the dirty pages, so those chunks are forgotten. A failed record write is retried at
/// the next save.
async fn persist_now(
    partial: &Arc<PartialFile>,
    name: &ShareName,
) -> Result<Vec<u32>, DownloadError> {
    let p = partial.clone();
    match blocking(name, move || p.persist().map_err(StoreError::from)).await {
        Ok(recorded) => Ok(recorded),
        Err(StoreError::Persist(e)) if !e.is_fatal() => {
            log::warn!("{name}: {e}");
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// The download's rates both ways, as its progress shows them.
struct Rates {
    down: RateMeter,
    up: RateMeter,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            down: RateMeter::new(RATE_WINDOW),
            up: RateMeter::new(RATE_WINDOW),
        }
    }
}

/// Publishes progress; true when verified bytes arrived since the last call.
fn publish(
    swarm: &Swarm,
    partial: &PartialFile,
    progress: &watch::Sender<Progress>,
    rates: &mut Rates,
) -> bool {
    let stats = swarm.stats();
    let now = Instant::now();
    let moved = rates.down.record(now, stats.downloaded);
    rates.up.record(now, stats.uploaded);
    let have = partial.have_count();
    let files = partial.manifest().files().map(|files| {
        let chunk_size = partial.manifest().chunk_size();
        partial.with_have(|h| files_progress(files, chunk_size, h))
    });
    progress.send_modify(|p| {
        if let Some(files) = files {
            p.files = files.into();
        }
        p.have = have;
        p.bytes = stats.downloaded;
        p.rate = rates.down.rate();
        p.up_rate = rates.up.rate();
        p.swarm = stats;
    });
    moved
}

/// Bytes of the file we still lack (`left=` of protocol.txt §1.2): 0 only when every chunk is
/// here, since every chunk but the last is whole.
fn left(partial: &PartialFile) -> u64 {
    let manifest = partial.manifest();
    let have = u64::from(partial.have_count()) * u64::from(manifest.chunk_size());
    manifest.size().saturating_sub(have)
}

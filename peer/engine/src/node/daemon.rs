//! The long-running peer: keeps the tracker's rows of every complete file alive, picks up files
//! that appear in the directory, follows the public address, and leaves the swarm (flag 5) when
//! stopped.
//!
//! A daemon records its announce address and pid ([`super::lock`]) while it runs. Other `peer`
//! commands on the same directory (`share`, `get`) read it and announce with the daemon's address
//! instead of starting a server of their own: the daemon serves any file of its directory on
//! demand, including downloads in progress (their verified chunks, from the resume record).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracker_proto::{ConnStats, ErrorCode as TrackerCode};

use crate::manifest::FileId;
use crate::metrics::{metrics, DialOutcome};
use crate::name::ShareName;
use crate::publish::{self, ShareError};
use crate::share::StoreError;

use super::{lock, Node};

/// Default time between two heartbeats: well inside the tracker's 90 s TTL.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Longest silence towards the tracker, whatever `--heartbeat` says: a heartbeat at least this
/// often keeps the NAT's UDP mapping to the tracker, the path PUNCH notices take, alive well
/// inside common NAT UDP timeouts (RFC 4787 asks for 2 min; many home routers use 30 s).
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// How often the share directory is checked for files put there by others (`peer share`
/// beside the daemon, a copy by hand): a file is announced, from the daemon's own socket,
/// within about this long.
const DIRECTORY_CHECK: Duration = Duration::from_secs(1);

/// Runs the daemon on a started node until `stop` resolves: announces every complete file,
/// heartbeats every `heartbeat`, rescans the directory each time, then leaves the swarm.
///
/// `address` carries the announce address as STUN refresh learns it (see [`crate::reach::address`]).
/// When it moves, one heartbeat (flag 9) under the new address moves every row of this peer at
/// once: the tracker matches the peer by its key, so the old address stops being listed at
/// that moment instead of lingering until the TTL.
pub async fn run_until(
    mut node: Node,
    heartbeat: Duration,
    mut address: watch::Receiver<SocketAddr>,
    stop: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    node.follow(address.clone());
    lock::record(&node.dir, node.announce)?;
    let mut announced: HashMap<ShareName, FileId> = HashMap::new();
    let mut withdrawn: HashSet<ShareName> = HashSet::new();
    let mut ticker = tokio::time::interval(heartbeat);
    let mut keepalive = tokio::time::interval(KEEPALIVE.min(heartbeat));
    let mut directory = tokio::time::interval(DIRECTORY_CHECK);
    let mut directory_stamp = None;
    let mut first = true;
    let mut address_open = true;
    // Failed dials already told the tracker (heartbeats carry those since the previous one).
    let mut failures_told = metrics().dials(DialOutcome::Failed);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if !first {
                    beat(&node, &mut announced, &mut failures_told).await;
                }
                first = false;
                announce_new(&node, &mut announced, &mut withdrawn).await;
            }
            _ = keepalive.tick(), if !first => {
                beat(&node, &mut announced, &mut failures_told).await;
            }
            _ = directory.tick(), if !first => {
                check_placed(&node, &mut announced, &mut withdrawn).await;
                let stamp = directory_changed(&node).await;
                if stamp != directory_stamp {
                    directory_stamp = stamp;
                    announce_new(&node, &mut announced, &mut withdrawn).await;
                }
            }
            changed = address.changed(), if address_open => {
                if changed.is_err() {
                    // No refresher (no STUN server, or --announce fixed the address).
                    address_open = false;
                    continue;
                }
                let to = *address.borrow_and_update();
                if to == node.announce {
                    continue;
                }
                log::info!("announce address moved from {} to {to}; moving every row", node.announce);
                node.announce = to;
                if let Err(e) = lock::record(&node.dir, to) {
                    log::warn!("updating {}: {e}", lock::state_file(&node.dir).display());
                }
                match node.tracker.heartbeat(to).await {
                    Ok(_) => {}
                    Err(e) if e.code() == Some(TrackerCode::PeerNotFound) => announced.clear(),
                    Err(e) => log::warn!("moving to {to}: {e}"),
                }
                announce_new(&node, &mut announced, &mut withdrawn).await;
            }
            _ = &mut stop => break,
        }
    }
    log::info!("stopping: leaving the swarm");
    lock::release(&node.dir);
    node.stop().await;
    Ok(())
}

/// One heartbeat (flag 9) from the daemon's socket: keeps the rows, and the NAT mapping PUNCH
/// notices take, alive, and carries seed 003's connection figures: connections open now and
/// dials that failed since the last heartbeat the tracker took (`failures_told`).
async fn beat(node: &Node, announced: &mut HashMap<ShareName, FileId>, failures_told: &mut u64) {
    let failures = metrics().dials(DialOutcome::Failed);
    let stats = ConnStats {
        conns: Some(u32::try_from(node.budget.in_use()).unwrap_or(u32::MAX)),
        failed: Some(u32::try_from(failures - *failures_told).unwrap_or(u32::MAX)),
    };
    match node.tracker.heartbeat_reporting(node.announce, stats).await {
        Ok(_) => *failures_told = failures,
        // Nothing announced yet (an empty directory), or the tracker restarted or expired us.
        Err(e) if e.code() == Some(TrackerCode::PeerNotFound) => {
            if !announced.is_empty() {
                log::info!("tracker forgot us; announcing every file again");
                announced.clear();
            }
        }
        Err(e) => log::warn!("heartbeat: {e}"),
    }
}

/// The modification times of the share directory and of its state directory: they change
/// when a file is added, renamed or removed there, or a file is shared in place (a record
/// appears in the state directory), not when one is written to; polling them is two stats a
/// second.
async fn directory_changed(node: &Node) -> Option<(SystemTime, SystemTime)> {
    let dir = node.dir.clone();
    tokio::task::spawn_blocking(move || {
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((modified(dir.root())?, modified(dir.state_dir())?))
    })
    .await
    .ok()
    .flatten()
}

/// Withdraws every file shared in place that changed on disk since it was hashed (one stat
/// each): it is served no more and the tracker stops listing us for it.
async fn check_placed(
    node: &Node,
    announced: &mut HashMap<ShareName, FileId>,
    withdrawn: &mut HashSet<ShareName>,
) {
    let dir = node.dir.clone();
    let changed = tokio::task::spawn_blocking(move || {
        dir.placed_names()
            .into_iter()
            .filter_map(|name| match dir.placed_unchanged(&name) {
                Err(e @ StoreError::Changed { .. }) => Some((name, e)),
                _ => None,
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (name, why) in changed {
        withdraw(node, &name, &why, announced, withdrawn).await;
    }
}

/// Stops serving `name` (its swarm closes, so no connection reads the file again) and leaves
/// its swarm at the tracker (flag 5 for that file), once per change.
async fn withdraw(
    node: &Node,
    name: &ShareName,
    why: &StoreError,
    announced: &mut HashMap<ShareName, FileId>,
    withdrawn: &mut HashSet<ShareName>,
) {
    if !withdrawn.insert(name.clone()) {
        return;
    }
    log::warn!("{why}; withdrawn from the tracker");
    announced.remove(name);
    let moved = node.swarms.moved().remove(name);
    if let Some(swarm) = node.swarms.get(name) {
        swarm.close();
    }
    if let Err(e) = publish::leave(&node.tracker, name, moved, node.announce).await {
        log::warn!("withdrawing {name} from the tracker: {e}");
    }
}

/// Announces complete files not yet announced (or changed since), hashing them as needed;
/// withdraws files shared in place that changed.
async fn announce_new(
    node: &Node,
    announced: &mut HashMap<ShareName, FileId>,
    withdrawn: &mut HashSet<ShareName>,
) {
    let dir = node.dir.clone();
    let names = match tokio::task::spawn_blocking(move || dir.complete_files()).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            log::warn!("scanning {}: {e}", node.dir.root().display());
            return;
        }
        Err(_) => return,
    };
    announced.retain(|n, _| names.contains(n));
    for name in names {
        let dir = node.dir.clone();
        let n = name.clone();
        let manifest = match tokio::task::spawn_blocking(move || dir.complete_manifest(&n)).await {
            Ok(Ok(m)) => {
                withdrawn.remove(&name);
                m
            }
            Ok(Err(e @ StoreError::Changed { .. })) => {
                withdraw(node, &name, &e, announced, withdrawn).await;
                continue;
            }
            Ok(Err(e)) => {
                log::warn!("{name}: {e}");
                continue;
            }
            Err(_) => continue,
        };
        if announced.get(&name) == Some(&manifest.id()) {
            continue;
        }
        match publish::announce(&node.tracker, &name, &manifest, node.announce).await {
            Ok(()) => {
                log::info!(
                    "sharing {name} ({} bytes, {})",
                    manifest.size(),
                    manifest.id()
                );
                announced.insert(name, manifest.id());
            }
            Err(e @ ShareError::HashMismatch { .. }) => {
                log::warn!("{e}");
                announced.insert(name, manifest.id());
            }
            Err(e) => log::warn!("announcing {name}: {e}"),
        }
    }
}

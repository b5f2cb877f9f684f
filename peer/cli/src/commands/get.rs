//! `peer get NAME...`: downloads into --dir, through the daemon of --dir when one runs (it
//! serves what we fetch), else with a node of our own that serves while we download and leaves
//! the swarm afterwards.

use std::sync::Arc;
use std::time::Duration;

use peer_engine::download::{self, Context, DownloadConfig, Outcome, Progress};
use peer_engine::name::ShareName;
use peer_engine::node::{lock, Node};
use peer_engine::reach::{Dialer, OwnNat, PunchConfig};
use peer_engine::share::{DownloadClaim, ShareDir};
use peer_engine::swarm::budget::ConnectionBudget;
use peer_engine::swarm::LocalPeer;
use serde_json::json;
use tokio::sync::watch;
use tracker_proto::TrackerClient;

use super::serve::{start_node, start_presence};
use super::target::Target;
use super::{flush, Format};
use crate::args::Global;
use crate::output::live::Live;
use crate::signals::stop_signal;

/// What the user asked of the downloader (`peer get` flags).
pub struct GetOptions {
    pub give_up: u64,
    pub stall_timeout: u64,
    /// Verify the whole file again before it takes its name.
    pub recheck: bool,
    /// One JSON object per file instead of a summary line.
    pub format: Format,
}

pub async fn get(
    global: &Global,
    dir: Arc<ShareDir>,
    tracker: Arc<TrackerClient>,
    targets: Vec<(String, anyhow::Result<Target>)>,
    options: &GetOptions,
) -> anyhow::Result<()> {
    let config = DownloadConfig {
        give_up_after: Duration::from_secs(options.give_up.max(1)),
        recheck: options.recheck,
        ..DownloadConfig::default()
    };
    let mut node_config = global.node_config();
    node_config.swarm.stall_timeout = Duration::from_secs(options.stall_timeout.max(1));
    let ctx = match lock::running_daemon(&dir) {
        // The daemon serves what we record; we only fetch, from a peer of our own.
        Some(at) => Context {
            dir,
            tracker,
            local: Arc::new(LocalPeer::new(
                watch::channel(at).1,
                node_config.swarm,
                node_config.upload_limit,
                node_config.download_limit,
            )),
            swarms: None,
            budget: ConnectionBudget::new(node_config.max_connections, node_config.max_per_ip),
            config,
            dialer: None,
        },
        None => {
            let node = start_node(global, node_config, dir.clone(), tracker.clone())?;
            let presence = start_presence(global, &node).await;
            let announce = presence.announce();
            node.follow(announce.clone());
            // Hole punching starts from our own serving port, so it needs our own server.
            let dialer = Dialer::new(
                tracker.clone(),
                node.listen,
                announce,
                OwnNat::Unknown,
                PunchConfig::default(),
            )
            .with_rendezvous(node.rendezvous.clone())
            .with_relay(node.outlet.relay.clone())
            .with_stun(global.stun_servers());
            let ctx = Context {
                dir,
                tracker,
                local: node.local.clone(),
                swarms: Some(node.swarms.clone()),
                budget: node.budget.clone(),
                config,
                dialer: Some(Arc::new(dialer)),
            };
            let result = run_until_signal(&ctx, targets, options.format, Some(node)).await;
            presence.stop().await;
            return result;
        }
    };
    run_until_signal(&ctx, targets, options.format, None).await
}

/// Downloads `names`; SIGINT/SIGTERM end the downloads (verified chunks stay recorded) and
/// still leave the swarm, instead of leaving rows behind until the tracker's TTL.
async fn run_until_signal(
    ctx: &Context,
    targets: Vec<(String, anyhow::Result<Target>)>,
    format: Format,
    node: Option<Node>,
) -> anyhow::Result<()> {
    let stop = stop_signal();
    let result = tokio::select! {
        result = get_all(ctx, targets, format) => result,
        () = stop => Err(anyhow::anyhow!(
            "interrupted: verified chunks are kept; the same command resumes the download"
        )),
    };
    if let Some(node) = node {
        node.stop().await;
    }
    result
}

/// Claims the download of `name` in `dir` (see `ShareDir::claim_download`): refused while
/// another download of that name into `dir` runs. Hold it until the download ends.
pub async fn claim(dir: &Arc<ShareDir>, name: &ShareName) -> anyhow::Result<DownloadClaim> {
    let (dir, name) = (dir.clone(), name.clone());
    Ok(tokio::task::spawn_blocking(move || dir.claim_download(&name)).await??)
}

/// Downloads every target at once; prints one summary line (or JSON object) per file. A target
/// that is not a valid name, metainfo file or magnet link fails on its own, like a download
/// that fails.
async fn get_all(
    ctx: &Context,
    targets: Vec<(String, anyhow::Result<Target>)>,
    format: Format,
) -> anyhow::Result<()> {
    let count = targets.len();
    let mut shown = Vec::new();
    let jobs: Vec<_> = targets
        .into_iter()
        .map(|(given, target)| {
            let (progress, watching) = watch::channel(Progress::default());
            if let Ok(t) = &target {
                shown.push((t.name.clone(), watching));
            }
            async move {
                let result = match target {
                    Ok(target) => fetch(ctx, &target, &progress).await,
                    Err(e) => Err(e),
                };
                (given, result)
            }
        })
        .collect();
    let live = Live::start(shown);
    let results = futures::future::join_all(jobs).await;
    live.finish().await;
    let mut failed = 0;
    for (name, result) in results {
        match result {
            Ok(o) if format == Format::Json => println!("{}", outcome_json(&o)),
            Ok(o) => {
                let secs = o.elapsed.as_secs_f64().max(1e-3);
                let senders = o.per_peer.values().filter(|b| **b > 0).count();
                println!(
                    "downloaded {} ({} bytes, {}): {} chunks fetched from {} {}, {} resumed, {:.1} MB/s",
                    o.name,
                    o.size,
                    o.id,
                    o.fetched,
                    senders,
                    if senders == 1 { "peer" } else { "peers" },
                    o.resumed,
                    o.per_peer.values().sum::<u64>() as f64 / secs / 1e6
                );
            }
            Err(e) => {
                let why = format!("{e:#}");
                if format == Format::Json {
                    println!("{}", json!({ "name": name, "error": why }));
                }
                // Errors about a metainfo file name its path already.
                if why.contains(name.as_str()) {
                    eprintln!("error: {why}");
                } else {
                    eprintln!("error: {name}: {why}");
                }
                failed += 1;
            }
        }
    }
    flush();
    if failed > 0 {
        anyhow::bail!("{failed} of {count} downloads failed");
    }
    Ok(())
}

/// Claims and downloads one target, checked against what it names.
pub async fn fetch(
    ctx: &Context,
    target: &Target,
    progress: &watch::Sender<Progress>,
) -> anyhow::Result<Outcome> {
    let _claim = claim(&ctx.dir, &target.name).await?;
    Ok(download::download_expecting(ctx, &target.name, &target.expect, progress).await?)
}

/// A finished download for `peer get --json`: what it fetched, from whom, what it uploaded
/// meanwhile, and the limits it ran under.
fn outcome_json(o: &Outcome) -> serde_json::Value {
    let mut peers: Vec<_> = o.per_peer.iter().filter(|(_, b)| **b > 0).collect();
    peers.sort();
    json!({
        "name": o.name.as_str(),
        "size": o.size,
        "id": o.id.to_string(),
        "fetched": o.fetched,
        "resumed": o.resumed,
        "duplicates": o.duplicates,
        "uploaded": o.uploaded,
        "seconds": o.elapsed.as_secs_f64(),
        "sources": peers.len(),
        "peers": peers
            .iter()
            .map(|(addr, bytes)| json!({ "addr": addr.to_string(), "bytes": bytes }))
            .collect::<Vec<_>>(),
    })
}

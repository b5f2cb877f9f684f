//! `peer get NAME...`: downloads into --dir, through the daemon of --dir when one runs (it
//! serves what we fetch), else with a node of our own that serves while we download and leaves
//! the swarm afterwards.

use std::sync::Arc;
use std::time::Duration;

use peer_engine::download::{self, Context, DownloadConfig, Progress};
use peer_engine::name::ShareName;
use peer_engine::node::lock;
use peer_engine::reach::{Dialer, OwnNat, PunchConfig};
use peer_engine::share::ShareDir;
use peer_engine::wire::PeerId;
use tokio::sync::watch;
use tracker_proto::TrackerClient;

use super::flush;
use super::serve::{start_node, start_presence};
use crate::args::Global;
use crate::signals::stop_signal;

/// What the user asked of the downloader (`peer get` flags).
pub struct GetOptions {
    pub max_peers: usize,
    pub give_up: u64,
    pub stall_timeout: u64,
}

pub async fn get(
    global: &Global,
    dir: Arc<ShareDir>,
    tracker: Arc<TrackerClient>,
    names: &[String],
    options: &GetOptions,
) -> anyhow::Result<()> {
    let config = DownloadConfig {
        max_peers: options.max_peers.max(1),
        give_up_after: Duration::from_secs(options.give_up.max(1)),
        stall_timeout: Duration::from_secs(options.stall_timeout.max(1)),
        ..DownloadConfig::default()
    };
    let (node, presence, announce) = match lock::running_daemon(&dir) {
        Some(at) => (None, None, watch::channel(at).1),
        None => {
            let node = start_node(global, dir.clone(), tracker.clone())?;
            let presence = start_presence(global, &node).await;
            let announce = presence.announce();
            (Some(node), Some(presence), announce)
        }
    };
    // Hole punching starts from our own serving port, so it needs our own server.
    let dialer = node.as_ref().map(|n| {
        let dialer = Dialer::new(
            tracker.clone(),
            n.listen,
            announce.clone(),
            OwnNat::Unknown,
            PunchConfig::default(),
        );
        Arc::new(
            dialer
                .with_rendezvous(n.rendezvous.clone())
                .with_relay(n.outlet.relay.clone())
                .with_stun(global.stun_servers()),
        )
    });
    let ctx = Context {
        dir,
        tracker,
        announce,
        config,
        peer_id: PeerId::random(),
        dialer,
    };
    // SIGINT/SIGTERM end the downloads (verified chunks stay recorded) and still leave the
    // swarm below, instead of leaving rows behind until the tracker's TTL.
    let stop = stop_signal()?;
    let result = tokio::select! {
        result = get_all(&ctx, names) => result,
        () = stop => Err(anyhow::anyhow!(
            "interrupted: verified chunks are kept; the same command resumes the download"
        )),
    };
    if let Some(node) = node {
        node.stop().await;
    }
    if let Some(presence) = presence {
        presence.stop().await;
    }
    result
}

/// Downloads every name at once; prints one summary line per file. A name that is not a valid
/// share name fails on its own, like a download that fails.
async fn get_all(ctx: &Context, names: &[String]) -> anyhow::Result<()> {
    let jobs = names.iter().map(|name| async move {
        let (progress, _) = watch::channel(Progress::default());
        let result = match ShareName::new(name) {
            Ok(name) => download::download(ctx, &name, &progress)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        (name, result)
    });
    let mut failed = 0;
    for (name, result) in futures::future::join_all(jobs).await {
        match result {
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
                eprintln!("error: {name}: {e}");
                failed += 1;
            }
        }
    }
    flush();
    if failed > 0 {
        anyhow::bail!("{failed} of {} downloads failed", names.len());
    }
    Ok(())
}

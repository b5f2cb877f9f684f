//! The long-running peer: serves its share directory, keeps the tracker's rows of every complete
//! file alive, picks up files that appear in the directory, and leaves the swarm (flag 5) when
//! stopped.
//!
//! A daemon writes its announce address and pid to `DIR/.peer/daemon` while it runs. Other `peer`
//! commands on the same directory (`share`, `get`) read it and announce with the daemon's address
//! instead of starting a server of their own: the daemon serves any file of its directory on
//! demand, including downloads in progress (their verified chunks, from the resume record).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracker::proto::ErrorCode as TrackerCode;
use tracker::{FileName, TrackerClient};

use crate::manifest::FileId;
use crate::punch::{self, PunchAnswerer, PunchConfig, Rendezvous};
use crate::serve::{self, ServerConfig, UploadStats};
use crate::share::{self, ShareError};
use crate::store::ShareDir;

/// Default time between two heartbeats: well inside the tracker's 90 s TTL.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

const STATE_FILE: &str = "daemon";

/// A server bound to a port and serving a share directory, with what is needed to announce it.
pub struct Node {
    pub dir: Arc<ShareDir>,
    pub tracker: Arc<TrackerClient>,
    /// The TCP address the server is bound to.
    pub listen: SocketAddr,
    /// The address given to the tracker.
    pub announce: SocketAddr,
    pub stats: Arc<UploadStats>,
    pub shutdown: CancellationToken,
    /// Where the server hands incoming connections our own punches wait for; dialers of this
    /// node take it (`punch::Dialer::with_rendezvous`).
    pub rendezvous: Arc<Rendezvous>,
    server: JoinHandle<()>,
}

/// The address to announce for a server bound to `listen`: the override if given, else the bound
/// address, with an unspecified IP sent as `0.0.0.0` so the tracker uses the datagram's source IP.
pub fn announce_addr(listen: SocketAddr, over: Option<SocketAddr>) -> SocketAddr {
    match over {
        Some(a) => a,
        None if listen.ip().is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), listen.port())
        }
        None => listen,
    }
}

impl Node {
    /// Binds `listen` and starts serving `dir`.
    pub fn start(
        dir: Arc<ShareDir>,
        tracker: Arc<TrackerClient>,
        listen: SocketAddr,
        announce_override: Option<SocketAddr>,
        config: ServerConfig,
    ) -> io::Result<Node> {
        let listener = serve::bind(listen).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {listen}: {e} (choose another with --listen)"),
            )
        })?;
        let listen = listener.local_addr()?;
        let stats = Arc::new(UploadStats::default());
        let shutdown = CancellationToken::new();
        let (incoming, outlet) = punch::server_hooks();
        let rendezvous = outlet.rendezvous.clone();
        tokio::spawn(answer_punches(
            dir.clone(),
            tracker.clone(),
            listen,
            outlet.punched,
            shutdown.clone(),
        ));
        let server = tokio::spawn(serve::run(
            listener,
            incoming,
            dir.clone(),
            config,
            stats.clone(),
            shutdown.clone(),
        ));
        Ok(Node {
            announce: announce_addr(listen, announce_override),
            dir,
            tracker,
            listen,
            stats,
            shutdown,
            rendezvous,
            server,
        })
    }

    /// Leaves every swarm (flag 5) and stops the server.
    pub async fn stop(self) {
        if let Err(e) = self.tracker.exit(self.announce).await {
            log::warn!("telling the tracker we leave: {e}");
        }
        self.shutdown.cancel();
        let _ = self.server.await;
    }
}

/// Connects back to peers the tracker says are punching towards us (protocol.txt §4.4) for files
/// of `dir`, and hands the connections to the server, until `shutdown`.
async fn answer_punches(
    dir: Arc<ShareDir>,
    tracker: Arc<TrackerClient>,
    listen: SocketAddr,
    punched: mpsc::Sender<TcpStream>,
    shutdown: CancellationToken,
) {
    let answerer = PunchAnswerer::new(listen, PunchConfig::default());
    let shares = move |f: &FileName| {
        dir.complete_path(f.as_str()).exists() || dir.part_path(f.as_str()).exists()
    };
    let serve = move |stream: TcpStream| {
        if punched.try_send(stream).is_err() {
            log::warn!("punch: server busy or stopped; dropping a punched connection");
        }
    };
    tokio::select! {
        _ = punch::answer_notices(tracker.punch_notices(), answerer, shares, serve) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Announce address of a daemon running on `dir`, if one is alive.
pub fn running_daemon(dir: &ShareDir) -> Option<SocketAddr> {
    running_daemon_process(dir).map(|(addr, _)| addr)
}

/// Announce address and process id of a daemon running on `dir`, if one is alive (`peer exit`
/// stops it with SIGTERM so that it leaves the swarm itself).
pub fn running_daemon_process(dir: &ShareDir) -> Option<(SocketAddr, u32)> {
    let text = fs::read_to_string(dir.state_dir().join(STATE_FILE)).ok()?;
    let mut it = text.split_whitespace();
    let addr: SocketAddr = it.next()?.parse().ok()?;
    let pid: u32 = it.next()?.parse().ok()?;
    (pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists())
        .then_some((addr, pid))
}

/// Resolves when the process is asked to stop: SIGINT (Ctrl-C) or SIGTERM.
pub fn stop_signal() -> io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => log::info!("SIGINT received"),
            _ = terminate.recv() => log::info!("SIGTERM received"),
        }
    })
}

/// Runs the daemon on a started node until SIGINT or SIGTERM, announcing a fixed address.
pub async fn run(node: Node, heartbeat: Duration) -> anyhow::Result<()> {
    let (_fixed, address) = watch::channel(node.announce);
    run_until(node, heartbeat, address, stop_signal()?).await
}

/// Runs the daemon on a started node until `stop` resolves: announces every complete file,
/// heartbeats every `heartbeat`, rescans the directory each time, then leaves the swarm.
///
/// `address` carries the announce address as STUN refresh learns it (see [`crate::address`]).
/// When it moves, one heartbeat (flag 9) under the new address moves every row of this peer at
/// once: the tracker matches the peer by its key, so the old address stops being listed at
/// that moment instead of lingering until the TTL.
pub async fn run_until(
    mut node: Node,
    heartbeat: Duration,
    mut address: watch::Receiver<SocketAddr>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = node.dir.state_dir().join(STATE_FILE);
    let record =
        |announce: SocketAddr| fs::write(&state, format!("{} {}\n", announce, std::process::id()));
    record(node.announce)?;
    let mut announced: HashMap<String, FileId> = HashMap::new();
    let mut ticker = tokio::time::interval(heartbeat);
    let mut first = true;
    let mut address_open = true;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if !first {
                    match node.tracker.heartbeat(node.announce).await {
                        Ok(_) => {}
                        Err(e) if e.code() == Some(TrackerCode::PeerNotFound) => {
                            log::info!("tracker forgot us; announcing every file again");
                            announced.clear();
                        }
                        Err(e) => log::warn!("heartbeat: {e}"),
                    }
                }
                first = false;
                announce_new(&node, &mut announced).await;
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
                if let Err(e) = record(to) {
                    log::warn!("updating {}: {e}", state.display());
                }
                match node.tracker.heartbeat(to).await {
                    Ok(_) => {}
                    Err(e) if e.code() == Some(TrackerCode::PeerNotFound) => announced.clear(),
                    Err(e) => log::warn!("moving to {to}: {e}"),
                }
                announce_new(&node, &mut announced).await;
            }
            _ = &mut stop => break,
        }
    }
    log::info!("stopping: leaving the swarm");
    let _ = fs::remove_file(&state);
    node.stop().await;
    Ok(())
}

/// Announces complete files not yet announced (or changed since), hashing them as needed.
async fn announce_new(node: &Node, announced: &mut HashMap<String, FileId>) {
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
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                log::warn!("{name}: {e}");
                continue;
            }
            Err(_) => continue,
        };
        if announced.get(&name) == Some(&manifest.id()) {
            continue;
        }
        match share::announce(&node.tracker, &name, &manifest, node.announce).await {
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

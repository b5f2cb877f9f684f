//! A node: the server bound to a port and serving a share directory, answering punch notices,
//! with what is needed to announce it. The daemon ([`daemon`]), the console and `peer share` /
//! `peer get` all run on one; [`lock`] lets the other commands on a directory find its daemon.

pub mod daemon;
pub mod lock;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracker_proto::{FileName, TrackerClient};

use crate::name::ShareName;
use crate::reach::{self, Outlet, PunchAnswerer, PunchConfig, Rendezvous};
use crate::serve;
use crate::share::ShareDir;
use crate::swarm::budget::{ConnectionBudget, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PER_IP};
use crate::swarm::registry::Swarms;
use crate::swarm::{LocalPeer, SwarmConfig, UploadStats};

/// What a node is started with; the defaults are those of `peer --help`.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub swarm: SwarmConfig,
    /// `--upload-limit`: bytes per second for all uploads together (`None`: unlimited).
    pub upload_limit: Option<u64>,
    /// `--download-limit`: bytes per second for all downloads together (`None`: unlimited).
    pub download_limit: Option<u64>,
    /// Connections at once, ours and theirs, over every file.
    pub max_connections: usize,
    /// Connections with one IP at once.
    pub max_per_ip: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            swarm: SwarmConfig::default(),
            upload_limit: None,
            download_limit: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_ip: DEFAULT_MAX_PER_IP,
        }
    }
}

/// A server bound to a port and serving a share directory, with what is needed to announce it.
pub struct Node {
    pub dir: Arc<ShareDir>,
    pub tracker: Arc<TrackerClient>,
    /// The TCP address the server is bound to.
    pub listen: SocketAddr,
    /// The address given to the tracker.
    pub announce: SocketAddr,
    /// Who we are on the wire; its announce address follows [`Node::follow`].
    pub local: Arc<LocalPeer>,
    /// The swarms this node serves and downloads.
    pub swarms: Arc<Swarms>,
    /// Connection slots of the whole process (the server's and the downloads').
    pub budget: Arc<ConnectionBudget>,
    pub shutdown: CancellationToken,
    /// Where the server hands incoming connections our own punches wait for; dialers of this
    /// node take it (`reach::Dialer::with_rendezvous`).
    pub rendezvous: Arc<Rendezvous>,
    announce_tx: watch::Sender<SocketAddr>,
    /// Where connections that do not come through the listener (relayed ones) enter the
    /// server; `reach::Presence` delivers there.
    pub outlet: Outlet,
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
        config: NodeConfig,
    ) -> io::Result<Node> {
        let listener = serve::bind(listen).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {listen}: {e} (choose another with --listen)"),
            )
        })?;
        let listen = listener.local_addr()?;
        let announce = announce_addr(listen, announce_override);
        let (announce_tx, announce_rx) = watch::channel(announce);
        let local = Arc::new(LocalPeer::new(
            announce_rx,
            config.swarm.clone(),
            config.upload_limit,
            config.download_limit,
        ));
        local.own_addrs.lock().insert(listen);
        let swarms = Swarms::new(dir.clone(), local.clone());
        let budget = ConnectionBudget::new(config.max_connections, config.max_per_ip);
        let shutdown = CancellationToken::new();
        let (incoming, outlet) = reach::server_hooks();
        let rendezvous = outlet.rendezvous.clone();
        tokio::spawn(answer_punches(
            dir.clone(),
            tracker.clone(),
            listen,
            outlet.clone(),
            shutdown.clone(),
        ));
        let server = tokio::spawn(serve::run(
            listener,
            incoming,
            swarms.clone(),
            budget.clone(),
            shutdown.clone(),
        ));
        Ok(Node {
            announce,
            dir,
            tracker,
            listen,
            local,
            swarms,
            budget,
            shutdown,
            rendezvous,
            announce_tx,
            outlet,
            server,
        })
    }

    /// Upload counters of the whole node.
    pub fn uploads(&self) -> &Arc<UploadStats> {
        &self.local.uploads
    }

    /// Follows the announce address STUN refresh learns (`address`), so HANDSHAKEs and flag 3
    /// reports name where we are reachable now.
    pub fn follow(&self, mut address: watch::Receiver<SocketAddr>) {
        let tx = self.announce_tx.clone();
        let local = self.local.clone();
        tokio::spawn(async move {
            loop {
                let now = *address.borrow_and_update();
                local.own_addrs.lock().insert(now);
                tx.send_replace(now);
                if address.changed().await.is_err() || tx.is_closed() {
                    return;
                }
            }
        });
    }

    /// Leaves every swarm (flag 5 with `event=stopped` and our counters) and stops the server.
    pub async fn stop(self) {
        crate::publish::stop_all(&self.tracker, &self.swarms, self.announce).await;
        self.shutdown.cancel();
        for swarm in self.swarms.all() {
            swarm.close();
        }
        let _ = self.server.await;
    }
}

/// Connects back to peers the tracker says are punching towards us (protocol.txt §4.4) for files
/// of `dir`, and hands the connections to the server, until `shutdown`.
async fn answer_punches(
    dir: Arc<ShareDir>,
    tracker: Arc<TrackerClient>,
    listen: SocketAddr,
    outlet: Outlet,
    shutdown: CancellationToken,
) {
    let answerer = PunchAnswerer::new(listen, PunchConfig::default()).with_outlet(&outlet);
    let punched = outlet.punched;
    let shares = move |f: &FileName| {
        ShareName::try_from(f.clone())
            .is_ok_and(|n| dir.has_complete(&n) || dir.part_path(&n).exists())
    };
    let serve = move |stream: TcpStream| {
        if punched.try_send(stream).is_err() {
            log::warn!("punch: server busy or stopped; dropping a punched connection");
        }
    };
    tokio::select! {
        _ = reach::answer_notices(tracker.punch_notices(), answerer, shares, serve) => {}
        _ = shutdown.cancelled() => {}
    }
}

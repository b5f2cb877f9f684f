//! A node: the server bound to a port and serving a share directory, answering punch notices,
//! with what is needed to announce it. The daemon ([`daemon`]), the console and `peer share` /
//! `peer get` all run on one; [`lock`] lets the other commands on a directory find its daemon.

pub mod daemon;
pub mod lock;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracker_proto::{FileName, TrackerClient};

use crate::name::ShareName;
use crate::reach::{self, Outlet, PunchAnswerer, PunchConfig, Rendezvous};
use crate::serve::{self, ServerConfig, UploadStats};
use crate::share::ShareDir;

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
    /// node take it (`reach::Dialer::with_rendezvous`).
    pub rendezvous: Arc<Rendezvous>,
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
            outlet,
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
    outlet: Outlet,
    shutdown: CancellationToken,
) {
    let answerer = PunchAnswerer::new(listen, PunchConfig::default()).with_outlet(&outlet);
    let punched = outlet.punched;
    let shares = move |f: &FileName| {
        ShareName::try_from(f.clone())
            .is_ok_and(|n| dir.complete_path(&n).exists() || dir.part_path(&n).exists())
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

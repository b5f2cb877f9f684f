//! The serving subcommands: `peer share` and `peer daemon` keep a node running until a signal,
//! `peer exit` stops the daemon of a directory (or leaves without one). Also the pieces the
//! console and `peer get` share with them: starting a node and following its public address.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use peer_engine::manifest::Manifest;
use peer_engine::name::ShareName;
use peer_engine::node::lock::DirLock;
use peer_engine::node::{daemon, lock, Node, NodeConfig};
use peer_engine::publish;
use peer_engine::reach::Presence;
use peer_engine::share::ShareDir;
use tracker_proto::TrackerClient;

use super::target::tracker_url;
use super::{flush, print};
use crate::args::Global;
use crate::http::{self, HttpServer};
use crate::output::hashing;
use crate::output::table::{format_session, SessionStats};
use crate::signals::stop_signal;

/// Starts serving for one command (`peer get` without a daemon) and prints the startup line
/// tests and scripts wait for.
pub fn start_node(
    global: &Global,
    config: NodeConfig,
    dir: Arc<ShareDir>,
    tracker: Arc<TrackerClient>,
) -> anyhow::Result<Node> {
    let node = Node::start(dir, tracker, global.listen, global.announce, config)?;
    print_listening(&node);
    Ok(node)
}

/// Starts the server of `dir` (daemon, console, foreground share), which holds its lock, and
/// records it before the startup line: a `peer share` typed right after that line goes
/// through this process even while STUN and port mapping are still under way.
pub fn start_server(
    global: &Global,
    dir: Arc<ShareDir>,
    tracker: Arc<TrackerClient>,
    _serving: &DirLock,
) -> anyhow::Result<Node> {
    let node = Node::start(
        dir,
        tracker,
        global.listen,
        global.announce,
        global.node_config(),
    )?;
    lock::record(&node.dir, node.announce)
        .with_context(|| format!("cannot record this server in {}", node.dir.root().display()))?;
    print_listening(&node);
    Ok(node)
}

fn print_listening(node: &Node) {
    println!("peer listening on {}", node.listen);
    flush();
}

/// Starts what keeps `node` reachable (STUN refresh, router port mapping, TURN relay); its
/// `announce()` carries the announce address. Stop it after the node.
pub async fn start_presence(global: &Global, node: &Node) -> Presence {
    Presence::start(
        node.listen,
        node.announce,
        node.tracker.clone(),
        node.outlet.clone(),
        global.reach_config(),
    )
    .await
}

/// `peer share FILE [--chunk-size N]`: through the daemon of --dir if one runs, else serving in
/// the foreground until a signal.
pub async fn share(
    global: &Global,
    dir: Arc<ShareDir>,
    tracker: Arc<TrackerClient>,
    file: &Path,
    chunk_size: Option<u32>,
    heartbeat: u64,
) -> anyhow::Result<()> {
    if let Some(at) = lock::running_daemon(&dir) {
        let sharing = publish::share(&dir, &tracker, file, chunk_size, at);
        let (name, m) = hashing::while_hashing(file, sharing).await?;
        println!(
            "shared {name} ({} bytes, {}) through the daemon at {at}",
            m.size(),
            m.id()
        );
        println!(
            "{}",
            metainfo_lines(&tracker_url(global.tracker()), &dir, &name, &m)?
        );
        return Ok(());
    }
    // One server per directory: a second would announce the same files from another port
    // under the same key, and the two would keep moving each other's rows.
    let serving = lock::hold(&dir)?;
    let node = start_server(global, dir.clone(), tracker.clone(), &serving)?;
    // Reachability first: the PUNCH answerer runs from the node's start, and STUN, port
    // mapping and relay are under way by the time the tracker lists the file.
    let presence = start_presence(global, &node).await;
    let sharing = publish::share(&dir, &tracker, file, chunk_size, node.announce);
    let (name, m) = match hashing::while_hashing(file, sharing).await {
        Ok(r) => r,
        Err(e) => {
            node.stop().await;
            presence.stop().await;
            return Err(e.into());
        }
    };
    println!("shared {name} ({} bytes, {})", m.size(), m.id());
    let lines = match metainfo_lines(&tracker_url(global.tracker()), &dir, &name, &m) {
        Ok(l) => l,
        Err(e) => {
            node.stop().await;
            presence.stop().await;
            return Err(e);
        }
    };
    println!("{lines}");
    flush();
    serve_until_signal(node, Duration::from_secs(heartbeat.max(1)), presence).await
}

/// Writes the metainfo of a file just shared (`--dir/NAME.p2p`, naming this peer's tracker)
/// and returns the lines that tell the user where it is and its magnet link.
pub fn metainfo_lines(
    tracker_url: &str,
    dir: &ShareDir,
    name: &ShareName,
    manifest: &Manifest,
) -> anyhow::Result<String> {
    let metainfo = publish::metainfo(name, manifest, vec![vec![tracker_url.to_owned()]]);
    let path = publish::write_metainfo(dir, &metainfo)?;
    Ok(format!(
        "metainfo: {}\nmagnet: {}",
        path.display(),
        publish::magnet(&metainfo)
    ))
}

/// Where `peer daemon` serves its HTTP endpoint, if anywhere (`--http`, `--http-public`).
#[derive(Debug, Clone, Copy)]
pub struct HttpOption {
    pub addr: SocketAddr,
    pub public: bool,
}

/// `peer daemon`: serves --dir until a signal, and HTTP on --http if asked.
pub async fn daemon(
    global: &Global,
    dir: Arc<ShareDir>,
    tracker: Arc<TrackerClient>,
    heartbeat: u64,
    http: Option<HttpOption>,
) -> anyhow::Result<()> {
    // Refused before anything starts: a mistyped --http must not leave a daemon running.
    if let Some(h) = http {
        http::check_addr(h.addr, h.public)?;
    }
    let started = Instant::now();
    let serving = lock::hold(&dir)?;
    let node = start_server(global, dir, tracker, &serving)?;
    let presence = start_presence(global, &node).await;
    let server = match http {
        Some(h) => match HttpServer::start(h.addr, h.public, &node, &presence, started).await {
            Ok(s) => {
                println!("http listening on http://{}", s.addr);
                flush();
                Some(s)
            }
            Err(e) => {
                node.stop().await;
                presence.stop().await;
                return Err(e);
            }
        },
        None => None,
    };
    let result = serve_until_signal(node, Duration::from_secs(heartbeat.max(1)), presence).await;
    if let Some(s) = server {
        s.stop().await;
    }
    result
}

/// `peer exit`: stops the daemon of --dir, which leaves the swarm on its way out; without one,
/// tells the tracker this directory's peer leaves.
pub async fn exit(global: &Global, dir: &ShareDir, tracker: &TrackerClient) -> anyhow::Result<()> {
    match lock::running_daemon_process(dir) {
        Some((at, pid)) => {
            lock::stop_daemon(dir, pid).await?;
            print(&format!(
                "stopped the daemon announced at {at}; it left the swarm (flag 5)"
            ));
        }
        None => {
            let at = peer_engine::node::announce_addr(global.listen, global.announce);
            tracker
                .leave_reporting(None, at, Default::default())
                .await?;
            print("left the swarm (flag 5): the tracker no longer lists this directory's peer");
        }
    }
    Ok(())
}

/// Runs the daemon until SIGINT/SIGTERM, then prints the session's upload statistics.
async fn serve_until_signal(
    node: Node,
    heartbeat: Duration,
    presence: Presence,
) -> anyhow::Result<()> {
    let uploads = node.uploads().clone();
    let started = Instant::now();
    let result = daemon::run_until(node, heartbeat, presence.announce(), stop_signal()).await;
    presence.stop().await;
    result?;
    print(&format_session(&SessionStats {
        uploaded: uploads.bytes(),
        downloaded: 0,
        duration: started.elapsed(),
    }));
    Ok(())
}

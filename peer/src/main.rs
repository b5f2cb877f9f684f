//! `peer`: command-line entry point. Parses arguments and hands over to the library; every
//! behaviour lives in a library module so the console and tests drive the same code.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracker::client::ClientConfig;
use tracker::proto::PeerKey;
use tracker::TrackerClient;

use peer::address;
use peer::console::{
    self,
    commands::{self, Format},
};
use peer::daemon::{self, Node};
use peer::download::{self, Context, DownloadConfig, Progress};
use peer::punch::{Dialer, OwnNat, PunchConfig};
use peer::serve::{new_peer_id, ServerConfig};
use peer::share;
use peer::stats::{format_session, SessionStats};
use peer::store::ShareDir;

/// A peer of the p2p file-sharing system: shares files of a directory in SHA-256-verified
/// chunks over TCP and downloads files from every peer that has them.
///
/// How commands cooperate: a running `peer daemon` serves every file of its --dir (complete
/// files and the verified chunks of downloads in progress) and records its address in
/// DIR/.peer/daemon. `peer share` and `peer get` on the same --dir then announce with the
/// daemon's address and leave the serving to it. Without a daemon, `peer share` keeps serving
/// in the foreground (as the daemon does) and `peer get` serves while it downloads, then leaves
/// the swarm (flag 5).
///
/// Without a subcommand, `peer` opens the interactive console: a numbered menu of the tracker's
/// flags (1 download, 2 refresh, 3 progress, 4 share, 5 exit, 6 list, 7 query) with the daemon
/// running underneath and downloads in the background.
#[derive(Debug, Parser)]
#[command(name = "peer", version)]
struct Cli {
    /// Tracker address (UDP).
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        env = "PEER_TRACKER",
        default_value = "127.0.0.1:80"
    )]
    tracker: String,
    /// Share directory: the only files this peer serves, and where downloads go.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "PEER_DIR",
        default_value = "."
    )]
    dir: PathBuf,
    /// TCP address to serve chunks on (port 0 picks a free port).
    #[arg(
        long,
        global = true,
        value_name = "ADDR:PORT",
        default_value = "0.0.0.0:6881"
    )]
    listen: SocketAddr,
    /// Address announced to the tracker instead of the --listen one (e.g. a public address
    /// known without STUN). By default the tracker is told the listening port and uses the
    /// request's source IP when --listen has an unspecified IP.
    #[arg(long, global = true, value_name = "IP:PORT")]
    announce: Option<SocketAddr>,
    /// Upload limit per connection, in bytes per second (0: unlimited).
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 0)]
    upload_rate: u64,
    /// STUN server asked, over TCP from the serving port, for this peer's public address;
    /// repeat for several (servers that disagree reveal a symmetric NAT). `none` alone turns
    /// STUN off. Ignored with --announce. [default: the tracker's host, port 3478]
    #[arg(long = "stun", global = true, value_name = "HOST:PORT")]
    stun: Vec<String>,
    /// Seconds between two STUN queries; when the public address changes, every row at the
    /// tracker moves to the new one at once.
    #[arg(long, global = true, value_name = "SECS", default_value_t = address::DEFAULT_REFRESH.as_secs())]
    refresh: u64,
    /// Without a subcommand, `peer` opens the interactive console (a numbered menu of the
    /// tracker flags) with the daemon running underneath.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Share FILE: copy it into --dir, announce it (flag 4), and serve it (here in the
    /// foreground, or through the daemon running on --dir). Sharing a name the tracker lists
    /// with other content fails with HASH_MISMATCH.
    Share {
        /// The file to share; its base name is the name in the swarm.
        file: PathBuf,
        /// Seconds between heartbeats to the tracker while serving in the foreground.
        #[arg(long, default_value_t = daemon::DEFAULT_HEARTBEAT.as_secs(), value_name = "SECS")]
        heartbeat: u64,
    },
    /// Download NAME... into --dir from every peer that has them (several files at once), then
    /// leave. A download interrupted at any point resumes from its verified chunks.
    Get {
        /// File names as listed by the tracker.
        #[arg(required = true)]
        names: Vec<String>,
        /// Peers fetched from at once, per file.
        #[arg(long, default_value_t = DownloadConfig::default().max_peers)]
        max_peers: usize,
        /// Give up when no peer delivered anything for this many seconds.
        #[arg(long, default_value_t = DownloadConfig::default().give_up_after.as_secs(), value_name = "SECS")]
        give_up: u64,
        /// Drop a peer that leaves requests unanswered this many seconds; its chunks go to others.
        #[arg(long, default_value_t = DownloadConfig::default().stall_timeout.as_secs(), value_name = "SECS")]
        stall_timeout: u64,
    },
    /// Serve every file of --dir, announce each to the tracker and heartbeat it until SIGINT or
    /// SIGTERM, which leave the swarm (flag 5).
    Daemon {
        /// Seconds between heartbeats (also how often --dir is rescanned for new files).
        #[arg(long, default_value_t = daemon::DEFAULT_HEARTBEAT.as_secs(), value_name = "SECS")]
        heartbeat: u64,
    },
    /// List the files the tracker knows, with size and swarm counts (flag 6).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one file as the tracker knows it: size, chunks, id, seeders, leechers (flag 7).
    Query {
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show who holds which chunks of a file (flag 2).
    Peers {
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Leave the swarm (flag 5): stops the daemon serving --dir, which leaves on its way out,
    /// or, without one, removes this directory's peer from the tracker.
    Exit,
    /// Show the files of --dir from disk: done %, chunks held, state (complete, or stopped
    /// downloads with their resume record) and whether a daemon serves them.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The console shows only what deserves attention, above its prompt (RUST_LOG still rules).
    let default_level = if cli.command.is_none() {
        "warn"
    } else {
        "info"
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level));
    if cli.command.is_none() {
        logger.target(env_logger::Target::Pipe(Box::new(
            peer::console::output::LogWriter,
        )));
    }
    logger.init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cli = &cli;
    let dir = Arc::new(ShareDir::open(&cli.dir)?);
    let tracker = Arc::new(connect_tracker(&cli.tracker, &dir).await?);
    let Some(command) = &cli.command else {
        refuse_second_daemon(&dir)?;
        let node = start_node(cli, dir, tracker)?;
        let address = start_refresh(cli, &node).await;
        return console::open(console::Launch {
            node,
            address,
            heartbeat: daemon::DEFAULT_HEARTBEAT,
            stun: stun_servers(cli),
            download: DownloadConfig::default(),
        })
        .await;
    };
    match command {
        Command::List { json } => print(commands::list(&tracker, format(*json)).await?),
        Command::Query { name, json } => {
            print(commands::query(&tracker, name, format(*json)).await?)
        }
        Command::Peers { name, json } => {
            print(commands::refresh(&tracker, name, format(*json)).await?)
        }
        Command::Status { json } => print(commands::status(
            &dir,
            daemon::running_daemon(&dir),
            format(*json),
        )),
        Command::Exit => {
            match daemon::running_daemon_process(&dir) {
                Some((at, pid)) => {
                    stop_daemon(pid).await?;
                    print(format!(
                        "stopped the daemon announced at {at}; it left the swarm (flag 5)"
                    ))
                }
                None => {
                    tracker
                        .exit(daemon::announce_addr(cli.listen, cli.announce))
                        .await?;
                    print("left the swarm (flag 5): the tracker no longer lists this directory's peer".to_owned())
                }
            }
        }
        Command::Share { file, heartbeat } => {
            if let Some(at) = daemon::running_daemon(&dir) {
                let (name, m) = share::share(&dir, &tracker, file, at).await?;
                println!(
                    "shared {name} ({} bytes, {}) through the daemon at {at}",
                    m.size(),
                    m.id()
                );
                return Ok(());
            }
            let node = start_node(cli, dir.clone(), tracker.clone())?;
            let (name, m) = match share::share(&dir, &tracker, file, node.announce).await {
                Ok(r) => r,
                Err(e) => {
                    node.stop().await;
                    return Err(e.into());
                }
            };
            println!("shared {name} ({} bytes, {})", m.size(), m.id());
            flush();
            let address = start_refresh(cli, &node).await;
            serve_until_signal(node, Duration::from_secs((*heartbeat).max(1)), address).await
        }
        Command::Daemon { heartbeat } => {
            refuse_second_daemon(&dir)?;
            let node = start_node(cli, dir, tracker)?;
            let address = start_refresh(cli, &node).await;
            serve_until_signal(node, Duration::from_secs((*heartbeat).max(1)), address).await
        }
        Command::Get {
            names,
            max_peers,
            give_up,
            stall_timeout,
        } => {
            let config = DownloadConfig {
                max_peers: (*max_peers).max(1),
                give_up_after: Duration::from_secs((*give_up).max(1)),
                stall_timeout: Duration::from_secs((*stall_timeout).max(1)),
                ..DownloadConfig::default()
            };
            let (node, announce) = match daemon::running_daemon(&dir) {
                Some(at) => (None, watch::channel(at).1),
                None => {
                    let node = start_node(cli, dir.clone(), tracker.clone())?;
                    let announce = start_refresh(cli, &node).await;
                    (Some(node), announce)
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
                        .with_stun(stun_servers(cli)),
                )
            });
            let ctx = Context {
                dir,
                tracker,
                announce,
                config,
                peer_id: new_peer_id(),
                dialer,
            };
            // SIGINT/SIGTERM end the downloads (verified chunks stay recorded) and still leave
            // the swarm below, instead of leaving rows behind until the tracker's TTL.
            let stop = daemon::stop_signal()?;
            let result = tokio::select! {
                result = get_all(&ctx, names) => result,
                () = stop => Err(anyhow::anyhow!(
                    "interrupted: verified chunks are kept; the same command resumes the download"
                )),
            };
            if let Some(node) = node {
                node.stop().await;
            }
            result
        }
    }
}

fn flush() {
    let _ = std::io::stdout().flush();
}

fn print(text: String) -> anyhow::Result<()> {
    println!("{text}");
    flush();
    Ok(())
}

fn format(json: bool) -> Format {
    if json {
        Format::Json
    } else {
        Format::Text
    }
}

/// The STUN servers to ask: --stun as given, the tracker's host on port 3478 by default,
/// none with only `--stun none` or a fixed --announce address. `none` beside real servers is
/// dropped, so a script's `--stun none` default can be overridden by adding a server.
fn stun_servers(cli: &Cli) -> Vec<String> {
    let given: Vec<String> = cli.stun.iter().filter(|s| *s != "none").cloned().collect();
    if cli.announce.is_some() || (given.is_empty() && !cli.stun.is_empty()) {
        return Vec::new();
    }
    if !given.is_empty() {
        return given;
    }
    let host = cli
        .tracker
        .rsplit_once(':')
        .map_or(cli.tracker.as_str(), |(host, _)| host);
    vec![format!("{host}:{}", address::DEFAULT_STUN_PORT)]
}

/// Starts STUN refresh for `node`'s serving port; the receiver carries the announce address.
async fn start_refresh(cli: &Cli, node: &Node) -> watch::Receiver<SocketAddr> {
    address::start_refresh(
        node.listen,
        node.announce,
        stun_servers(cli),
        Duration::from_secs(cli.refresh.max(1)),
    )
    .await
}

/// One daemon per directory: a second would announce the same files from another port under
/// the same key, and the two would keep moving each other's rows.
fn refuse_second_daemon(dir: &ShareDir) -> anyhow::Result<()> {
    if let Some((at, pid)) = daemon::running_daemon_process(dir) {
        bail!(
            "a peer (pid {pid}, announced at {at}) already serves {}; stop it with `peer exit` or choose another --dir",
            dir.root().display()
        );
    }
    Ok(())
}

/// Runs the daemon until SIGINT/SIGTERM, then prints the session's upload statistics.
async fn serve_until_signal(
    node: Node,
    heartbeat: Duration,
    address: watch::Receiver<SocketAddr>,
) -> anyhow::Result<()> {
    let uploads = node.stats.clone();
    let started = std::time::Instant::now();
    daemon::run_until(node, heartbeat, address, daemon::stop_signal()?).await?;
    print(format_session(&SessionStats {
        uploaded: uploads.bytes(),
        downloaded: 0,
        duration: started.elapsed(),
    }))
}

/// Asks the daemon `pid` to stop (SIGTERM) and waits until it is gone, which is after it sent
/// flag 5.
async fn stop_daemon(pid: u32) -> anyhow::Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid_n = i32::try_from(pid).context("daemon pid out of range")?;
    kill(Pid::from_raw(pid_n), Signal::SIGTERM)
        .with_context(|| format!("cannot signal the daemon (pid {pid})"))?;
    // Gone, or a zombie its parent has not reaped yet: either way it has finished leaving.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    };
    for _ in 0..300 {
        if !alive() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the daemon (pid {pid}) did not stop within 30 s")
}

/// Starts serving and prints the startup line tests and scripts wait for.
fn start_node(cli: &Cli, dir: Arc<ShareDir>, tracker: Arc<TrackerClient>) -> anyhow::Result<Node> {
    let config = ServerConfig {
        upload_rate: Some(cli.upload_rate).filter(|r| *r > 0),
        ..ServerConfig::default()
    };
    let node = Node::start(dir, tracker, cli.listen, cli.announce, config)?;
    println!("peer listening on {}", node.listen);
    flush();
    Ok(node)
}

/// Resolves the tracker and binds a client with this directory's persistent key, so every
/// command on the directory is the same peer to the tracker.
async fn connect_tracker(spec: &str, dir: &ShareDir) -> anyhow::Result<TrackerClient> {
    let addr = tokio::net::lookup_host(spec)
        .await
        .with_context(|| format!("cannot resolve tracker address {spec:?} (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("tracker address {spec:?} resolves to nothing"))?;
    let key_path = dir.state_dir().join("key");
    let key = match std::fs::read_to_string(&key_path).ok().and_then(|t| {
        let mut k = [0u8; 16];
        hex::decode_to_slice(t.trim(), &mut k)
            .ok()
            .map(|()| PeerKey(k))
    }) {
        Some(k) => k,
        None => {
            let k = PeerKey::random();
            std::fs::write(&key_path, hex::encode(k.0))
                .with_context(|| format!("writing {}", key_path.display()))?;
            k
        }
    };
    let config = ClientConfig {
        key,
        ..ClientConfig::default()
    };
    Ok(TrackerClient::bind(addr, config).await?)
}

/// Downloads every name at once; prints one summary line per file.
async fn get_all(ctx: &Context, names: &[String]) -> anyhow::Result<()> {
    let jobs = names.iter().map(|name| async move {
        let (progress, _) = watch::channel(Progress::default());
        (name, download::download(ctx, name, &progress).await)
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
        bail!("{failed} of {} downloads failed", names.len());
    }
    Ok(())
}

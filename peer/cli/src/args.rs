//! The command line of `peer`: global options every subcommand shares, and the subcommands.
//! `--help` is written from the doc comments here, so they speak to users.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use peer_engine::chunking;
use peer_engine::download::DownloadConfig;
use peer_engine::node::{daemon, NodeConfig};
use peer_engine::reach::{address, Credentials, ReachConfig, TurnChoice};
use peer_engine::swarm::SwarmConfig;
use tracker_proto::client::TrackerSpec;

use crate::commands::target::tracker_address;

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
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// Without a subcommand, `peer` opens the interactive console (a numbered menu of the
    /// tracker flags) with the daemon running underneath.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of every subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// Tracker (UDP): IP:PORT, HOST:PORT (every A/AAAA record of HOST, tried in order), or a
    /// bare DOMAIN, whose DNS SRV records _p2p-tracker._udp.DOMAIN list the trackers (lowest
    /// priority first, by weight within one). Repeat it, or separate with commas, for more
    /// trackers of the same tier: this peer announces to every one of them that answers, and
    /// asks the first that answers. With neither this nor --tracker-tier, `peer get FILE.p2p`
    /// and `peer get MAGNET` use the trackers the metainfo or link names.
    /// [default: 127.0.0.1:80]
    #[arg(
        long,
        global = true,
        value_name = "TRACKER",
        env = "PEER_TRACKER",
        value_delimiter = ','
    )]
    pub tracker: Vec<String>,
    /// A fallback tier of trackers (comma-separated, same forms as --tracker), used only when
    /// no tracker of the tiers before it answers. Repeat for more tiers, in order.
    #[arg(long, global = true, value_name = "TRACKER,...")]
    pub tracker_tier: Vec<String>,
    /// DNS server asked for tracker names and SRV records, instead of the system's resolver
    /// (/etc/resolv.conf).
    #[arg(long, global = true, value_name = "IP:PORT")]
    pub dns_server: Option<SocketAddr>,
    /// Share directory: the only files this peer serves, and where downloads go.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "PEER_DIR",
        default_value = "."
    )]
    pub dir: PathBuf,
    /// TCP address to serve chunks on (port 0 picks a free port).
    #[arg(
        long,
        global = true,
        value_name = "ADDR:PORT",
        default_value = "0.0.0.0:6881"
    )]
    pub listen: SocketAddr,
    /// Address announced to the tracker instead of the --listen one (e.g. a public address
    /// known without STUN). By default the tracker is told the listening port and uses the
    /// request's source IP when --listen has an unspecified IP.
    #[arg(long, global = true, value_name = "IP:PORT")]
    pub announce: Option<SocketAddr>,
    /// Upload limit per connection, in bytes per second (0: unlimited).
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 0)]
    pub upload_rate: u64,
    /// Upload limit of the whole peer (every file, every connection), in bytes per second
    /// (0: unlimited).
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 0)]
    pub upload_limit: u64,
    /// Download limit of the whole peer, in bytes per second (0: unlimited).
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 0)]
    pub download_limit: u64,
    /// Peers per file we upload to at once, chosen every 10 s by what they gave us (and, when
    /// seeding, how fast they take); one more slot rotates every 30 s so newcomers can start.
    /// 0 uploads to nobody.
    #[arg(long, global = true, value_name = "N", default_value_t = SwarmConfig::default().upload_slots)]
    pub upload_slots: usize,
    /// Connections per file, the ones we open and the ones peers open to us together.
    #[arg(long, global = true, value_name = "N", default_value_t = SwarmConfig::default().max_peers)]
    pub max_peers: usize,
    /// STUN server asked, over TCP from the serving port, for this peer's public address;
    /// repeat for several (servers that disagree reveal a symmetric NAT). `none` alone turns
    /// STUN off. Ignored with --announce. [default: port 3478 of each tracker of the first
    /// tier (the first address each resolves to)]
    #[arg(long = "stun", global = true, value_name = "HOST:PORT")]
    pub stun: Vec<String>,
    /// Seconds between two STUN queries; when the public address changes, every row at the
    /// tracker moves to the new one at once.
    #[arg(long, global = true, value_name = "SECS", default_value_t = address::DEFAULT_REFRESH.as_secs())]
    pub refresh: u64,
    /// TURN server relaying for this peer when nothing else lets peers in (a symmetric NAT,
    /// or punches failing): it holds a TCP allocation there and announces the relayed
    /// address. Repeat for fallbacks; `none` turns relaying off. [default: the server the
    /// tracker hands out, with its short-lived credentials]
    #[arg(long = "turn", global = true, value_name = "HOST:PORT")]
    pub turn: Vec<String>,
    /// Username for the --turn servers (long-term credentials).
    #[arg(long, global = true, value_name = "USER", requires = "turn_pass")]
    pub turn_user: Option<String>,
    /// Password for the --turn servers.
    #[arg(
        long,
        global = true,
        value_name = "PASS",
        env = "PEER_TURN_PASS",
        hide_env_values = true,
        requires = "turn_user"
    )]
    pub turn_pass: Option<String>,
    /// Do not ask the router to forward the serving port (UPnP IGD, NAT-PMP, PCP; on by
    /// default, renewed while the peer runs, removed when it stops).
    #[arg(long, global = true)]
    pub no_port_mapping: bool,
    /// The first address of each tracker of the first tier, once resolved: where the STUN
    /// servers are when --stun is not given.
    #[arg(skip)]
    pub tracker_stun: Vec<IpAddr>,
}

/// `--chunk-size`: a number the chunking rules accept.
fn parse_chunk_size(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    chunking::check_chosen(n).map_err(|e| e.to_string())
}

/// The tracker asked when neither --tracker nor a metainfo names one.
pub const DEFAULT_TRACKER: &str = "127.0.0.1:80";

impl Global {
    /// The tiers --tracker and --tracker-tier give, `None` when neither is given. A tracker
    /// may be written `p2p://...` as in metainfo files.
    pub fn tracker_tiers(&self) -> anyhow::Result<Option<Vec<Vec<TrackerSpec>>>> {
        let first = self.tracker.iter().map(String::as_str);
        let tiers: Vec<Vec<&str>> = std::iter::once(first.collect())
            .chain(self.tracker_tier.iter().map(|t| t.split(',').collect()))
            .collect();
        let tiers = tiers
            .into_iter()
            .map(|tier| {
                tier.into_iter()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| tracker_address(t).parse::<TrackerSpec>())
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tiers: Vec<Vec<TrackerSpec>> = tiers.into_iter().filter(|t| !t.is_empty()).collect();
        Ok(Some(tiers).filter(|t| !t.is_empty()))
    }

    /// The node (server and swarms) these options ask for.
    pub fn node_config(&self) -> NodeConfig {
        let defaults = NodeConfig::default();
        NodeConfig {
            swarm: SwarmConfig {
                max_peers: self.max_peers.max(1),
                upload_slots: self.upload_slots,
                upload_rate: Some(self.upload_rate).filter(|r| *r > 0),
                ..defaults.swarm
            },
            upload_limit: Some(self.upload_limit).filter(|r| *r > 0),
            download_limit: Some(self.download_limit).filter(|r| *r > 0),
            ..defaults
        }
    }

    /// The STUN servers to ask: --stun as given, port 3478 of the trackers by default,
    /// none with only `--stun none` or a fixed --announce address. `none` beside real servers
    /// is dropped, so a script's `--stun none` default can be overridden by adding a server.
    pub fn stun_servers(&self) -> Vec<String> {
        let given: Vec<String> = self.stun.iter().filter(|s| *s != "none").cloned().collect();
        if self.announce.is_some() || (given.is_empty() && !self.stun.is_empty()) {
            return Vec::new();
        }
        if !given.is_empty() {
            return given;
        }
        self.tracker_stun
            .iter()
            .map(|ip| SocketAddr::new(*ip, address::DEFAULT_STUN_PORT).to_string())
            .collect()
    }
}

impl Global {
    /// How this peer makes itself reachable: STUN, router port mapping and TURN as the flags
    /// say.
    pub fn reach_config(&self) -> ReachConfig {
        let turn = if self.turn.iter().any(|t| t == "none") {
            TurnChoice::Disabled
        } else if self.turn.is_empty() {
            TurnChoice::FromTracker
        } else {
            TurnChoice::Servers {
                servers: self.turn.clone(),
                credentials: self
                    .turn_user
                    .as_ref()
                    .zip(self.turn_pass.as_ref())
                    .map(|(u, p)| Credentials::new(u, p)),
            }
        };
        ReachConfig {
            stun: self.stun_servers(),
            refresh: Duration::from_secs(self.refresh.max(1)),
            turn,
            port_mapping: !self.no_port_mapping,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Share FILE or a whole DIR where it lies (it is not copied): hash it, announce it (flag
    /// 4), record it in --dir/.peer so a daemon on --dir serves it after a restart too, write
    /// its metainfo file (--dir/NAME.p2p, printed with its magnet link), and serve it (here in
    /// the foreground, or through the daemon running on --dir). A directory is one swarm of
    /// chunks laid over its files in path order; one holding links or special files is
    /// refused. A share that changes on disk (any of its files) is withdrawn, never served
    /// changed; share it again to publish the new content. Sharing a name the tracker lists
    /// with other content fails with HASH_MISMATCH.
    Share {
        /// The file or directory to share (not a link or a device); its base name is the name
        /// in the swarm.
        #[arg(value_name = "FILE|DIR")]
        file: PathBuf,
        /// Chunk size in bytes: a power of two from 1024 to 1048576. [default: 2048, doubled
        /// for shares over 8 GiB until the share has at most 4194304 chunks]
        #[arg(long, value_name = "BYTES", value_parser = parse_chunk_size)]
        chunk_size: Option<u32>,
        /// Seconds between heartbeats to the tracker while serving in the foreground.
        #[arg(long, default_value_t = daemon::DEFAULT_HEARTBEAT.as_secs(), value_name = "SECS")]
        heartbeat: u64,
    },
    /// Download files into --dir from every peer that has them (several at once), then leave.
    /// Each is named by the name the tracker lists, a metainfo file (NAME.p2p, as `peer share`
    /// writes) or a magnet link (magnet:?xt=urn:p2p:sha256:...; quote it in a shell): with
    /// the last two, what the tracker lists and what peers send must be that content. A
    /// download interrupted at any point resumes from its verified chunks.
    Get {
        /// NAME, FILE.p2p or MAGNET, one or more.
        #[arg(required = true, value_name = "NAME|FILE.p2p|MAGNET")]
        names: Vec<String>,
        /// Give up when no peer delivered anything for this many seconds.
        #[arg(long, default_value_t = DownloadConfig::default().give_up_after.as_secs(), value_name = "SECS")]
        give_up: u64,
        /// Drop a peer that leaves requests unanswered this many seconds; its chunks go to others.
        #[arg(long, default_value_t = SwarmConfig::default().stall_timeout.as_secs(), value_name = "SECS")]
        stall_timeout: u64,
        /// Print one JSON object per file (what was fetched from which peer, what was
        /// uploaded meanwhile) instead of a summary line.
        #[arg(long)]
        json: bool,
        /// Read the whole file back and verify every chunk again before it takes its name
        /// (every chunk is already verified before it is written; this catches a disk that
        /// returns other bytes than it was given, at the cost of a second hash pass).
        #[arg(long)]
        recheck: bool,
    },
    /// Serve every file of --dir, announce each to the tracker and heartbeat it until SIGINT or
    /// SIGTERM, which leave the swarm (flag 5).
    Daemon {
        /// Seconds between heartbeats (also how often --dir is rescanned for new files).
        #[arg(long, default_value_t = daemon::DEFAULT_HEARTBEAT.as_secs(), value_name = "SECS")]
        heartbeat: u64,
        /// Also serve HTTP on ADDR:PORT: Prometheus metrics at /metrics, JSON status at
        /// /api/status and /api/files (shapes in protocol.txt §8). Off by default; only a
        /// loopback address unless --http-public.
        #[arg(long, value_name = "ADDR:PORT")]
        http: Option<SocketAddr>,
        /// Allow --http on an address other machines can reach (the API lists every file
        /// this peer shares and its peers; put it behind a firewall or proxy of your own).
        #[arg(long, requires = "http")]
        http_public: bool,
    },
    /// Print a metainfo file the way transmission-show prints a torrent: name, content id,
    /// magnet link, pieces, trackers, files. A magnet link shows what it says (name, id,
    /// trackers); the rest comes from peers when it is downloaded.
    Show {
        /// The metainfo file (NAME.p2p) or a magnet link.
        #[arg(value_name = "FILE.p2p|MAGNET")]
        file: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
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

//! `tracker`: the UDP tracker of the p2p file-sharing system (protocol.txt §1).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::net::TcpListener;

use tracker::store::{redacted, Limits, MemoryStore, RedisConfig, RedisStore, SwarmStore};
use tracker::{
    bind_sockets, serve, RelayConfig, ServerConfig, Tracker, DEFAULT_CREDENTIAL_TTL,
    MAX_INTERVAL_SECS, MIN_RESPONSE_BYTES,
};
use tracker_proto::AnnounceIntervals;

/// UDP tracker: keeps which peers hold which chunks of which file and answers the text protocol
/// `REQUEST <FLAG> ...` (flags 1-10, see protocol.txt §1). Try it by hand with
/// `printf 'REQUEST 6' | nc -u -w1 127.0.0.1 <port>`. Logs go to stderr (RUST_LOG=debug shows
/// every refused request).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// UDP address to listen on. Port 80 (the seed protocol's) needs root or
    /// CAP_NET_BIND_SERVICE; use --port to pick another. Port 0 picks a free port.
    #[arg(long, default_value = "0.0.0.0:80", value_name = "ADDR:PORT")]
    bind: SocketAddr,

    /// Listen on this port instead of the one in --bind.
    #[arg(long, value_name = "N")]
    port: Option<u16>,

    /// Seconds after which a silent peer's rows expire (fractions allowed). Peers send a
    /// heartbeat (flag 9) every 30 s by default, so keep this well above that.
    #[arg(long, default_value_t = 90.0, value_name = "SECONDS")]
    ttl: f64,

    /// Accept announced addresses whose IP differs from the datagram's source IP. Only for LAN
    /// demos: it lets anyone create or remove rows of any address.
    #[arg(long)]
    trust_ip_field: bool,

    /// Largest answer datagram in bytes; longer peer lists and catalogues are paged with
    /// offset=. The default fits an Ethernet MTU without fragmentation. Range 768-65507.
    #[arg(long, default_value_t = 1400, value_name = "BYTES")]
    max_response_bytes: usize,

    /// Require anti-amplification cookies from every source. By default loopback, RFC 1918 and
    /// link-local sources are exempt (protocol.txt §1.6).
    #[arg(long)]
    require_cookies: bool,

    /// Most files tracked at once.
    #[arg(long, default_value_t = Limits::default().max_files, value_name = "N")]
    max_files: usize,

    /// Most peers (serving addresses) across all swarms.
    #[arg(long, default_value_t = Limits::default().max_peers, value_name = "N")]
    max_peers: usize,

    /// Most peers in one file's swarm.
    #[arg(long, default_value_t = Limits::default().max_peers_per_file, value_name = "N")]
    max_peers_per_file: usize,

    /// Most rows (one peer in one file's swarm) across all files.
    #[arg(long, default_value_t = Limits::default().max_rows, value_name = "N")]
    max_rows: usize,

    /// Memory for partial peers' chunk bitfields, in MiB (seeders cost none).
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    max_bitfield_mib: usize,

    /// The share of each cap above that one IP (an IPv6 /64) may hold, in percent: files it
    /// created, peers (serving addresses), peers in one swarm, rows, bitfield memory. Every
    /// source counts, loopback and private ones too, so one host cannot fill a cap for everyone.
    /// With the defaults one host may share 10,000 files and run 10,000 peers, 1,000 of them in
    /// one swarm.
    #[arg(long, default_value_t = Limits::default().ip_share_percent, value_name = "PERCENT")]
    ip_share: u32,

    /// PUNCH relays (flag 8) allowed per second per source IP (an IPv6 /64), and as many per
    /// target peer.
    #[arg(long, default_value_t = 10, value_name = "N")]
    punch_rate: u32,

    /// How often downloaders should refresh their peer list, in seconds (`interval=` in
    /// RESPONSE 1/2, BitTorrent's announce interval). At most 86400.
    #[arg(long, default_value_t = AnnounceIntervals::DEFAULT.interval, value_name = "SECS")]
    announce_interval: u32,

    /// The least time a downloader leaves between two refreshes, even when it runs out of
    /// peers, in seconds (`min_interval=`). At least 1, at most --announce-interval.
    #[arg(long, default_value_t = AnnounceIntervals::DEFAULT.min_interval, value_name = "SECS")]
    min_announce_interval: u32,

    /// Also answer STUN Binding requests on the tracker's UDP port.
    #[arg(long)]
    stun: bool,

    /// Also serve STUN Binding over TCP on this port (same IP as --bind; 0 picks a free port).
    #[arg(long, value_name = "PORT")]
    stun_tcp: Option<u16>,

    /// Keep the swarms in FILE across restarts: read at start, written right after, every
    /// --state-interval seconds and on SIGTERM or SIGINT (the final save loses nothing). A
    /// missing FILE starts empty; a damaged one is an error (move it away to start empty).
    /// Holds peers' keys: it is created readable by its owner only.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,

    /// Where the swarms live: `memory` (this process; see --state) or
    /// `redis://[USER:PASSWORD@]HOST:PORT[/DB]` (Redis 7+ or Valkey). Trackers on one Redis
    /// serve the same swarms and share their cookie secret, and a tracker restart loses
    /// nothing; give them the same limits (--max-*, --ip-share, --ttl). Redis keeps the state:
    /// make it persistent (appendonly yes) to survive a Redis restart.
    #[arg(
        long,
        default_value = "memory",
        value_name = "memory|redis://HOST:PORT[/DB]"
    )]
    store: StoreSpec,

    /// With --store redis://: the longest wait for connecting to Redis or for its answers to
    /// one receive batch; past it, the batch is answered 1204 UNAVAILABLE.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    redis_timeout_ms: u64,

    /// Seconds between two saves of --state: what a crash (kill -9, power loss) may lose.
    #[arg(long, default_value_t = 60, value_name = "SECS", requires = "state")]
    state_interval: u64,

    /// Receive threads, each with its own SO_REUSEPORT socket on the UDP port (default: one
    /// per CPU core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,

    /// TURN server (coturn) handed to peers nobody can reach directly (flag 10), with
    /// short-lived credentials minted from --turn-secret; peers then relay through it with
    /// default settings. Run coturn with `--use-auth-secret --static-auth-secret=SECRET` and
    /// TCP relaying on (its default).
    #[arg(long, value_name = "HOST:PORT", requires = "turn_secret")]
    turn: Option<String>,

    /// The coturn --static-auth-secret the credentials are minted from (TURN REST API).
    #[arg(
        long,
        value_name = "SECRET",
        env = "TRACKER_TURN_SECRET",
        hide_env_values = true
    )]
    turn_secret: Option<String>,

    /// Seconds the minted TURN credentials stay valid.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_CREDENTIAL_TTL.as_secs())]
    turn_ttl: u64,

    /// Another IP the TURN server relays from (coturn --relay-ip or --external-ip unlike its
    /// listening IP); announcements may carry addresses of it. Repeatable.
    #[arg(long, value_name = "IP", requires = "turn")]
    turn_relay_ip: Vec<IpAddr>,

    /// Also serve the HTTP/JSON API (seed 000's /api/peers/register, /api/files ...; the
    /// OpenAPI document at /api/openapi.json) on this TCP address, over the same swarms and
    /// trust rules as UDP. Off by default; port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<SocketAddr>,
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let args = Args::parse();
    if !(args.ttl.is_finite() && args.ttl > 0.0 && args.ttl < 1e9) {
        bail!(
            "--ttl must be a positive number of seconds, got {}",
            args.ttl
        );
    }
    if !(MIN_RESPONSE_BYTES..=65_507).contains(&args.max_response_bytes) {
        bail!("--max-response-bytes must be between {MIN_RESPONSE_BYTES} and 65507");
    }
    if !(1..=100).contains(&args.ip_share) {
        bail!(
            "--ip-share must be a percentage between 1 and 100, got {}",
            args.ip_share
        );
    }
    if !(1..=MAX_INTERVAL_SECS).contains(&args.announce_interval) {
        bail!("--announce-interval must be between 1 and {MAX_INTERVAL_SECS} seconds");
    }
    if !(1..=args.announce_interval).contains(&args.min_announce_interval) {
        bail!(
            "--min-announce-interval must be between 1 and --announce-interval ({} s), got {}",
            args.announce_interval,
            args.min_announce_interval
        );
    }
    if !(60..=30 * 86_400).contains(&args.turn_ttl) {
        bail!(
            "--turn-ttl must be between 60 s and 30 days, got {}",
            args.turn_ttl
        );
    }
    if !(1..=86_400).contains(&args.state_interval) {
        bail!(
            "--state-interval must be between 1 s and a day, got {}",
            args.state_interval
        );
    }
    if args.turn_secret.is_some() && args.turn.is_none() {
        bail!("--turn-secret needs --turn HOST:PORT (the TURN server the secret belongs to)");
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if !(1..=256).contains(&workers) {
        bail!("--workers must be between 1 and 256, got {workers}");
    }
    // The UDP receive loops run on their own threads; the runtime only expires peers and
    // serves STUN over TCP.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args, workers))
}

/// Where the swarms live, parsed from `--store`.
#[derive(Debug, Clone)]
enum StoreSpec {
    Memory,
    Redis(String),
}

impl std::str::FromStr for StoreSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            return Ok(StoreSpec::Memory);
        }
        let scheme = s.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("redis" | "redis+unix" | "unix") => {
                redis::Client::open(s)
                    .map_err(|e| format!("bad Redis URL {:?}: {e}", redacted(s)))?;
                Ok(StoreSpec::Redis(s.to_string()))
            }
            _ => Err(format!(
                "expected `memory` or `redis://HOST:PORT[/DB]`, got {:?}",
                redacted(s)
            )),
        }
    }
}

async fn run(args: Args, workers: usize) -> Result<()> {
    let mut bind = args.bind;
    if let Some(port) = args.port {
        bind.set_port(port);
    }
    if matches!(args.store, StoreSpec::Redis(_)) && args.state.is_some() {
        bail!(
            "--state keeps the in-memory store; with --store redis:// the swarms are in Redis \
             already (make Redis itself persistent: appendonly yes)"
        );
    }
    if !(1..=60_000).contains(&args.redis_timeout_ms) {
        bail!(
            "--redis-timeout-ms must be between 1 and 60000, got {}",
            args.redis_timeout_ms
        );
    }
    let sockets = bind_sockets(bind, workers).map_err(|e| bind_error(e, bind, "UDP"))?;
    let local = sockets[0]
        .local_addr()
        .context("cannot read the bound UDP address")?;
    let relay = match &args.turn {
        Some(spec) => Some(relay_config(&args, spec).await?),
        None => None,
    };
    let config = ServerConfig {
        ttl: Duration::from_secs_f64(args.ttl),
        trust_ip_field: args.trust_ip_field,
        require_cookies: args.require_cookies,
        max_response_bytes: args.max_response_bytes,
        stun: args.stun,
        limits: Limits {
            max_files: args.max_files,
            max_peers: args.max_peers,
            max_peers_per_file: args.max_peers_per_file,
            max_rows: args.max_rows,
            max_bitfield_bytes: args.max_bitfield_mib.saturating_mul(1 << 20),
            ip_share_percent: args.ip_share,
        },
        punch_rate: args.punch_rate,
        intervals: AnnounceIntervals {
            interval: args.announce_interval,
            min_interval: args.min_announce_interval,
        },
        relay,
    };
    let stun_tcp = match args.stun_tcp {
        Some(port) => {
            let addr = SocketAddr::new(bind.ip(), port);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| bind_error(e, addr, "TCP"))?;
            Some(listener)
        }
        None => None,
    };
    let http = match args.http {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| bind_error(e, addr, "TCP (--http)"))?,
        ),
        None => None,
    };
    let listeners = Listeners {
        local,
        stun_tcp,
        http,
    };
    let url = match &args.store {
        StoreSpec::Memory => None,
        StoreSpec::Redis(url) => Some(url.clone()),
    };
    let Some(url) = url else {
        return run_in_memory(args, config, sockets, listeners, workers).await;
    };
    // Reached before the startup line: a tracker without its store never says it listens.
    let redis = RedisConfig {
        url: url.clone(),
        timeout: Duration::from_millis(args.redis_timeout_ms),
        page_bytes: config.max_response_bytes,
    };
    let (ttl, limits) = (config.ttl, config.limits);
    let store = tokio::task::spawn_blocking(move || RedisStore::connect(&redis, ttl, limits))
        .await
        .context("connecting to Redis stopped")?
        .with_context(|| {
            format!(
                "cannot use --store {} (is redis-server running there?)",
                redacted(&url)
            )
        })?;
    listeners.announce(workers, &config, &format!("Redis at {}", redacted(&url)))?;
    let tracker = Arc::new(Tracker::with_store(config, store));
    listeners.spawn(&tracker);
    serve(sockets, tracker)
        .await
        .context("tracker UDP service failed")
}

/// What the tracker listens on besides its UDP sockets' address: STUN over TCP and the HTTP
/// front end, when asked for.
struct Listeners {
    local: SocketAddr,
    stun_tcp: Option<TcpListener>,
    http: Option<TcpListener>,
}

impl Listeners {
    /// Prints the startup lines (what scripts wait for) and logs the setup.
    fn announce(&self, workers: usize, config: &ServerConfig, store: &str) -> Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "tracker listening on {}", self.local)?;
        if let Some(listener) = &self.stun_tcp {
            writeln!(out, "stun listening on tcp {}", listener.local_addr()?)?;
        }
        if let Some(listener) = &self.http {
            writeln!(out, "http listening on {}", listener.local_addr()?)?;
        }
        out.flush()?;
        drop(out);
        log::info!(
            "{workers} workers, swarms in {store}, TTL {:?}, answers up to {} bytes",
            config.ttl,
            config.max_response_bytes
        );
        Ok(())
    }

    /// Serves STUN over TCP and HTTP beside the UDP tracker. Neither is the tracker's main job:
    /// when one gives up (STUN: a minute of failing accepts), the tracker keeps serving UDP.
    fn spawn<S: SwarmStore + 'static>(self, tracker: &Arc<Tracker<S>>) {
        if let Some(listener) = self.stun_tcp {
            tokio::spawn(async move {
                if let Err(e) = stun::responder::serve_tcp(listener).await {
                    log::error!("STUN over TCP stopped; the tracker keeps serving UDP: {e}");
                }
            });
        }
        if let Some(listener) = self.http {
            let tracker = Arc::clone(tracker);
            tokio::spawn(async move {
                if let Err(e) = tracker::http::serve(listener, tracker, Default::default()).await {
                    log::error!("the HTTP front end stopped; the tracker keeps serving UDP: {e}");
                }
            });
        }
    }
}

/// The default store, with `--state` kept if asked for.
async fn run_in_memory(
    args: Args,
    config: ServerConfig,
    sockets: Vec<std::net::UdpSocket>,
    listeners: Listeners,
    workers: usize,
) -> Result<()> {
    // Loaded before the startup line: a tracker that cannot have its state never says it
    // listens.
    let store = MemoryStore::new(config.ttl, config.limits);
    let state = match &args.state {
        Some(path) => Some(Arc::new(StateFile::open(path.clone(), &store).await?)),
        None => None,
    };
    listeners.announce(workers, &config, "memory")?;
    let tracker = Arc::new(Tracker::with_store(config, store));
    if let Some(state) = &state {
        // Written once now: a path that cannot be written fails at start, not at shutdown.
        state.save(&tracker).await?;
        let (state, tracker) = (Arc::clone(state), Arc::clone(&tracker));
        let every = Duration::from_secs(args.state_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                if let Err(e) = state.save(&tracker).await {
                    log::error!("{e:#}");
                }
            }
        });
    }
    listeners.spawn(&tracker);
    let served = serve(sockets, Arc::clone(&tracker));
    let Some(state) = state else {
        return served.await.context("tracker UDP service failed");
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        served = served => return served.context("tracker UDP service failed"),
        _ = term.recv() => log::info!("SIGTERM: saving the state and stopping"),
        _ = tokio::signal::ctrl_c() => log::info!("SIGINT: saving the state and stopping"),
    }
    tracker.store().seal();
    state.save(&tracker).await?;
    log::info!("state saved to {}", state.path.display());
    Ok(())
}

/// `--state FILE`: where the swarms are kept across restarts. Saves go to a temporary file
/// beside it that then replaces it, so a crash while saving leaves the previous state whole.
struct StateFile {
    path: PathBuf,
    /// One save at a time (a periodic one may still run when the final one starts).
    writing: tokio::sync::Mutex<()>,
}

impl StateFile {
    /// Loads `path` into `store` when it exists.
    async fn open(path: PathBuf, store: &MemoryStore) -> Result<StateFile> {
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::read(path))
                .await
                .context("reading --state stopped")?
        };
        match read {
            Ok(bytes) => {
                let restored = store.restore(&bytes, Instant::now()).with_context(|| {
                    format!(
                        "cannot load the state file {} (move it away to start with no swarms)",
                        path.display()
                    )
                })?;
                let age = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
                    .saturating_sub(restored.saved_unix_ms);
                log::info!(
                    "restored {} files, {} peers, {} rows from {} (saved {:.1} s ago)",
                    restored.files,
                    restored.peers,
                    restored.rows,
                    path.display(),
                    age as f64 / 1000.0
                );
                if restored.refused_rows + restored.refused_peers > 0 {
                    log::warn!(
                        "{} rows and {} peers of {} are over this run's limits and were not \
                         restored (see --max-* and --ip-share)",
                        restored.refused_rows,
                        restored.refused_peers,
                        path.display()
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::info!("no state file {} yet: starting empty", path.display());
            }
            Err(e) => bail!("cannot read the state file {}: {e}", path.display()),
        }
        Ok(StateFile {
            path,
            writing: tokio::sync::Mutex::new(()),
        })
    }

    async fn save(&self, tracker: &Arc<Tracker>) -> Result<()> {
        let _one_at_a_time = self.writing.lock().await;
        let started = Instant::now();
        let (tracker, path) = (Arc::clone(tracker), self.path.clone());
        let bytes = tokio::task::spawn_blocking(move || {
            let bytes = tracker.store().snapshot(Instant::now());
            write_replacing(&path, &bytes).map(|()| bytes.len())
        })
        .await
        .context("saving --state stopped")?
        .with_context(|| format!("cannot save the state to {}", self.path.display()))?;
        log::debug!(
            "saved {bytes} bytes of state to {} in {:?}",
            self.path.display(),
            started.elapsed()
        );
        Ok(())
    }
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk and renames it over
/// `path`: readers see the old file or the new one, never a part.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Resolves --turn once at start: the IP is what relayed addresses are checked against.
async fn relay_config(args: &Args, spec: &str) -> Result<RelayConfig> {
    let server = tokio::net::lookup_host(spec)
        .await
        .with_context(|| format!("cannot resolve --turn {spec:?} (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("--turn {spec:?} resolves to nothing"))?;
    let secret = args.turn_secret.clone().unwrap_or_default();
    if secret.is_empty() {
        bail!("--turn-secret must not be empty");
    }
    let mut relay_ips = vec![server.ip().to_canonical()];
    for ip in &args.turn_relay_ip {
        let ip = ip.to_canonical();
        if !relay_ips.contains(&ip) {
            relay_ips.push(ip);
        }
    }
    log::info!("handing out TURN server {server} (relayed addresses on {relay_ips:?})");
    Ok(RelayConfig {
        server,
        secret,
        credential_ttl: Duration::from_secs(args.turn_ttl),
        relay_ips,
    })
}

fn bind_error(e: std::io::Error, addr: SocketAddr, proto: &str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        anyhow::anyhow!(
            "cannot listen on {proto} {addr}: permission denied (ports below 1024 need root or \
             CAP_NET_BIND_SERVICE); pick another port, e.g. `tracker --port 9000`"
        )
    } else {
        anyhow::anyhow!("cannot listen on {proto} {addr}: {e}")
    }
}

//! Relay fallback (protocol.txt §5): a peer whose serving port nobody can reach directly or by
//! punching (its NAT maps per destination, or punches towards it keep failing) holds a TCP
//! allocation on a TURN server and announces the relayed address instead of its own. Peers
//! connect to that address like to any other; each connection arrives here as a bound data
//! connection and goes to the server (through the rendezvous first, for our own punches), so
//! relayed connections count against the same limits as direct ones.
//!
//! The TURN server is the one the tracker hands out (flag 10, with short-lived credentials)
//! unless the user named servers (`--turn`); `--turn none` turns relaying off.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stun::turn::{Credentials, Permits, TcpAllocation, TurnConfig};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracker_proto::TrackerClient;

use super::own_nat::OwnNat;
use super::rendezvous::Outlet;
use crate::metrics::metrics;

/// Where this peer relays through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnChoice {
    /// The TURN server the tracker hands out, if any (the default).
    FromTracker,
    /// These servers (`HOST:PORT`), in order, with these credentials (or none).
    Servers {
        servers: Vec<String>,
        credentials: Option<Credentials>,
    },
    /// No relaying (`--turn none`).
    Disabled,
}

/// Failed punch answers in a row after which this peer relays although its NAT did not look
/// symmetric: whatever is in the way drops what punching needs.
pub const PUNCH_FAILURES_FOR_RELAY: u32 = 3;

/// The relay this peer holds, shared by the relay task (which sets it), the PUNCH answerer
/// (which permits requesters on it and does not punch while it is active) and the dialer (which
/// permits targets on it before asking them to connect to the relayed address).
pub struct RelayState {
    active: watch::Sender<Option<ActiveRelay>>,
    /// Set while the relay task is allocating one: a dialer then waits for it a moment rather
    /// than asking a peer to connect back to an address nobody can reach.
    allocating: AtomicBool,
    punch_failures: AtomicU32,
    changed: Notify,
}

impl Default for RelayState {
    fn default() -> Self {
        RelayState {
            active: watch::channel(None).0,
            allocating: AtomicBool::new(false),
            punch_failures: AtomicU32::new(0),
            changed: Notify::new(),
        }
    }
}

/// A live allocation: the relayed address peers connect to and its permissions.
#[derive(Debug, Clone)]
pub struct ActiveRelay {
    pub server: SocketAddr,
    pub relayed: SocketAddr,
    pub permits: Permits,
}

impl RelayState {
    pub fn active(&self) -> Option<ActiveRelay> {
        self.active.borrow().clone()
    }

    fn set(&self, relay: Option<ActiveRelay>) {
        self.active.send_replace(relay);
    }

    /// The active relay; while one is being allocated, waits for it up to `limit`.
    pub async fn settled(&self, limit: Duration) -> Option<ActiveRelay> {
        if !self.allocating.load(Ordering::Relaxed) {
            return self.active();
        }
        let mut rx = self.active.subscribe();
        let ready = async {
            while rx.borrow_and_update().is_none() && self.allocating.load(Ordering::Relaxed) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(limit, ready).await;
        self.active()
    }

    /// A PUNCH answer ended with no connection either way.
    pub fn punch_failed(&self) {
        metrics().punch_answers.inc();
        let failures = self.punch_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures == PUNCH_FAILURES_FOR_RELAY {
            log::info!("{failures} punch answers in a row failed: this peer needs a relay");
        }
        self.changed.notify_one();
    }

    /// A PUNCH answer connected.
    pub fn punch_succeeded(&self) {
        metrics().punch_answers.inc();
        metrics().punch_answers_connected.inc();
        self.punch_failures.store(0, Ordering::Relaxed);
    }

    fn punches_failing(&self) -> bool {
        self.punch_failures.load(Ordering::Relaxed) >= PUNCH_FAILURES_FOR_RELAY
    }

    /// Permits `ip` on the relay we hold, if any; a failure is logged (the peer then cannot
    /// connect through the relay, and its dial fails on its own).
    pub async fn permit(&self, ip: IpAddr) {
        let Some(relay) = self.active() else { return };
        if let Err(e) = relay.permits.permit(vec![ip]).await {
            log::warn!("TURN {}: permission for {ip}: {e}", relay.server);
        }
    }
}

/// What the relay task watches and where it delivers.
pub struct RelayInputs {
    pub tracker: Arc<TrackerClient>,
    pub choice: TurnChoice,
    pub nat: watch::Receiver<OwnNat>,
    pub port_mapped: watch::Receiver<Option<SocketAddr>>,
    /// The public address STUN sees: a new IP means the control connection to the TURN server
    /// went out through a mapping that no longer exists, so the relay is made again at once.
    pub public: watch::Receiver<SocketAddr>,
    pub outlet: Outlet,
    pub relayed: watch::Sender<Option<SocketAddr>>,
    pub stop: CancellationToken,
}

/// A TURN server to try, with its credentials and when they expire.
struct Candidate {
    server: SocketAddr,
    credentials: Option<Credentials>,
    expires: Option<Instant>,
}

/// First pause after a failed allocation; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Fresh credentials are fetched this long before the old ones expire.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(120);

fn wanted(inputs: &RelayInputs) -> bool {
    let symmetric = *inputs.nat.borrow() == OwnNat::Symmetric;
    (symmetric || inputs.outlet.relay.punches_failing()) && inputs.port_mapped.borrow().is_none()
}

/// Holds a relay whenever this peer needs one, until `stop`; then releases it.
pub async fn run(mut inputs: RelayInputs) {
    if inputs.choice == TurnChoice::Disabled {
        log::debug!("relaying is off (--turn none)");
        return;
    }
    let state = inputs.outlet.relay.clone();
    let mut backoff = FIRST_BACKOFF;
    let mut said_none = false;
    loop {
        while !wanted(&inputs) {
            tokio::select! {
                _ = changed(&mut inputs.nat) => {}
                _ = changed(&mut inputs.port_mapped) => {}
                _ = state.changed.notified() => {}
                _ = inputs.stop.cancelled() => return,
            }
        }
        let candidates = candidates(&inputs).await;
        if candidates.is_empty() {
            if !said_none {
                said_none = true;
                log::warn!(
                    "this peer needs a relay (its NAT lets no one in), but the tracker offers no \
                     TURN server and --turn names none; peers behind filtering NATs cannot reach it"
                );
            }
            if pause(&inputs.stop, MAX_BACKOFF).await {
                return;
            }
            continue;
        }
        state.allocating.store(true, Ordering::Relaxed);
        let allocated = allocate(candidates).await;
        state.allocating.store(false, Ordering::Relaxed);
        let Some((mut allocation, expires)) = allocated else {
            state.active.send_replace(None);
            if pause(&inputs.stop, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        };
        backoff = FIRST_BACKOFF;
        metrics().relay_allocations.inc();
        let relayed = allocation.relayed();
        log::info!(
            "relaying through TURN server {}: peers reach this one at {relayed}",
            allocation.server()
        );
        state.set(Some(ActiveRelay {
            server: allocation.server(),
            relayed,
            permits: allocation.permits(),
        }));
        inputs.relayed.send_replace(Some(relayed));
        let renew_at = expires.map(|e| e.checked_sub(RENEW_BEFORE_EXPIRY).unwrap_or(e));
        let public_ip = inputs.public.borrow_and_update().ip();
        let release = loop {
            tokio::select! {
                accepted = allocation.accept() => match accepted {
                    Ok(connection) => {
                        metrics().relayed_connections.inc();
                        log::debug!("relayed connection from {}", connection.peer);
                        inputs.outlet.deliver(connection.stream, connection.peer);
                    }
                    Err(e) => {
                        log::warn!("the relay at {relayed} is gone ({e}); allocating again");
                        break false;
                    }
                },
                _ = changed(&mut inputs.port_mapped) => if !wanted(&inputs) { break true },
                _ = changed(&mut inputs.nat) => if !wanted(&inputs) { break true },
                _ = changed(&mut inputs.public) => {
                    let now = inputs.public.borrow_and_update().ip();
                    if now != public_ip && !public_ip.is_unspecified() {
                        log::info!("public IP moved from {public_ip} to {now}; making the relay again");
                        break false;
                    }
                }
                _ = sleep_until_opt(renew_at) => {
                    log::info!("TURN credentials expire soon; allocating with fresh ones");
                    break true;
                }
                _ = inputs.stop.cancelled() => {
                    state.set(None);
                    inputs.relayed.send_replace(None);
                    allocation.release().await;
                    return;
                }
            }
        };
        state.set(None);
        inputs.relayed.send_replace(None);
        if release {
            allocation.release().await;
        }
    }
}

/// The next change of `rx`; never, once its sender is gone (nothing will change any more).
pub(super) async fn changed<T>(rx: &mut watch::Receiver<T>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits `wait` unless stopped first; returns whether stopped.
async fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.cancelled() => true,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn candidates(inputs: &RelayInputs) -> Vec<Candidate> {
    match &inputs.choice {
        TurnChoice::Disabled => Vec::new(),
        TurnChoice::FromTracker => match inputs.tracker.relay_offer().await {
            Ok(Some(offer)) => vec![Candidate {
                server: offer.server,
                credentials: Some(Credentials::new(offer.username, offer.password)),
                expires: Some(Instant::now() + Duration::from_secs(u64::from(offer.ttl))),
            }],
            Ok(None) => Vec::new(),
            Err(e) => {
                log::warn!("asking the tracker for its TURN server: {e}");
                Vec::new()
            }
        },
        TurnChoice::Servers {
            servers,
            credentials,
        } => {
            let mut out = Vec::new();
            for spec in servers {
                match tokio::net::lookup_host(spec.as_str())
                    .await
                    .map(|mut a| a.next())
                {
                    Ok(Some(server)) => out.push(Candidate {
                        server,
                        credentials: credentials.clone(),
                        expires: None,
                    }),
                    _ => log::warn!("cannot resolve TURN server {spec:?} (expected HOST:PORT)"),
                }
            }
            out
        }
    }
}

/// The first allocation any candidate grants, with its credentials' expiry.
async fn allocate(candidates: Vec<Candidate>) -> Option<(TcpAllocation, Option<Instant>)> {
    for candidate in candidates {
        match TcpAllocation::allocate(
            candidate.server,
            candidate.credentials,
            TurnConfig::default(),
        )
        .await
        {
            Ok(allocation) => return Some((allocation, candidate.expires)),
            Err(e) => log::warn!("no relay: {e}; this peer stays reachable only where it was"),
        }
    }
    None
}

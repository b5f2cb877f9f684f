//! Everything that keeps this peer reachable, started together and composed into the one
//! address the tracker lists: the STUN-learned public address ([`super::address`]), a router
//! port mapping when the router grants one ([`super::port_map`]), and a TURN relayed address
//! when nothing else lets peers in ([`super::relay`]). The cheapest path wins: a router mapping
//! (direct connections) over a relay over the bare STUN mapping (punching).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracker_proto::TrackerClient;

use super::address::start_refresh;
use super::own_nat::OwnNat;
use super::port_map;
use super::relay::{self, changed, RelayInputs, RelayState, TurnChoice};
use super::rendezvous::Outlet;

/// How this peer makes itself reachable.
#[derive(Debug, Clone)]
pub struct ReachConfig {
    /// STUN servers (`HOST:PORT`); empty turns STUN off.
    pub stun: Vec<String>,
    /// Period of STUN refresh.
    pub refresh: Duration,
    pub turn: TurnChoice,
    /// Ask the router for a port mapping (UPnP IGD, NAT-PMP, PCP).
    pub port_mapping: bool,
}

/// The running parts; [`Presence::stop`] releases the relay and the router mapping.
pub struct Presence {
    announce: watch::Receiver<SocketAddr>,
    nat: watch::Receiver<OwnNat>,
    relay: Arc<RelayState>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The address to announce: a router mapping, else a relay, else what STUN saw.
pub fn choose(
    stun: SocketAddr,
    mapped: Option<SocketAddr>,
    relayed: Option<SocketAddr>,
) -> SocketAddr {
    mapped.or(relayed).unwrap_or(stun)
}

/// How long stopping may take: the relay's release and the mapping's removal are one request
/// each, but a router or TURN server may have gone silent.
const STOP_GRACE: Duration = Duration::from_secs(3);

impl Presence {
    /// Starts everything for the server listening on `listen`, announced at `initial` until
    /// something better is known. Relayed connections go to `outlet`.
    pub async fn start(
        listen: SocketAddr,
        initial: SocketAddr,
        tracker: Arc<TrackerClient>,
        outlet: Outlet,
        config: ReachConfig,
    ) -> Presence {
        let refresh = start_refresh(listen, initial, config.stun, config.refresh).await;
        let relay = outlet.relay.clone();
        let stop = CancellationToken::new();
        let (mapped_tx, mapped) = watch::channel(None);
        let (relayed_tx, relayed) = watch::channel(None);
        let mut tasks = Vec::new();
        if config.port_mapping {
            tasks.push(tokio::spawn(port_map::run(
                listen,
                refresh.announce.clone(),
                mapped_tx,
                stop.clone(),
            )));
        } else {
            log::debug!("port mapping is off (--no-port-mapping)");
        }
        tasks.push(tokio::spawn(relay::run(RelayInputs {
            tracker,
            choice: config.turn,
            nat: refresh.nat.clone(),
            port_mapped: mapped.clone(),
            public: refresh.announce.clone(),
            outlet,
            relayed: relayed_tx,
            stop: stop.clone(),
        })));
        let (announce_tx, announce) = watch::channel(initial);
        tasks.push(tokio::spawn(compose(
            refresh.announce,
            mapped,
            relayed,
            announce_tx,
            stop.clone(),
        )));
        Presence {
            announce,
            nat: refresh.nat,
            relay,
            stop,
            tasks: Mutex::new(tasks),
        }
    }

    /// The address to announce, following every change.
    pub fn announce(&self) -> watch::Receiver<SocketAddr> {
        self.announce.clone()
    }

    /// Our NAT's mapping behaviour as STUN over UDP shows it.
    pub fn nat(&self) -> watch::Receiver<OwnNat> {
        self.nat.clone()
    }

    /// The relay this peer holds, for a [`super::Dialer`] of the same node.
    pub fn relay(&self) -> Arc<RelayState> {
        self.relay.clone()
    }

    /// Releases the relay and removes the router mapping (bounded by a few seconds). Callable
    /// from several places (a signal handler and the normal way out); the first one does it.
    pub async fn stop(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock());
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(STOP_GRACE, all).await.is_err() {
            log::warn!("releasing the relay or the router mapping did not finish in time");
        }
    }
}

async fn compose(
    mut stun: watch::Receiver<SocketAddr>,
    mut mapped: watch::Receiver<Option<SocketAddr>>,
    mut relayed: watch::Receiver<Option<SocketAddr>>,
    out: watch::Sender<SocketAddr>,
    stop: CancellationToken,
) {
    loop {
        let now = choose(
            *stun.borrow_and_update(),
            *mapped.borrow_and_update(),
            *relayed.borrow_and_update(),
        );
        if *out.borrow() != now {
            log::info!("announcing {now}");
            out.send_replace(now);
        }
        tokio::select! {
            _ = changed(&mut stun) => {}
            _ = changed(&mut mapped) => {}
            _ = changed(&mut relayed) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_cheapest_path_is_announced() {
        let stun = addr("203.0.113.14:41000");
        let mapped = addr("203.0.113.14:6881");
        let relayed = addr("203.0.113.2:50000");
        assert_eq!(choose(stun, None, None), stun);
        assert_eq!(choose(stun, None, Some(relayed)), relayed);
        assert_eq!(choose(stun, Some(mapped), Some(relayed)), mapped);
    }
}

//! The address this peer announces to the tracker, kept true while a NAT changes its mapping.
//!
//! A peer behind a NAT is reachable at the public address its NAT maps the serving port to,
//! not at its local one. STUN over TCP from the serving port tells that mapping; NATs drop idle
//! mappings and routers reboot, so the daemon re-asks every refresh period (30 s by default)
//! and, when the answer differs, re-announces every row at once under the new address. The
//! tracker's `key=` rule moves the rows, so the old address disappears instead of lingering
//! until its TTL runs out.
//!
//! The policy (what to announce, what counts as a change, what several STUN servers saying
//! different things means) is pure and lives in [`AddressBook`] and [`classify`]; STUN itself
//! is the `stun` crate's [`Refresher`] over TCP, one per server, plus one UDP round per period
//! from the serving port number ([`udp_probe`]), whose mapping stands in for the TCP one when a
//! server answers over UDP only; [`follow`] combines their answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use stun::refresher::{MappingEvent, Refresher, RefresherConfig, Transport};
use stun::BindingConfig;
use tokio::sync::{mpsc, watch};

use super::own_nat::OwnNat;
use super::udp_probe;

/// Default period between two STUN queries.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);

/// What the STUN servers said about the serving port in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// Every server that answered reported this address.
    Stable(SocketAddr),
    /// Servers reported different addresses: the NAT maps per destination (symmetric), so the
    /// address the tracker sees is not the one other peers would reach. Peers can still
    /// connect out; incoming connections need relaying or port forwarding.
    PerDestination(Vec<SocketAddr>),
}

/// Folds the answers of one round (one per server that replied) into a [`Mapping`];
/// `None` when no server answered.
pub fn classify(answers: &[SocketAddr]) -> Option<Mapping> {
    let first = *answers.first()?;
    if answers.iter().all(|a| *a == first) {
        Some(Mapping::Stable(first))
    } else {
        let mut distinct = answers.to_vec();
        distinct.sort();
        distinct.dedup();
        Some(Mapping::PerDestination(distinct))
    }
}

/// The announce address and how it came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressBook {
    /// Port the peer serves on, used when no STUN server has answered yet.
    serving_port: u16,
    public: Option<SocketAddr>,
}

/// A change the daemon must act on by re-announcing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub from: SocketAddr,
    pub to: SocketAddr,
}

impl AddressBook {
    pub fn new(serving_port: u16) -> Self {
        Self {
            serving_port,
            public: None,
        }
    }

    /// What to put in announcements: the STUN-learned public address when known, otherwise
    /// `0.0.0.0:<serving port>`, which the tracker reads as "the datagram's source IP, this
    /// port" (right on a LAN and on loopback, where there is no NAT).
    pub fn announce(&self) -> SocketAddr {
        self.public.unwrap_or(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            self.serving_port,
        ))
    }

    /// The public address learned from STUN, if any.
    pub fn public(&self) -> Option<SocketAddr> {
        self.public
    }

    /// Takes one round's outcome. A round where no server answered keeps the last known
    /// address: a STUN outage says nothing about the NAT, and moving back to `0.0.0.0` would
    /// announce a private address to the world. With per-destination mappings the first
    /// server's answer is kept, being the best guess the daemon has.
    pub fn observe(&mut self, mapping: Option<&Mapping>) -> Option<Moved> {
        let seen = match mapping? {
            Mapping::Stable(addr) => *addr,
            Mapping::PerDestination(addrs) => *addrs.first()?,
        };
        let from = self.announce();
        self.public = Some(seen);
        (from != seen).then_some(Moved { from, to: seen })
    }
}

/// What one STUN server said about the serving port, over one transport: the mapping it saw,
/// or `None` when it did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// TCP from the serving port: the mapping peers connect to.
    Tcp(usize, Option<SocketAddr>),
    /// UDP from the serving port number: used when the server has no TCP (most public STUN
    /// servers answer over UDP only), as an inference of the TCP mapping.
    Udp(usize, Option<SocketAddr>),
}

/// Per server: the last TCP mapping, whether TCP has failed, the last UDP mapping.
#[derive(Debug, Default, Clone)]
struct ServerView {
    tcp: Option<SocketAddr>,
    tcp_failed: bool,
    udp: Option<SocketAddr>,
    inferred_logged: bool,
}

impl ServerView {
    /// The mapping to use: TCP's once it answered (kept through outages), else the UDP one
    /// once TCP has failed.
    fn effective(&self) -> Option<SocketAddr> {
        self.tcp.or(if self.tcp_failed { self.udp } else { None })
    }
}

/// Combines the servers' sightings into the announce address and publishes it on `tx` whenever
/// it moves. With one server this follows that server; with several, the first server's view
/// wins and disagreement is reported as a per-destination (symmetric) NAT. Returns when the
/// sightings end or every receiver is gone.
pub async fn follow(
    mut book: AddressBook,
    servers: Vec<SocketAddr>,
    mut sightings: mpsc::Receiver<Sighting>,
    tx: watch::Sender<SocketAddr>,
) {
    let mut seen: Vec<ServerView> = vec![ServerView::default(); servers.len()];
    let mut warned_symmetric = false;
    loop {
        let sighting = tokio::select! {
            sighting = sightings.recv() => match sighting {
                Some(s) => s,
                None => return,
            },
            _ = tx.closed() => return,
        };
        let index = match sighting {
            Sighting::Tcp(i, _) | Sighting::Udp(i, _) => i,
        };
        let Some(view) = seen.get_mut(index) else {
            continue;
        };
        match sighting {
            Sighting::Tcp(_, Some(mapped)) => view.tcp = Some(mapped),
            Sighting::Tcp(_, None) => view.tcp_failed = true,
            Sighting::Udp(_, mapped) => view.udp = mapped.or(view.udp),
        }
        if view.tcp.is_none() && view.tcp_failed && !view.inferred_logged {
            if let Some(udp) = view.udp {
                view.inferred_logged = true;
                log::info!(
                    "STUN server {} does not answer over TCP; the TCP mapping of the serving \
                     port is inferred from the UDP one: {udp}",
                    servers[index]
                );
            }
        }
        let answers: Vec<SocketAddr> = seen.iter().filter_map(ServerView::effective).collect();
        let mapping = classify(&answers);
        if let Some(Mapping::PerDestination(addrs)) = &mapping {
            if !warned_symmetric {
                warned_symmetric = true;
                log::warn!(
                    "STUN servers see different public addresses {addrs:?}: the NAT maps per \
                     destination (symmetric), so other peers may not reach this one"
                );
            }
        }
        // The first server's view is the one to announce; `classify` sorts, so pick it here.
        let preferred = answers.first().copied().map(Mapping::Stable);
        let chosen = match mapping {
            Some(Mapping::PerDestination(addrs)) if only_ports_differ(book.public(), &addrs) => {
                None
            }
            Some(Mapping::PerDestination(_)) => preferred,
            other => other,
        };
        if let Some(moved) = book.observe(chosen.as_ref()) {
            log::info!("public address moved from {} to {}", moved.from, moved.to);
            if tx.send(moved.to).is_err() {
                return;
            }
        }
    }
}

/// Whether per-destination mappings are just a symmetric NAT's per-connection ports on the
/// public IP already announced. That is no move: each STUN connection gets a new port, the
/// announced one is unreachable either way, and re-announcing would move every row at every
/// refresh (and make punch requests for the listed address fail). A new IP is a move.
fn only_ports_differ(public: Option<SocketAddr>, addrs: &[SocketAddr]) -> bool {
    public.is_some_and(|p| addrs.iter().all(|a| a.ip() == p.ip()))
}

/// Port of the STUN server assumed when only a host is known (RFC 8489's default).
pub const DEFAULT_STUN_PORT: u16 = 3478;

/// Time one STUN query may take: short against the refresh period, so a silent server does
/// not delay the next round.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves `HOST:PORT` specs, warning about (and skipping) the ones that do not resolve.
pub async fn resolve_servers(specs: &[String]) -> Vec<SocketAddr> {
    let mut resolved = Vec::new();
    for spec in specs {
        match tokio::net::lookup_host(spec.as_str())
            .await
            .ok()
            .and_then(|mut a| a.next())
        {
            Some(server) => resolved.push(server),
            None => {
                log::warn!("cannot resolve STUN server {spec:?} (expected HOST:PORT); skipping it")
            }
        }
    }
    resolved
}

/// What STUN refresh publishes: the announce address and what we know of our NAT.
pub struct Refresh {
    pub announce: watch::Receiver<SocketAddr>,
    pub nat: watch::Receiver<OwnNat>,
}

/// Starts STUN refresh for a server listening on `listen`: every `period` each of `servers` is
/// asked over TCP from the serving port (one [`Refresher`] each) and, from one UDP socket on
/// the serving port number, over UDP ([`udp_probe`]), which also tells our NAT's mapping
/// behaviour. The announce receiver starts at `initial` and follows the public address; with
/// no usable server it never changes.
pub async fn start_refresh(
    listen: SocketAddr,
    initial: SocketAddr,
    servers: Vec<String>,
    period: Duration,
) -> Refresh {
    let (tx, announce) = watch::channel(initial);
    let (nat_tx, nat) = watch::channel(OwnNat::Unknown);
    let resolved = resolve_servers(&servers).await;
    if resolved.is_empty() {
        return Refresh { announce, nat };
    }
    let config = RefresherConfig {
        period,
        binding: BindingConfig {
            tcp_timeout: QUERY_TIMEOUT,
            ..BindingConfig::default()
        },
    };
    let (sight_tx, sight_rx) = mpsc::channel(16);
    for (index, server) in resolved.iter().copied().enumerate() {
        let mut refresher = Refresher::spawn(Transport::Tcp(listen), server, config.clone());
        let sight_tx = sight_tx.clone();
        // Drains the refresher's events (it would stall on a full queue) and passes mappings on.
        tokio::spawn(async move {
            while let Some(event) = refresher.next_event().await {
                let mapped = match event {
                    MappingEvent::Mapped(addr) | MappingEvent::Changed { new: addr, .. } => {
                        Some(addr)
                    }
                    MappingEvent::Unreachable { last_known, error } => {
                        log::warn!(
                            "STUN server {server}: {error}; still announcing {}",
                            last_known
                                .map_or("the last address known".to_owned(), |a| a.to_string())
                        );
                        None
                    }
                    MappingEvent::Back(_) => {
                        log::info!("STUN server {server} answers again");
                        continue;
                    }
                };
                if sight_tx.send(Sighting::Tcp(index, mapped)).await.is_err() {
                    return;
                }
            }
        });
    }
    match udp_probe::bind(listen).await {
        Ok(socket) => {
            tokio::spawn(udp_probe::run(
                socket,
                resolved.clone(),
                period,
                sight_tx,
                nat_tx,
            ));
        }
        Err(e) => log::warn!("no UDP socket for STUN from port {}: {e}", listen.port()),
    }
    tokio::spawn(follow(
        AddressBook::new(listen.port()),
        resolved,
        sight_rx,
        tx,
    ));
    Refresh { announce, nat }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn announces_unspecified_until_stun_answers() {
        let book = AddressBook::new(6881);
        assert_eq!(book.announce(), addr("0.0.0.0:6881"));
        assert_eq!(book.public(), None);
    }

    #[test]
    fn first_answer_and_later_changes_are_moves() {
        let mut book = AddressBook::new(6881);
        let a = Mapping::Stable(addr("203.0.113.5:40000"));
        assert_eq!(
            book.observe(Some(&a)),
            Some(Moved {
                from: addr("0.0.0.0:6881"),
                to: addr("203.0.113.5:40000")
            })
        );
        assert_eq!(book.observe(Some(&a)), None, "same mapping is no change");
        assert_eq!(book.observe(None), None, "an outage keeps the address");
        assert_eq!(book.announce(), addr("203.0.113.5:40000"));
        let b = Mapping::Stable(addr("203.0.113.5:40001"));
        assert_eq!(
            book.observe(Some(&b)),
            Some(Moved {
                from: addr("203.0.113.5:40000"),
                to: addr("203.0.113.5:40001")
            })
        );
    }

    #[test]
    fn servers_that_disagree_mean_per_destination_mapping() {
        assert_eq!(classify(&[]), None);
        let a = addr("198.51.100.1:1000");
        let b = addr("198.51.100.1:2000");
        assert_eq!(classify(&[a, a]), Some(Mapping::Stable(a)));
        assert_eq!(
            classify(&[b, a, b]),
            Some(Mapping::PerDestination(vec![a, b]))
        );
    }

    #[test]
    fn symmetric_port_churn_on_the_announced_ip_is_no_move() {
        let public = Some(addr("203.0.113.14:1000"));
        assert!(only_ports_differ(
            public,
            &[addr("203.0.113.14:2000"), addr("203.0.113.14:3000")]
        ));
        assert!(!only_ports_differ(
            public,
            &[addr("203.0.113.99:2000"), addr("203.0.113.99:3000")]
        ));
        assert!(!only_ports_differ(
            public,
            &[addr("203.0.113.14:2000"), addr("203.0.113.99:3000")]
        ));
        assert!(!only_ports_differ(
            None,
            &[addr("203.0.113.14:2000"), addr("203.0.113.14:3000")]
        ));
    }

    #[tokio::test]
    async fn follower_publishes_moves_and_prefers_the_first_server() {
        let (sight_tx, sight_rx) = mpsc::channel(16);
        let (tx, mut rx) = watch::channel(addr("0.0.0.0:6881"));
        let servers = vec![addr("198.51.100.1:3478"), addr("198.51.100.2:3478")];
        let task = tokio::spawn(follow(AddressBook::new(6881), servers, sight_rx, tx));
        sight_tx
            .send(Sighting::Tcp(1, Some(addr("192.0.2.1:1"))))
            .await
            .unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), addr("192.0.2.1:1"));
        // The first server disagrees: symmetric NAT, and its view wins.
        sight_tx
            .send(Sighting::Tcp(0, Some(addr("192.0.2.9:9"))))
            .await
            .unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), addr("192.0.2.9:9"));
        // The same sighting again is no move; a later real move is.
        sight_tx
            .send(Sighting::Tcp(0, Some(addr("192.0.2.9:9"))))
            .await
            .unwrap();
        sight_tx
            .send(Sighting::Tcp(0, Some(addr("192.0.2.9:10"))))
            .await
            .unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), addr("192.0.2.9:10"));
        drop(sight_tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn udp_mapping_stands_in_only_once_tcp_has_failed() {
        let (sight_tx, sight_rx) = mpsc::channel(16);
        let (tx, mut rx) = watch::channel(addr("0.0.0.0:6881"));
        let task = tokio::spawn(follow(
            AddressBook::new(6881),
            vec![addr("198.51.100.1:3478")],
            sight_rx,
            tx,
        ));
        // UDP answers first: nothing is announced while TCP may still answer.
        sight_tx
            .send(Sighting::Udp(0, Some(addr("192.0.2.5:6881"))))
            .await
            .unwrap();
        sight_tx.send(Sighting::Tcp(0, None)).await.unwrap();
        rx.changed().await.unwrap();
        assert_eq!(
            *rx.borrow_and_update(),
            addr("192.0.2.5:6881"),
            "inferred from UDP"
        );
        // TCP answering later wins over the inference.
        sight_tx
            .send(Sighting::Tcp(0, Some(addr("192.0.2.5:7000"))))
            .await
            .unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), addr("192.0.2.5:7000"));
        drop(sight_tx);
        task.await.unwrap();
    }
}

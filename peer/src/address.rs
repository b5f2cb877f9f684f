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
//! different things means) is pure and lives in [`AddressBook`]; [`watch_mapping`] is the thin
//! loop that feeds it with STUN answers.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::watch;

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
        Self { serving_port, public: None }
    }

    /// What to put in announcements: the STUN-learned public address when known, otherwise
    /// `0.0.0.0:<serving port>`, which the tracker reads as "the datagram's source IP, this
    /// port" (right on a LAN and on loopback, where there is no NAT).
    pub fn announce(&self) -> SocketAddr {
        self.public
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), self.serving_port))
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

/// Asks `probe` for the current mapping every `period` (the first time at once) and publishes
/// the announce address on `tx` whenever it moves. Returns when every receiver is gone.
///
/// `probe` runs one STUN round over the serving port against every configured server and
/// returns the addresses that came back; failures are the probe's to log.
pub async fn watch_mapping<P, F>(
    mut book: AddressBook,
    period: Duration,
    mut probe: P,
    tx: watch::Sender<SocketAddr>,
) where
    P: FnMut() -> F,
    F: Future<Output = Vec<SocketAddr>>,
{
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned_symmetric = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tx.closed() => return,
        }
        let answers = probe().await;
        let mapping = classify(&answers);
        match &mapping {
            None => log::warn!("no STUN server answered; still announcing {}", book.announce()),
            Some(Mapping::PerDestination(addrs)) if !warned_symmetric => {
                warned_symmetric = true;
                log::warn!(
                    "STUN servers see different public addresses {addrs:?}: the NAT maps per \
                     destination (symmetric), so other peers may not reach this one"
                );
            }
            Some(_) => {}
        }
        if let Some(moved) = book.observe(mapping.as_ref()) {
            log::info!("public address moved from {} to {}", moved.from, moved.to);
            if tx.send(moved.to).is_err() {
                return;
            }
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
            Some(Moved { from: addr("0.0.0.0:6881"), to: addr("203.0.113.5:40000") })
        );
        assert_eq!(book.observe(Some(&a)), None, "same mapping is no change");
        assert_eq!(book.observe(None), None, "an outage keeps the address");
        assert_eq!(book.announce(), addr("203.0.113.5:40000"));
        let b = Mapping::Stable(addr("203.0.113.5:40001"));
        assert_eq!(
            book.observe(Some(&b)),
            Some(Moved { from: addr("203.0.113.5:40000"), to: addr("203.0.113.5:40001") })
        );
    }

    #[test]
    fn servers_that_disagree_mean_per_destination_mapping() {
        assert_eq!(classify(&[]), None);
        let a = addr("198.51.100.1:1000");
        let b = addr("198.51.100.1:2000");
        assert_eq!(classify(&[a, a]), Some(Mapping::Stable(a)));
        assert_eq!(classify(&[b, a, b]), Some(Mapping::PerDestination(vec![a, b])));
    }

    #[tokio::test]
    async fn watcher_publishes_only_changes() {
        let answers = [addr("192.0.2.1:1"), addr("192.0.2.1:1"), addr("192.0.2.2:2")];
        let mut round = 0usize;
        let (tx, mut rx) = watch::channel(addr("0.0.0.0:6881"));
        let task = tokio::spawn(watch_mapping(
            AddressBook::new(6881),
            Duration::from_millis(5),
            move || {
                let answer = answers.get(round).copied();
                round += 1;
                async move { answer.into_iter().collect() }
            },
            tx,
        ));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), addr("192.0.2.1:1"));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), addr("192.0.2.2:2"));
        drop(rx);
        task.await.unwrap();
    }
}

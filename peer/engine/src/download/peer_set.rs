//! The peers of one download as the tracker lists them, and what became of our attempts to
//! connect to each: who to dial next, who failed, who lied. Peers that connected to us are the
//! swarm's business; the downloader only avoids dialling them a second time.
//!
//! A failed peer is dialled again only after a pause that doubles with each failure (1 s, 2 s,
//! 4 s...): a leecher that started with us is listed at once but answers "not shared here"
//! until its manifest has arrived, which behind a rate-limited seeder takes a second or more;
//! three attempts in a row would spend themselves within a second and leave it out of our
//! swarm for good.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use tracker_proto::PeerEntry;

pub(super) struct PeerSet {
    /// Failed attempts after which a peer address is left alone (until the tracker lists it
    /// again and nobody else is left).
    max_failures: u32,
    known: Vec<SocketAddr>,
    /// Addresses we are dialling or connected to through a dial of ours.
    pub dialing: HashSet<SocketAddr>,
    /// Dropped for lying or bad data: never dialled again in this download.
    pub hostile: HashSet<SocketAddr>,
    failures: HashMap<SocketAddr, Failures>,
}

/// The pause after a peer's first failed attempt; each further failure doubles it.
const FIRST_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// Not dialled again before this.
    retry_at: Instant,
}

impl PeerSet {
    pub fn new(max_failures: u32) -> Self {
        PeerSet {
            max_failures,
            known: Vec::new(),
            dialing: HashSet::new(),
            hostile: HashSet::new(),
            failures: HashMap::new(),
        }
    }

    /// Takes in the peers of a tracker answer.
    pub fn learn(&mut self, entries: &[PeerEntry]) {
        for e in entries {
            if !self.known.contains(&e.addr) {
                self.known.push(e.addr);
            }
        }
    }

    /// Forgets an address for good (it turned out to be our own).
    pub fn forget(&mut self, addr: SocketAddr) {
        self.known.retain(|a| *a != addr);
    }

    pub fn failed(&mut self, addr: SocketAddr) {
        let now = Instant::now();
        let f = self.failures.entry(addr).or_insert(Failures {
            count: 0,
            retry_at: now,
        });
        f.count += 1;
        f.retry_at = now + FIRST_RETRY * (1u32 << (f.count - 1).min(10));
    }

    /// Whether `addr` failed too often to be dialled again in this download.
    fn given_up(&self, addr: &SocketAddr) -> bool {
        self.failures
            .get(addr)
            .is_some_and(|f| f.count >= self.max_failures)
    }

    /// When the soonest peer that failed but may still be dialled again is due, if any.
    pub fn next_retry(&self) -> Option<Instant> {
        self.failures
            .values()
            .filter(|f| f.count < self.max_failures)
            .map(|f| f.retry_at)
            .min()
    }

    /// Gives every peer that failed another chance (the tracker still lists them and nobody
    /// else is left).
    pub fn forgive(&mut self) {
        self.failures.clear();
    }

    /// Up to `n` peers worth dialling now, in random order: not ours, not already connected
    /// (`connected`: the serving addresses of the swarm's connections), not dialled, not
    /// hostile, not failed too often, not in the pause after a failure.
    pub fn candidates(
        &self,
        n: usize,
        connected: &HashSet<SocketAddr>,
        is_own: impl Fn(SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let now = Instant::now();
        let mut c: Vec<SocketAddr> = self
            .known
            .iter()
            .copied()
            .filter(|a| !self.dialing.contains(a) && !self.hostile.contains(a))
            .filter(|a| !connected.contains(a) && !is_own(*a))
            .filter(|a| !self.given_up(a))
            .filter(|a| self.failures.get(a).is_none_or(|f| f.retry_at <= now))
            .collect();
        c.shuffle(&mut rand::rng());
        c.truncate(n);
        c
    }

    /// Known peers that are neither hostile nor failed too often (dialled or not).
    pub fn usable(&self) -> usize {
        self.known
            .iter()
            .filter(|a| !self.hostile.contains(a) && !self.given_up(a))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_proto::{PeerChunks, PeerEntry};

    fn set_of(addrs: &[SocketAddr]) -> PeerSet {
        let mut set = PeerSet::new(3);
        let entries: Vec<PeerEntry> = addrs
            .iter()
            .map(|a| PeerEntry {
                addr: *a,
                chunks: PeerChunks::Seeder,
            })
            .collect();
        set.learn(&entries);
        set
    }

    fn dialable(set: &PeerSet) -> Vec<SocketAddr> {
        set.candidates(usize::MAX, &HashSet::new(), |_| false)
    }

    /// Moves every pause after a failure to its end, as if that long had passed.
    fn pauses_over(set: &mut PeerSet) {
        let now = Instant::now();
        for f in set.failures.values_mut() {
            f.retry_at = now;
        }
    }

    #[test]
    fn a_failed_peer_waits_a_doubling_pause_then_is_left_alone() {
        let a: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:6881".parse().unwrap();
        let mut set = set_of(&[a, b]);
        set.failed(a);
        assert_eq!(dialable(&set), vec![b], "dialled again during its pause");
        let first = set.failures[&a].retry_at;
        assert_eq!(set.next_retry(), Some(first));
        pauses_over(&mut set);
        assert_eq!(dialable(&set).len(), 2);
        set.failed(a);
        let second = set.failures[&a].retry_at - Instant::now();
        assert!(second > Duration::from_millis(1900), "pause {second:?}");
        pauses_over(&mut set);
        set.failed(a);
        assert_eq!(set.usable(), 1);
        assert_eq!(set.next_retry(), None, "given up on: no retry is due");
        pauses_over(&mut set);
        assert_eq!(dialable(&set), vec![b]);
        set.forgive();
        assert_eq!(dialable(&set).len(), 2);
    }
}

//! The peers of one download as the tracker lists them, and what became of our attempts to
//! connect to each: who to dial next, who failed, who lied. Peers that connected to us are the
//! swarm's business; the downloader only avoids dialling them a second time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

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
    failures: HashMap<SocketAddr, u32>,
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
        *self.failures.entry(addr).or_default() += 1;
    }

    /// Gives every peer that failed another chance (the tracker still lists them and nobody
    /// else is left).
    pub fn forgive(&mut self) {
        self.failures.clear();
    }

    /// Up to `n` peers worth dialling now, in random order: not ours, not already connected
    /// (`connected`: the serving addresses of the swarm's connections), not dialled, not
    /// hostile, not failed too often.
    pub fn candidates(
        &self,
        n: usize,
        connected: &HashSet<SocketAddr>,
        is_own: impl Fn(SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let mut c: Vec<SocketAddr> = self
            .known
            .iter()
            .copied()
            .filter(|a| !self.dialing.contains(a) && !self.hostile.contains(a))
            .filter(|a| !connected.contains(a) && !is_own(*a))
            .filter(|a| self.failures.get(a).copied().unwrap_or(0) < self.max_failures)
            .collect();
        c.shuffle(&mut rand::rng());
        c.truncate(n);
        c
    }

    /// Known peers that are neither hostile nor failed too often (dialled or not).
    pub fn usable(&self) -> usize {
        self.known
            .iter()
            .filter(|a| !self.hostile.contains(a))
            .filter(|a| self.failures.get(a).copied().unwrap_or(0) < self.max_failures)
            .count()
    }
}

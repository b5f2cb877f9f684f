//! The peers of one download and what we know about each: who to connect to next, who failed,
//! who lied, and how much each delivered.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use rand::seq::SliceRandom;
use tracker_proto::PeerEntry;

pub(super) struct PeerSet {
    /// Our own announced address: never a peer of ours.
    me: SocketAddr,
    /// Failed attempts after which a peer address is left alone (until the tracker lists it
    /// again and nobody else is left).
    max_failures: u32,
    known: Vec<SocketAddr>,
    pub active: HashSet<SocketAddr>,
    pub hostile: HashSet<SocketAddr>,
    failures: HashMap<SocketAddr, u32>,
    /// Verified chunk bytes each peer delivered in this run.
    pub delivered: HashMap<SocketAddr, u64>,
}

impl PeerSet {
    pub fn new(me: SocketAddr, max_failures: u32) -> Self {
        PeerSet {
            me,
            max_failures,
            known: Vec::new(),
            active: HashSet::new(),
            hostile: HashSet::new(),
            failures: HashMap::new(),
            delivered: HashMap::new(),
        }
    }

    /// Takes in the peers of a tracker answer.
    pub fn learn(&mut self, entries: &[PeerEntry]) {
        for e in entries {
            if e.addr != self.me && !self.known.contains(&e.addr) {
                self.known.push(e.addr);
            }
        }
    }

    pub fn failed(&mut self, addr: SocketAddr) {
        *self.failures.entry(addr).or_default() += 1;
    }

    /// Gives every peer that failed another chance (the tracker still lists them and nobody
    /// else is left).
    pub fn forgive(&mut self) {
        self.failures.clear();
    }

    /// Up to `n` peers worth connecting to now, in random order.
    pub fn candidates(&self, n: usize) -> Vec<SocketAddr> {
        let mut c: Vec<SocketAddr> = self
            .known
            .iter()
            .copied()
            .filter(|a| !self.active.contains(a) && !self.hostile.contains(a))
            .filter(|a| self.failures.get(a).copied().unwrap_or(0) < self.max_failures)
            .collect();
        c.shuffle(&mut rand::rng());
        c.truncate(n);
        c
    }
}

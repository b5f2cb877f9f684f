//! Counters of what this process did, for `peer daemon --http`'s `/metrics`.
//!
//! Process-wide, like the default registry of Prometheus client libraries: the events counted
//! here happen deep in the dialer, the answerer, the relay task and the connection tasks,
//! none of which knows the node it works for, and a process runs one node. Each counter is one
//! relaxed atomic add where the event happens, so counting costs nothing measurable. The byte
//! totals and open connections are not here: the node already keeps them
//! ([`crate::swarm::LocalPeer`], [`crate::swarm::budget::ConnectionBudget`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// One monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a connection we asked for came about, or that it did not (protocol.txt §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialOutcome {
    Direct,
    Punched,
    /// The target connected back to us.
    Reverse,
    Relayed,
    Failed,
}

impl DialOutcome {
    pub const ALL: [DialOutcome; 5] = [
        DialOutcome::Direct,
        DialOutcome::Punched,
        DialOutcome::Reverse,
        DialOutcome::Relayed,
        DialOutcome::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DialOutcome::Direct => "direct",
            DialOutcome::Punched => "punched",
            DialOutcome::Reverse => "reverse",
            DialOutcome::Relayed => "relayed",
            DialOutcome::Failed => "failed",
        }
    }
}

/// Every counter of the process; read with [`metrics`].
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections the server accepted (and relayed or punched ones it was handed).
    pub connections_accepted: Counter,
    /// Connections the server refused at once: no slot in the connection budget.
    pub connections_refused: Counter,
    /// Chunks that matched the manifest and were written.
    pub chunks_verified: Counter,
    /// Deliveries dropped because a chunk did not match the manifest (the peer is dropped).
    pub chunks_rejected: Counter,
    /// Dials to peers by how they ended, indexed by [`DialOutcome`].
    dials: [Counter; 5],
    /// Dials where the direct connection did not win alone and a punch was tried.
    pub punch_attempts: Counter,
    /// PUNCH notices we answered (protocol.txt §4.4), and how many of them connected.
    pub punch_answers: Counter,
    pub punch_answers_connected: Counter,
    /// TURN allocations made, and connections that reached us through one.
    pub relay_allocations: Counter,
    pub relayed_connections: Counter,
    /// Bytes read and hashed to build manifests of what we share (`peer share` shows them).
    pub share_bytes_hashed: Counter,
}

impl Metrics {
    pub fn dialed(&self, outcome: DialOutcome) {
        self.dial_counter(outcome).inc();
    }

    pub fn dials(&self, outcome: DialOutcome) -> u64 {
        self.dial_counter(outcome).get()
    }

    fn dial_counter(&self, outcome: DialOutcome) -> &Counter {
        &self.dials[outcome as usize]
    }
}

static METRICS: Metrics = Metrics {
    connections_accepted: Counter::new(),
    connections_refused: Counter::new(),
    chunks_verified: Counter::new(),
    chunks_rejected: Counter::new(),
    dials: [
        Counter::new(),
        Counter::new(),
        Counter::new(),
        Counter::new(),
        Counter::new(),
    ],
    punch_attempts: Counter::new(),
    punch_answers: Counter::new(),
    punch_answers_connected: Counter::new(),
    relay_allocations: Counter::new(),
    relayed_connections: Counter::new(),
    share_bytes_hashed: Counter::new(),
};

/// The counters of this process.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dial_outcome_has_its_own_counter() {
        let m = Metrics::default();
        m.dialed(DialOutcome::Punched);
        m.dialed(DialOutcome::Punched);
        m.dialed(DialOutcome::Failed);
        assert_eq!(m.dials(DialOutcome::Punched), 2);
        assert_eq!(m.dials(DialOutcome::Failed), 1);
        assert_eq!(m.dials(DialOutcome::Direct), 0);
    }
}

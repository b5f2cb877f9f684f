//! Who holds the swarm's upload slots: the [`choker`](super::choker)'s decision carried out on
//! the connections every period, and the changes that cannot wait for the next one (a stalled
//! peer's slot handed on, a free slot given to a newcomer). The choker stays a pure decision,
//! tested without connections; this is apart from the rest of the swarm so that every place
//! the swarm chokes or unchokes a connection is in one file, where the rules between periods
//! can be read against the choker's.

use std::sync::{Arc, Weak};

use super::choker::{Candidate, RECHOKE_PERIOD};
use super::link::Link;
use super::Swarm;

impl Swarm {
    /// Decides whom to unchoke (see [`choker`](super::choker)) and tells the connections.
    fn rechoke(&self) {
        let mut state = self.state.lock();
        let seeding = state.picker.is_none();
        let candidates: Vec<Candidate> = state
            .links
            .values()
            .map(|l| Candidate {
                id: l.id,
                interested: l.peer_interested(),
                received: l.take_round_received(),
                received_total: l.received(),
                unchokes_us: l.unchokes_us(),
                sent: l.sent(),
                stalled: l.stalled(),
            })
            .collect();
        let unchoked = state.choker.rechoke(&candidates, seeding, &mut rand::rng());
        for link in state.links.values() {
            link.set_unchoked(unchoked.contains(&link.id));
        }
        if log::log_enabled!(log::Level::Debug) {
            let names: Vec<String> = state
                .links
                .values()
                .filter(|l| unchoked.contains(&l.id))
                .map(|l| l.listen.unwrap_or(l.addr).to_string())
                .collect();
            log::debug!("{}: rechoke: uploading to {}", self.name, names.join(", "));
        }
    }

    /// An unchoked peer stopped taking our bytes: its slot goes at once to the interested peer
    /// waiting for one that we sent the least (while we download, among those that let us
    /// download from them first), instead of idling until the next period.
    pub(super) fn replace_stalled(&self, stalled: &Link) {
        let state = self.state.lock();
        stalled.set_unchoked(false);
        let seeding = state.picker.is_none();
        let next = state
            .links
            .values()
            .filter(|l| l.peer_interested() && !l.unchoked() && !l.stalled())
            .min_by_key(|l| (!seeding && !l.unchokes_us(), l.sent()));
        if let Some(next) = next {
            next.set_unchoked(true);
        }
    }

    /// A peer became interested, or unchoked us while interested: if an upload slot is free it
    /// need not wait for the next period (a newcomer gets its first chunks within a round trip).
    /// While we download, the free slots go at once only to peers that let us download from
    /// them, which can give back, and to one other peer, as the optimistic slot does: first come
    /// first served would hand a free-rider a regular slot until the choker next ranks.
    pub(super) fn admit(&self, link: &Link) {
        let state = self.state.lock();
        let unchoked: Vec<&Arc<Link>> = state.links.values().filter(|l| l.unchoked()).collect();
        if unchoked.len() >= state.choker.capacity() {
            return;
        }
        let seeding = state.picker.is_none();
        let optimistic_free = !unchoked.iter().any(|l| !l.unchokes_us());
        if seeding || link.unchokes_us() || optimistic_free {
            link.set_unchoked(true);
        }
    }
}

/// Runs `swarm`'s choker every [`RECHOKE_PERIOD`] for as long as the swarm exists.
pub(super) async fn rechoke_periodically(swarm: Weak<Swarm>) {
    let mut tick = tokio::time::interval(RECHOKE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(swarm) = swarm.upgrade() else {
            return;
        };
        if swarm.is_closed() {
            return;
        }
        swarm.rechoke();
    }
}

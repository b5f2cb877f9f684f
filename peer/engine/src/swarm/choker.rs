//! Who gets our upload bandwidth: the choker of BEP 3 and libtorrent, as a pure decision.
//!
//! Every [`RECHOKE_PERIOD`] a file's choker unchokes `slots` interested peers. While we download,
//! those that sent us the most bytes in the last period (tit-for-tat: who gives, gets); ties go to
//! peers that ever gave, then to peers that unchoke us, so a free-rider gets a regular slot only
//! when nobody else wants it. Once we seed, nobody can give us anything, and ranking by how fast we
//! upload to each (the original BitTorrent seed choker) rewards whoever spends nothing on
//! uploading, a free-rider above all: it keeps its slot for as long as it downloads fastest. So a
//! seeder ranks by what it sent each peer in all, least first (libtorrent's round-robin seed
//! choker): every interested peer gets its turn at the same share, and chunks spread through the
//! peers that pass them on. One more, optimistic, slot goes to another interested peer and moves
//! every [`OPTIMISTIC_ROUNDS`] periods, so a newcomer with nothing to give can start, and we
//! discover peers faster than the ones we reward: to the one that waited longest since its last
//! optimistic turn, those that never had one first, ties at random (libtorrent's rule). A random
//! pick would hand a lucky peer the slot several periods in a row, which in a small swarm decides
//! more than tit-for-tat does; counting regular slots as turns would put a free-rider, the one peer
//! that never earns a regular slot, first in line every time. Everybody else is choked.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rand::Rng;

/// How often the choker decides.
pub const RECHOKE_PERIOD: Duration = Duration::from_secs(10);

/// Periods between two moves of the optimistic slot (30 s).
pub const OPTIMISTIC_ROUNDS: u64 = 3;

/// Regular upload slots per file when the user does not choose (`--upload-slots`).
pub const DEFAULT_SLOTS: usize = 4;

/// Identifies a connection within its swarm.
pub type LinkId = u64;

/// What the choker knows of one connection when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: LinkId,
    /// The peer wants chunks we have.
    pub interested: bool,
    /// Bytes the peer sent us in the last period (what ranks it while we download) and since it
    /// connected (what breaks ties: a peer that ever gave beats one that never did).
    pub received: u64,
    pub received_total: u64,
    /// The peer lets us download from it (breaks the ties left: a peer that gave nothing yet
    /// but unchoked us can give back; a free-rider never unchokes anyone).
    pub unchokes_us: bool,
    /// Bytes we sent it since it connected (what ranks it while we seed, least first).
    pub sent: u64,
    /// It has taken none of the bytes we owe it for a while: unchoking it wastes the slot (a
    /// client that asks and never reads is sent the least, so a seeder would keep it first).
    pub stalled: bool,
}

/// One file's choker: remembers the optimistic pick between periods, and when each peer last
/// had it.
#[derive(Debug)]
pub struct Choker {
    slots: usize,
    round: u64,
    optimistic: Option<LinkId>,
    /// The round each connection last got the optimistic slot in (absent: never).
    last_optimistic: HashMap<LinkId, u64>,
}

impl Choker {
    pub fn new(slots: usize) -> Choker {
        Choker {
            slots,
            round: 0,
            optimistic: None,
            last_optimistic: HashMap::new(),
        }
    }

    /// Most peers unchoked at once: the regular slots plus the optimistic one; none when the
    /// user turned uploading off (no slots).
    pub fn capacity(&self) -> usize {
        if self.slots == 0 {
            0
        } else {
            self.slots + 1
        }
    }

    /// One period's decision: the connections to unchoke (all others are choked). `seeding`:
    /// we hold the whole file, so nobody has anything to give us.
    pub fn rechoke(
        &mut self,
        candidates: &[Candidate],
        seeding: bool,
        rng: &mut impl Rng,
    ) -> HashSet<LinkId> {
        if self.slots == 0 {
            return HashSet::new();
        }
        let mut interested: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.interested && !c.stalled)
            .collect();
        // Random order first, so equal scores are ranked at random.
        for i in (1..interested.len()).rev() {
            interested.swap(i, rng.random_range(0..=i));
        }
        if seeding {
            interested.sort_by_key(|c| c.sent);
        } else {
            interested
                .sort_by_key(|c| std::cmp::Reverse((c.received, c.received_total, c.unchokes_us)));
        }
        let mut unchoked: HashSet<LinkId> =
            interested.iter().take(self.slots).map(|c| c.id).collect();
        let others: Vec<&Candidate> = interested
            .iter()
            .copied()
            .filter(|c| !unchoked.contains(&c.id))
            .collect();
        let keep = !self.round.is_multiple_of(OPTIMISTIC_ROUNDS)
            && self
                .optimistic
                .is_some_and(|o| others.iter().any(|c| c.id == o));
        if !keep {
            // `others` is in random order, so the first of equal waits is a random one.
            self.optimistic = others
                .iter()
                .min_by_key(|c| self.last_optimistic.get(&c.id).map_or(0, |r| r + 1))
                .map(|c| c.id);
        }
        self.last_optimistic
            .retain(|id, _| candidates.iter().any(|c| c.id == *id));
        if let Some(o) = self.optimistic {
            if others.iter().any(|c| c.id == o) {
                unchoked.insert(o);
                self.last_optimistic.insert(o, self.round);
            }
        }
        self.round += 1;
        unchoked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: LinkId, interested: bool, received: u64) -> Candidate {
        Candidate {
            id,
            interested,
            received,
            received_total: received,
            unchokes_us: false,
            sent: 0,
            stalled: false,
        }
    }

    #[test]
    fn the_best_givers_get_the_regular_slots_and_one_more_gets_the_optimistic() {
        let mut rng = rand::rng();
        let mut choker = Choker::new(2);
        let peers = [
            c(1, true, 100),
            c(2, true, 900),
            c(3, true, 500),
            c(4, true, 0),
            c(5, false, 10_000),
        ];
        let unchoked = choker.rechoke(&peers, false, &mut rng);
        assert!(
            unchoked.contains(&2) && unchoked.contains(&3),
            "{unchoked:?}"
        );
        assert!(!unchoked.contains(&5), "not interested: never unchoked");
        assert_eq!(
            unchoked.len(),
            3,
            "two regular slots and the optimistic one"
        );
    }

    #[test]
    fn the_optimistic_slot_stays_for_its_rounds_then_moves() {
        let mut rng = rand::rng();
        let mut choker = Choker::new(1);
        let peers: Vec<Candidate> = (1..=20)
            .map(|id| c(id, true, if id == 1 { 1000 } else { 0 }))
            .collect();
        let mut picks = Vec::new();
        for _ in 0..30 {
            let unchoked = choker.rechoke(&peers, false, &mut rng);
            assert!(unchoked.contains(&1));
            let optimistic: Vec<_> = unchoked.iter().filter(|id| **id != 1).copied().collect();
            assert_eq!(optimistic.len(), 1);
            picks.push(optimistic[0]);
        }
        for round in picks.chunks(OPTIMISTIC_ROUNDS as usize) {
            assert!(
                round.iter().all(|p| *p == round[0]),
                "moved within a rotation: {picks:?}"
            );
        }
        let distinct: HashSet<_> = picks.iter().collect();
        assert!(
            distinct.len() > 3,
            "the optimistic slot should move: {picks:?}"
        );
    }

    #[test]
    fn the_optimistic_slot_goes_to_whoever_waited_longest() {
        let mut rng = rand::rng();
        let mut choker = Choker::new(1);
        // Peer 1 gives most and keeps the regular slot; 2..=5 share the optimistic one.
        let peers: Vec<Candidate> = (1..=5)
            .map(|id| c(id, true, if id == 1 { 1000 } else { 0 }))
            .collect();
        let mut order = Vec::new();
        for _ in 0..(4 * OPTIMISTIC_ROUNDS) {
            let unchoked = choker.rechoke(&peers, false, &mut rng);
            order.extend(unchoked.into_iter().filter(|id| *id != 1));
        }
        let turns: Vec<LinkId> = order
            .chunks(OPTIMISTIC_ROUNDS as usize)
            .map(|r| r[0])
            .collect();
        let distinct: HashSet<_> = turns.iter().collect();
        assert_eq!(
            distinct.len(),
            4,
            "each waiting peer gets a turn before any gets a second: {turns:?}"
        );
        // A newcomer goes before everyone who had a turn.
        let mut with_newcomer = peers.clone();
        with_newcomer.push(c(9, true, 0));
        for _ in 0..OPTIMISTIC_ROUNDS {
            let unchoked = choker.rechoke(&with_newcomer, false, &mut rng);
            if unchoked.contains(&9) {
                return;
            }
        }
        panic!("the newcomer never got the optimistic slot");
    }

    #[test]
    fn regular_slots_do_not_count_as_optimistic_turns() {
        let mut rng = rand::rng();
        let mut choker = Choker::new(1);
        let (a, b, free_rider) = (1, 2, 3);
        let gave = |id, bytes| Candidate {
            received_total: 50_000,
            ..c(id, true, bytes)
        };
        // A gives and holds the regular slot; the free-rider has the optimistic turn, then B
        // (a newcomer) has it.
        for _ in 0..OPTIMISTIC_ROUNDS {
            let unchoked =
                choker.rechoke(&[gave(a, 1000), c(free_rider, true, 0)], false, &mut rng);
            assert_eq!(unchoked, HashSet::from([a, free_rider]));
        }
        for _ in 0..OPTIMISTIC_ROUNDS {
            let peers = [gave(a, 1000), gave(b, 500), c(free_rider, true, 0)];
            assert_eq!(
                choker.rechoke(&peers, false, &mut rng),
                HashSet::from([a, b])
            );
        }
        // B now gives most; A, unchoked until now but never optimistically, has its turn
        // before the free-rider gets a second one.
        let peers = [gave(a, 0), gave(b, 1000), c(free_rider, true, 0)];
        assert_eq!(
            choker.rechoke(&peers, false, &mut rng),
            HashSet::from([a, b])
        );
    }

    #[test]
    fn among_peers_that_gave_nothing_lately_those_that_ever_gave_come_first() {
        let mut rng = rand::rng();
        let mut choker = Choker::new(1);
        let free_rider = c(1, true, 0);
        let giver = Candidate {
            received_total: 50_000,
            ..c(2, true, 0)
        };
        for _ in 0..20 {
            let unchoked = choker.rechoke(&[free_rider, giver], false, &mut rng);
            assert!(unchoked.contains(&2), "{unchoked:?}");
        }
    }

    #[test]
    fn among_peers_that_never_gave_those_that_unchoke_us_come_first() {
        let mut rng = rand::rng();
        let mut choker = Choker::new(1);
        let newcomer = Candidate {
            unchokes_us: true,
            ..c(2, true, 0)
        };
        let peers = [c(1, true, 0), newcomer, c(3, true, 0)];
        for _ in 0..20 {
            let unchoked = choker.rechoke(&peers, false, &mut rng);
            assert!(unchoked.contains(&2), "{unchoked:?}");
        }
    }

    #[test]
    fn a_seeder_takes_turns_instead_of_feeding_the_fastest() {
        let mut rng = rand::rng();
        let mut choker = Choker::new(2);
        // Peer 1 took the most so far (it downloads fastest, having nothing to upload).
        let peers = [
            Candidate {
                sent: 9_000_000,
                ..c(1, true, 0)
            },
            Candidate {
                sent: 1_000,
                ..c(2, true, 0)
            },
            Candidate {
                sent: 2_000,
                ..c(3, true, 0)
            },
            Candidate {
                sent: 5_000_000,
                ..c(4, true, 0)
            },
        ];
        let unchoked = choker.rechoke(&peers, true, &mut rng);
        assert!(
            unchoked.contains(&2) && unchoked.contains(&3),
            "{unchoked:?}"
        );
        assert_eq!(unchoked.len(), 3);
    }

    #[test]
    fn a_peer_that_takes_none_of_our_bytes_gets_no_slot() {
        let mut rng = rand::rng();
        let mut choker = Choker::new(1);
        let stalled = |id| Candidate {
            stalled: true,
            ..c(id, true, 0)
        };
        // The stalled ones were sent the least: a seeder would rank them first.
        let peers = [
            stalled(1),
            stalled(2),
            Candidate {
                sent: 9_000_000,
                ..c(3, true, 0)
            },
        ];
        for _ in 0..2 * OPTIMISTIC_ROUNDS {
            let unchoked = choker.rechoke(&peers, true, &mut rng);
            assert_eq!(
                unchoked,
                HashSet::from([3]),
                "neither slot for a stalled peer"
            );
        }
    }

    #[test]
    fn no_slots_means_no_uploads_at_all() {
        let mut choker = Choker::new(0);
        assert_eq!(choker.capacity(), 0);
        assert!(choker
            .rechoke(&[c(1, true, 5)], false, &mut rand::rng())
            .is_empty());
    }

    #[test]
    fn nobody_interested_means_nobody_unchoked() {
        let mut choker = Choker::new(4);
        assert!(choker
            .rechoke(&[c(1, false, 5)], false, &mut rand::rng())
            .is_empty());
        assert!(choker.rechoke(&[], false, &mut rand::rng()).is_empty());
    }
}

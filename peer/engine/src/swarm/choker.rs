//! Who gets our upload bandwidth: the choker of BEP 3 and libtorrent, as a pure decision.
//!
//! Every [`RECHOKE_PERIOD`] a file's choker unchokes the `slots` interested peers that did the
//! most for us in the last period: while we download, the ones that sent us the most bytes
//! (tit-for-tat: who gives, gets); once we seed, the ones we uploaded to fastest (they finish
//! soonest and start passing chunks on). One more, optimistic, slot goes to a random other
//! interested peer and moves every [`OPTIMISTIC_ROUNDS`] periods, so a newcomer with nothing to
//! give can start, and we discover peers faster than the ones we reward. Newly connected peers
//! are three times as likely to get it. Everybody else is choked.

use std::collections::HashSet;
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
    /// Bytes the peer sent us (downloading) or we sent it (seeding) in the last period.
    pub score: u64,
    /// Connected for less than the optimistic rotation (3 times as likely to be picked).
    pub new: bool,
}

/// One file's choker: remembers the optimistic pick between periods.
#[derive(Debug)]
pub struct Choker {
    slots: usize,
    round: u64,
    optimistic: Option<LinkId>,
}

impl Choker {
    pub fn new(slots: usize) -> Choker {
        Choker {
            slots,
            round: 0,
            optimistic: None,
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

    /// One period's decision: the connections to unchoke (all others are choked).
    pub fn rechoke(&mut self, candidates: &[Candidate], rng: &mut impl Rng) -> HashSet<LinkId> {
        if self.slots == 0 {
            return HashSet::new();
        }
        let mut interested: Vec<&Candidate> = candidates.iter().filter(|c| c.interested).collect();
        // Random order first, so equal scores are ranked at random.
        for i in (1..interested.len()).rev() {
            interested.swap(i, rng.random_range(0..=i));
        }
        interested.sort_by_key(|c| std::cmp::Reverse(c.score));
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
            self.optimistic = pick_weighted(&others, rng);
        }
        if let Some(o) = self.optimistic {
            if others.iter().any(|c| c.id == o) {
                unchoked.insert(o);
            }
        }
        self.round += 1;
        unchoked
    }
}

/// A random candidate, new ones counting three times.
fn pick_weighted(candidates: &[&Candidate], rng: &mut impl Rng) -> Option<LinkId> {
    let weight = |c: &Candidate| if c.new { 3 } else { 1 };
    let total: u32 = candidates.iter().map(|c| weight(c)).sum();
    if total == 0 {
        return None;
    }
    let mut at = rng.random_range(0..total);
    for c in candidates {
        if at < weight(c) {
            return Some(c.id);
        }
        at -= weight(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: LinkId, interested: bool, score: u64) -> Candidate {
        Candidate {
            id,
            interested,
            score,
            new: false,
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
        let unchoked = choker.rechoke(&peers, &mut rng);
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
            let unchoked = choker.rechoke(&peers, &mut rng);
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
    fn newcomers_are_favoured_for_the_optimistic_slot() {
        let mut rng = rand::rng();
        let mut new_picked = 0;
        for _ in 0..3000 {
            let mut choker = Choker::new(0);
            let peers = [
                Candidate {
                    new: true,
                    ..c(1, true, 0)
                },
                c(2, true, 0),
                c(3, true, 0),
                c(4, true, 0),
            ];
            if choker.rechoke(&peers, &mut rng).contains(&1) {
                new_picked += 1;
            }
        }
        // Weight 3 of 6: about half of the picks.
        assert!((1300..1700).contains(&new_picked), "{new_picked}");
    }

    #[test]
    fn no_slots_means_no_uploads_at_all() {
        let mut choker = Choker::new(0);
        assert_eq!(choker.capacity(), 0);
        assert!(choker
            .rechoke(&[c(1, true, 5)], &mut rand::rng())
            .is_empty());
    }

    #[test]
    fn nobody_interested_means_nobody_unchoked() {
        let mut choker = Choker::new(4);
        assert!(choker
            .rechoke(&[c(1, false, 5)], &mut rand::rng())
            .is_empty());
        assert!(choker.rechoke(&[], &mut rand::rng()).is_empty());
    }
}

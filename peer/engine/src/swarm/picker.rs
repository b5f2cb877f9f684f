//! Which chunk to fetch from whom: rarest first among connected peers, random ties, runs of
//! consecutive chunks (so the seeder reads, and we write, with one syscall per run), and the
//! very first chunk a random one from a random peer, as the seed protocol does.

use rand::Rng;

use crate::bitfield::Bitfield;
use crate::wire::ChunkRun;

/// Where one chunk of the download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Missing,
    Requested,
    /// Received, being verified and written: not worth asking anyone again.
    Verifying,
    Have,
}

/// Chunks per scheduling block: the unit of locality and of the rarest-first scan.
const BLOCK: u32 = 64;

/// Blocks examined per pick: rarest-first over a random sample keeps picks cheap on huge files
/// while still favouring rare chunks (the usual approximation of rarest-first).
const SAMPLE_BLOCKS: usize = 256;

/// The download's view of every chunk and of how many connected peers hold it.
pub(super) struct Picker {
    state: Vec<State>,
    avail: Vec<u16>,
    /// Missing, unrequested chunks per block.
    open: Vec<u32>,
    first_pick: bool,
}

impl std::fmt::Debug for Picker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = |s: State| self.state.iter().filter(|x| **x == s).count();
        write!(
            f,
            "chunks: {} missing, {} requested, {} verifying, {} held",
            count(State::Missing),
            count(State::Requested),
            count(State::Verifying),
            count(State::Have)
        )
    }
}

impl Picker {
    /// A picker for a file of which the chunks set in `have` are already verified.
    pub fn new(have: &Bitfield) -> Self {
        let state: Vec<State> = (0..have.len())
            .map(|i| {
                if have.get(i) {
                    State::Have
                } else {
                    State::Missing
                }
            })
            .collect();
        let mut open = vec![0u32; have.len().div_ceil(BLOCK) as usize];
        for (i, s) in state.iter().enumerate() {
            if *s == State::Missing {
                open[i / BLOCK as usize] += 1;
            }
        }
        Picker {
            state,
            avail: vec![0; have.len() as usize],
            open,
            first_pick: have.none(),
        }
    }

    /// A connected peer holds the chunks of `field`.
    pub fn add_peer(&mut self, field: &Bitfield) {
        field.ones().for_each(|i| self.add_one(i));
    }

    /// A peer holding `field` is gone.
    pub fn remove_peer(&mut self, field: &Bitfield) {
        field.ones().for_each(|i| self.forget_one(i));
    }

    /// One more connected peer holds chunk `i` (its HAVE).
    pub fn add_one(&mut self, i: u32) {
        if let Some(a) = self.avail.get_mut(i as usize) {
            *a = a.saturating_add(1);
        }
    }

    /// One connected peer fewer holds chunk `i` (it rejected it, so it does not).
    pub fn forget_one(&mut self, i: u32) {
        if let Some(a) = self.avail.get_mut(i as usize) {
            *a = a.saturating_sub(1);
        }
    }

    fn set_state(&mut self, i: u32, to: State) {
        let s = &mut self.state[i as usize];
        let b = (i / BLOCK) as usize;
        if *s == State::Missing && to != State::Missing {
            self.open[b] -= 1;
        } else if *s != State::Missing && to == State::Missing {
            self.open[b] += 1;
        }
        *s = to;
    }

    /// The chunks of `run` go back to the pool (their peer failed, rejected them or sent
    /// them corrupt).
    pub fn release(&mut self, run: ChunkRun) {
        for i in run.first..run.end().min(self.state.len() as u32) {
            if matches!(self.state[i as usize], State::Requested | State::Verifying) {
                self.set_state(i, State::Missing);
            }
        }
    }

    /// The chunks of `run` arrived and are being verified: the endgame leaves them alone.
    pub fn received(&mut self, run: ChunkRun) {
        for i in run.first..run.end().min(self.state.len() as u32) {
            if self.state[i as usize] == State::Requested {
                self.set_state(i, State::Verifying);
            }
        }
    }

    /// The chunks of `run` are verified and written.
    pub fn mark_have(&mut self, run: ChunkRun) {
        for i in run.first..run.end().min(self.state.len() as u32) {
            self.set_state(i, State::Have);
        }
    }

    fn candidate(&self, field: &Bitfield, i: u32) -> bool {
        self.state[i as usize] == State::Missing && field.get(i)
    }

    /// In the endgame (no chunk left unclaimed), a run of chunks claimed by other peers that a
    /// peer with `field` also has, picked at random; `None` while unclaimed chunks remain.
    pub fn endgame(&self, field: &Bitfield, run_len: u32) -> Option<ChunkRun> {
        if self.open.iter().any(|&o| o > 0) {
            return None;
        }
        let owed = |i: u32| self.state[i as usize] == State::Requested && field.get(i);
        let options: Vec<u32> = (0..self.state.len() as u32).filter(|&i| owed(i)).collect();
        let first = *options.get(rand::rng().random_range(0..options.len().max(1)))?;
        let count = (first..)
            .take(run_len as usize)
            .take_while(|&i| (i as usize) < self.state.len() && owed(i))
            .count();
        Some(ChunkRun::new(first, count as u32))
    }

    /// Claims the next run to request from a peer with `field`. `after` is where this peer's
    /// previous run ended: the run continues from there when that chunk is as rare as the
    /// rarest one found, so ties do not scatter a download into short runs that start at
    /// random places (a lone seeder would otherwise get requests of a few dozen chunks).
    pub fn pick(&mut self, field: &Bitfield, run_len: u32, after: Option<u32>) -> Option<ChunkRun> {
        let n = self.state.len() as u32;
        let blocks = self.open.len();
        if blocks == 0 {
            return None;
        }
        let mut rng = rand::rng();
        if self.first_pick {
            self.first_pick = false;
            let options: Vec<u32> = (0..n).filter(|&i| self.candidate(field, i)).collect();
            if let Some(&i) = options.get(rng.random_range(0..options.len().max(1))) {
                self.set_state(i, State::Requested);
                return Some(ChunkRun::new(i, 1));
            }
            return None;
        }
        let start = rng.random_range(0..blocks);
        let mut best: Option<(u16, u32)> = None;
        let mut seen = 0;
        for k in 0..blocks {
            let b = (start + k) % blocks;
            if self.open[b] == 0 {
                continue;
            }
            let lo = b as u32 * BLOCK;
            let hi = (lo + BLOCK).min(n);
            // From a random place in the block, so peers that pick the same block at the same
            // time (all of them, early on) mostly ask for different chunks of it.
            let from = rng.random_range(lo..hi);
            let Some(i) = (from..hi)
                .chain(lo..from)
                .find(|&i| self.candidate(field, i))
            else {
                continue;
            };
            let rarity = self.avail[i as usize];
            if best.is_none_or(|(r, _)| rarity < r) {
                best = Some((rarity, i));
            }
            seen += 1;
            if rarity <= 1 || seen >= SAMPLE_BLOCKS {
                break;
            }
        }
        let (rarest, mut first) = best?;
        if let Some(next) = after.filter(|&i| i < n && self.candidate(field, i)) {
            if self.avail[next as usize] <= rarest {
                first = next;
            }
        }
        let mut count = 0;
        while count < run_len && first + count < n && self.candidate(field, first + count) {
            self.set_state(first + count, State::Requested);
            count += 1;
        }
        Some(ChunkRun::new(first, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u32, set: impl Fn(u32) -> bool) -> Bitfield {
        let mut f = Bitfield::empty(n);
        (0..n).filter(|&i| set(i)).for_each(|i| {
            f.set(i);
        });
        f
    }

    #[test]
    fn first_pick_is_one_random_chunk_then_runs_of_the_rarest() {
        let n = 1000;
        let mut s = Picker::new(&Bitfield::empty(n));
        let seeder = Bitfield::full(n);
        // A second peer holds the upper half, so the lower half is rarer.
        let partial = field(n, |i| i >= 500);
        s.add_peer(&seeder);
        s.add_peer(&partial);
        let run = s.pick(&seeder, 32, None).unwrap();
        assert_eq!(run.count, 1, "the first request is a single chunk");
        assert!(run.first < n);
        for _ in 0..10 {
            let ChunkRun { first, count } = s.pick(&seeder, 32, None).unwrap();
            // A run starts at a rarest chunk (it may run on past the rare ones).
            assert!(
                first < 500,
                "run {first}+{count} does not start among the rarest"
            );
            assert!((1..=32).contains(&count));
        }
        // The partial peer is only ever given chunks it has.
        assert!(s.pick(&partial, 32, None).unwrap().first >= 500);
    }

    /// From one seeder (every chunk equally rare) a peer's runs follow each other, full length;
    /// a rarer chunk elsewhere still comes first.
    #[test]
    fn runs_continue_where_the_last_one_ended_while_it_is_as_rare() {
        let n = 4096;
        let mut s = Picker::new(&Bitfield::empty(n));
        let seeder = Bitfield::full(n);
        s.add_peer(&seeder);
        let single = s.pick(&seeder, 128, None).unwrap();
        let mut after = Some(single.end());
        let mut runs = Vec::new();
        for _ in 0..8 {
            let run = s.pick(&seeder, 128, after).unwrap();
            after = Some(run.end());
            runs.push(run);
        }
        // A run stops early only at the end of the file or at the random first chunk, already
        // taken; the next one then starts elsewhere.
        let cut = |r: &ChunkRun| r.end() == n || r.end() == single.first;
        for pair in runs.windows(2).filter(|p| !cut(&p[0])) {
            assert_eq!(pair[1].first, pair[0].end(), "{runs:?}");
        }
        assert!(runs.iter().all(|r| r.count == 128 || cut(r)), "{runs:?}");
        // A second peer holding every chunk but the upper quarter makes that quarter rarer.
        s.add_peer(&field(n, |i| i < 3 * n / 4));
        let run = s.pick(&seeder, 128, after).unwrap();
        assert!(run.first >= 3 * n / 4, "{run:?} is not among the rarest");
    }

    #[test]
    fn released_chunks_return_and_endgame_shares_the_last_ones() {
        let n = 100;
        let mut s = Picker::new(&field(n, |i| i < 50));
        let all = Bitfield::full(n);
        s.add_peer(&all);
        let mut claimed = Vec::new();
        while let Some(run) = s.pick(&all, 64, None) {
            claimed.push(run);
        }
        assert_eq!(
            claimed.iter().map(|r| r.count).sum::<u32>(),
            50,
            "exactly the missing chunks"
        );
        let first_run = claimed[0];
        // Everything is claimed: an idle peer may ask for chunks another peer still owes.
        let e = s.endgame(&all, 64).unwrap();
        assert!(e.first >= 50 && e.count >= 1);
        s.release(first_run);
        assert!(
            s.endgame(&all, 64).is_none(),
            "no endgame while chunks are unclaimed"
        );
        let mut again = 0;
        while let Some(ChunkRun { first: f, count: c }) = s.pick(&all, 64, None) {
            assert!(
                f >= first_run.first && f + c <= first_run.end(),
                "{f}+{c} was not released"
            );
            again += c;
        }
        assert_eq!(
            again, first_run.count,
            "released chunks are handed out again, once"
        );
        s.mark_have(ChunkRun::new(50, 50));
        assert!(s.pick(&all, 64, None).is_none() && s.endgame(&all, 64).is_none());
    }
}

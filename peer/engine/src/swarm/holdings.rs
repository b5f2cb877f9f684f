//! Which chunks we hold, what the connections ask of that (our BITFIELD, whether we may serve
//! a chunk, whether a peer has one we lack), and every way it changes after the swarm opens:
//! our download storing verified chunks or failing a write, a mirrored download's record
//! growing, our download finishing. The changes sit together, apart from the rest of the swarm,
//! because new chunks must also reach the HAVE log and wake whoever watches (every connection
//! forwards them, the downloader looks for completion); a change made anywhere else could skip
//! that.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;

use crate::bitfield::Bitfield;
use crate::share::PartialFile;
use crate::wire::ChunkRun;

use super::link::Link;
use super::{State, Swarm};

/// Which chunks we hold and where they are read from.
#[derive(Debug)]
pub(super) enum Holdings {
    /// A complete file: every chunk.
    All,
    /// Our own download in progress: the chunks verified and written so far.
    Downloading(Arc<PartialFile>),
    /// Another process's download in this directory: what its resume record lists.
    Recorded(Bitfield),
}

impl Swarm {
    /// True while chunks are missing and we fetch them.
    pub fn is_downloading(&self) -> bool {
        self.state.lock().picker.is_some()
    }

    /// True when we hold every chunk.
    pub fn is_complete(&self) -> bool {
        match &self.state.lock().holdings {
            Holdings::All => true,
            Holdings::Downloading(p) => p.is_complete(),
            Holdings::Recorded(have) => have.count() == self.manifest.chunk_count(),
        }
    }

    /// True when we hold chunk `index` (verified) and may serve it.
    pub(super) fn has(&self, index: u32) -> bool {
        index < self.manifest.chunk_count()
            && match &self.state.lock().holdings {
                Holdings::All => true,
                Holdings::Downloading(p) => p.has(index),
                Holdings::Recorded(have) => have.get(index),
            }
    }

    /// Our BITFIELD.
    pub(super) fn bitfield(&self) -> Bitfield {
        match &self.state.lock().holdings {
            Holdings::All => Bitfield::full(self.manifest.chunk_count()),
            Holdings::Downloading(p) => p.have_bits(),
            Holdings::Recorded(have) => have.clone(),
        }
    }

    /// True when `theirs` holds a chunk we lack (we are interested in that peer).
    pub(super) fn wants_any_of(&self, theirs: &Bitfield) -> bool {
        match &self.state.lock().holdings {
            Holdings::All => false,
            Holdings::Downloading(p) => p.with_have(|ours| theirs.has_any_not_in(ours)),
            // Somebody else downloads it; this process only serves what that one recorded.
            Holdings::Recorded(_) => false,
        }
    }

    /// Chunks verified since `link` last asked (or since it was registered).
    pub(super) fn unread_haves(&self, link: &Link) -> Vec<u32> {
        self.state.lock().haves.take_unread(link.id)
    }

    /// Chunks became verified: our own download wrote them, or the mirrored record lists them.
    fn announce_verified(&self, state: &mut State, newly: &[u32]) {
        if newly.is_empty() {
            return;
        }
        state.haves.append(newly);
        self.have_seq.send_replace(state.haves.end());
    }

    /// Chunks of `run` were verified and written by a connection to `from`; `newly` are the ones
    /// nobody had delivered before.
    pub(super) fn stored(&self, run: ChunkRun, newly: &[u32], from: SocketAddr, bytes: u64) {
        let mut state = self.state.lock();
        if let Some(picker) = state.picker.as_mut() {
            picker.mark_have(run);
        }
        *state.delivered.entry(from).or_default() += bytes;
        self.announce_verified(&mut state, newly);
        drop(state);
        self.downloaded.fetch_add(bytes, Ordering::Relaxed);
        self.local.downloaded.fetch_add(bytes, Ordering::Relaxed);
        self.chunks_new
            .fetch_add(newly.len() as u32, Ordering::Relaxed);
        self.chunks_again
            .fetch_add(run.count - newly.len() as u32, Ordering::Relaxed);
    }

    /// A verified chunk could not be written: the download stops with this error.
    pub(super) fn fail_write(&self, error: String) {
        let mut state = self.state.lock();
        state.write_error.get_or_insert(error);
        drop(state);
        self.have_seq.send_modify(|_| ());
        self.stop.cancel();
    }

    /// Changes each time chunks become verified here or a write fails: whoever waits for the
    /// download to complete looks again at once instead of at its next tick.
    pub fn changes(&self) -> watch::Receiver<usize> {
        self.have_seq.subscribe()
    }

    /// The write error that stopped the download, if one did.
    pub fn write_error(&self) -> Option<String> {
        self.state.lock().write_error.clone()
    }

    /// For a mirrored download of another process: takes its latest resume record. Chunks it
    /// lists that we did not have become HAVE for every peer; `None` means that download is
    /// finished (complete file in place), so every chunk is served from now on.
    pub fn refresh_record(&self, record: Option<Bitfield>) {
        let mut state = self.state.lock();
        let Holdings::Recorded(old) = &state.holdings else {
            return;
        };
        let fresh: Vec<u32> = match &record {
            Some(now) => now.ones().filter(|&i| !old.get(i)).collect(),
            None => (0..self.manifest.chunk_count())
                .filter(|&i| !old.get(i))
                .collect(),
        };
        state.holdings = match record {
            Some(now) => Holdings::Recorded(now),
            None => Holdings::All,
        };
        self.announce_verified(&mut state, &fresh);
    }

    /// Our download finished and the file is complete under its name: serve every chunk, stop
    /// requesting, and drop connections to other seeders (neither needs the other).
    pub fn finish_download(&self) {
        let mut state = self.state.lock();
        state.holdings = Holdings::All;
        state.picker = None;
        for link in state.links.values() {
            if link.peer_complete() {
                link.close();
            }
        }
    }
}

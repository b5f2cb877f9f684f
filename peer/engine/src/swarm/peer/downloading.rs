//! The downloading half of a connection: taking CHUNKs and REJECTs for what we requested,
//! learning the peer's chunks from its HAVEs, handing deliveries to a store and settling what
//! it did, asking for more, and giving everything still claimed back to the picker at the end.

use std::net::SocketAddr;
use std::time::Instant;

use futures::stream::StreamExt;

use crate::metrics::metrics;
use crate::swarm::storing::{self, Stored};
use crate::swarm::Holdings;
use crate::wire::{ChunkRun, Frame, MAX_REQUEST_CHUNKS};

use super::{
    PeerError, Task, ENDGAME_RUN, MAX_DELIVERY, MAX_FALSE_CLAIMS, MAX_REPEATED_HAVES, MIN_WINDOW,
    QUEUE_TIME,
};

impl Task {
    pub(super) fn on_chunk(&mut self, index: u32, data: bytes::Bytes) -> Result<(), PeerError> {
        let Some(front) = self.inflight.front().copied() else {
            return Err(PeerError::Hostile(format!("unrequested CHUNK {index}")));
        };
        if index != front.first {
            return Err(PeerError::Hostile(format!(
                "CHUNK {index} out of order, expected {}",
                front.first
            )));
        }
        if self.received.run().end() != index {
            // Not consecutive with the chunks held: they form a delivery of their own.
            self.gather_delivery();
        }
        if self.received.chunks.is_empty() {
            self.received.first = index;
        }
        let len = data.len() as u64;
        self.received.chunks.push(data);
        self.outstanding -= 1;
        self.advance(1);
        if let Some(until) = self.swarm.local.download.book(len, Instant::now()) {
            self.paused_until = Some(until);
        }
        if self.received.chunks.len() >= MAX_DELIVERY {
            self.gather_delivery();
        }
        Ok(())
    }

    pub(super) fn on_reject(&mut self, rejected: ChunkRun) -> Result<(), PeerError> {
        let Some(front) = self.inflight.front().copied() else {
            return Err(PeerError::Hostile("unrequested REJECT".into()));
        };
        if rejected.first != front.first || rejected.count > front.count {
            return Err(PeerError::Hostile(format!(
                "REJECT {}+{} out of order",
                rejected.first, rejected.count
            )));
        }
        // Chunks delivered before this REJECT form one run; the rejected ones break it.
        self.gather_delivery();
        let mut state = self.swarm.state.lock();
        if let Some(picker) = state.picker.as_mut() {
            picker.release(rejected);
        }
        // Between a CHOKE and the next UNCHOKE a REJECT only means "choked" (protocol.txt
        // §2.4); otherwise the peer does not hold these chunks, whatever it announced.
        if !self.peer_choking {
            if let Some(theirs) = self.theirs.as_mut() {
                for i in rejected.indices() {
                    if theirs.get(i) {
                        self.false_claims += 1;
                        theirs.clear(i);
                        if let Some(picker) = state.picker.as_mut() {
                            picker.forget_one(i);
                        }
                    }
                }
            }
        }
        drop(state);
        if self.false_claims > MAX_FALSE_CLAIMS {
            return Err(PeerError::Hostile(format!(
                "rejected {} chunks it claimed to have",
                self.false_claims
            )));
        }
        self.outstanding -= rejected.count;
        self.advance(rejected.count);
        Ok(())
    }

    pub(super) fn on_have(&mut self, list: &[u32]) -> Result<(), PeerError> {
        let total = self.swarm.manifest.chunk_count();
        let Some(theirs) = self.theirs.as_mut() else {
            return Ok(());
        };
        let mut state = self.swarm.state.lock();
        let mut fresh = false;
        for &i in list {
            if i >= total {
                return Err(PeerError::Hostile(format!(
                    "HAVE {i} beyond {total} chunks"
                )));
            }
            if theirs.set(i) {
                fresh = true;
                if let Some(picker) = state.picker.as_mut() {
                    picker.add_one(i);
                }
            } else {
                self.repeated_haves += 1;
            }
        }
        drop(state);
        if self.repeated_haves > MAX_REPEATED_HAVES {
            return Err(PeerError::Hostile(format!(
                "flooded {} HAVEs of chunks it had announced",
                self.repeated_haves
            )));
        }
        if theirs.count() == total {
            self.link.set_peer_complete(true);
        }
        if fresh && !self.we_interested {
            self.update_interest();
        }
        Ok(())
    }

    /// The oldest request got `by` more chunks answered.
    pub(super) fn advance(&mut self, by: u32) {
        if let Some(front) = self.inflight.front_mut() {
            *front = front.skip(by);
            if front.count == 0 {
                self.inflight.pop_front();
            }
        }
    }

    /// Sets the chunks received so far aside for the next trip to a store.
    pub(super) fn gather_delivery(&mut self) {
        if self.received.chunks.is_empty() {
            return;
        }
        let delivery = std::mem::take(&mut self.received);
        if self.gathered_into.is_none() {
            self.gathered_into = match &self.swarm.state.lock().holdings {
                Holdings::Downloading(p) => Some(p.clone()),
                // The download finished meanwhile (another peer delivered the last chunks).
                _ => return,
            };
        }
        if let Some(picker) = self.swarm.state.lock().picker.as_mut() {
            picker.received(delivery.run());
        }
        self.storing.push_back(delivery.run());
        self.gathered.push(delivery);
    }

    /// Hands the gathered deliveries to a store (verify, then write), in one trip.
    pub(super) fn dispatch_gathered(&mut self) {
        let Some(partial) = self.gathered_into.take() else {
            return;
        };
        self.stores.push_back(storing::store(
            partial,
            self.swarm.manifest.clone(),
            std::mem::take(&mut self.gathered),
        ));
    }

    pub(super) fn on_stored(&mut self, stored: Stored) -> Result<(), PeerError> {
        match stored {
            Stored::Written { run, newly, bytes } => {
                metrics().chunks_verified.add(u64::from(run.count));
                self.link.add_received(bytes);
                self.swarm.stored(run, &newly, self.source_addr(), bytes);
                Ok(())
            }
            Stored::Corrupt { run, index } => {
                metrics().chunks_rejected.inc();
                self.release(run);
                Err(PeerError::Hostile(format!(
                    "chunk {index} does not match the manifest"
                )))
            }
            Stored::Failed { run, error } => {
                self.release(run);
                self.swarm.fail_write(error.clone());
                Err(PeerError::Write(error))
            }
        }
    }

    /// Where this peer is reached, for per-peer statistics: its serving address if it gave one.
    pub(super) fn source_addr(&self) -> SocketAddr {
        self.link.listen.unwrap_or(self.link.addr)
    }

    pub(super) fn release(&self, run: ChunkRun) {
        if let Some(picker) = self.swarm.state.lock().picker.as_mut() {
            picker.release(run);
        }
    }

    /// Keeps our window of requests full while the peer serves us and has what we need.
    pub(super) fn request_more(&mut self) {
        if self.peer_choking || !self.we_interested {
            return;
        }
        let Some(theirs) = self.theirs.as_ref() else {
            return;
        };
        let cfg = &self.swarm.local.config;
        let chunk = f64::from(self.swarm.manifest.chunk_size());
        let queue = (self.delivery.rate() * QUEUE_TIME.as_secs_f64() / chunk) as u32;
        let window = queue.clamp(MIN_WINDOW, cfg.window.max(MIN_WINDOW));
        // Runs no longer than half the window, so a slow peer's queue holds several small ones.
        let run_len = cfg.run_len.min(window / 2).clamp(1, MAX_REQUEST_CHUNKS);
        let mut state = self.swarm.state.lock();
        let Some(picker) = state.picker.as_mut() else {
            return;
        };
        while self.outstanding < window {
            let Some(run) = picker.pick(theirs, run_len, self.next_pick) else {
                break;
            };
            self.next_pick = Some(run.end());
            self.writer.queue(&Frame::Request(run));
            self.inflight.push_back(run);
            self.outstanding += run.count;
        }
        // Endgame: everything is claimed; ask this idle peer too for chunks others still owe,
        // so one slow or stalled peer does not hold up the end of the download.
        if self.inflight.is_empty() {
            if let Some(run) = picker.endgame(theirs, run_len.min(ENDGAME_RUN)) {
                self.writer.queue(&Frame::Request(run));
                self.inflight.push_back(run);
                self.outstanding += run.count;
            }
        }
    }

    /// Sends INTERESTED or NOT_INTERESTED when that changed.
    pub(super) fn update_interest(&mut self) {
        let wanted = self
            .theirs
            .as_ref()
            .is_some_and(|theirs| self.swarm.wants_any_of(theirs));
        if wanted != self.we_interested {
            self.we_interested = wanted;
            self.link.set_we_interested(wanted);
            self.writer.queue(if wanted {
                &Frame::Interested
            } else {
                &Frame::NotInterested
            });
        }
    }

    /// After the connection ended: waits for deliveries being stored (what verified is kept),
    /// then gives every chunk still claimed by this connection back to the picker.
    pub(super) async fn wind_down(&mut self) {
        // Chunks received but not yet stored are as good as those being stored.
        self.gather_delivery();
        self.dispatch_gathered();
        while let Some(trip) = self.stores.next().await {
            for stored in trip {
                self.storing.pop_front();
                match stored {
                    Stored::Written { run, newly, bytes } => {
                        metrics().chunks_verified.add(u64::from(run.count));
                        self.link.add_received(bytes);
                        self.swarm.stored(run, &newly, self.source_addr(), bytes);
                    }
                    Stored::Corrupt { run, .. } => {
                        metrics().chunks_rejected.inc();
                        self.release(run);
                    }
                    Stored::Failed { run, .. } => self.release(run),
                }
            }
        }
        let mut state = self.swarm.state.lock();
        if let Some(picker) = state.picker.as_mut() {
            for run in self.inflight.iter().chain(&self.storing) {
                picker.release(*run);
            }
            picker.release(self.received.run());
            if self.counted {
                if let Some(theirs) = &self.theirs {
                    picker.remove_peer(theirs);
                }
            }
        }
    }
}

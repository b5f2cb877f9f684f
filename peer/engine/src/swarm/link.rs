//! What a connection's task and the rest of its swarm (the choker, statistics, the downloader)
//! share about it: flags the task sets and the others read, and the choker's decision the task
//! carries out. Atomics plus a [`Notify`], so neither side ever waits for the other.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::choker::LinkId;
use crate::wire::PeerId;

#[derive(Debug)]
pub(super) struct Link {
    pub id: LinkId,
    pub remote: PeerId,
    /// The address the connection is with.
    pub addr: SocketAddr,
    /// Where the peer serves, as it announces it (unspecified IP filled in from `addr`).
    pub listen: Option<SocketAddr>,
    /// We opened the connection.
    pub initiated: bool,
    peer_interested: AtomicBool,
    we_interested: AtomicBool,
    peer_choking: AtomicBool,
    peer_complete: AtomicBool,
    /// Verified chunk bytes the peer sent us / chunk bytes we sent it, in all.
    received: AtomicU64,
    sent: AtomicU64,
    /// `received` at the last rechoke.
    received_mark: AtomicU64,
    /// The choker's decision: we serve this peer's requests.
    unchoke: AtomicBool,
    /// We are serving them now (the task's last CHOKE/UNCHOKE).
    unchoked_now: AtomicBool,
    /// The connection must end (a duplicate, a seeder once we are complete, the swarm closing).
    closing: AtomicBool,
    /// A newer connection between the same peers took this one's place (protocol.txt §2.4).
    replaced: AtomicBool,
    /// The peer has taken none of the bytes we owe it for a while: an upload slot is wasted on it.
    stalled: AtomicBool,
    wake: Notify,
}

impl Link {
    pub fn new(
        id: LinkId,
        remote: PeerId,
        addr: SocketAddr,
        listen: Option<SocketAddr>,
        initiated: bool,
    ) -> Link {
        Link {
            id,
            remote,
            addr,
            listen,
            initiated,
            peer_interested: AtomicBool::new(false),
            we_interested: AtomicBool::new(false),
            peer_choking: AtomicBool::new(true),
            peer_complete: AtomicBool::new(false),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received_mark: AtomicU64::new(0),
            unchoke: AtomicBool::new(false),
            unchoked_now: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    pub fn peer_interested(&self) -> bool {
        self.peer_interested.load(Ordering::Relaxed)
    }

    pub fn set_peer_interested(&self, v: bool) {
        self.peer_interested.store(v, Ordering::Relaxed);
    }

    pub fn we_interested(&self) -> bool {
        self.we_interested.load(Ordering::Relaxed)
    }

    pub fn set_we_interested(&self, v: bool) {
        self.we_interested.store(v, Ordering::Relaxed);
    }

    pub fn set_peer_choking(&self, v: bool) {
        self.peer_choking.store(v, Ordering::Relaxed);
    }

    /// The peer lets us download from it: it can give back what we upload to it.
    pub fn unchokes_us(&self) -> bool {
        !self.peer_choking.load(Ordering::Relaxed)
    }

    pub fn peer_complete(&self) -> bool {
        self.peer_complete.load(Ordering::Relaxed)
    }

    pub fn set_peer_complete(&self, v: bool) {
        self.peer_complete.store(v, Ordering::Relaxed);
    }

    /// The peer unchoked us and has chunks we want: we are downloading from it.
    pub fn downloading_from(&self) -> bool {
        self.we_interested() && self.unchokes_us()
    }

    /// We serve the peer and it wants our chunks: we are uploading to it.
    pub fn uploading_to(&self) -> bool {
        self.peer_interested() && self.unchoked_now.load(Ordering::Relaxed)
    }

    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Chunk bytes we sent the peer since it connected.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Verified bytes the peer sent us in the period just ended (what the choker ranks it by
    /// while we download); a new period starts.
    pub fn take_round_received(&self) -> u64 {
        let now = self.received.load(Ordering::Relaxed);
        now.saturating_sub(self.received_mark.swap(now, Ordering::Relaxed))
    }

    /// The choker's decision; the task applies it when woken.
    pub fn set_unchoked(&self, v: bool) {
        if self.unchoke.swap(v, Ordering::Relaxed) != v {
            self.wake.notify_one();
        }
    }

    /// The choker's current decision for this peer.
    pub fn unchoked(&self) -> bool {
        self.unchoke.load(Ordering::Relaxed)
    }

    /// The task sent CHOKE (`false`) or UNCHOKE (`true`).
    pub fn set_unchoked_now(&self, v: bool) {
        self.unchoked_now.store(v, Ordering::Relaxed);
    }

    /// Asks the task to end the connection.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub fn set_stalled(&self, v: bool) {
        self.stalled.store(v, Ordering::Relaxed);
    }

    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Asks the task to end the connection as the duplicate of a newer one.
    pub fn replace(&self) {
        self.replaced.store(true, Ordering::Relaxed);
        self.close();
    }

    pub fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::Relaxed)
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Resolves when the choker or the swarm has something for the task.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

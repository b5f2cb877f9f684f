//! The JSON status API: `/api/status` (the node: addresses, reachability, uptime, totals) and
//! `/api/files` (each file of the share directory: size, chunks held, progress, rates, peers).
//! protocol.txt §8 is the contract for both shapes: fields are added, never renamed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use peer_engine::name::ShareName;
use peer_engine::node::Node;
use peer_engine::rate::RateMeter;
use peer_engine::reach::{OwnNat, Presence, RelayState};
use peer_engine::share::{LocalFile, ShareDir};
use peer_engine::swarm::budget::ConnectionBudget;
use peer_engine::swarm::registry::Swarms;
use peer_engine::swarm::LocalPeer;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often byte counters are sampled for rates, and the window rates are taken over.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// What the HTTP endpoint reads of a running daemon: shared handles, never a copy.
pub struct Observed {
    pub(super) dir: Arc<ShareDir>,
    pub(super) swarms: Arc<Swarms>,
    pub(super) local: Arc<LocalPeer>,
    pub(super) budget: Arc<ConnectionBudget>,
    pub(super) relay: Arc<RelayState>,
    listen: SocketAddr,
    announce: watch::Receiver<SocketAddr>,
    nat: watch::Receiver<OwnNat>,
    pub(super) started: Instant,
    rates: Mutex<Rates>,
}

/// Rate meters of the whole node and of each file, fed by [`sample_rates`].
#[derive(Default)]
struct Rates {
    up: Option<RateMeter>,
    down: Option<RateMeter>,
    files: HashMap<ShareName, (RateMeter, RateMeter)>,
}

fn meter() -> RateMeter {
    RateMeter::new(RATE_WINDOW)
}

impl Observed {
    pub fn new(node: &Node, presence: &Presence, started: Instant) -> Observed {
        Observed {
            dir: node.dir.clone(),
            swarms: node.swarms.clone(),
            local: node.local.clone(),
            budget: node.budget.clone(),
            relay: presence.relay(),
            listen: node.listen,
            announce: presence.announce(),
            nat: presence.nat(),
            started,
            rates: Mutex::new(Rates::default()),
        }
    }

    pub(super) fn uploaded(&self) -> u64 {
        self.local.uploads.bytes()
    }

    pub(super) fn downloaded(&self) -> u64 {
        self.local
            .downloaded
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Per file: chunk bytes sent since start (kept when its swarm closes) and received by
    /// its swarm now open (downloads run by this process).
    fn file_totals(&self) -> HashMap<ShareName, (u64, u64)> {
        let mut totals: HashMap<ShareName, (u64, u64)> = self
            .local
            .uploads
            .per_file()
            .into_iter()
            .map(|(name, up)| (name, (up, 0)))
            .collect();
        for swarm in self.swarms.all() {
            totals.entry(swarm.name().clone()).or_default().1 = swarm.stats().downloaded;
        }
        totals
    }

    fn sample(&self, now: Instant) {
        let (up, down) = (self.uploaded(), self.downloaded());
        let totals = self.file_totals();
        let mut rates = self.rates.lock();
        rates.up.get_or_insert_with(meter).record(now, up);
        rates.down.get_or_insert_with(meter).record(now, down);
        for (name, (up, down)) in totals {
            let (u, d) = rates
                .files
                .entry(name)
                .or_insert_with(|| (meter(), meter()));
            u.record(now, up);
            d.record(now, down);
        }
    }
}

/// Samples the byte counters every second, for the rates the API reports, until `stop`.
pub async fn sample_rates(observed: Arc<Observed>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => observed.sample(Instant::now()),
            _ = stop.cancelled() => return,
        }
    }
}

fn nat_label(nat: OwnNat) -> &'static str {
    match nat {
        OwnNat::Unknown => "unknown",
        OwnNat::NoNat => "none",
        OwnNat::EndpointIndependent => "endpoint-independent",
        OwnNat::Symmetric => "symmetric",
    }
}

/// One word for how other peers reach us, cheapest path first (DESIGN.md §8).
fn reachability(nat: OwnNat, relayed: bool, public: Option<SocketAddr>) -> &'static str {
    match (relayed, nat) {
        (true, _) => "relayed",
        (false, OwnNat::NoNat) => "direct",
        (false, OwnNat::EndpointIndependent) => "punchable",
        (false, OwnNat::Symmetric) => "symmetric-nat",
        (false, OwnNat::Unknown) if public.is_some() => "announced",
        (false, OwnNat::Unknown) => "unknown",
    }
}

/// `GET /api/status`.
pub async fn node_status(State(o): State<Arc<Observed>>) -> Json<Value> {
    let announce = *o.announce.borrow();
    let public = Some(announce).filter(|a| !a.ip().is_unspecified());
    let nat = *o.nat.borrow();
    let relay = o.relay.active();
    let (up, down) = {
        let rates = o.rates.lock();
        let rate = |m: &Option<RateMeter>| m.as_ref().map_or(0.0, RateMeter::rate);
        (rate(&rates.up), rate(&rates.down))
    };
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "listen": o.listen.to_string(),
        "announce": announce.to_string(),
        "public": public.map(|a| a.to_string()),
        "nat": nat_label(nat),
        "relay": relay.as_ref().map(|r| r.relayed.to_string()),
        "reachability": reachability(nat, relay.is_some(), public),
        "uptime_secs": o.started.elapsed().as_secs(),
        "dir": o.dir.root().display().to_string(),
        "connections": o.budget.in_use(),
        "uploaded_bytes": o.uploaded(),
        "downloaded_bytes": o.downloaded(),
        "rate_up": up.round() as u64,
        "rate_down": down.round() as u64,
    }))
}

/// `GET /api/files`.
pub async fn files(State(o): State<Arc<Observed>>) -> Response {
    let dir = o.dir.clone();
    let inventory = match tokio::task::spawn_blocking(move || dir.inventory()).await {
        Ok(files) => files,
        Err(e) => {
            return super::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("listing the share directory: {e}"),
            )
        }
    };
    let totals = o.file_totals();
    let rates = o.rates.lock();
    let files: Vec<Value> = inventory
        .iter()
        .map(|f| {
            let (up, down) = totals.get(&f.name).copied().unwrap_or_default();
            let (rate_up, rate_down) = rates
                .files
                .get(&f.name)
                .map_or((0.0, 0.0), |(u, d)| (u.rate(), d.rate()));
            let peers = o.swarms.get(&f.name).map_or(0, |s| s.stats().peers);
            file_json(f, up, down, rate_up, rate_down, peers)
        })
        .collect();
    Json(json!({ "files": files })).into_response()
}

fn file_json(
    f: &LocalFile,
    uploaded: u64,
    downloaded: u64,
    rate_up: f64,
    rate_down: f64,
    peers: usize,
) -> Value {
    let progress = if f.chunks_total == 0 {
        1.0
    } else {
        f.chunks_have as f64 / f.chunks_total as f64
    };
    json!({
        "name": f.name.as_str(),
        "size": f.size,
        "chunk_size": f.chunk_size,
        "chunks_have": f.chunks_have,
        "chunks_total": f.chunks_total,
        "progress": progress,
        "complete": f.complete,
        "uploaded_bytes": uploaded,
        "downloaded_bytes": downloaded,
        "rate_up": rate_up.round() as u64,
        "rate_down": rate_down.round() as u64,
        "peers": peers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachability_prefers_what_is_known() {
        let a: SocketAddr = "203.0.113.5:6881".parse().unwrap();
        assert_eq!(reachability(OwnNat::Symmetric, true, Some(a)), "relayed");
        assert_eq!(reachability(OwnNat::NoNat, false, Some(a)), "direct");
        assert_eq!(reachability(OwnNat::Unknown, false, Some(a)), "announced");
        assert_eq!(reachability(OwnNat::Unknown, false, None), "unknown");
    }
}

//! Trackers and tiers (BEP 12, protocol.txt §6.4-6.5): a tracker is one name (an address,
//! or a host whose A/AAAA records are tried in order); a tier is an ordered list of them,
//! where SRV records of a domain expand into one tracker each. Each tracker remembers which of
//! its addresses answered last (asked first next time), when its DNS answer runs out, and,
//! after it stops answering, how long to leave it aside before asking it again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use parking_lot::Mutex;

use super::dns::Resolver;
use super::endpoint::{Endpoint, Report};
use super::spec::TrackerSpec;
use super::{ClientConfig, ClientError};
use crate::{ErrorCode, PunchNotice, RequestKind, ResponseKind};

/// A tracker that stopped answering is left aside this long, doubling with each failure
/// in a row up to [`MAX_BACKOFF`]; it is still asked when nothing else answers.
const FIRST_BACKOFF: Duration = Duration::from_secs(15);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A failed SRV look-up is repeated after this long.
const SRV_RETRY: Duration = Duration::from_secs(10);

/// What every tracker of a client shares: how to talk and whom to tell about PUNCHes.
pub(super) struct Context {
    pub config: ClientConfig,
    pub resolver: Resolver,
    pub punches: tokio::sync::broadcast::Sender<PunchNotice>,
}

/// Whether an error means "this tracker is not working" (try the next one), as opposed to
/// an answer: the tracker said no, and another tracker of the same tier would say the same.
pub(super) fn is_failure(e: &ClientError) -> bool {
    match e {
        ClientError::Tracker(reply) => reply.code == ErrorCode::Unavailable,
        ClientError::Timeout { .. }
        | ClientError::Io(_)
        | ClientError::Resolve { .. }
        | ClientError::Unexpected(_)
        | ClientError::NoTracker(_)
        | ClientError::NoTrackers => true,
    }
}

enum Host {
    Addr(SocketAddr),
    Name { host: String, port: u16 },
}

#[derive(Default)]
struct Health {
    addrs: Vec<SocketAddr>,
    /// When the DNS answer behind `addrs` runs out (`None`: resolve before the next use).
    valid_until: Option<Instant>,
    failures: u32,
    down_until: Option<Instant>,
}

/// One tracker of a tier.
pub(super) struct Tracker {
    /// `HOST:PORT` as named (an SRV target as its record gives it).
    pub label: String,
    /// The SRV domain this tracker came from, if it did.
    origin: Option<String>,
    host: Host,
    health: Mutex<Health>,
    /// One per address asked, each with its socket and cookie.
    endpoints: tokio::sync::Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    /// Set once this tracker accepted an announcement: it lists this peer, so a leave goes
    /// to it even when another tier is in use now.
    pub joined: AtomicBool,
}

impl Tracker {
    fn new(label: String, origin: Option<String>, host: Host) -> Tracker {
        let health = match host {
            Host::Addr(a) => Health {
                addrs: vec![a],
                valid_until: Some(Instant::now() + Duration::from_secs(u32::MAX.into())),
                ..Health::default()
            },
            Host::Name { .. } => Health::default(),
        };
        Tracker {
            label,
            origin,
            host,
            health: Mutex::new(health),
            endpoints: tokio::sync::Mutex::new(HashMap::new()),
            joined: AtomicBool::new(false),
        }
    }

    /// A tracker at one address, talking over an existing socket.
    pub(super) fn with_endpoint(addr: SocketAddr, endpoint: Endpoint) -> Tracker {
        let mut tracker = Tracker::new(addr.to_string(), None, Host::Addr(addr));
        tracker.endpoints = tokio::sync::Mutex::new(HashMap::from([(addr, Arc::new(endpoint))]));
        tracker
    }

    /// Left aside after failures, until its back-off ends.
    pub(super) fn is_down(&self, now: Instant) -> bool {
        self.health.lock().down_until.is_some_and(|t| now < t)
    }

    /// The address asked first, once resolved.
    pub(super) fn first_addr(&self) -> Option<SocketAddr> {
        self.health.lock().addrs.first().copied()
    }

    /// The local address of the first socket opened to this tracker.
    pub(super) fn local_addr(&self) -> Option<SocketAddr> {
        let endpoints = self.endpoints.try_lock().ok()?;
        endpoints.values().find_map(|e| e.local_addr().ok())
    }

    /// Sends `kind` to each address of this tracker in turn until one answers (an ERROR is an
    /// answer, except 1204 UNAVAILABLE). When every address fails, the tracker's name is
    /// resolved again before its next use and it is left aside for a while.
    pub(super) async fn request(
        &self,
        cx: &Context,
        kind: RequestKind,
        report: Report,
    ) -> Result<ResponseKind, ClientError> {
        let addrs = self.addresses(cx).await?;
        let mut last = None;
        for addr in addrs {
            let result = match self.endpoint(cx, addr).await {
                Ok(endpoint) => endpoint.request(kind.clone(), report).await,
                Err(e) => Err(ClientError::Io(e)),
            };
            match result {
                Err(e) if is_failure(&e) => last = Some(e),
                answer => {
                    self.answered(addr);
                    return answer;
                }
            }
        }
        self.failed();
        Err(last.unwrap_or(ClientError::NoTrackers))
    }

    pub(super) async fn addresses(&self, cx: &Context) -> Result<Vec<SocketAddr>, ClientError> {
        {
            let health = self.health.lock();
            if health
                .valid_until
                .is_some_and(|t| Instant::now() < t && !health.addrs.is_empty())
            {
                return Ok(health.addrs.clone());
            }
        }
        let Host::Name { host, port } = &self.host else {
            return Ok(self.health.lock().addrs.clone());
        };
        match cx.resolver.addresses(host, *port).await {
            Ok((addrs, until)) => {
                // Keep the address that answered last in front when DNS still lists it.
                let mut ordered = addrs;
                {
                    let mut health = self.health.lock();
                    if let Some(pos) = health
                        .addrs
                        .first()
                        .and_then(|a| ordered.iter().position(|b| b == a))
                    {
                        let front = ordered.remove(pos);
                        ordered.insert(0, front);
                    }
                    health.addrs = ordered.clone();
                    health.valid_until = Some(until);
                }
                let mut endpoints = self.endpoints.lock().await;
                endpoints.retain(|a, _| ordered.contains(a));
                Ok(ordered)
            }
            Err(reason) => {
                self.failed();
                Err(ClientError::Resolve {
                    spec: self.label.clone(),
                    reason,
                })
            }
        }
    }

    async fn endpoint(&self, cx: &Context, addr: SocketAddr) -> std::io::Result<Arc<Endpoint>> {
        let mut endpoints = self.endpoints.lock().await;
        if let Some(e) = endpoints.get(&addr) {
            return Ok(Arc::clone(e));
        }
        let endpoint = Arc::new(Endpoint::bind(addr, cx.config.clone(), cx.punches.clone()).await?);
        endpoints.insert(addr, Arc::clone(&endpoint));
        Ok(endpoint)
    }

    fn answered(&self, addr: SocketAddr) {
        let mut health = self.health.lock();
        if health.down_until.is_some() {
            info!("tracker {} ({addr}) answers again", self.label);
        }
        health.failures = 0;
        health.down_until = None;
        if let Some(pos) = health.addrs.iter().position(|a| *a == addr) {
            let a = health.addrs.remove(pos);
            health.addrs.insert(0, a);
        }
    }

    fn failed(&self) {
        let mut health = self.health.lock();
        health.failures = health.failures.saturating_add(1);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (health.failures - 1).min(8))
            .min(MAX_BACKOFF);
        if health.failures == 1 {
            warn!(
                "tracker {} does not answer; it is asked last for the next {} s",
                self.label,
                backoff.as_secs()
            );
        }
        health.down_until = Some(Instant::now() + backoff);
        if matches!(self.host, Host::Name { .. }) {
            health.valid_until = None;
        }
    }
}

#[derive(Default)]
struct TierState {
    trackers: Vec<Arc<Tracker>>,
    /// When the SRV answers behind `trackers` run out (`None`: look them up before use).
    srv_until: Option<Instant>,
    /// Why SRV look-ups failed in the last expansion, for the error when nothing answers.
    srv_errors: Vec<String>,
}

/// One tier: trackers tried in order, the one that answered last moved to the front.
pub(super) struct Tier {
    specs: Vec<TrackerSpec>,
    state: Mutex<TierState>,
}

impl Tier {
    pub(super) fn new(specs: Vec<TrackerSpec>) -> Tier {
        let has_srv = specs.iter().any(|s| matches!(s, TrackerSpec::Srv { .. }));
        let trackers = specs.iter().filter_map(fixed_tracker).collect();
        Tier {
            state: Mutex::new(TierState {
                trackers,
                srv_until: (!has_srv)
                    .then(|| Instant::now() + Duration::from_secs(u32::MAX.into())),
                srv_errors: Vec::new(),
            }),
            specs,
        }
    }

    /// A tier of one tracker already bound to its socket.
    pub(super) fn single(tracker: Tracker) -> Tier {
        let tier = Tier::new(vec![TrackerSpec::Addr(
            tracker
                .first_addr()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        )]);
        tier.state.lock().trackers = vec![Arc::new(tracker)];
        tier
    }

    pub(super) fn specs(&self) -> &[TrackerSpec] {
        &self.specs
    }

    /// The trackers as known now, without looking anything up.
    pub(super) fn known(&self) -> Vec<Arc<Tracker>> {
        self.state.lock().trackers.clone()
    }

    /// Every tracker left aside (and at least one known): the tier is skipped while another
    /// may answer.
    pub(super) fn is_down(&self, now: Instant) -> bool {
        let state = self.state.lock();
        let srv_due = state.srv_until.is_none_or(|t| now >= t);
        !srv_due && state.trackers.iter().all(|t| t.is_down(now))
    }

    /// The trackers in the order to ask them, SRV records looked up (again) when due.
    pub(super) async fn trackers(&self, cx: &Context) -> Vec<Arc<Tracker>> {
        let due = self
            .state
            .lock()
            .srv_until
            .is_none_or(|t| Instant::now() >= t);
        if due {
            self.expand(cx).await;
        }
        self.state.lock().trackers.clone()
    }

    /// Errors of the last SRV expansion (empty when every look-up worked).
    pub(super) fn srv_errors(&self) -> Vec<String> {
        self.state.lock().srv_errors.clone()
    }

    /// Moves `tracker` to the front of the tier (BEP 12).
    pub(super) fn prefer(&self, tracker: &Tracker) {
        let mut state = self.state.lock();
        if let Some(pos) = state.trackers.iter().position(|t| t.label == tracker.label) {
            let t = state.trackers.remove(pos);
            state.trackers.insert(0, t);
        }
    }

    /// Every tracker failed: look SRV records up again before the next use.
    pub(super) fn all_failed(&self) {
        let mut state = self.state.lock();
        if self
            .specs
            .iter()
            .any(|s| matches!(s, TrackerSpec::Srv { .. }))
        {
            state.srv_until = None;
        }
    }

    async fn expand(&self, cx: &Context) {
        let old = self.known();
        let find = |label: &str| old.iter().find(|t| t.label == label).cloned();
        let mut trackers: Vec<Arc<Tracker>> = Vec::new();
        let mut errors = Vec::new();
        let mut until = Instant::now() + Duration::from_secs(u32::MAX.into());
        for spec in &self.specs {
            let TrackerSpec::Srv { domain } = spec else {
                trackers.extend(find(&spec.to_string()).or_else(|| fixed_tracker(spec)));
                continue;
            };
            match cx.resolver.srv(domain).await {
                Ok((targets, valid)) => {
                    until = until.min(valid);
                    for t in targets {
                        let label = format!("{}:{}", t.host, t.port);
                        if trackers.iter().any(|k| k.label == label) {
                            continue;
                        }
                        trackers.push(find(&label).unwrap_or_else(|| {
                            Arc::new(Tracker::new(
                                label.clone(),
                                Some(domain.clone()),
                                Host::Name {
                                    host: t.host,
                                    port: t.port,
                                },
                            ))
                        }));
                    }
                }
                Err(e) => {
                    warn!("tracker {domain}: {e}");
                    until = until.min(Instant::now() + SRV_RETRY);
                    errors.push(e);
                    // Keep what this domain's records named before, if anything.
                    trackers.extend(
                        old.iter()
                            .filter(|t| t.origin.as_deref() == Some(domain.as_str()))
                            .cloned(),
                    );
                }
            }
        }
        // The tracker that answered last stays in front.
        if let Some(pos) = old
            .first()
            .and_then(|f| trackers.iter().position(|t| t.label == f.label))
        {
            let t = trackers.remove(pos);
            trackers.insert(0, t);
        }
        let mut state = self.state.lock();
        state.trackers = trackers;
        state.srv_until = Some(until);
        state.srv_errors = errors;
    }
}

fn fixed_tracker(spec: &TrackerSpec) -> Option<Arc<Tracker>> {
    let host = match spec {
        TrackerSpec::Addr(a) => Host::Addr(*a),
        TrackerSpec::Host { host, port } => Host::Name {
            host: host.clone(),
            port: *port,
        },
        TrackerSpec::Srv { .. } => return None,
    };
    Some(Arc::new(Tracker::new(spec.to_string(), None, host)))
}

/// Whether this tracker lists this peer; set on an accepted announcement.
pub(super) fn mark_joined(tracker: &Tracker, joined: bool) {
    tracker.joined.store(joined, Ordering::Relaxed);
}

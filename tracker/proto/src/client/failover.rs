//! Which trackers a request goes to (protocol.txt §6.5): queries to the first tracker that
//! answers, announcements to every tracker of the first tier where one answers, leaves to
//! every tracker that lists us, punch relays to one that knows both peers. Tiers are tried in
//! order, the next only when every tracker of the one before failed; a tier whose trackers
//! all failed recently is tried last, so a dead first tier does not cost a timeout per call.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use log::warn;

use super::tiers::{is_failure, mark_joined, Context, Tier, Tracker};
use super::ClientError;
use crate::ErrorCode;

/// The trackers of one client and how to reach them.
pub(super) struct Trackers {
    pub cx: Context,
    pub tiers: Vec<Tier>,
}

/// What each tracker that answered an announcement said, by its label.
pub(super) type Answers<T> = Vec<(String, Result<T, ClientError>)>;

impl Trackers {
    /// Tiers in order, those with every tracker left aside after failures last.
    fn tier_order(&self) -> Vec<&Tier> {
        let now = Instant::now();
        let (up, down): (Vec<&Tier>, Vec<&Tier>) = self.tiers.iter().partition(|t| !t.is_down(now));
        up.into_iter().chain(down).collect()
    }

    /// Runs `op` on one tracker after another until one answers (a refusal is an answer).
    pub(super) async fn query<T, F, Fut>(&self, op: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<Tracker>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut failures = Vec::new();
        for tier in self.tier_order() {
            let trackers = tier.trackers(&self.cx).await;
            let now = Instant::now();
            let (up, down): (Vec<_>, Vec<_>) = trackers.into_iter().partition(|t| !t.is_down(now));
            for tracker in up.into_iter().chain(down) {
                match op(Arc::clone(&tracker)).await {
                    Err(e) if is_failure(&e) => failures.push((tracker.label.clone(), e)),
                    answer => {
                        tier.prefer(&tracker);
                        return answer;
                    }
                }
            }
            tier.all_failed();
            failures.extend(srv_failures(tier));
        }
        Err(combine(failures))
    }

    /// Runs `op` on every tracker of the first tier where at least one answers, at once, and
    /// returns the answers. Trackers left aside after failures are skipped while another of
    /// the tier is up.
    pub(super) async fn announce<T, F, Fut>(&self, op: F) -> Result<Answers<T>, ClientError>
    where
        F: Fn(Arc<Tracker>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut failures = Vec::new();
        for tier in self.tier_order() {
            let trackers = tier.trackers(&self.cx).await;
            let now = Instant::now();
            let mut asked: Vec<_> = trackers.iter().filter(|t| !t.is_down(now)).collect();
            if asked.is_empty() {
                asked = trackers.iter().collect();
            }
            let results = join_all(asked.iter().map(|t| op(Arc::clone(t)))).await;
            let mut answers = Vec::new();
            for (tracker, result) in asked.into_iter().zip(results) {
                match result {
                    Err(e) if is_failure(&e) => failures.push((tracker.label.clone(), e)),
                    answer => {
                        if answers.is_empty() {
                            tier.prefer(tracker);
                        }
                        if answer.is_ok() {
                            mark_joined(tracker, true);
                        }
                        answers.push((tracker.label.clone(), answer));
                    }
                }
            }
            if !answers.is_empty() {
                for (label, e) in &failures {
                    log::debug!("tracker {label} missed an announcement: {e}");
                }
                return Ok(answers);
            }
            tier.all_failed();
            failures.extend(srv_failures(tier));
        }
        Err(combine(failures))
    }

    /// Runs `op` on every tracker that accepted an announcement from this client (whatever
    /// tier it is in), or, when none did, as an announcement. `gone` marks them as no longer
    /// listing this peer.
    pub(super) async fn leave<F, Fut>(&self, gone: bool, op: F) -> Result<(), ClientError>
    where
        F: Fn(Arc<Tracker>) -> Fut,
        Fut: Future<Output = Result<(), ClientError>>,
    {
        let joined: Vec<Arc<Tracker>> = self
            .tiers
            .iter()
            .flat_map(Tier::known)
            .filter(|t| t.joined.load(Ordering::Relaxed))
            .collect();
        if joined.is_empty() {
            return first_ok(self.announce(op).await?);
        }
        let results = join_all(joined.iter().map(|t| op(Arc::clone(t)))).await;
        let mut failures = Vec::new();
        let mut answers = Vec::new();
        for (tracker, result) in joined.iter().zip(results) {
            match result {
                Err(e) if is_failure(&e) => failures.push((tracker.label.clone(), e)),
                answer => {
                    if gone && answer.is_ok() {
                        mark_joined(tracker, false);
                    }
                    answers.push((tracker.label.clone(), answer));
                }
            }
        }
        if answers.is_empty() {
            return Err(combine(failures));
        }
        first_ok(answers)
    }

    /// Runs `op` (flag 8) on trackers that list this peer first, then the others in tier
    /// order, until one accepts; a tracker that does not know the target (PEER_NOT_FOUND) or
    /// fails passes the request on. Any other refusal is final.
    pub(super) async fn relay<F, Fut>(&self, op: F) -> Result<(), ClientError>
    where
        F: Fn(Arc<Tracker>) -> Fut,
        Fut: Future<Output = Result<(), ClientError>>,
    {
        let mut all = Vec::new();
        for tier in self.tier_order() {
            all.extend(tier.trackers(&self.cx).await);
        }
        let (joined, others): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|t| t.joined.load(Ordering::Relaxed));
        let mut not_found = None;
        let mut failures = Vec::new();
        for tracker in joined.into_iter().chain(others) {
            match op(Arc::clone(&tracker)).await {
                Ok(()) => return Ok(()),
                Err(e) if e.code() == Some(ErrorCode::PeerNotFound) => {
                    not_found.get_or_insert(e);
                }
                Err(e) if is_failure(&e) => failures.push((tracker.label.clone(), e)),
                Err(e) => return Err(e),
            }
        }
        Err(not_found.unwrap_or_else(|| combine(failures)))
    }
}

/// Success when any tracker accepted (refusals of the others are logged), else the first
/// refusal.
pub(super) fn first_ok<T>(answers: Answers<T>) -> Result<T, ClientError> {
    let mut ok = None;
    let mut refused = None;
    for (label, answer) in answers {
        match answer {
            Ok(v) => {
                ok.get_or_insert(v);
            }
            Err(e) => {
                warn!("tracker {label} refused: {e}");
                refused.get_or_insert(e);
            }
        }
    }
    match (ok, refused) {
        (Some(v), _) => Ok(v),
        (None, Some(e)) => Err(e),
        (None, None) => Err(ClientError::NoTrackers),
    }
}

fn srv_failures(tier: &Tier) -> Vec<(String, ClientError)> {
    tier.srv_errors()
        .into_iter()
        .map(|reason| {
            let spec = tier
                .specs()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            (
                spec.clone(),
                ClientError::Resolve {
                    spec: spec.clone(),
                    reason,
                },
            )
        })
        .collect()
}

/// One tracker's failure as it is; several as one error naming each.
fn combine(mut failures: Vec<(String, ClientError)>) -> ClientError {
    if failures.len() == 1 {
        return failures.remove(0).1;
    }
    if failures.is_empty() {
        return ClientError::NoTrackers;
    }
    ClientError::NoTracker(
        failures
            .iter()
            .map(|(label, e)| format!("{label}: {e}"))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

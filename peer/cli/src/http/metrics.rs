//! `GET /metrics`: the peer's counters in the Prometheus text exposition format (version
//! 0.0.4). A dozen families written straight from atomics; a client library would add a
//! registry for what is a fixed list.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use peer_engine::metrics::{metrics, DialOutcome};

use super::status::Observed;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: its HELP and TYPE lines, then one sample per label set.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn text(o: &Observed) -> String {
    let m = metrics();
    let mut out = String::with_capacity(4096);
    let counter = "counter";
    let gauge = "gauge";
    family(
        &mut out,
        "peer_uploaded_bytes_total",
        counter,
        "Chunk bytes sent to peers.",
        &[("", o.uploaded())],
    );
    family(
        &mut out,
        "peer_downloaded_bytes_total",
        counter,
        "Chunk bytes received from peers and verified.",
        &[("", o.downloaded())],
    );
    family(
        &mut out,
        "peer_connections_open",
        gauge,
        "Peer connections held now, ours and theirs.",
        &[("", o.budget.in_use() as u64)],
    );
    family(
        &mut out,
        "peer_connections_accepted_total",
        counter,
        "Peer connections the server accepted (punched and relayed ones included).",
        &[("", m.connections_accepted.get())],
    );
    family(
        &mut out,
        "peer_connections_refused_total",
        counter,
        "Peer connections refused for want of a connection slot.",
        &[("", m.connections_refused.get())],
    );
    family(
        &mut out,
        "peer_chunks_verified_total",
        counter,
        "Chunks received that matched the manifest and were written.",
        &[("", m.chunks_verified.get())],
    );
    family(
        &mut out,
        "peer_chunks_rejected_total",
        counter,
        "Deliveries dropped because a chunk did not match the manifest.",
        &[("", m.chunks_rejected.get())],
    );
    family(
        &mut out,
        "peer_share_hashed_bytes_total",
        counter,
        "Bytes read and hashed to build the manifests of what this process shares.",
        &[("", m.share_bytes_hashed.get())],
    );
    let dials: Vec<(String, u64)> = DialOutcome::ALL
        .iter()
        .map(|d| (format!("outcome=\"{}\"", d.label()), m.dials(*d)))
        .collect();
    let dials: Vec<(&str, u64)> = dials.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    family(
        &mut out,
        "peer_dials_total",
        counter,
        "Connections this peer opened to others, by how they were made or that they failed.",
        &dials,
    );
    family(
        &mut out,
        "peer_punch_attempts_total",
        counter,
        "Dials that went on to TCP simultaneous open through the tracker.",
        &[("", m.punch_attempts.get())],
    );
    let answers = m.punch_answers.get();
    let connected = m.punch_answers_connected.get();
    family(
        &mut out,
        "peer_punch_answers_total",
        counter,
        "PUNCH notices from the tracker this peer answered, by outcome.",
        &[
            ("outcome=\"connected\"", connected),
            ("outcome=\"failed\"", answers.saturating_sub(connected)),
        ],
    );
    family(
        &mut out,
        "peer_relay_active",
        gauge,
        "1 while this peer holds a TURN relay allocation.",
        &[("", u64::from(o.relay.active().is_some()))],
    );
    family(
        &mut out,
        "peer_relay_allocations_total",
        counter,
        "TURN relay allocations made.",
        &[("", m.relay_allocations.get())],
    );
    family(
        &mut out,
        "peer_relayed_connections_total",
        counter,
        "Connections that reached this peer through its TURN relay.",
        &[("", m.relayed_connections.get())],
    );
    family(
        &mut out,
        "peer_swarms_open",
        gauge,
        "Files with a swarm open in this process.",
        &[("", o.swarms.all().len() as u64)],
    );
    family(
        &mut out,
        "peer_uptime_seconds",
        gauge,
        "Seconds since the daemon started.",
        &[("", o.started.elapsed().as_secs())],
    );
    out
}

pub async fn render(State(o): State<Arc<Observed>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text(&o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_help_type_then_samples() {
        let mut out = String::new();
        family(
            &mut out,
            "x_total",
            "counter",
            "Xs.",
            &[("", 3), ("a=\"b\"", 4)],
        );
        assert_eq!(
            out,
            "# HELP x_total Xs.\n# TYPE x_total counter\nx_total 3\nx_total{a=\"b\"} 4\n"
        );
    }
}

//! `GET /metrics` in the Prometheus text format (version 0.0.4): the UDP front end's counters
//! (kept by the tracker), this front end's requests per route and errors per code, the
//! swarms as the store holds them now, and the sums of `POST /api/stats` reports.
//!
//! A hand-written encoder: the values already live in atomics and one catalogue walk, and the
//! format is a few lines per family, so a metrics registry would only add a second copy of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tracker_proto::{ErrorCode, RequestKind};

use super::{ApiError, App};
use crate::handler::Reply;
use crate::metrics::Withheld;
use crate::store::SwarmStore;

/// Requests per (route, status) and errors per code of the HTTP front end. Routes are the
/// router's templates (or "unmatched"), so the label sets stay bounded whatever clients ask.
#[derive(Default)]
pub struct RouteCounters {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    errors: Mutex<BTreeMap<u16, (ErrorCode, u64)>>,
}

/// The route templates served, for the `route` label (a template is `'static` there).
const ROUTES: &[&str] = &[
    "/",
    "/api/files",
    "/api/files/announce",
    "/api/files/{file_hash}/chunks",
    "/api/files/{file_hash}/peers",
    "/api/openapi.json",
    "/api/peers/exit",
    "/api/peers/heartbeat",
    "/api/peers/register",
    "/api/stats",
    "/api/summary",
    "/metrics",
];

/// Counts every answer by route and status, and the error code an [`ApiError`] carried.
pub async fn count<S: SwarmStore + 'static>(
    State(app): State<Arc<App<S>>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| ROUTES.iter().find(|r| **r == m.as_str()).copied())
        .unwrap_or("unmatched");
    let response = next.run(request).await;
    let status = response.status().as_u16();
    *app.routes
        .requests
        .lock()
        .entry((route, status))
        .or_default() += 1;
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        app.routes
            .errors
            .lock()
            .entry(code.code())
            .or_insert((*code, 0))
            .1 += 1;
    }
    response
}

/// Swarm totals from one walk of the catalogue.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub files: u64,
    pub seeders: u64,
    pub leechers: u64,
    pub bytes: u64,
    /// The swarms' figures (protocol.txt §1.2), summed over tracked files.
    pub completed: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// Walks the whole catalogue (on the blocking pool) for the swarm gauges.
pub async fn totals<S: SwarmStore + 'static>(app: &App<S>) -> Result<Totals, ApiError> {
    let source: SocketAddr = ([127, 0, 0, 1], 0).into();
    app.run(move |t, now| {
        let mut totals = Totals::default();
        let mut offset = 0;
        loop {
            let request = tracker_proto::Request::new(RequestKind::ListFiles {
                offset,
                pattern: None,
            });
            let (files, next) = match t.handle_typed(request, source, now, 10_000)? {
                Reply::Files { files, next, .. } => (files, next),
                _ => return Ok(totals),
            };
            for f in &files {
                totals.files += 1;
                totals.seeders += u64::from(f.seeders);
                totals.leechers += u64::from(f.leechers);
                totals.bytes = totals.bytes.saturating_add(f.size);
                if let Some(st) = &f.stats {
                    totals.completed = totals.completed.saturating_add(st.completed);
                    totals.bytes_up = totals.bytes_up.saturating_add(st.up);
                    totals.bytes_down = totals.bytes_down.saturating_add(st.down);
                }
            }
            match next {
                Some(n) if n > offset => offset = n,
                _ => return Ok(totals),
            }
        }
    })
    .await
}

/// `GET /api/summary`: the swarm totals, for the dashboard.
pub async fn summary<S: SwarmStore + 'static>(
    State(app): State<Arc<App<S>>>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let t = totals(&app).await?;
    Ok(axum::Json(serde_json::json!({
        "files": t.files,
        "seeders": t.seeders,
        "leechers": t.leechers,
        "bytes": t.bytes,
        "completed": t.completed,
        "bytes_up": t.bytes_up,
        "bytes_down": t.bytes_down,
    })))
}

/// `GET /metrics`.
pub async fn metrics<S: SwarmStore + 'static>(State(app): State<Arc<App<S>>>) -> Response {
    let totals = match totals(&app).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let text = render(&app, totals);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn render<S: SwarmStore + 'static>(app: &App<S>, totals: Totals) -> String {
    let mut out = String::new();
    let udp = app.tracker.counters().snapshot();
    family(
        &mut out,
        "tracker_udp_requests_total",
        "counter",
        "UDP requests by flag (flag=\"malformed\": did not parse).",
    );
    for (flag, n) in &udp.requests {
        let flag = if *flag == 0 {
            "malformed".to_string()
        } else {
            flag.to_string()
        };
        let _ = writeln!(out, "tracker_udp_requests_total{{flag=\"{flag}\"}} {n}");
    }
    family(
        &mut out,
        "tracker_errors_total",
        "counter",
        "Error answers by front end and protocol error code (protocol.txt 1.5).",
    );
    for (code, n) in &udp.errors {
        let _ = writeln!(
            out,
            "tracker_errors_total{{front=\"udp\",code=\"{}\",name=\"{}\"}} {n}",
            code.code(),
            code.name()
        );
    }
    for (code, (error, n)) in app.routes.errors.lock().iter() {
        let _ = writeln!(
            out,
            "tracker_errors_total{{front=\"http\",code=\"{code}\",name=\"{}\"}} {n}",
            error.name()
        );
    }
    family(
        &mut out,
        "tracker_withheld_answers_total",
        "counter",
        "UDP answers not sent as asked: a cookie demanded instead (cookie), nothing sent because \
         even an error would amplify (silent), refused by the PUNCH rate limit (rate).",
    );
    for (why, n) in &udp.withheld {
        let reason = match why {
            Withheld::Cookie => "cookie",
            Withheld::Silent => "silent",
            Withheld::Rate => "rate",
        };
        let _ = writeln!(
            out,
            "tracker_withheld_answers_total{{reason=\"{reason}\"}} {n}"
        );
    }
    family(
        &mut out,
        "tracker_http_requests_total",
        "counter",
        "HTTP requests by route template and status.",
    );
    for ((route, status), n) in app.routes.requests.lock().iter() {
        let _ = writeln!(
            out,
            "tracker_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
        );
    }
    let gauges = [
        (
            "tracker_swarms",
            "Files tracked (each has a swarm of at least one peer).",
            totals.files,
        ),
        (
            "tracker_swarm_peers",
            "Peers in swarms, summed over files (a peer in two swarms counts twice).",
            totals.seeders + totals.leechers,
        ),
        (
            "tracker_seeders",
            "Seeders, summed over files.",
            totals.seeders,
        ),
        (
            "tracker_leechers",
            "Leechers, summed over files.",
            totals.leechers,
        ),
        (
            "tracker_tracked_bytes",
            "Sizes of the tracked files, summed.",
            totals.bytes,
        ),
        (
            "tracker_completed_downloads",
            "Downloads peers completed (event=completed, each peer once per file), summed over \
             tracked files.",
            totals.completed,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        &mut out,
        "tracker_swarm_bytes",
        "gauge",
        "Bytes peers reported serving (up) and fetching (down) with announcements (up=, down=), \
         summed over tracked files.",
    );
    let _ = writeln!(
        out,
        "tracker_swarm_bytes{{direction=\"up\"}} {}",
        totals.bytes_up
    );
    let _ = writeln!(
        out,
        "tracker_swarm_bytes{{direction=\"down\"}} {}",
        totals.bytes_down
    );
    let reported = &app.reported;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let (udp_conns, udp_failed) = udp.connections;
    let sums = [
        (
            "tracker_reported_bytes_total",
            "Bytes peers reported fetching (POST /api/stats), from the original source or from peers.",
            [
                ("from=\"source\"", load(&reported.source_bytes)),
                ("from=\"p2p\"", load(&reported.p2p_bytes)),
            ],
        ),
        (
            "tracker_reported_connections_total",
            "Peer connections peers reported (POST /api/stats and flag 9's conns= and failed=), \
             by outcome.",
            [
                (
                    "outcome=\"open\"",
                    load(&reported.conns).saturating_add(udp_conns),
                ),
                (
                    "outcome=\"failed\"",
                    load(&reported.failed_conns).saturating_add(udp_failed),
                ),
            ],
        ),
    ];
    for (name, help, series) in sums {
        family(&mut out, name, "counter", help);
        for (labels, value) in series {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
    out
}

//! The tracker's HTTP front end (`tracker --http ADDR:PORT`, issue 14): seed 000's JSON API
//! over the same [`Tracker`] and store as the UDP protocol, its OpenAPI document, Prometheus
//! metrics and the dashboard at `/` (one embedded page that polls this API).
//!
//! The accept loop is mini-redis's: a semaphore bounds open connections, each connection is
//! served by hyper with a deadline for its request headers (slow clients cannot hold a slot),
//! each request by the axum router with a deadline for its answer; bodies are bounded before
//! they are read. The store is synchronous, so every call into the tracker runs on the
//! blocking pool.

mod error;
mod extract;
mod files;
mod metrics;
mod peers;
pub mod session;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracker_proto::ErrorCode;

use crate::handler::{Refused, Tracker};
use crate::host::Host;
use crate::store::SwarmStore;
pub use error::ApiError;
use session::SessionKeys;

/// The OpenAPI 3 document of this API, served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Bounds on what one client can hold of the HTTP front end.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Connections served at once; more wait in the listen backlog. One host may hold its
    /// `--ip-share` of them (10 %: 103 by default); beyond it its requests get 429.
    pub max_connections: usize,
    /// Largest request body (an announce with seed 000's chunk list is ~100 bytes per chunk).
    pub max_body_bytes: usize,
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// From the end of the headers to the answer.
    pub request_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 1024,
            max_body_bytes: 1 << 20,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What the handlers share.
pub struct App<S: SwarmStore> {
    tracker: Arc<Tracker<S>>,
    sessions: SessionKeys,
    reported: Reported,
    routes: metrics::RouteCounters,
}

impl<S: SwarmStore + 'static> App<S> {
    /// Runs `f` on the tracker in the blocking pool (the store locks and may block).
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tracker<S>, Instant) -> Result<T, Refused> + Send + 'static,
    ) -> Result<T, ApiError> {
        let tracker = Arc::clone(&self.tracker);
        match tokio::task::spawn_blocking(move || f(&tracker, Instant::now())).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(e) => {
                log::error!("a tracker task failed: {e}");
                Err(ApiError::new(
                    ErrorCode::Unavailable,
                    "the tracker failed to answer",
                ))
            }
        }
    }
}

/// Sums of the transfer reports of `POST /api/stats` (seed 003).
#[derive(Default)]
pub struct Reported {
    pub source_bytes: AtomicU64,
    pub p2p_bytes: AtomicU64,
    pub conns: AtomicU64,
    pub failed_conns: AtomicU64,
}

impl Reported {
    fn add(&self, source: u64, p2p: u64, conns: u32, failed: u32) {
        let add = |c: &AtomicU64, n: u64| {
            // Saturating: a client sending huge numbers pins the sum, never wraps it.
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(n))
            });
        };
        add(&self.source_bytes, source);
        add(&self.p2p_bytes, p2p);
        add(&self.conns, u64::from(conns));
        add(&self.failed_conns, u64::from(failed));
    }
}

/// The router of every route, over `app`.
fn router<S: SwarmStore + 'static>(app: Arc<App<S>>, config: &HttpConfig) -> Router {
    Router::new()
        .route("/api/peers/register", post(peers::register::<S>))
        .route("/api/peers/heartbeat", post(peers::heartbeat::<S>))
        .route("/api/peers/exit", post(peers::exit::<S>))
        .route("/api/files/announce", post(files::announce::<S>))
        .route("/api/files", get(files::files::<S>))
        .route("/api/files/{file_hash}/peers", get(files::peers::<S>))
        .route(
            "/api/files/{file_hash}/chunks",
            post(files::report_chunks::<S>),
        )
        .route("/api/stats", post(peers::stats::<S>))
        .route("/api/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics::<S>))
        .route("/api/summary", get(metrics::summary::<S>))
        .route("/", get(dashboard))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            metrics::count::<S>,
        ))
        .with_state(app)
}

/// The dashboard: one page, its style and script inline, data from this API only.
const DASHBOARD: &str = include_str!("dashboard/index.html");

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing but this page and this tracker's API: no CDN, no third-party anything.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'",
            ),
        ],
        DASHBOARD,
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> ApiError {
    ApiError::bad_request("no such route (see /api/openapi.json)")
        .with_status(StatusCode::NOT_FOUND)
}

async fn method_not_allowed() -> ApiError {
    ApiError::bad_request("this route does not take that method (see /api/openapi.json)")
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// The connections each host holds, so that no host takes every slot: each may hold its
/// `--ip-share` of them, as of every other limit (protocol.txt §1.9).
struct HostConnections {
    open: Mutex<HashMap<Host, usize>>,
    share: usize,
}

/// One connection of a host, given back when dropped.
struct HostSlot {
    table: Arc<HostConnections>,
    host: Host,
}

impl HostConnections {
    fn take(table: &Arc<HostConnections>, host: Host) -> Option<HostSlot> {
        let mut open = table.open.lock();
        let held = open.entry(host).or_default();
        if *held >= table.share {
            return None;
        }
        *held += 1;
        Some(HostSlot {
            table: Arc::clone(table),
            host,
        })
    }
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(held) = open.get_mut(&self.host) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.host);
            }
        }
    }
}

/// Serves the HTTP front end of `tracker` on `listener` until the listener fails for good.
pub async fn serve<S: SwarmStore + 'static>(
    listener: TcpListener,
    tracker: Arc<Tracker<S>>,
    config: HttpConfig,
) -> std::io::Result<()> {
    let app = Arc::new(App {
        tracker,
        sessions: SessionKeys::new(),
        reported: Reported::default(),
        routes: metrics::RouteCounters::default(),
    });
    learn_catalogue(&app).await;
    let router = router(Arc::clone(&app), &config);
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let percent = app.tracker.config().limits.ip_share_percent as usize;
    let hosts = Arc::new(HostConnections {
        open: Mutex::new(HashMap::new()),
        share: (config.max_connections * percent).div_ceil(100).max(1),
    });
    let mut failures = 0u32;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return Ok(());
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                failures = 0;
                accepted
            }
            Err(e) => {
                // Out of file descriptors and the like: wait and try again; give up after a
                // minute of nothing but failures.
                failures += 1;
                if failures > 600 {
                    return Err(e);
                }
                log::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(host_slot) = HostConnections::take(&hosts, Host::of(peer.ip())) else {
            tokio::spawn(refuse(stream, peer, hosts.share, config.header_timeout));
            continue;
        };
        let router = router.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let _slots = (slot, host_slot);
            let deadline = config.request_timeout;
            let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                async move {
                    let request = request.map(Body::new);
                    let response =
                        match tokio::time::timeout(deadline, router.oneshot(request)).await {
                            Ok(Ok(response)) => response,
                            Ok(Err(never)) => match never {},
                            Err(_) => ApiError::new(
                                ErrorCode::Unavailable,
                                format!("no answer within {} s", deadline.as_secs()),
                            )
                            .with_status(StatusCode::REQUEST_TIMEOUT)
                            .into_response(),
                        };
                    Ok::<_, Infallible>(response)
                }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(config.header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                log::debug!("HTTP connection from {peer}: {e}");
            }
        });
    }
}

/// Answers every request of a connection over its host's share with 429 and closes it.
async fn refuse(stream: tokio::net::TcpStream, peer: SocketAddr, share: usize, timeout: Duration) {
    log::debug!("HTTP connection from {peer} refused: its host holds {share} already");
    let service = hyper::service::service_fn(move |_request: hyper::Request<_>| async move {
        let refusal = ApiError::new(
            ErrorCode::CapacityExceeded,
            format!(
                "this IP's share of the tracker's connections is used up ({share} open; tracker \
                 --ip-share)"
            ),
        );
        Ok::<_, Infallible>(refusal.into_response())
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Files restored from `--state` were described to no one yet: query each once so they can be
/// found by hash.
async fn learn_catalogue<S: SwarmStore + 'static>(app: &Arc<App<S>>) {
    let source: SocketAddr = ([127, 0, 0, 1], 0).into();
    let learned = app
        .run(move |t, now| {
            let mut offset = 0;
            loop {
                let request = tracker_proto::Request::new(tracker_proto::RequestKind::ListFiles {
                    offset,
                    pattern: None,
                });
                let (files, next) = match t.handle_typed(request, source, now, files::PAGE)? {
                    crate::handler::Reply::Files { files, next, .. } => (files, next),
                    _ => return Ok(()),
                };
                let queries = files
                    .into_iter()
                    .map(|f| {
                        tracker_proto::Request::new(tracker_proto::RequestKind::Query {
                            file: f.name,
                        })
                    })
                    .collect();
                t.handle_typed_batch(queries, source, now, 1);
                match next {
                    Some(n) if n > offset => offset = n,
                    _ => return Ok(()),
                }
            }
        })
        .await;
    if let Err(e) = learned {
        log::warn!("cannot index the catalogue by hash: {}", e.message);
    }
}

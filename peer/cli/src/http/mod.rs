//! `peer daemon --http ADDR:PORT`: the peer's own HTTP endpoint, off by default. `/metrics`
//! in Prometheus text ([`metrics`]) and a JSON status API (`/api/status`, `/api/files`;
//! [`status`]) whose shapes protocol.txt §8 fixes, so scripts and dashboards may rely on them.
//!
//! It tells anyone who asks what this peer shares and with whom, so it listens on loopback
//! unless the user says otherwise (`--http-public`). Its limits make it cheap to keep on:
//! [`MAX_CONNECTIONS`] connections at once (further ones wait in the kernel's backlog),
//! [`REQUEST_TIMEOUT`] per request and [`MAX_BODY`] bytes of body (every route is a GET).

mod limited;
mod metrics;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use peer_engine::node::Node;
use peer_engine::reach::Presence;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use limited::LimitedListener;
pub use status::Observed;

/// Connections served at once; more wait in the listen backlog until one closes.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest a request may take, reading included; then it is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 4096;

/// Refuses an address other machines could reach unless `public` (the user's `--http-public`)
/// allows it: the API lists every shared file and peer.
pub fn check_addr(addr: SocketAddr, public: bool) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && !public {
        bail!(
            "--http {addr} would let other machines read this peer's files and peers; \
             use a loopback address (127.0.0.1:PORT or [::1]:PORT), or add --http-public \
             to serve it on {} anyway",
            addr.ip()
        );
    }
    Ok(())
}

/// The running HTTP endpoint; [`HttpServer::stop`] ends it.
pub struct HttpServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and serves what `node` and `presence` show, until stopped.
    pub async fn start(
        addr: SocketAddr,
        public: bool,
        node: &Node,
        presence: &Presence,
        started: Instant,
    ) -> anyhow::Result<HttpServer> {
        check_addr(addr, public)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve HTTP on {addr} (choose another with --http)"))?;
        let addr = listener.local_addr()?;
        let observed = Arc::new(Observed::new(node, presence, started));
        tokio::spawn(status::sample_rates(
            observed.clone(),
            node.shutdown.clone(),
        ));
        let app = router(observed);
        let stop = CancellationToken::new();
        let until = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            let listener = LimitedListener::new(listener, MAX_CONNECTIONS);
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(until)
                .await
            {
                log::warn!("HTTP server on {addr}: {e}");
            }
        });
        Ok(HttpServer { addr, stop, task })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn router(observed: Arc<Observed>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::render))
        .route("/api/status", get(status::node_status))
        .route("/api/files", get(status::files))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(observed)
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
}

/// An error answer: the status and a JSON body `{"error": {"code": N, "message": "..."}}`.
fn error(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({
        "error": { "code": status.as_u16(), "message": message }
    });
    (status, Json(body)).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such route: {}", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} takes GET only, not {method}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_the_public_flag() {
        check_addr("127.0.0.1:9000".parse().unwrap(), false).unwrap();
        check_addr("[::1]:9000".parse().unwrap(), false).unwrap();
        let err = check_addr("0.0.0.0:9000".parse().unwrap(), false).unwrap_err();
        assert!(err.to_string().contains("--http-public"), "{err}");
        check_addr("0.0.0.0:9000".parse().unwrap(), true).unwrap();
        check_addr("192.168.1.2:9000".parse().unwrap(), false).unwrap_err();
    }
}

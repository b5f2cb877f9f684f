//! The peer endpoints: seed 000's register and heartbeat, exit (flag 5) and seed 003's stats
//! report. Each builds the same [`tracker_proto::Request`] a datagram would carry, keyed by the
//! session, and hands it to `Tracker::handle_typed` on the blocking pool: one decision path,
//! one set of trust rules, one store for both front ends.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tracker_proto::{ErrorCode, RequestKind};

use super::error::ApiError;
use super::extract::{
    acknowledged, check_peer_id, keyed, parse_body, parse_file_id, resolve, session, unexpected,
    ApiResult, Source,
};
use super::App;
use crate::handler::Reply;
use crate::store::SwarmStore;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    peer_id: String,
    /// The serving IP; absent or unspecified (0.0.0.0, ::) means the connection's IP.
    ip: Option<String>,
    port: u16,
    hostname: Option<String>,
}

/// `POST /api/peers/register`: a session token for this peer, bound to its IP.
pub async fn register<S: SwarmStore + 'static>(
    State(app): State<Arc<App<S>>>,
    ConnectInfo(source): Source,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: RegisterBody = parse_body(body)?;
    check_peer_id(&body.peer_id)?;
    if body.port == 0 {
        return Err(ApiError::new(
            ErrorCode::BadAddress,
            "port 0 is not a serving port",
        ));
    }
    if let Some(host) = &body.hostname {
        if host.len() > 253 || host.chars().any(char::is_control) {
            return Err(ApiError::bad_field(
                "hostname must be at most 253 characters without control characters",
            ));
        }
    }
    let ip: IpAddr = match body.ip.as_deref() {
        None => source.ip(),
        Some(text) => text.parse().map_err(|_| {
            ApiError::new(
                ErrorCode::BadAddress,
                format!("{text:?} is not an IP address"),
            )
        })?,
    };
    if !ip.is_unspecified() && !tracker_proto::is_unicast(ip) {
        return Err(ApiError::new(
            ErrorCode::BadAddress,
            format!("{ip} is not a unicast address peers can connect to"),
        ));
    }
    let addr = app
        .tracker
        .serving_addr(SocketAddr::new(ip, body.port), source)?;
    let (token, _) = app
        .sessions
        .issue(&body.peer_id, addr, source.ip().to_canonical());
    log::debug!(
        "registered {} ({}) at {addr} from {source}",
        body.peer_id,
        body.hostname.as_deref().unwrap_or("no hostname")
    );
    Ok(Json(json!({
        "success": true,
        "message": "Registered successfully",
        "session_token": token,
        "peer_id": body.peer_id,
        "ip": addr.ip().to_string(),
        "port": addr.port(),
        "next_heartbeat_in": app.tracker.config().intervals.interval,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    peer_id: String,
    #[serde(default)]
    files_sharing: Vec<String>,
}

/// `POST /api/peers/heartbeat`: keeps every row of the peer alive (flag 9).
pub async fn heartbeat<S: SwarmStore + 'static>(
    State(app): State<Arc<App<S>>>,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: HeartbeatBody = parse_body(body)?;
    let session = session(&app, &headers, &body.peer_id, source.ip())?;
    for hash in &body.files_sharing {
        parse_file_id(hash)?;
    }
    let request = keyed(
        &session,
        RequestKind::Heartbeat {
            announce: session.addr,
        },
    );
    let files =
        match app
            .run(move |t, now| t.handle_typed(request, source, now, 1))
            .await
        {
            Ok(Reply::Alive(files)) => files,
            // Registered, sharing nothing yet: nothing to keep alive, nothing lost.
            Err(e) if e.code == ErrorCode::PeerNotFound && body.files_sharing.is_empty() => 0,
            Err(e) if e.code == ErrorCode::PeerNotFound => return Err(ApiError::new(
                ErrorCode::PeerNotFound,
                "the tracker holds no rows of this peer (they expired, or the tracker restarted): \
                 announce the files again",
            )),
            Err(e) => return Err(e),
            Ok(other) => return Err(unexpected(&other)),
        };
    Ok(Json(json!({
        "success": true,
        "next_heartbeat_in": app.tracker.config().intervals.interval,
        "files": files,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExitBody {
    peer_id: String,
    file_hash: Option<String>,
}

/// `POST /api/peers/exit`: the peer leaves one swarm or all of them (flag 5).
pub async fn exit<S: SwarmStore + 'static>(
    State(app): State<Arc<App<S>>>,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: ExitBody = parse_body(body)?;
    let session = session(&app, &headers, &body.peer_id, source.ip())?;
    let file = match &body.file_hash {
        None => None,
        Some(hash) => match resolve(&app, parse_file_id(hash)?, source).await {
            Ok(summary) => Some(summary.info.name().clone()),
            // Leaving a swarm that does not exist is done already (as flag 5 answers OK).
            Err(e) if e.code == ErrorCode::FileNotFound => {
                return Ok(Json(json!({ "success": true })))
            }
            Err(e) => return Err(e),
        },
    };
    let kind = RequestKind::Exit {
        file,
        announce: session.addr,
    };
    acknowledged(&app, &session, kind, source).await?;
    Ok(Json(json!({ "success": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)] // seed 003's field names
struct StatsBody {
    peer_id: String,
    info_hash: Option<String>,
    source: u64,
    p2p: u64,
    conns: u32,
    failConns: u32,
}

/// `POST /api/stats`: seed 003's transfer report: bytes from the original source and from
/// peers since the last report, open and failed connections. Summed into /metrics.
pub async fn stats<S: SwarmStore + 'static>(
    State(app): State<Arc<App<S>>>,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: StatsBody = parse_body(body)?;
    session(&app, &headers, &body.peer_id, source.ip())?;
    if let Some(hash) = &body.info_hash {
        parse_file_id(hash)?;
    }
    app.reported
        .add(body.source, body.p2p, body.conns, body.failConns);
    Ok(Json(json!({ "success": true })))
}

//! Parsing an HTTP request once, at the edge, into the protocol's types: JSON bodies and query
//! strings (every malformed one gets the JSON error body, never axum's plain-text rejection),
//! peer ids, file hashes, the session of the bearer token, a file named by its hash.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path};
use axum::http::{HeaderMap, Uri};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracker_proto::{ErrorCode, FileId, FileName, FileSummary, Request, RequestKind};

use super::error::ApiError;
use super::session::Session;
use super::App;
use crate::handler::Reply;
use crate::store::SwarmStore;

/// Longest accepted peer id (seed 000 uses UUIDs: 36 characters).
const MAX_PEER_ID: usize = 64;

pub(super) type ApiResult = Result<Json<Value>, ApiError>;
pub(super) type Source = ConnectInfo<SocketAddr>;

/// The body as `T`, or the JSON error saying what is wrong with it.
pub(super) fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(ErrorCode::TooLong, format!("cannot read the body: {e}"))
            .with_status(e.status())
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => ErrorCode::BadField,
            _ => ErrorCode::BadRequest,
        };
        ApiError::new(code, format!("invalid JSON body: {e}"))
    })
}

/// The query string as `T`.
pub(super) fn parse_query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_field(format!("invalid query: {}", e.body_text())))
}

pub(super) fn check_peer_id(peer_id: &str) -> Result<(), ApiError> {
    let ok = !peer_id.is_empty()
        && peer_id.len() <= MAX_PEER_ID
        && peer_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_field(format!(
            "peer_id must be 1-{MAX_PEER_ID} letters, digits, '-', '_', '.' or ':'"
        )))
    }
}

pub(super) fn parse_file_id(text: &str) -> Result<FileId, ApiError> {
    text.parse()
        .map_err(|e| ApiError::bad_field(format!("file hash: {e}")))
}

pub(super) fn file_name(text: &str) -> Result<FileName, ApiError> {
    FileName::new(text)
        .map_err(|e| ApiError::new(ErrorCode::BadFileName, format!("bad file name: {e}")))
}

/// The session of a request that needs one: the bearer token, checked against the body's
/// peer id and the connection's IP.
pub(super) fn session<S: SwarmStore>(
    app: &App<S>,
    headers: &HeaderMap,
    peer_id: &str,
    source: IpAddr,
) -> Result<Session, ApiError> {
    check_peer_id(peer_id)?;
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingField,
                "missing `Authorization: Bearer <session_token>` (from POST /api/peers/register)",
            )
            .with_status(axum::http::StatusCode::UNAUTHORIZED)
        })?;
    app.sessions
        .verify(token.trim(), peer_id, source)
        .map_err(|e| ApiError::new(ErrorCode::Forbidden, e.to_string()))
}

/// A request carrying the session's key, as a keyed datagram would.
pub(super) fn keyed(session: &Session, kind: RequestKind) -> Request {
    let mut request = Request::new(kind);
    request.key = Some(session.key);
    request
}

/// The name `id` is tracked under, confirmed by the store (a stale index entry is dropped).
pub(super) async fn resolve<S: SwarmStore + 'static>(
    app: &Arc<App<S>>,
    id: FileId,
    source: SocketAddr,
) -> Result<FileSummary, ApiError> {
    let not_found = || ApiError::new(ErrorCode::FileNotFound, format!("no such file: {id}"));
    let name = app
        .tracker
        .files_by_id()
        .name_of(&id)
        .ok_or_else(not_found)?;
    let query = Request::new(RequestKind::Query { file: name.clone() });
    match app
        .run(move |t, now| t.handle_typed(query, source, now, 1))
        .await
    {
        Ok(Reply::File(summary)) if summary.info.id() == id => Ok(summary),
        Ok(_)
        | Err(ApiError {
            code: ErrorCode::FileNotFound,
            ..
        }) => {
            app.tracker.files_by_id().forget(&id, &name);
            Err(not_found())
        }
        Err(e) => Err(e),
    }
}

/// Runs an announcement that answers OK (flags 3, 4, 5) for the session's peer.
pub(super) async fn acknowledged<S: SwarmStore + 'static>(
    app: &Arc<App<S>>,
    session: &Session,
    kind: RequestKind,
    source: SocketAddr,
) -> Result<(), ApiError> {
    let request = keyed(session, kind);
    match app
        .run(move |t, now| t.handle_typed(request, source, now, 1))
        .await?
    {
        Reply::Ok => Ok(()),
        other => Err(unexpected(&other)),
    }
}

pub(super) fn path_param(hash: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    hash.map(|p| p.0)
        .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
}

pub(super) fn unexpected(reply: &Reply) -> ApiError {
    log::error!("unexpected answer {reply:?}");
    ApiError::new(
        ErrorCode::Unavailable,
        "the tracker gave an unexpected answer",
    )
}

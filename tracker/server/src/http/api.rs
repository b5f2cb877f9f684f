//! The JSON API of seed 000 (register, heartbeat, announce, peers of a file, file list), seed
//! 003's stats report and seed 002's name pattern, plus exit and chunk reports so that all the
//! UDP protocol can do for a peer is reachable over HTTP.
//!
//! Each handler parses the request once into the protocol's types, builds the same
//! [`Request`] a datagram would carry and hands it to [`Tracker::handle_typed`] on the
//! blocking pool: one decision path, one set of trust rules, one store for both front ends.
//! Bodies are read as bytes and parsed here, so every malformed one gets the JSON error body.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Uri};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracker_proto::{
    ChunkRanges, ErrorCode, FileId, FileInfo, FileName, FileSummary, NamePattern, PeerChunks,
    PeerEntry, Request, RequestKind, DEFAULT_CHUNK_SIZE, MAX_CHUNKS,
};

use super::error::ApiError;
use super::session::Session;
use super::App;
use crate::handler::Reply;
use crate::store::SwarmStore;

/// Most entries in one page of a listing (peers of a file, the catalogue).
pub const PAGE: usize = 500;
/// Most chunk indices listed per peer as `chunks_available`; beyond it `chunk_ranges` says.
pub const MAX_LISTED_INDICES: u64 = 4096;
/// Longest accepted peer id (seed 000 uses UUIDs: 36 characters).
const MAX_PEER_ID: usize = 64;

type ApiResult = Result<Json<Value>, ApiError>;
type Source = ConnectInfo<SocketAddr>;

/// The body as `T`, or the JSON error saying what is wrong with it.
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
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
fn parse_query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_field(format!("invalid query: {}", e.body_text())))
}

fn check_peer_id(peer_id: &str) -> Result<(), ApiError> {
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

fn parse_file_id(text: &str) -> Result<FileId, ApiError> {
    text.parse()
        .map_err(|e| ApiError::bad_field(format!("file hash: {e}")))
}

fn file_name(text: &str) -> Result<FileName, ApiError> {
    FileName::new(text)
        .map_err(|e| ApiError::new(ErrorCode::BadFileName, format!("bad file name: {e}")))
}

/// The session of a request that needs one: the bearer token, checked against the body's
/// peer id and the connection's IP.
fn session<S: SwarmStore>(
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
fn keyed(session: &Session, kind: RequestKind) -> Request {
    let mut request = Request::new(kind);
    request.key = Some(session.key);
    request
}

/// The name `id` is tracked under, confirmed by the store (a stale index entry is dropped).
async fn resolve<S: SwarmStore + 'static>(
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
struct AnnounceBody {
    peer_id: String,
    file: AnnouncedFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnnouncedFile {
    name: String,
    size: u64,
    hash: String,
    chunk_size: Option<u32>,
    chunks: Option<Vec<ChunkHash>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkHash {
    index: u32,
    hash: String,
    size: u32,
}

/// Checks seed 000's chunk list against the file: every chunk in order with its size, and
/// the SHA-256 of their hashes (the manifest, protocol.txt §2.1) is the file's hash.
fn check_chunks(info: &FileInfo, chunks: &[ChunkHash]) -> Result<(), ApiError> {
    if chunks.len() as u64 != u64::from(info.chunks()) {
        return Err(ApiError::bad_field(format!(
            "chunks lists {} chunks; {} bytes in {}-byte chunks make {}",
            chunks.len(),
            info.size(),
            info.chunk_size(),
            info.chunks()
        )));
    }
    let mut manifest = Sha256::new();
    for (i, chunk) in chunks.iter().enumerate() {
        if chunk.index as usize != i {
            return Err(ApiError::bad_field(format!(
                "chunks[{i}] has index {}: list every chunk in order",
                chunk.index
            )));
        }
        let start = u64::from(chunk.index) * u64::from(info.chunk_size());
        let expected = (info.size() - start).min(u64::from(info.chunk_size()));
        if u64::from(chunk.size) != expected {
            return Err(ApiError::bad_field(format!(
                "chunk {i} is {expected} bytes, not {}",
                chunk.size
            )));
        }
        let hash: FileId = chunk
            .hash
            .parse()
            .map_err(|_| ApiError::bad_field(format!("chunk {i}: hash must be sha256:<64 hex>")))?;
        manifest.update(hash.0);
    }
    if manifest.finalize().as_slice() != info.id().0 {
        return Err(ApiError::new(
            ErrorCode::HashMismatch,
            "the file hash is not the SHA-256 of its chunk hashes (protocol.txt §2.1)",
        ));
    }
    Ok(())
}

/// `POST /api/files/announce`: the peer seeds a complete file (flag 4).
pub async fn announce<S: SwarmStore + 'static>(
    State(app): State<Arc<App<S>>>,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: AnnounceBody = parse_body(body)?;
    let session = session(&app, &headers, &body.peer_id, source.ip())?;
    let file = body.file;
    let name = file_name(&file.name)?;
    let id = parse_file_id(&file.hash)?;
    let chunk_size = file.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
    let info = FileInfo::new(name, file.size, chunk_size, id)
        .map_err(|e| ApiError::bad_field(e.to_string()))?;
    if let Some(chunks) = &file.chunks {
        check_chunks(&info, chunks)?;
    }
    let request = keyed(
        &session,
        RequestKind::Share {
            info,
            announce: session.addr,
        },
    );
    match app
        .run(move |t, now| t.handle_typed(request, source, now, 1))
        .await?
    {
        Reply::Ok => Ok(Json(json!({ "success": true, "file_id": id.to_string() }))),
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunksBody {
    peer_id: String,
    chunks: Vec<u32>,
}

/// `POST /api/files/{file_hash}/chunks`: the peer now holds these chunks (flag 3).
pub async fn report_chunks<S: SwarmStore + 'static>(
    State(app): State<Arc<App<S>>>,
    ConnectInfo(source): Source,
    headers: HeaderMap,
    hash: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = parse_file_id(&path_param(hash)?)?;
    let body: ChunksBody = parse_body(body)?;
    let session = session(&app, &headers, &body.peer_id, source.ip())?;
    if let Some(&bad) = body.chunks.iter().find(|&&i| i >= MAX_CHUNKS) {
        return Err(ApiError::new(
            ErrorCode::BadChunks,
            format!("chunk index {bad} is beyond 2^22"),
        ));
    }
    let chunks = ChunkRanges::from_indices(body.chunks.iter().copied())
        .ok_or_else(|| ApiError::new(ErrorCode::BadChunks, "chunks must not be empty"))?;
    let file = resolve(&app, id, source).await?.info.name().clone();
    let request = keyed(
        &session,
        RequestKind::Chunks {
            file,
            chunks,
            announce: session.addr,
        },
    );
    match app
        .run(move |t, now| t.handle_typed(request, source, now, 1))
        .await?
    {
        Reply::Ok => Ok(Json(json!({ "success": true }))),
        other => Err(unexpected(&other)),
    }
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
    let request = keyed(
        &session,
        RequestKind::Exit {
            file,
            announce: session.addr,
        },
    );
    match app
        .run(move |t, now| t.handle_typed(request, source, now, 1))
        .await?
    {
        Reply::Ok => Ok(Json(json!({ "success": true }))),
        other => Err(unexpected(&other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetQuery {
    offset: Option<u32>,
}

/// `GET /api/files/{file_hash}/peers`: the file and one page of its swarm (flag 1).
pub async fn peers<S: SwarmStore + 'static>(
    State(app): State<Arc<App<S>>>,
    ConnectInfo(source): Source,
    hash: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> ApiResult {
    let id = parse_file_id(&path_param(hash)?)?;
    let query: OffsetQuery = parse_query(&uri)?;
    let summary = resolve(&app, id, source).await?;
    let request = Request::new(RequestKind::Peers {
        file: summary.info.name().clone(),
        announce: None,
        offset: query.offset.unwrap_or(0),
    });
    let (file, peers, next) = match app
        .run(move |t, now| t.handle_typed(request, source, now, PAGE))
        .await?
    {
        Reply::Peers { file, peers, next } => (file, peers, next),
        other => return Err(unexpected(&other)),
    };
    if file.info.id() != id {
        return Err(ApiError::new(
            ErrorCode::FileNotFound,
            format!("no such file: {id}"),
        ));
    }
    let peers: Vec<Value> = peers
        .iter()
        .map(|p| peer_json(p, file.info.chunks()))
        .collect();
    Ok(Json(json!({
        "file_hash": id.to_string(),
        "file_name": file.info.name().as_str(),
        "file_size": file.info.size(),
        "chunk_size": file.info.chunk_size(),
        "chunk_count": file.info.chunks(),
        "seeders": file.seeders,
        "leechers": file.leechers,
        "peers": peers,
        "next_offset": next,
    })))
}

/// One peer of seed 000's listing. The tracker knows peers by serving address, so that is
/// their `peer_id`; `chunk_ranges` is the protocol's range form, `chunks_available` the
/// indices when there are at most [`MAX_LISTED_INDICES`], `have` their count.
fn peer_json(peer: &PeerEntry, chunks: u32) -> Value {
    let (have, ranges): (u64, Option<String>) = match &peer.chunks {
        PeerChunks::Seeder => (
            u64::from(chunks),
            ChunkRanges::full(chunks).map(|r| r.to_string()),
        ),
        PeerChunks::Ranges(r) => (r.count(), Some(r.to_string())),
        PeerChunks::Count(n) => (u64::from(*n), None),
    };
    let indices: Option<Vec<u32>> = match &peer.chunks {
        PeerChunks::Seeder if have <= MAX_LISTED_INDICES => Some((0..chunks).collect()),
        PeerChunks::Ranges(r) if have <= MAX_LISTED_INDICES => Some(r.iter().collect()),
        PeerChunks::Count(0) => Some(Vec::new()),
        _ => None,
    };
    json!({
        "peer_id": peer.addr.to_string(),
        "ip": peer.addr.ip().to_string(),
        "port": peer.addr.port(),
        "is_seeder": matches!(peer.chunks, PeerChunks::Seeder),
        "have": have,
        "chunk_ranges": ranges,
        "chunks_available": indices,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesQuery {
    #[serde(rename = "match")]
    pattern: Option<String>,
    offset: Option<u32>,
}

/// `GET /api/files[?match=GLOB]`: one page of the catalogue (flag 6), each file with its hash.
pub async fn files<S: SwarmStore + 'static>(
    State(app): State<Arc<App<S>>>,
    ConnectInfo(source): Source,
    uri: Uri,
) -> ApiResult {
    let query: FilesQuery = parse_query(&uri)?;
    let pattern = query
        .pattern
        .as_deref()
        .map(NamePattern::new)
        .transpose()
        .map_err(|e| ApiError::bad_field(format!("match: {e}")))?;
    let request = Request::new(RequestKind::ListFiles {
        offset: query.offset.unwrap_or(0),
        pattern,
    });
    let (files, total, next) = app
        .run(move |t, now| {
            let (total, listed, next) = match t.handle_typed(request, source, now, PAGE)? {
                Reply::Files { total, files, next } => (total, files, next),
                other => {
                    return Err(crate::handler::Refused {
                        code: ErrorCode::Unavailable,
                        text: format!("the tracker answered a listing with {other:?}"),
                    })
                }
            };
            // The catalogue lists no hashes: one query per file, all in one store trip.
            let queries = listed
                .iter()
                .map(|f| {
                    Request::new(RequestKind::Query {
                        file: f.name.clone(),
                    })
                })
                .collect();
            let summaries = t.handle_typed_batch(queries, source, now, 1);
            let files: Vec<FileSummary> = summaries
                .into_iter()
                .filter_map(|s| match s {
                    Ok(Reply::File(summary)) => Some(summary),
                    _ => None, // gone since it was listed
                })
                .collect();
            Ok((files, total, next))
        })
        .await?;
    let files: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({
                "hash": f.info.id().to_string(),
                "name": f.info.name().as_str(),
                "size": f.info.size(),
                "chunk_size": f.info.chunk_size(),
                "chunk_count": f.info.chunks(),
                "seeders": f.seeders,
                "leechers": f.leechers,
            })
        })
        .collect();
    Ok(Json(json!({
        "files": files,
        "total_files": total,
        "next_offset": next,
    })))
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

fn path_param(hash: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    hash.map(|p| p.0)
        .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
}

fn unexpected(reply: &Reply) -> ApiError {
    log::error!("unexpected answer {reply:?}");
    ApiError::new(
        ErrorCode::Unavailable,
        "the tracker gave an unexpected answer",
    )
}

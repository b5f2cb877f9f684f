//! The file endpoints: seed 000's announce (flag 4), peers of a file (flag 1) and file list
//! (flag 6, with seed 002's name pattern), and chunk reports (flag 3), in seed 000's shapes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Uri};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracker_proto::{
    ChunkRanges, ErrorCode, FileId, FileInfo, FileSummary, NamePattern, PeerChunks, PeerEntry,
    Request, RequestKind, DEFAULT_CHUNK_SIZE, MAX_CHUNKS,
};

use super::error::ApiError;
use super::extract::{
    acknowledged, file_name, parse_body, parse_file_id, parse_query, path_param, resolve, session,
    unexpected, ApiResult, Source,
};
use super::App;
use crate::handler::Reply;
use crate::store::SwarmStore;

/// Most entries in one page of a listing (peers of a file, the catalogue).
pub const PAGE: usize = 500;
/// Most chunk indices listed per peer as `chunks_available`; beyond it `chunk_ranges` says.
pub const MAX_LISTED_INDICES: u64 = 4096;

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
    if let Some(chunks) = file.chunks {
        // Hashing (up to a megabyte of chunk list) belongs on the blocking pool.
        let described = info.clone();
        tokio::task::spawn_blocking(move || check_chunks(&described, &chunks))
            .await
            .map_err(|e| {
                log::error!("checking a chunk list failed: {e}");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the tracker failed to check the chunks",
                )
            })??;
    }
    let kind = RequestKind::Share {
        info,
        announce: session.addr,
    };
    acknowledged(&app, &session, kind, source).await?;
    Ok(Json(json!({ "success": true, "file_id": id.to_string() })))
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
    let kind = RequestKind::Chunks {
        file,
        chunks,
        announce: session.addr,
    };
    acknowledged(&app, &session, kind, source).await?;
    Ok(Json(json!({ "success": true })))
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
                "completed": f.stats.map_or(0, |s| s.completed),
                "bytes_up": f.stats.map_or(0, |s| s.up),
                "bytes_down": f.stats.map_or(0, |s| s.down),
            })
        })
        .collect();
    Ok(Json(json!({
        "files": files,
        "total_files": total,
        "next_offset": next,
    })))
}

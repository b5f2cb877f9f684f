//! What one flag takes with one tracker: following every page of a listing, splitting a long
//! chunk report into datagrams, checking the answer fits the request. The client runs these
//! on the trackers its failover rules pick ([`super::failover`]).

use std::collections::HashSet;
use std::net::SocketAddr;

use super::endpoint::Report;
use super::tiers::{Context, Tracker};
use super::{ClientError, Swarm};
use crate::transfer::Transfer;
use crate::{
    AnnounceIntervals, ChunkRanges, FileName, ListedFile, NamePattern, RequestKind, Response,
    ResponseKind,
};

/// Bound on pages followed for one listing, so a misbehaving tracker cannot keep a call busy
/// forever (a 1400-byte page holds at least ~10 entries, so this allows about a million).
const MAX_PAGES: usize = 100_000;
/// Longest chunk list put in one flag 3 datagram; longer reports are split. Leaves room for
/// a 255-byte name, an IPv6 address, key, cookie and tid within `MAX_REQUEST_BYTES`.
pub(super) const MAX_CHUNK_LIST_BYTES: usize = 900;

impl Tracker {
    /// Follows every page of flag 1 or 2. Each page carries `announce`: joining is idempotent,
    /// and so every page refreshes the peer's liveness.
    pub(super) async fn swarm(
        &self,
        cx: &Context,
        file: &FileName,
        refresh: bool,
        announce: Option<SocketAddr>,
        transfer: Transfer,
    ) -> Result<Swarm, ClientError> {
        let mut summary = None;
        let mut intervals = AnnounceIntervals::DEFAULT;
        let mut peers = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0;
        for _ in 0..MAX_PAGES {
            let kind = if refresh {
                RequestKind::Refresh {
                    file: file.clone(),
                    announce,
                    offset,
                }
            } else {
                RequestKind::Peers {
                    file: file.clone(),
                    announce,
                    offset,
                }
            };
            match self.request(cx, kind, Report::transfer(transfer)).await? {
                ResponseKind::Peers {
                    file: page_file,
                    intervals: page_intervals,
                    next,
                    peers: page,
                    ..
                } => {
                    if let Some(i) = page_intervals {
                        intervals = i;
                    }
                    if page_file.info.name() != file {
                        return Err(ClientError::Unexpected(format!(
                            "asked for {file}, got {}",
                            page_file.info.name()
                        )));
                    }
                    peers.extend(page.into_iter().filter(|p| seen.insert(p.addr)));
                    summary = Some(page_file);
                    match next {
                        Some(n) if n > offset => offset = n,
                        _ => break,
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
        match summary {
            Some(file) => Ok(Swarm::new(file, peers, intervals)),
            None => Err(ClientError::Unexpected(
                "peer list paging does not end".into(),
            )),
        }
    }

    /// Flag 6, every page.
    pub(super) async fn list_files(
        &self,
        cx: &Context,
        pattern: Option<&NamePattern>,
    ) -> Result<Vec<ListedFile>, ClientError> {
        let mut all = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0;
        for _ in 0..MAX_PAGES {
            let kind = RequestKind::ListFiles {
                offset,
                pattern: pattern.cloned(),
            };
            match self.request(cx, kind, Report::default()).await? {
                ResponseKind::Files { files, next, .. } => {
                    all.extend(files.into_iter().filter(|f| seen.insert(f.name.clone())));
                    match next {
                        Some(n) if n > offset => offset = n,
                        _ => return Ok(all),
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
        Err(ClientError::Unexpected(
            "catalogue paging does not end".into(),
        ))
    }

    /// Flag 3 in as many datagrams as the list needs.
    pub(super) async fn report_chunks(
        &self,
        cx: &Context,
        file: &FileName,
        chunks: &ChunkRanges,
        announce: SocketAddr,
    ) -> Result<(), ClientError> {
        for batch in split_ranges(chunks, MAX_CHUNK_LIST_BYTES) {
            let kind = RequestKind::Chunks {
                file: file.clone(),
                chunks: batch,
                announce,
            };
            self.expect_ok(cx, kind, Report::default()).await?;
        }
        Ok(())
    }

    pub(super) async fn expect_ok(
        &self,
        cx: &Context,
        kind: RequestKind,
        report: Report,
    ) -> Result<(), ClientError> {
        match self.request(cx, kind, report).await? {
            ResponseKind::Ok(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

pub(super) fn unexpected(kind: &ResponseKind) -> ClientError {
    let text = Response::new(None, kind.clone()).encode();
    ClientError::Unexpected(
        text.lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect(),
    )
}

/// Splits `chunks` into lists whose text is at most `max_bytes` long.
pub(super) fn split_ranges(chunks: &ChunkRanges, max_bytes: usize) -> Vec<ChunkRanges> {
    let mut batches = Vec::new();
    let mut current: Vec<(u32, u32)> = Vec::new();
    let mut len = 0;
    for &(s, e) in chunks.ranges() {
        // "4194303-4194303," is the longest a range can print.
        let range_len = if s == e { 8 } else { 16 };
        if len + range_len > max_bytes && !current.is_empty() {
            batches.extend(ChunkRanges::from_ranges(std::mem::take(&mut current)).ok());
            len = 0;
        }
        current.push((s, e));
        len += range_len;
    }
    batches.extend(ChunkRanges::from_ranges(current).ok());
    batches
}

//! The serving half of a connection: answers to the peer's REQUESTs and GET_MANIFESTs.
//!
//! Every answer is a future (a positioned read on the blocking pool, after the rate limits
//! allowed its bytes) kept in request order, so reads overlap with everything else the
//! connection does while CHUNK and REJECT frames still leave in the order protocol.txt §2.4
//! asks for. Reads are at most [`MAX_READ`] bytes, so a REQUEST of 64 large chunks never holds
//! more than that in memory at once.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;

use crate::connection::FrameWriter;
use crate::manifest::{ChunkHash, Manifest};
use crate::wire::{encode_chunk, ChunkRun, Frame, MAX_MANIFEST_HASHES};

use super::limit::{acquire, RateLimit};
use super::Swarm;

/// Largest positioned read of one answer.
const MAX_READ: u64 = 256 * 1024;

/// One answer, ready to be encoded.
pub(super) enum Answer {
    /// The bytes of chunks `first..`, read in one piece.
    Chunks {
        first: u32,
        data: Vec<u8>,
    },
    Reject(ChunkRun),
    Manifest {
        start: u32,
        hashes: Vec<ChunkHash>,
    },
}

pub(super) type Pending = Pin<Box<dyn Future<Output = io::Result<Answer>> + Send>>;

/// The answers to REQUEST `run` (already checked to lie inside the file): reads of the chunks
/// we hold (when `serve` is true: the peer is unchoked), REJECTs for the others. `limits` are
/// the upload limits every read books its bytes on first. Returns them with the bytes they
/// will send.
pub(super) fn answer_request(
    swarm: &Arc<Swarm>,
    run: ChunkRun,
    serve: bool,
    limits: &Arc<[Arc<RateLimit>]>,
) -> Vec<(Pending, u64)> {
    if !serve {
        return vec![(
            Box::pin(std::future::ready(Ok(Answer::Reject(run)))) as Pending,
            0,
        )];
    }
    let manifest = swarm.manifest();
    let per_read = (MAX_READ / u64::from(manifest.chunk_size())).max(1) as u32;
    let mut answers = Vec::new();
    let mut i = run.first;
    while i < run.end() {
        let have = swarm.has(i);
        let mut j = i + 1;
        while j < run.end() && swarm.has(j) == have && (!have || j - i < per_read) {
            j += 1;
        }
        if have {
            let start = manifest.offset(i);
            let len = manifest.offset(j - 1) + manifest.chunk_len(j - 1) as u64 - start;
            answers.push((
                read_chunks(swarm.file.clone(), limits.clone(), i, start, len),
                len,
            ));
        } else {
            let reject = Answer::Reject(ChunkRun::new(i, j - i));
            answers.push((Box::pin(std::future::ready(Ok(reject))) as Pending, 0));
        }
        i = j;
    }
    answers
}

fn read_chunks(
    file: Arc<File>,
    limits: Arc<[Arc<RateLimit>]>,
    first: u32,
    offset: u64,
    len: u64,
) -> Pending {
    Box::pin(async move {
        let refs: Vec<&RateLimit> = limits.iter().map(|l| l.as_ref()).collect();
        acquire(&refs, len).await;
        let data = tokio::task::spawn_blocking(move || {
            let mut data = vec![0u8; len as usize];
            file.read_exact_at(&mut data, offset).map(|()| data)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Answer::Chunks { first, data })
    })
}

/// The answer to GET_MANIFEST: hashes read from the manifest (which may live in a file).
pub(super) fn answer_manifest(manifest: Arc<Manifest>, start: u32, count: u32) -> Pending {
    Box::pin(async move {
        let count = count.min(MAX_MANIFEST_HASHES);
        let hashes = tokio::task::spawn_blocking(move || manifest.hashes(start, count))
            .await
            .map_err(io::Error::other)??;
        Ok(Answer::Manifest { start, hashes })
    })
}

/// Encodes `answer` into `out`; returns the chunk bytes it carries.
pub(super) fn emit(answer: Answer, manifest: &Manifest, out: &mut FrameWriter) -> u64 {
    match answer {
        Answer::Chunks { first, data } => {
            let mut pos = 0;
            let mut index = first;
            while pos < data.len() {
                let len = manifest.chunk_len(index);
                encode_chunk(out.out(), index, &data[pos..pos + len]);
                pos += len;
                index += 1;
            }
            data.len() as u64
        }
        Answer::Reject(run) => {
            out.queue(&Frame::Reject(run));
            0
        }
        Answer::Manifest { start, hashes } => {
            out.queue(&Frame::Manifest { start, hashes });
            0
        }
    }
}

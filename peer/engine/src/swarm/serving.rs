//! The serving half of a connection: answers to the peer's REQUESTs and GET_MANIFESTs.
//!
//! Every answer is a future (a positioned read on the blocking pool) kept in request order
//! ([`Answers`]), so reads overlap with everything else the connection does while CHUNK and
//! REJECT frames still leave in the order protocol.txt §2.4 asks for. The rate limits are
//! booked when an answer is about to leave, not when it is read: an answer dropped by a choke
//! costs no upload budget. Reads are at most [`MAX_READ`] bytes, so a REQUEST of 64 large chunks never
//! holds more than that in memory at once. Choking a peer turns every answer not yet sent into
//! a REJECT: otherwise a peer could queue a long backlog while unchoked and be served for many
//! seconds after it lost its slot.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};

use crate::connection::FrameWriter;
use crate::manifest::{ChunkHash, Manifest, HASH_LEN};
use crate::storage::Storage;
use crate::wire::{chunk_frames, ChunkRun, Frame, CHUNK_HEADER, MAX_MANIFEST_HASHES};

use super::Swarm;

/// Largest positioned read of one answer.
const MAX_READ: u64 = 256 * 1024;

/// One answer, ready to be sent.
pub(super) enum Answer {
    /// The CHUNK frames of `run`, read from the file straight into place.
    Chunks {
        run: ChunkRun,
        frames: Bytes,
        /// Chunk bytes they carry.
        bytes: u64,
    },
    Reject(ChunkRun),
    Manifest {
        start: u32,
        hashes: Vec<ChunkHash>,
    },
}

type Pending = Pin<Box<dyn Future<Output = io::Result<Answer>> + Send>>;

/// What an answer in the queue is for, so the queue can be rebuilt as REJECTs on a choke.
enum Owed {
    Chunks(ChunkRun),
    Reject(ChunkRun),
    Manifest { start: u32, count: u32 },
}

/// The answers a connection owes its peer, in the order they must be sent.
pub(super) struct Answers {
    pending: FuturesOrdered<Pending>,
    owed: VecDeque<Owed>,
    /// Chunk and hash bytes of the answers not yet sent.
    bytes: u64,
}

impl Answers {
    pub fn new() -> Answers {
        Answers {
            pending: FuturesOrdered::new(),
            owed: VecDeque::new(),
            bytes: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Chunk and hash bytes owed and not yet sent: what the connection stops reading on, so
    /// a peer that pipelines GET_MANIFESTs and never reads is held to the bound as one that
    /// pipelines REQUESTs.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Queues the answers to REQUEST `run` (already checked to lie inside the file): reads of
    /// the chunks we hold when `serve` (the peer is unchoked), REJECTs for the others.
    pub fn request(&mut self, swarm: &Arc<Swarm>, run: ChunkRun, serve: bool) {
        if !serve {
            self.reject(run);
            return;
        }
        let manifest = swarm.manifest();
        let per_read = (MAX_READ / u64::from(manifest.chunk_size())).max(1) as u32;
        let mut i = run.first;
        while i < run.end() {
            let have = swarm.has(i);
            let mut j = i + 1;
            while j < run.end() && swarm.has(j) == have && (!have || j - i < per_read) {
                j += 1;
            }
            let part = ChunkRun::new(i, j - i);
            if have {
                let start = manifest.offset(i);
                let len = manifest.offset(j - 1) + manifest.chunk_len(j - 1) as u64 - start;
                self.pending.push_back(read_chunks(
                    swarm.file.clone(),
                    manifest.clone(),
                    part,
                    start,
                    swarm.check_reads,
                ));
                self.owed.push_back(Owed::Chunks(part));
                self.bytes += len;
            } else {
                self.reject(part);
            }
            i = j;
        }
    }

    /// Queues the answer to GET_MANIFEST.
    pub fn manifest(&mut self, manifest: Arc<Manifest>, start: u32, count: u32) {
        let count = count.min(MAX_MANIFEST_HASHES);
        self.bytes += manifest_bytes(&manifest, start, count);
        self.pending
            .push_back(answer_manifest(manifest, start, count));
        self.owed.push_back(Owed::Manifest { start, count });
    }

    fn reject(&mut self, run: ChunkRun) {
        self.pending
            .push_back(Box::pin(std::future::ready(Ok(Answer::Reject(run)))));
        self.owed.push_back(Owed::Reject(run));
    }

    /// The peer was just sent CHOKE: every chunk answer not yet sent (`held` first, an answer
    /// taken from the queue and waiting for the rate limits) leaves at once as a REJECT, in
    /// order, right behind the CHOKE, so the peer reads every REJECT between a CHOKE and the
    /// next UNCHOKE as "choked", and any other as "not held here". Manifest answers stay owed.
    pub fn reject_all(
        &mut self,
        held: Option<Answer>,
        manifest: &Arc<Manifest>,
        out: &mut FrameWriter,
    ) {
        if let Some(Answer::Chunks { run, .. }) = held {
            out.queue(&Frame::Reject(run));
        }
        let owed = std::mem::take(&mut self.owed);
        self.pending = FuturesOrdered::new();
        self.bytes = 0;
        for o in owed {
            match o {
                Owed::Chunks(run) | Owed::Reject(run) => out.queue(&Frame::Reject(run)),
                Owed::Manifest { start, count } => self.manifest(manifest.clone(), start, count),
            }
        }
    }

    /// The next answer due, once it is ready.
    pub async fn next(&mut self) -> Option<io::Result<Answer>> {
        let answer = self.pending.next().await?;
        self.owed.pop_front();
        // An answer that failed ends the connection: nothing to settle.
        let settled = match &answer {
            Ok(Answer::Chunks { bytes, .. }) => *bytes,
            Ok(Answer::Manifest { hashes, .. }) => (hashes.len() * HASH_LEN) as u64,
            Ok(Answer::Reject(_)) | Err(_) => 0,
        };
        self.bytes = self.bytes.saturating_sub(settled);
        Some(answer)
    }
}

/// Hash bytes of the answer to GET_MANIFEST(start, count): the hashes that exist.
fn manifest_bytes(manifest: &Manifest, start: u32, count: u32) -> u64 {
    let held = manifest.chunk_count().saturating_sub(start).min(count);
    u64::from(held) * HASH_LEN as u64
}

/// Reads the chunks of `run`, which start at `offset` in `file`, into the CHUNK frames that
/// will carry them (one `preadv`, no copy between the file and the socket's buffer).
/// With `check`, every chunk read is hashed and compared with the manifest first: a file that
/// changed under us fails the read instead of sending bytes the manifest does not vouch for.
fn read_chunks(
    file: Arc<Storage>,
    manifest: Arc<Manifest>,
    run: ChunkRun,
    offset: u64,
    check: bool,
) -> Pending {
    Box::pin(async move {
        tokio::task::spawn_blocking(move || {
            let lens: Vec<usize> = run.indices().map(|i| manifest.chunk_len(i)).collect();
            let bytes: usize = lens.iter().sum();
            let mut frames = BytesMut::zeroed(bytes + CHUNK_HEADER * lens.len());
            let slots = chunk_frames(&mut frames, run.first, &lens);
            file.read_exact_vectored_at(slots, offset)?;
            if check {
                check_read(&manifest, run, &frames, &lens)?;
            }
            Ok(Answer::Chunks {
                run,
                frames: frames.freeze(),
                bytes: bytes as u64,
            })
        })
        .await
        .map_err(io::Error::other)?
    })
}

/// The answer to GET_MANIFEST: hashes read from the manifest (which may live in a file).
/// Checks each chunk of `frames` (CHUNK frames of `run`, data lengths `lens`) against the
/// manifest; a mismatch is an error naming the chunk.
fn check_read(manifest: &Manifest, run: ChunkRun, frames: &[u8], lens: &[usize]) -> io::Result<()> {
    let expected = manifest.hashes(run.first, run.count)?;
    let mut at = 0;
    let chunks: Vec<&[u8]> = lens
        .iter()
        .map(|&len| {
            let data = &frames[at + CHUNK_HEADER..at + CHUNK_HEADER + len];
            at += CHUNK_HEADER + len;
            data
        })
        .collect();
    match manifest.first_mismatch(run.first, &chunks, &expected) {
        None => Ok(()),
        Some(index) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "chunk {index} read from disk no longer matches the manifest (the file changed since it was shared); not sent"
            ),
        )),
    }
}

fn answer_manifest(manifest: Arc<Manifest>, start: u32, count: u32) -> Pending {
    Box::pin(async move {
        let hashes = tokio::task::spawn_blocking(move || manifest.hashes(start, count))
            .await
            .map_err(io::Error::other)??;
        Ok(Answer::Manifest { start, hashes })
    })
}

impl Answer {
    /// Chunk bytes the answer carries (what the upload limits count).
    pub fn bytes(&self) -> u64 {
        match self {
            Answer::Chunks { bytes, .. } => *bytes,
            Answer::Reject(_) | Answer::Manifest { .. } => 0,
        }
    }
}

/// Queues `answer` on `out`; returns the chunk bytes it carries.
pub(super) fn emit(answer: Answer, out: &mut FrameWriter) -> u64 {
    match answer {
        Answer::Chunks { frames, bytes, .. } => {
            out.queue_encoded(frames);
            bytes
        }
        Answer::Reject(run) => {
            out.queue(&Frame::Reject(run));
            0
        }
        Answer::Manifest { start, hashes } => {
            // In a buffer of its own, freed once sent: encoded into the writer's buffer for
            // small frames, answers of up to 128 KiB grew that buffer to twice what was owed and
            // kept it that large (16 clients that never read took 99 MiB of a daemon).
            let mut frame = BytesMut::new();
            Frame::Manifest { start, hashes }.encode(&mut frame);
            out.queue_encoded(frame.freeze());
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_read_that_no_longer_matches_its_manifest_is_not_sent() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let manifest = Manifest::from_data(&data, 2048).unwrap();
        let run = ChunkRun::new(0, 3);
        let lens: Vec<usize> = run.indices().map(|i| manifest.chunk_len(i)).collect();
        let mut frames = vec![0u8; lens.iter().sum::<usize>() + CHUNK_HEADER * lens.len()];
        let mut at = 0;
        for slot in chunk_frames(&mut frames, run.first, &lens) {
            slot.copy_from_slice(&data[at..at + slot.len()]);
            at += slot.len();
        }
        check_read(&manifest, run, &frames, &lens).unwrap();
        // One byte of chunk 1 changed on disk, as an edit that keeps size and time would.
        frames[2 * CHUNK_HEADER + 2048 + 7] ^= 0x40;
        let err = check_read(&manifest, run, &frames, &lens).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("chunk 1 "), "{err}");
    }
}

//! The downloading half's writes: consecutive chunks received from one peer are verified
//! against the manifest and written with one vectored positioned write straight from the
//! buffers they arrived in, on the blocking pool (hashing is the engine's heaviest work and
//! must not hold up other connections), in the order they arrived. The deliveries of one read
//! of the socket make one trip there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::manifest::Manifest;
use crate::share::PartialFile;
use crate::wire::ChunkRun;

/// Consecutive chunks received from one peer, not yet verified.
#[derive(Debug, Default)]
pub(super) struct Delivery {
    pub first: u32,
    pub chunks: Vec<Bytes>,
}

impl Delivery {
    pub fn run(&self) -> ChunkRun {
        ChunkRun::new(self.first, self.chunks.len() as u32)
    }

    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }
}

/// How a delivery ended.
pub(super) enum Stored {
    /// Verified and written; `newly` are the chunks nobody had delivered before.
    Written {
        run: ChunkRun,
        newly: Vec<u32>,
        bytes: u64,
    },
    /// Chunk `index` does not match the manifest: nothing of the delivery was written.
    Corrupt { run: ChunkRun, index: u32 },
    /// Our disk failed us (or the manifest could not be read).
    Failed { run: ChunkRun, error: String },
}

/// How each delivery of one trip ended, in the order given.
pub(super) type Pending = Pin<Box<dyn Future<Output = Vec<Stored>> + Send>>;

/// Verifies and writes `deliveries` into `partial` on the blocking pool, in one trip.
pub(super) fn store(
    partial: Arc<PartialFile>,
    manifest: Arc<Manifest>,
    deliveries: Vec<Delivery>,
) -> Pending {
    Box::pin(async move {
        let runs: Vec<ChunkRun> = deliveries.iter().map(Delivery::run).collect();
        let trip = move || {
            deliveries
                .into_iter()
                .map(|d| verify_and_write(&partial, &manifest, d))
                .collect()
        };
        match tokio::task::spawn_blocking(trip).await {
            Ok(stored) => stored,
            Err(e) => runs
                .into_iter()
                .map(|run| Stored::Failed {
                    run,
                    error: e.to_string(),
                })
                .collect(),
        }
    })
}

fn verify_and_write(partial: &PartialFile, manifest: &Manifest, delivery: Delivery) -> Stored {
    let run = delivery.run();
    let expected = match manifest.hashes(run.first, run.count) {
        Ok(h) => h,
        Err(e) => {
            return Stored::Failed {
                run,
                error: format!("reading the manifest: {e}"),
            }
        }
    };
    let chunks: Vec<&[u8]> = delivery.chunks.iter().map(|c| &c[..]).collect();
    if let Some(index) = manifest.first_mismatch(run.first, &chunks, &expected) {
        return Stored::Corrupt { run, index };
    }
    match partial.write_verified(run.first, &delivery.chunks) {
        Ok(newly) => Stored::Written {
            run,
            newly,
            bytes: delivery.bytes(),
        },
        Err(e) => Stored::Failed {
            run,
            error: e.to_string(),
        },
    }
}

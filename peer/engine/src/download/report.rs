//! Telling the tracker which chunks we hold (flag 3) from a task of its own, so a slow or dead
//! tracker (a request may take 7.5 s of retries) never holds up the download. Reports that
//! fail are merged into the next one: the tracker learns every recorded chunk eventually.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracker_proto::{ChunkRanges, TrackerClient};

use crate::name::ShareName;

/// The reporting task of one download.
pub(super) struct Reporter {
    tx: mpsc::UnboundedSender<Vec<u32>>,
    task: JoinHandle<()>,
}

impl Reporter {
    pub fn spawn(
        tracker: Arc<TrackerClient>,
        name: ShareName,
        announce: watch::Receiver<SocketAddr>,
    ) -> Reporter {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(report(tracker, name, announce, rx));
        Reporter { tx, task }
    }

    /// Chunks newly recorded on disk, to be reported.
    pub fn send(&self, recorded: Vec<u32>) {
        if !recorded.is_empty() {
            let _ = self.tx.send(recorded);
        }
    }

    /// Reports what is left, waiting at most `limit` (the tracker may be gone).
    pub async fn finish(self, limit: Duration) {
        drop(self.tx);
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}

async fn report(
    tracker: Arc<TrackerClient>,
    name: ShareName,
    announce: watch::Receiver<SocketAddr>,
    mut rx: mpsc::UnboundedReceiver<Vec<u32>>,
) {
    let mut pending = BTreeSet::new();
    while let Some(batch) = rx.recv().await {
        pending.extend(batch);
        // Take whatever else queued up meanwhile: one report for all of it.
        while let Ok(more) = rx.try_recv() {
            pending.extend(more);
        }
        let Some(ranges) = ChunkRanges::from_indices(pending.iter().copied()) else {
            continue;
        };
        let at = *announce.borrow();
        match tracker.report_chunks(name.file_name(), &ranges, at).await {
            Ok(()) => pending.clear(),
            Err(e) => log::warn!("{name}: reporting chunks to the tracker: {e}"),
        }
    }
}

//! The threads that verify and write the chunks we receive and read (and check) the chunks we
//! send. Each swarm's disk work goes to one of a few long-lived threads, chosen by the swarm's
//! key, in the order it was queued. Tokio's blocking pool hands each job to whichever of its
//! idle threads it wakes: a fast download kept about ten threads waking in turn, several of
//! them writing the same file at once and contending on its inode lock. A thread here that is
//! busy takes the next job of its queue without sleeping, and one file is written by one thread.
//!
//! The price: a swarm whose disk stalls holds up the other swarms of its thread. Threads start
//! when first needed, so a process that never transfers starts none.

use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use parking_lot::Mutex;

type Job = Box<dyn FnOnce() + Send>;

/// Most threads a process starts, however many cores it has: one thread hashes and copies
/// more than a gigabyte a second, and each swarm uses one.
const MAX_THREADS: usize = 8;

#[derive(Debug)]
pub struct DiskThreads {
    /// Each thread's queue, started on first use.
    queues: Vec<Mutex<Option<mpsc::Sender<Job>>>>,
    next_key: AtomicUsize,
}

impl DiskThreads {
    /// As many threads as the machine has cores (at most [`MAX_THREADS`]).
    pub fn new() -> DiskThreads {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        DiskThreads::with_threads(cores.min(MAX_THREADS))
    }

    fn with_threads(threads: usize) -> DiskThreads {
        DiskThreads {
            queues: (0..threads.max(1)).map(|_| Mutex::new(None)).collect(),
            next_key: AtomicUsize::new(0),
        }
    }

    /// A key for a new swarm: swarms are spread over the threads in turn.
    pub fn key(&self) -> usize {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues `work` on the thread of `key` now; the future gives its result. Jobs of one key
    /// run one at a time, in the order queued.
    pub fn run<T: Send + 'static>(
        &self,
        key: usize,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = io::Result<T>> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = self.queue(
            key,
            Box::new(move || {
                // The receiver may be gone (its connection ended): nothing to tell then.
                let _ = tx.send(work());
            }),
        );
        async move {
            queued?;
            rx.await
                .map_err(|_| io::Error::other("a disk thread failed while working on this"))
        }
    }

    fn queue(&self, key: usize, job: Job) -> io::Result<()> {
        let slot = key % self.queues.len();
        let mut queue = self.queues[slot].lock();
        let job = match queue.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                // The thread is gone: start another for this job.
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("peer-disk-{slot}"))
            .spawn(move || work_through(rx))
            .map_err(|e| io::Error::other(format!("cannot start a disk thread: {e}")))?;
        // The receiver lives in the thread just started, which only ends once `tx` is dropped.
        tx.send(job)
            .map_err(|_| io::Error::other("a disk thread ended as it started"))?;
        *queue = Some(tx);
        Ok(())
    }
}

impl Default for DiskThreads {
    fn default() -> Self {
        DiskThreads::new()
    }
}

/// A disk thread's life: its jobs in order until every sender is dropped. A job that panics
/// drops its reply (its caller gets an error) and the thread goes on with the next.
fn work_through(jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!("a disk job panicked; its transfer gets an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_of_one_key_run_in_order_on_one_thread() {
        let threads = DiskThreads::with_threads(2);
        let key = threads.key();
        let runs: Vec<_> = (0..50)
            .map(|i| {
                threads.run(key, move || {
                    std::thread::sleep(std::time::Duration::from_micros(50 - i));
                    (i, std::thread::current().id(), std::time::Instant::now())
                })
            })
            .collect();
        let mut done = Vec::new();
        for r in runs {
            done.push(r.await.unwrap());
        }
        assert!(done.iter().all(|d| d.1 == done[0].1), "one thread per key");
        assert!(done.windows(2).all(|w| w[0].0 < w[1].0 && w[0].2 <= w[1].2));
        assert_ne!(done[0].1, std::thread::current().id());
    }

    #[tokio::test]
    async fn keys_spread_over_the_threads() {
        let threads = DiskThreads::with_threads(2);
        let a = threads.key();
        let b = threads.key();
        let on = |key| threads.run(key, || std::thread::current().id());
        assert_ne!(on(a).await.unwrap(), on(b).await.unwrap());
        assert_eq!(on(a).await.unwrap(), on(a + 2).await.unwrap());
    }

    #[tokio::test]
    async fn a_job_that_panics_fails_alone_and_the_thread_goes_on() {
        let threads = DiskThreads::with_threads(1);
        let failed = threads.run(0, || -> u32 { panic!("a bug in a disk job") });
        let next = threads.run(0, || 7);
        assert!(failed.await.is_err());
        assert_eq!(next.await.unwrap(), 7);
    }
}

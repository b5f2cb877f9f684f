//! The console's live peer: the daemon running underneath, background downloads, and the
//! figures the statistics show. Implements [`super::Actions`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use peer_engine::download::{self, Context, Progress};
use peer_engine::name::ShareName;
use peer_engine::publish;
use peer_engine::rate::RateMeter;
use peer_engine::share::ShareDir;
use peer_engine::swarm::{SwarmStats, UploadStats};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracker_proto::TrackerClient;

use super::Actions;
use crate::commands::target::Target;
use crate::commands::{catalog, get, serve, Format};
use crate::output::hashing;
use crate::output::table::{format_file_table, format_session, FileState, FileStats, SessionStats};
use crate::output::units::format_bytes;

/// Window of the upload rate meters.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// A download started from the console.
struct Running {
    progress: watch::Receiver<Progress>,
    /// Set by the task when it ends: `Ok` complete, `Err` the reason it stopped.
    outcome: Arc<Mutex<Option<Result<(), String>>>>,
    task: JoinHandle<()>,
}

/// What the session is built from; the fields are those of the started daemon node.
pub struct SessionParts {
    pub listen: SocketAddr,
    /// The tracker as metainfo files of shares name it.
    pub tracker_url: String,
    pub stun: Vec<String>,
    /// What every download of the console starts from: the node's directory, tracker,
    /// swarms, connection slots and dialer.
    pub downloads: Context,
    /// Cancelling it makes the daemon leave the swarm (flag 5) and stop serving.
    pub stop: CancellationToken,
    /// The daemon task; it ends after flag 5 was sent.
    pub daemon: JoinHandle<std::io::Result<()>>,
}

pub struct Session {
    dir: Arc<ShareDir>,
    tracker: Arc<TrackerClient>,
    tracker_url: String,
    listen: SocketAddr,
    stun: Vec<String>,
    context: Context,
    stop: CancellationToken,
    daemon: tokio::sync::Mutex<Option<JoinHandle<std::io::Result<()>>>>,
    started: Instant,
    downloads: Mutex<HashMap<ShareName, Running>>,
    up_meters: Mutex<HashMap<ShareName, RateMeter>>,
}

impl Session {
    pub fn new(parts: SessionParts) -> Self {
        Self {
            dir: parts.downloads.dir.clone(),
            tracker: parts.downloads.tracker.clone(),
            tracker_url: parts.tracker_url,
            listen: parts.listen,
            stun: parts.stun,
            context: parts.downloads,
            stop: parts.stop,
            daemon: tokio::sync::Mutex::new(Some(parts.daemon)),
            started: Instant::now(),
            downloads: Mutex::new(HashMap::new()),
            up_meters: Mutex::new(HashMap::new()),
        }
    }

    fn announce(&self) -> SocketAddr {
        *self.context.local.announce.borrow()
    }

    fn uploads(&self) -> &UploadStats {
        &self.context.local.uploads
    }

    /// Bytes downloaded by this session's downloads.
    fn downloaded(&self) -> u64 {
        self.downloads
            .lock()
            .values()
            .map(|r| r.progress.borrow().bytes)
            .sum()
    }

    /// Stops the downloads (their verified chunks stay on disk) and the daemon, which sends
    /// flag 5. Downloads go first: one still running would report chunks (flag 3) after the
    /// exit and put this peer back on the tracker.
    pub async fn leave(&self) -> usize {
        let mut stopped = 0;
        for run in self.downloads.lock().values() {
            if !run.task.is_finished() {
                run.task.abort();
                stopped += 1;
            }
        }
        self.stop.cancel();
        if let Some(daemon) = self.daemon.lock().await.take() {
            match daemon.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::warn!("daemon: {e:#}"),
                Err(e) => log::warn!("daemon task: {e}"),
            }
        }
        stopped
    }
}

impl Actions for Session {
    async fn download(&self, target: &Target) -> anyhow::Result<String> {
        let name = &target.name;
        if self.stop.is_cancelled() {
            anyhow::bail!("this peer left the swarm; start it again to download");
        }
        if self
            .downloads
            .lock()
            .get(name)
            .is_some_and(|r| !r.task.is_finished())
        {
            anyhow::bail!("{name} is already downloading (3 shows its progress)");
        }
        if self.dir.has_complete(name) {
            anyhow::bail!(
                "{name} is already complete in {}",
                self.dir.root().display()
            );
        }
        // Asked here and not only by the downloader, so a wrong name is an immediate answer.
        let swarm = match self.tracker.peers(name.file_name()).await {
            Ok(swarm) => swarm,
            Err(e) if e.code() == Some(tracker_proto::ErrorCode::FileNotFound) => anyhow::bail!(
                "the tracker does not know a file named {name} (6 lists the files it knows)"
            ),
            Err(e) => return Err(e.into()),
        };
        // Refused while a `peer get` of the same name into this directory runs.
        let claim = get::claim(&self.dir, name).await?;
        let ctx = self.context.clone();
        let (tx, rx) = watch::channel(Progress::default());
        let outcome = Arc::new(Mutex::new(None));
        let slot = outcome.clone();
        let task_name = name.clone();
        let expect = target.expect.clone();
        let task = tokio::spawn(async move {
            let _claim = claim;
            let result = download::download_expecting(&ctx, &task_name, &expect, &tx).await;
            if let Err(e) = &result {
                log::debug!("download of {task_name} ended: {e}");
            }
            *slot.lock() = Some(result.map(|_| ()).map_err(|e| e.to_string()));
        });
        self.downloads.lock().insert(
            name.clone(),
            Running {
                progress: rx,
                outcome,
                task,
            },
        );
        let info = &swarm.file.info;
        Ok(format!(
            "downloading {name} ({}, {} chunks) from {} peer{} in the background; 3 shows progress",
            format_bytes(info.size()),
            info.chunks(),
            swarm.peers.len(),
            if swarm.peers.len() == 1 { "" } else { "s" },
        ))
    }

    async fn refresh(&self, name: &ShareName) -> anyhow::Result<String> {
        catalog::refresh(&self.tracker, name, Format::Text).await
    }

    async fn progress(&self) -> anyhow::Result<String> {
        let files = self.snapshot().await;
        if files.is_empty() {
            return Ok("no files yet: 4 shares one, 1 downloads one".to_owned());
        }
        Ok(format_file_table(&files).trim_end().to_owned())
    }

    async fn share(&self, path: &str) -> anyhow::Result<String> {
        if self.stop.is_cancelled() {
            anyhow::bail!("this peer left the swarm; start it again to share");
        }
        let path = Path::new(path);
        let sharing = publish::share(&self.dir, &self.tracker, path, None, self.announce());
        let (name, manifest) = hashing::while_hashing(path, sharing).await?;
        let lines = serve::metainfo_lines(&self.tracker_url, &self.dir, &name, &manifest)?;
        Ok(format!(
            "shared {name} ({}, {} chunks, {}); other peers can download it now\n{lines}",
            format_bytes(manifest.size()),
            manifest.chunk_count(),
            manifest.id(),
        ))
    }

    async fn exit(&self) -> anyhow::Result<String> {
        let stopped = self.leave().await;
        let mut text = "left the swarm (flag 5 sent to the tracker)".to_owned();
        if stopped > 0 {
            text.push_str(&format!(
                "\n{stopped} unfinished download{} keep{} their verified chunks; download again to resume",
                if stopped == 1 { "" } else { "s" },
                if stopped == 1 { "s" } else { "" },
            ));
        }
        Ok(text)
    }

    async fn list(&self) -> anyhow::Result<String> {
        catalog::list(&self.tracker, Format::Text).await
    }

    async fn query(&self, name: &ShareName) -> anyhow::Result<String> {
        catalog::query(&self.tracker, name, Format::Text).await
    }

    async fn status(&self) -> anyhow::Result<String> {
        let announce = self.announce();
        let announced = if announce.ip().is_unspecified() {
            format!("{announce} (the tracker fills in our datagrams' source IP)")
        } else {
            announce.to_string()
        };
        let files = self.snapshot().await;
        let count = |state: &FileState| files.iter().filter(|f| f.state == *state).count();
        Ok(format!(
            "listening on   {} (TCP)\nannounced as   {announced}\n\
             tracker        {} (UDP)\nSTUN servers   {}\ndirectory      {}\n\
             files          {} seeding, {} downloading, {} stopped\nconnections    {} open\n\
             in swarm       {}",
            self.listen,
            self.tracker.tracker(),
            if self.stun.is_empty() {
                "none".to_owned()
            } else {
                self.stun.join(", ")
            },
            self.dir.root().display(),
            count(&FileState::Seeding),
            count(&FileState::Downloading),
            count(&FileState::Stopped),
            self.context.budget.in_use(),
            if self.stop.is_cancelled() {
                "no (left with 5)"
            } else {
                "yes"
            },
        ))
    }

    async fn statistics(&self) -> anyhow::Result<String> {
        Ok(format_session(&SessionStats {
            uploaded: self.uploads().bytes(),
            downloaded: self.downloaded(),
            duration: self.started.elapsed(),
        })
        .trim_end()
        .to_owned())
    }

    async fn snapshot(&self) -> Vec<FileStats> {
        let dir = self.dir.clone();
        let mut files: Vec<FileStats> = tokio::task::spawn_blocking(move || dir.inventory())
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|f| FileStats::from_disk(f, &FileState::Seeding))
            .collect();
        for (name, run) in self.downloads.lock().iter() {
            let p = run.progress.borrow().clone();
            let state = match &*run.outcome.lock() {
                None => FileState::Downloading,
                Some(Ok(())) => FileState::Seeding,
                Some(Err(why)) => FileState::Failed(why.clone()),
            };
            let running = state == FileState::Downloading;
            match files.iter_mut().find(|f| f.name == *name) {
                Some(f) => {
                    if running || p.total > 0 {
                        f.chunks_have = f.chunks_have.max(u64::from(p.have));
                    }
                    f.downloaded = p.bytes;
                    f.down_rate = if running { p.rate } else { 0.0 };
                    f.swarm = if running {
                        p.swarm
                    } else {
                        SwarmStats::default()
                    };
                    f.state = state;
                }
                None => files.push(FileStats::of_download(name, &p, state)),
            }
        }
        let sent = self.uploads().per_file();
        let now = Instant::now();
        let mut meters = self.up_meters.lock();
        for f in &mut files {
            // A file we seed has a swarm while peers are connected for it.
            if f.state == FileState::Seeding {
                if let Some(swarm) = self.context.swarms.as_ref().and_then(|s| s.get(&f.name)) {
                    f.swarm = swarm.stats();
                }
            }
            f.uploaded = sent.get(&f.name).copied().unwrap_or(0);
            let meter = meters
                .entry(f.name.clone())
                .or_insert_with(|| RateMeter::new(RATE_WINDOW));
            meter.record(now, f.uploaded);
            f.up_rate = meter.rate();
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        files
    }
}

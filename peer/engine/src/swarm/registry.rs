//! The swarms of this process, by file name: where the server finds the swarm a new
//! connection belongs to.
//!
//! A download puts its swarm here for as long as it runs (and it stays, seeding, until its last
//! connection ends). Any other file of the share directory gets a swarm on demand when a peer
//! asks for it: a complete file, or the verified part of a download another process of this
//! directory runs (served from that download's resume record, re-read every second). Opening
//! may hash a file, so it runs on the blocking pool, once per file however many peers ask at
//! the same time; a swarm nobody uses any more is dropped again.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::manifest::FileId;
use crate::name::ShareName;
use crate::share::{ShareDir, StoreError};

use super::{LocalPeer, Swarm};

/// How often a mirrored download's resume record is re-read.
const RECORD_POLL: Duration = Duration::from_secs(1);

/// Why no swarm can take a connection for a file.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("{0} is not shared here")]
    NotShared(ShareName),
    /// Our file of that name is other content; its id is not told to strangers.
    #[error("{0} here is another file")]
    OtherContent(ShareName),
    #[error("{name} cannot be read here: {why}")]
    Unreadable { name: ShareName, why: String },
}

#[derive(Debug)]
pub struct Swarms {
    dir: Arc<ShareDir>,
    local: Arc<LocalPeer>,
    live: Mutex<HashMap<ShareName, Arc<Swarm>>>,
    /// One lock per file being opened, so concurrent handshakes open it once.
    opening: Mutex<HashMap<ShareName, Arc<tokio::sync::Mutex<()>>>>,
    /// What the swarms dropped so far moved, per file: the counters this process reports to
    /// the tracker run for its whole session (protocol.txt §1.2), however often a file's swarm
    /// is dropped and opened again.
    retired: Mutex<HashMap<ShareName, Moved>>,
}

/// Bytes of one file this process sent to peers and verified from them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    pub up: u64,
    pub down: u64,
}

impl Swarms {
    pub fn new(dir: Arc<ShareDir>, local: Arc<LocalPeer>) -> Arc<Swarms> {
        Arc::new(Swarms {
            dir,
            local,
            live: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            retired: Mutex::new(HashMap::new()),
        })
    }

    pub fn local(&self) -> &Arc<LocalPeer> {
        &self.local
    }

    /// The live swarm of `name`, if there is one.
    pub fn get(&self, name: &ShareName) -> Option<Arc<Swarm>> {
        self.live.lock().get(name).cloned()
    }

    /// Every live swarm (for statistics).
    pub fn all(&self) -> Vec<Arc<Swarm>> {
        self.live.lock().values().cloned().collect()
    }

    /// What this process moved of each file it moved bytes of, by the swarms gone and the
    /// live one together.
    pub fn moved(&self) -> HashMap<ShareName, Moved> {
        let mut moved = self.retired.lock().clone();
        for swarm in self.all() {
            let stats = swarm.stats();
            let m = moved.entry(swarm.name().clone()).or_default();
            m.up = m.up.saturating_add(stats.uploaded);
            m.down = m.down.saturating_add(stats.downloaded);
        }
        moved.retain(|_, m| *m != Moved::default());
        moved
    }

    /// Keeps what a swarm that goes moved.
    fn retire(&self, swarm: &Swarm) {
        let stats = swarm.stats();
        let mut retired = self.retired.lock();
        let m = retired.entry(swarm.name().clone()).or_default();
        m.up = m.up.saturating_add(stats.uploaded);
        m.down = m.down.saturating_add(stats.downloaded);
    }

    /// The swarm a peer asking for `name` with id `id` joins: a live one, or one opened from the
    /// share directory.
    pub async fn find(&self, name: &ShareName, id: FileId) -> Result<Arc<Swarm>, FindError> {
        let swarm = match self.get(name).filter(|s| !s.is_closed()) {
            Some(s) => s,
            None => self.open(name).await?,
        };
        if swarm.id() != id {
            return Err(FindError::OtherContent(name.clone()));
        }
        Ok(swarm)
    }

    async fn open(&self, name: &ShareName) -> Result<Arc<Swarm>, FindError> {
        let gate = self.opening.lock().entry(name.clone()).or_default().clone();
        let opened = {
            let _opening = gate.lock().await;
            match self.get(name).filter(|s| !s.is_closed()) {
                Some(s) => Ok(s),
                None => self.open_from_disk(name).await,
            }
        };
        // Every asker holds its own handle of the gate, so it can go now; names that fail to
        // open (a stranger guessing) leave nothing behind.
        self.opening.lock().remove(name);
        opened
    }

    async fn open_from_disk(&self, name: &ShareName) -> Result<Arc<Swarm>, FindError> {
        let (dir, n) = (self.dir.clone(), name.clone());
        let served = tokio::task::spawn_blocking(move || dir.served(&n))
            .await
            .map_err(|e| FindError::Unreadable {
                name: name.clone(),
                why: e.to_string(),
            })?;
        let served = match served {
            Ok(s) => s,
            Err(StoreError::NotFound(_)) => return Err(FindError::NotShared(name.clone())),
            Err(e) => {
                log::warn!("cannot serve {name}: {e}");
                return Err(FindError::Unreadable {
                    name: name.clone(),
                    why: "see its log".into(),
                });
            }
        };
        let swarm = match served.have {
            None => Swarm::seeding(
                name.clone(),
                served.manifest,
                served.storage,
                self.local.clone(),
                served.in_place,
            ),
            Some(have) => {
                let swarm = Swarm::mirroring(
                    name.clone(),
                    served.manifest,
                    served.storage,
                    have,
                    self.local.clone(),
                );
                tokio::spawn(follow_record(self.dir.clone(), Arc::downgrade(&swarm)));
                swarm
            }
        };
        let replaced = self.live.lock().insert(name.clone(), swarm.clone());
        if let Some(old) = replaced {
            self.retire(&old);
        }
        Ok(swarm)
    }

    /// Puts our download's swarm in place; a swarm serving the same name from disk (someone
    /// else's download) closes.
    pub fn insert_download(&self, swarm: Arc<Swarm>) {
        let replaced = self.live.lock().insert(swarm.name().clone(), swarm);
        if let Some(old) = replaced {
            old.close();
            self.retire(&old);
        }
    }

    /// Forgets `swarm` if nothing uses it any more: no connection, no download of ours.
    pub fn release(&self, swarm: &Arc<Swarm>) {
        if swarm.link_count() > 0 || swarm.is_downloading() {
            return;
        }
        let mut live = self.live.lock();
        if live
            .get(swarm.name())
            .is_some_and(|s| Arc::ptr_eq(s, swarm))
        {
            live.remove(swarm.name());
            drop(live);
            swarm.close();
            self.retire(swarm);
        }
    }
}

/// Keeps a mirrored download's swarm up to date with that download's resume record, until the
/// download is complete (then every chunk is served) or the swarm is gone.
async fn follow_record(dir: Arc<ShareDir>, swarm: Weak<Swarm>) {
    let mut tick = tokio::time::interval(RECORD_POLL);
    loop {
        tick.tick().await;
        let Some(s) = swarm.upgrade() else {
            return;
        };
        if s.is_closed() {
            return;
        }
        let (d, name, manifest) = (dir.clone(), s.name().clone(), s.manifest().clone());
        let id = manifest.id();
        let now = tokio::task::spawn_blocking(move || match d.read_record(&name, &manifest) {
            Some(bits) => Some(Some(bits)),
            // The download finished (record gone): if the complete file is this one, it is all there.
            None => match d.complete_manifest(&name) {
                Ok(m) if m.id() == id => Some(None),
                _ => None,
            },
        })
        .await;
        match now {
            Ok(Some(record)) => {
                let done = record.is_none();
                s.refresh_record(record);
                if done {
                    return;
                }
            }
            // Neither a record for this `.part` nor the complete file: the download was given up
            // or its `.part` replaced, so what we serve may be gone. Stop serving it.
            Ok(None) => {
                s.close();
                return;
            }
            Err(_) => {}
        }
    }
}

//! One download per name per directory. Two downloads of one name would write one `.part` and
//! replace each other's resume record, and the first to finish would rename the file from under
//! the other. So a download holds the claim of its name for its whole life: the exclusive lock
//! of `DIR/.peer/NAME.part.lock` ([`super::lockfile`]), which a `kill -9` releases.
//!
//! The claim comes before anything of the download is written (its manifest comes first), and
//! [`ShareDir::manifest_sink`] and [`ShareDir::open_partial`] refuse a name the `ShareDir` has
//! not claimed, so a download path that forgets the claim fails at once instead of racing.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::name::{ShareName, PART_SUFFIX};

use super::lockfile::{self, Attempt, Held};
use super::{io_err, ShareDir, StoreError};

/// The names a `ShareDir` holds claims on.
pub(super) type Claims = Arc<Mutex<HashSet<ShareName>>>;

/// The right to download one name into one directory; dropping it gives the right up.
#[derive(Debug)]
pub struct DownloadClaim {
    name: ShareName,
    held: Option<Held>,
    claims: Claims,
}

impl DownloadClaim {
    pub fn name(&self) -> &ShareName {
        &self.name
    }
}

impl Drop for DownloadClaim {
    fn drop(&mut self) {
        self.claims.lock().remove(&self.name);
        if let Some(held) = self.held.take() {
            held.release_and_remove();
        }
    }
}

impl ShareDir {
    fn claim_path(&self, name: &ShareName) -> std::path::PathBuf {
        self.state_dir().join(format!("{name}{PART_SUFFIX}.lock"))
    }

    /// Claims the download of `name`: refused at once, naming the holder, while another
    /// download of `name` into this directory runs (in any process, this one included). Hold
    /// the claim until the download has finished or stopped.
    pub fn claim_download(&self, name: &ShareName) -> Result<DownloadClaim, StoreError> {
        let path = self.claim_path(name);
        match lockfile::try_hold(&path).map_err(io_err(&path))? {
            Attempt::Acquired(held) => {
                self.claims.lock().insert(name.clone());
                Ok(DownloadClaim {
                    name: name.clone(),
                    held: Some(held),
                    claims: self.claims.clone(),
                })
            }
            Attempt::Busy { pid } => Err(StoreError::DownloadBusy {
                name: name.clone(),
                dir: self.root().to_owned(),
                pid,
            }),
        }
    }

    /// Ok when this `ShareDir` holds the claim of `name`.
    pub(super) fn require_claim(&self, name: &ShareName) -> Result<(), StoreError> {
        if self.claims.lock().contains(name) {
            Ok(())
        } else {
            Err(StoreError::Unclaimed(name.clone()))
        }
    }

    /// True when a download of `name` runs, in this process or another.
    pub(super) fn download_running(&self, name: &ShareName) -> bool {
        self.claims.lock().contains(name)
            || lockfile::is_held(&self.claim_path(name)).unwrap_or_else(|e| {
                log::warn!("{}: {e}", self.claim_path(name).display());
                false
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::tempdir;
    use super::*;

    #[test]
    fn a_name_is_downloaded_once_at_a_time() {
        let root = tempdir("claim");
        let dir = ShareDir::open(&root).unwrap();
        let other = ShareDir::open(&root).unwrap();
        let a = ShareName::new("a").unwrap();
        let claim = dir.claim_download(&a).unwrap();
        assert!(dir.download_running(&a) && other.download_running(&a));
        let err = other.claim_download(&a).unwrap_err();
        assert!(
            matches!(&err, StoreError::DownloadBusy { pid: Some(p), .. } if *p == std::process::id()),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("already being downloaded"),
            "{err}"
        );
        assert!(matches!(
            other.require_claim(&a),
            Err(StoreError::Unclaimed(_))
        ));
        let b = ShareName::new("b").unwrap();
        let _b = other.claim_download(&b).unwrap();
        drop(claim);
        assert!(!dir.download_running(&a));
        assert!(!root.join(".peer/a.part.lock").exists(), "lock file left");
        let _again = other.claim_download(&a).unwrap();
        other.require_claim(&a).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}

//! The peer's tracker identity (`DIR/.peer/key`): every command on one directory is the same
//! peer to the tracker, across restarts, because they share this key (protocol.txt §1.7).
//!
//! Whoever reads the key can speak for this peer (move or delete its rows), so the file is
//! readable by its owner only: created with mode 0600 and complete before it has its name (a
//! hard link from a private temporary, which also means two commands starting together agree
//! on one key: the second finds the first's). An existing key readable by others is tightened.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::OFlag;
use tracker_proto::PeerKey;

use super::{disk, io_err, ShareDir, StoreError};

const KEY_FILE: &str = "key";
const KEY_MODE: u32 = 0o600;

fn parse(text: &str) -> Option<PeerKey> {
    let mut k = [0u8; 16];
    hex::decode_to_slice(text.trim(), &mut k).ok()?;
    Some(PeerKey(k))
}

/// The key saved at `path`: `Ok(None)` when there is none or it is damaged. Tightens the
/// file's permissions when others may read it.
fn read(path: &Path) -> io::Result<Option<PeerKey>> {
    let (mut file, meta) = match disk::open_regular(path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(KEY_MODE))?;
        log::warn!(
            "{}: was readable by others (mode {:o}); now 0600",
            path.display(),
            meta.mode() & 0o777
        );
    }
    let mut text = String::new();
    if file.read_to_string(&mut text).is_err() {
        return Ok(None);
    }
    Ok(parse(&text))
}

/// Writes `key` to a private temporary file beside `path`, durably.
fn write_private(tmp: &Path, key: PeerKey) -> io::Result<()> {
    let _ = fs::remove_file(tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_MODE)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(tmp)?;
    // The umask may have removed bits but never adds any; set the mode exactly anyway.
    file.set_permissions(fs::Permissions::from_mode(KEY_MODE))?;
    file.write_all(hex::encode(key.0).as_bytes())?;
    file.sync_all()
}

impl ShareDir {
    /// The directory's key: read from its state directory, or made and saved on first use.
    pub fn peer_key(&self) -> Result<PeerKey, StoreError> {
        let path = self.state_dir().join(KEY_FILE);
        if let Some(key) = read(&path).map_err(io_err(&path))? {
            return Ok(key);
        }
        let tmp = self
            .state_dir()
            .join(format!("{KEY_FILE}.tmp.{}", std::process::id()));
        let key = PeerKey::random();
        let result = (|| {
            write_private(&tmp, key)?;
            match fs::hard_link(&tmp, &path) {
                Ok(()) => {}
                // Another command made the key first (or the old one is damaged).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Some(theirs) = read(&path)? {
                        return Ok(theirs);
                    }
                    log::warn!("{}: damaged; replacing it with a new key", path.display());
                    fs::rename(&tmp, &path)?;
                }
                Err(e) => return Err(e),
            }
            disk::sync_dir(self.state_dir())?;
            Ok(key)
        })();
        let _ = fs::remove_file(&tmp);
        result.map_err(io_err(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::tempdir;
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn the_key_is_private_and_stable() {
        let root = tempdir("key");
        let dir = ShareDir::open(&root).unwrap();
        let key = dir.peer_key().unwrap();
        let path = root.join(".peer/key");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(dir.peer_key().unwrap(), key);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(dir.peer_key().unwrap(), key);
        assert_eq!(mode(&path), 0o600, "a readable key was not tightened");
        fs::write(&path, "not hex").unwrap();
        let fresh = dir.peer_key().unwrap();
        assert_ne!(fresh, key);
        assert_eq!(dir.peer_key().unwrap(), fresh);
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = fs::read_dir(root.join(".peer")).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary key file left behind");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_linked_key_is_refused() {
        let root = tempdir("key-link");
        let dir = ShareDir::open(&root).unwrap();
        let elsewhere = root.join("elsewhere");
        fs::write(&elsewhere, "00112233445566778899aabbccddeeff").unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join(".peer/key")).unwrap();
        assert!(dir.peer_key().is_err());
        fs::remove_dir_all(&root).unwrap();
    }
}

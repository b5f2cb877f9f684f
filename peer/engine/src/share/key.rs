//! The peer's tracker identity (`DIR/.peer/key`): every command on one directory is the same
//! peer to the tracker, across restarts, because they share this key (protocol.txt §1.7).

use std::fs;

use tracker_proto::PeerKey;

use super::{io_err, ShareDir, StoreError};

const KEY_FILE: &str = "key";

impl ShareDir {
    /// The directory's key: read from its state directory, or made and saved on first use.
    pub fn peer_key(&self) -> Result<PeerKey, StoreError> {
        let path = self.state_dir().join(KEY_FILE);
        let saved = fs::read_to_string(&path).ok().and_then(|t| {
            let mut k = [0u8; 16];
            hex::decode_to_slice(t.trim(), &mut k)
                .ok()
                .map(|()| PeerKey(k))
        });
        if let Some(key) = saved {
            return Ok(key);
        }
        let key = PeerKey::random();
        fs::write(&path, hex::encode(key.0)).map_err(io_err(&path))?;
        Ok(key)
    }
}

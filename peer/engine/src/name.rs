//! The name of a shared file, parsed once where it enters the engine (a command line, a
//! console line, a HANDSHAKE, a tracker notice) and passed on as [`ShareName`], so no later
//! step has to check it again.

use std::fmt;
use std::str::FromStr;

use tracker_proto::{FileName, FileNameError};

/// Suffix of a download in progress in the share directory (`NAME.part`).
pub const PART_SUFFIX: &str = ".part";

/// Why a file name is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("bad file name {0:?}: {1}")]
    Invalid(String, FileNameError),
    #[error("file name {0:?} starts with '.', reserved for the peer's own state")]
    Hidden(String),
    #[error("file name {0:?} ends with \".part\", reserved for downloads in progress")]
    PartSuffix(String),
    #[error("file name {0:?} ends with \".p2p\", reserved for metainfo files (give its content a name of its own)")]
    MetainfoSuffix(String),
}

/// A plain file name this peer can share and download: what the tracker accepts (protocol.txt
/// §1.1: no path, no whitespace, ...), minus the names the share directory reserves for itself
/// (hidden names hold the peer's state, `.part` names hold downloads in progress, `.p2p` names
/// the metainfo files `peer share` writes beside what it shares, which are never served).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareName(FileName);

impl ShareName {
    pub fn new(name: &str) -> Result<ShareName, NameError> {
        let valid = FileName::new(name)
            .map_err(|e| NameError::Invalid(name.chars().take(300).collect(), e))?;
        ShareName::try_from(valid)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The name as the tracker protocol carries it.
    pub fn file_name(&self) -> &FileName {
        &self.0
    }
}

impl TryFrom<FileName> for ShareName {
    type Error = NameError;

    fn try_from(name: FileName) -> Result<ShareName, NameError> {
        if name.as_str().starts_with('.') {
            return Err(NameError::Hidden(name.as_str().to_owned()));
        }
        if name.as_str().ends_with(PART_SUFFIX) {
            return Err(NameError::PartSuffix(name.as_str().to_owned()));
        }
        if name.as_str().ends_with(crate::metainfo::METAINFO_SUFFIX) {
            return Err(NameError::MetainfoSuffix(name.as_str().to_owned()));
        }
        Ok(ShareName(name))
    }
}

impl FromStr for ShareName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<ShareName, NameError> {
        ShareName::new(s)
    }
}

impl fmt::Display for ShareName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ShareName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(ShareName::new("movie.mkv").is_ok());
        for bad in [
            "", ".", "..", "a/b", "..\\x", "a b", "x\n", ".hidden", "f.part", "f.p2p",
        ] {
            assert!(ShareName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ShareName::new(&"a".repeat(256)).is_err());
    }
}

//! Magnet links (protocol.txt §6.3): `magnet:?xt=urn:p2p:sha256:<64 hex>&dn=<name>&tr=<tracker>`,
//! the text a user pastes to name a share without its metainfo file. The id is the file id
//! of §2.1; the metainfo itself is fetched from peers and checked against it (§2.6).
//!
//! [`Magnet::parse`] and `Display` are pure. Parameters other than `xt`, `dn` and `tr` are
//! ignored, as BEP 9 asks; an `xt` of another scheme (BitTorrent's `urn:btih:`) is refused
//! with a message that says what this peer needs instead.

use std::fmt;
use std::str::FromStr;

use crate::manifest::FileId;
use crate::name::ShareName;

const PREFIX: &str = "magnet:?";

/// The `xt` scheme of this protocol's content ids.
pub const XT_PREFIX: &str = "urn:p2p:";

/// Longest magnet link accepted.
pub const MAX_MAGNET_BYTES: usize = 8192;

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub id: FileId,
    /// `dn`: the share's name, which is also how the tracker finds its swarm.
    pub name: Option<ShareName>,
    /// `tr`, in order: one tier of trackers.
    pub trackers: Vec<String>,
}

/// Why a text is not a magnet link this peer can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    #[error("not a magnet link (it must start with {PREFIX:?})")]
    NotMagnet,
    #[error("magnet link longer than {MAX_MAGNET_BYTES} bytes")]
    TooLong,
    #[error("magnet link has no xt=urn:p2p:sha256:<64 hex digits>")]
    NoId,
    #[error("magnet link names {0}: a BitTorrent info hash, not this protocol's content id (xt=urn:p2p:sha256:<64 hex digits>)")]
    BitTorrent(String),
    #[error(
        "magnet link has an unknown xt {0:?}; this peer needs xt=urn:p2p:sha256:<64 hex digits>"
    )]
    UnknownXt(String),
    #[error("magnet link has two different content ids")]
    TwoIds,
    #[error("magnet link has two names (dn)")]
    TwoNames,
    #[error("magnet link parameter {0:?}: {1}")]
    Bad(String, String),
}

impl Magnet {
    pub fn parse(text: &str) -> Result<Magnet, MagnetError> {
        let text = text.trim();
        if text.len() > MAX_MAGNET_BYTES {
            return Err(MagnetError::TooLong);
        }
        let query = text
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &text[PREFIX.len()..])
            .ok_or(MagnetError::NotMagnet)?;
        let mut id = None;
        let mut name = None;
        let mut trackers = Vec::new();
        let mut foreign = None;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = param.split_once('=').unwrap_or((param, ""));
            let value =
                percent_decode(v).map_err(|e| MagnetError::Bad(k.to_owned(), e.to_owned()))?;
            match k {
                "xt" => match value.strip_prefix(XT_PREFIX) {
                    Some(rest) => {
                        let parsed: FileId = rest
                            .parse()
                            .map_err(|e| MagnetError::Bad("xt".into(), format!("{e}")))?;
                        if id.is_some_and(|old| old != parsed) {
                            return Err(MagnetError::TwoIds);
                        }
                        id = Some(parsed);
                    }
                    None => foreign = Some(value),
                },
                "dn" => {
                    if name.is_some() {
                        return Err(MagnetError::TwoNames);
                    }
                    name = Some(
                        ShareName::new(&value)
                            .map_err(|e| MagnetError::Bad("dn".into(), e.to_string()))?,
                    );
                }
                "tr" => {
                    if value.is_empty() {
                        return Err(MagnetError::Bad("tr".into(), "empty tracker".into()));
                    }
                    if !trackers.contains(&value) {
                        trackers.push(value);
                    }
                }
                _ => {}
            }
        }
        match (id, foreign) {
            (Some(id), _) => Ok(Magnet { id, name, trackers }),
            (None, Some(xt)) if xt.to_ascii_lowercase().starts_with("urn:btih:") => {
                Err(MagnetError::BitTorrent(xt))
            }
            (None, Some(xt)) => Err(MagnetError::UnknownXt(xt)),
            (None, None) => Err(MagnetError::NoId),
        }
    }

    /// True for text that claims to be a magnet link (so a caller can tell it from a name or
    /// a path before parsing).
    pub fn looks_like(text: &str) -> bool {
        text.trim()
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
    }
}

impl FromStr for Magnet {
    type Err = MagnetError;

    fn from_str(s: &str) -> Result<Magnet, MagnetError> {
        Magnet::parse(s)
    }
}

impl fmt::Display for Magnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}xt={XT_PREFIX}{}", self.id)?;
        if let Some(n) = &self.name {
            write!(f, "&dn={}", percent_encode(n.as_str()))?;
        }
        for t in &self.trackers {
            write!(f, "&tr={}", percent_encode(t))?;
        }
        Ok(())
    }
}

/// Decodes `%XX` escapes (and nothing else: `+` stays a plus, as RFC 3986 says). The result
/// must be UTF-8.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            let mut b = [0u8];
            hex::decode_to_slice(hex, &mut b).map_err(|_| "bad %-escape")?;
            out.push(b[0]);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8")
}

/// Escapes every byte but RFC 3986's unreserved characters and `:` `/` (kept readable in
/// tracker addresses).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn parses_what_share_prints() {
        let text = format!(
            "magnet:?xt=urn:p2p:sha256:{HEX}&dn=movie.mkv&tr=p2p://127.0.0.1:9000&tr=t.example"
        );
        let m = Magnet::parse(&text).unwrap();
        assert_eq!(m.id.to_string(), format!("sha256:{HEX}"));
        assert_eq!(m.name.as_ref().unwrap().as_str(), "movie.mkv");
        assert_eq!(m.trackers, vec!["p2p://127.0.0.1:9000", "t.example"]);
        assert_eq!(m.to_string(), text);
        let escaped = format!("MAGNET:?dn=a%2Bb&xt=urn%3Ap2p%3Asha256%3A{HEX}&x.pe=1.2.3.4:5");
        let m = Magnet::parse(&escaped).unwrap();
        assert_eq!(m.name.unwrap().as_str(), "a+b");
        assert!(m.trackers.is_empty());
    }

    #[test]
    fn foreign_and_broken_links_are_refused() {
        let cases = [
            ("http://x".to_owned(), MagnetError::NotMagnet),
            ("magnet:?dn=x".to_owned(), MagnetError::NoId),
            (
                "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a".to_owned(),
                MagnetError::BitTorrent("urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a".into()),
            ),
            (
                "magnet:?xt=urn:sha1:abc".to_owned(),
                MagnetError::UnknownXt("urn:sha1:abc".into()),
            ),
            (
                format!(
                    "magnet:?xt=urn:p2p:sha256:{HEX}&xt=urn:p2p:sha256:{}",
                    "0".repeat(64)
                ),
                MagnetError::TwoIds,
            ),
            (
                format!("magnet:?xt=urn:p2p:sha256:{HEX}&dn=a&dn=b"),
                MagnetError::TwoNames,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Magnet::parse(&text), Err(want), "{text}");
        }
        for bad in [
            "magnet:?xt=urn:p2p:sha256:abc".to_owned(),
            format!("magnet:?xt=urn:p2p:sha256:{HEX}&dn=..%2Fetc"),
            format!("magnet:?xt=urn:p2p:sha256:{HEX}&dn=a%2"),
            format!("magnet:?xt=urn:p2p:sha256:{HEX}&dn=%FF"),
            format!("magnet:?xt=urn:p2p:sha256:{HEX}&tr="),
        ] {
            assert!(
                matches!(Magnet::parse(&bad), Err(MagnetError::Bad(..))),
                "{bad}"
            );
        }
        assert!(Magnet::looks_like(" magnet:?xt"));
        assert!(!Magnet::looks_like("movie.mkv"));
    }

    proptest! {
        #[test]
        fn round_trip(id in any::<[u8; 32]>(), name in "[a-zA-Z0-9+%&#?._-]{1,30}",
                      trackers in proptest::collection::vec("[a-z0-9.:/&=%]{1,25}", 0..4)) {
            prop_assume!(ShareName::new(&name).is_ok());
            let mut trackers = trackers;
            let mut seen = std::collections::HashSet::new();
            trackers.retain(|t| seen.insert(t.clone()));
            let m = Magnet { id: FileId(id), name: Some(ShareName::new(&name).unwrap()), trackers };
            prop_assert_eq!(Magnet::parse(&m.to_string()).unwrap(), m);
        }

        #[test]
        fn garbage_never_panics(text in ".{0,200}") {
            let _ = Magnet::parse(&text);
            let _ = Magnet::parse(&format!("magnet:?{text}"));
        }
    }
}

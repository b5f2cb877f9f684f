//! What `peer get` and console choice 1 accept: a name the tracker lists, the path of a
//! metainfo file (`NAME.p2p`) or a magnet link, told apart here, once, and turned into the
//! name to ask the tracker for, what the download must match, and the trackers they name.

use std::path::Path;

use anyhow::Context as _;
use peer_engine::download::Expect;
use peer_engine::magnet::Magnet;
use peer_engine::metainfo::{Metainfo, MAX_METAINFO_BYTES, METAINFO_SUFFIX};
use peer_engine::name::ShareName;
use tracker_proto::client::TrackerSpec;

/// Scheme of tracker addresses in metainfo files and magnet links.
pub const TRACKER_SCHEME: &str = "p2p://";

/// A download as the user named it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: ShareName,
    pub expect: Expect,
    /// Tracker tiers the metainfo or magnet link names (`HOST:PORT`, scheme removed).
    pub trackers: Vec<Vec<String>>,
}

impl Target {
    /// A magnet link, a path ending in `.p2p`, or a name.
    pub fn parse(text: &str) -> anyhow::Result<Target> {
        let text = text.trim();
        if Magnet::looks_like(text) {
            let m = Magnet::parse(text)?;
            let name = m.name.clone().context(
                "the magnet link has no dn= (name): this protocol's trackers find a swarm by its name",
            )?;
            return Ok(Target {
                name,
                expect: Expect::Id(m.id),
                trackers: tiers(vec![m.trackers]),
            });
        }
        if text.ends_with(METAINFO_SUFFIX) {
            let m = read_metainfo(Path::new(text))?;
            return Ok(Target {
                name: m.info.name.clone(),
                trackers: tiers(m.trackers),
                expect: Expect::Info(m.info),
            });
        }
        Ok(Target {
            name: ShareName::new(text)?,
            expect: Expect::Listed,
            trackers: Vec::new(),
        })
    }

    /// The tiers the target names, as the tracker client takes them; a tracker that is not a
    /// valid address is skipped with a warning.
    pub fn tracker_specs(&self) -> Vec<Vec<TrackerSpec>> {
        self.trackers
            .iter()
            .map(|tier| {
                tier.iter()
                    .filter_map(|t| match t.parse::<TrackerSpec>() {
                        Ok(spec) => Some(spec),
                        Err(e) => {
                            log::warn!("ignoring tracker {t}: {e}");
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|tier| !tier.is_empty())
            .collect()
    }
}

/// Reads and checks a metainfo file.
pub fn read_metainfo(path: &Path) -> anyhow::Result<Metainfo> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    if meta.len() > MAX_METAINFO_BYTES as u64 {
        anyhow::bail!(
            "{}: {} bytes is too large for a metainfo file (at most {MAX_METAINFO_BYTES})",
            path.display(),
            meta.len()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Metainfo::parse(&bytes)
        .with_context(|| format!("{} is not a valid metainfo file", path.display()))
}

/// Tracker addresses without their scheme, empty tiers dropped. Trackers of other protocols
/// (`udp://`, `http://` of BitTorrent) are skipped with a warning: this peer cannot talk to them.
fn tiers(tiers: Vec<Vec<String>>) -> Vec<Vec<String>> {
    tiers
        .into_iter()
        .map(|t| {
            t.iter()
                .filter(|a| {
                    let foreign = !a.starts_with(TRACKER_SCHEME) && a.contains("://");
                    if foreign {
                        log::warn!("ignoring tracker {a}: not a {TRACKER_SCHEME}HOST:PORT tracker");
                    }
                    !foreign
                })
                .map(|a| tracker_address(a).to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// `p2p://HOST:PORT` as the `HOST:PORT` the tracker client takes (a bare address as is).
pub fn tracker_address(url: &str) -> &str {
    url.strip_prefix(TRACKER_SCHEME).unwrap_or(url)
}

/// The tiers of a tracker client as metainfo files and magnet links write them.
pub fn tracker_urls(tiers: &[Vec<TrackerSpec>]) -> Vec<Vec<String>> {
    tiers
        .iter()
        .map(|tier| tier.iter().map(|t| tracker_url(&t.to_string())).collect())
        .collect()
}

/// How a tracker address is written into metainfo files and magnet links.
pub fn tracker_url(address: &str) -> String {
    if address.starts_with(TRACKER_SCHEME) {
        address.to_owned()
    } else {
        format!("{TRACKER_SCHEME}{address}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_links_and_files_are_told_apart() {
        let t = Target::parse("movie.mkv").unwrap();
        assert_eq!((t.name.as_str(), &t.expect), ("movie.mkv", &Expect::Listed));
        let id = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let t = Target::parse(&format!(
            "magnet:?xt=urn:p2p:sha256:{id}&dn=m.bin&tr=p2p://127.0.0.1:9000"
        ))
        .unwrap();
        assert_eq!(t.name.as_str(), "m.bin");
        assert_eq!(
            t.tracker_specs(),
            vec![vec![TrackerSpec::Addr("127.0.0.1:9000".parse().unwrap())]]
        );
        let err = Target::parse(&format!("magnet:?xt=urn:p2p:sha256:{id}")).unwrap_err();
        assert!(err.to_string().contains("dn="), "{err}");
        let err = Target::parse("/nonexistent/x.p2p").unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
        assert!(Target::parse("a/b").is_err());
        let t = Target::parse(&format!(
            "magnet:?xt=urn:p2p:sha256:{id}&dn=m.bin&tr=udp://t.example:80&tr=h:2"
        ))
        .unwrap();
        assert_eq!(t.trackers, vec![vec!["h:2".to_owned()]]);
        assert_eq!(tracker_url("h:1"), "p2p://h:1");
        assert_eq!(tracker_address("p2p://h:1"), "h:1");
    }
}

//! `peer show FILE.p2p|MAGNET`: prints a metainfo file or a magnet link; needs neither a
//! tracker nor a share directory.

use std::path::Path;

use peer_engine::magnet::Magnet;
use peer_engine::publish;

use super::target::read_metainfo;
use super::{render, Format};
use crate::output::metainfo::{magnet_json, magnet_text, metainfo_json, metainfo_text};

pub fn show(given: &str, format: Format) -> anyhow::Result<String> {
    if Magnet::looks_like(given) {
        let magnet = Magnet::parse(given)?;
        return Ok(render(format, magnet_text(&magnet), || {
            magnet_json(&magnet)
        }));
    }
    let m = read_metainfo(Path::new(given))?;
    let magnet = publish::magnet(&m);
    Ok(render(format, metainfo_text(given, &m, &magnet), || {
        metainfo_json(given, &m, &magnet)
    }))
}

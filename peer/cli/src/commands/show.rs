//! `peer show FILE.p2p`: prints a metainfo file; needs neither a tracker nor a share directory.

use std::path::Path;

use peer_engine::publish;

use super::target::read_metainfo;
use super::{render, Format};
use crate::output::metainfo::{metainfo_json, metainfo_text};

pub fn show(path: &Path, format: Format) -> anyhow::Result<String> {
    let m = read_metainfo(path)?;
    let magnet = publish::magnet(&m);
    let file = path.display().to_string();
    Ok(render(format, metainfo_text(&file, &m, &magnet), || {
        metainfo_json(&file, &m, &magnet)
    }))
}

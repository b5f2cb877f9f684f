//! `peer show`: a metainfo file the way `transmission-show` prints a torrent (GENERAL,
//! TRACKERS, FILES), or a magnet link's share of that, or either as JSON.

use std::fmt::Write as _;

use peer_engine::magnet::Magnet;
use peer_engine::metainfo::{Layout, Metainfo};
use serde_json::{json, Value};

use super::units::format_bytes;

pub fn metainfo_text(file: &str, m: &Metainfo, magnet: &Magnet) -> String {
    let info = &m.info;
    let mut out = format!("Name: {}\nFile: {file}\n\nGENERAL\n\n", info.name);
    let _ = writeln!(out, "  Name: {}", info.name);
    let _ = writeln!(out, "  Hash: {}", info.id);
    let _ = writeln!(out, "  Magnet: {magnet}");
    if let Some(by) = &m.created_by {
        let _ = writeln!(out, "  Created by: {by}");
    }
    if let Some(t) = m.creation_date {
        let _ = writeln!(out, "  Created on: {}", utc(t));
    }
    if let Some(c) = &m.comment {
        let _ = writeln!(out, "  Comment: {c}");
    }
    let _ = writeln!(out, "  Piece Count: {}", info.chunk_count());
    let _ = writeln!(
        out,
        "  Piece Size: {}",
        format_bytes(u64::from(info.piece_length))
    );
    let _ = writeln!(out, "  Total Size: {}", format_bytes(info.total()));
    out.push_str("\nTRACKERS\n");
    if m.trackers.is_empty() {
        out.push_str("\n  (none: give --tracker when downloading)\n");
    }
    for (i, tier) in m.trackers.iter().enumerate() {
        let _ = writeln!(out, "\n  Tier #{}", i + 1);
        for t in tier {
            let _ = writeln!(out, "  {t}");
        }
    }
    out.push_str("\nFILES\n\n");
    match &info.layout {
        Layout::Single { length } => {
            let _ = writeln!(out, "  {} ({})", info.name, format_bytes(*length));
        }
        Layout::Files(files) => {
            for f in files {
                let _ = writeln!(
                    out,
                    "  {}/{} ({})",
                    info.name,
                    f.path,
                    format_bytes(f.length)
                );
            }
        }
    }
    out.trim_end().to_owned()
}

pub fn metainfo_json(file: &str, m: &Metainfo, magnet: &Magnet) -> Value {
    let info = &m.info;
    let files: Vec<Value> = match &info.layout {
        Layout::Single { length } => vec![json!({ "path": info.name.as_str(), "length": length })],
        Layout::Files(files) => files
            .iter()
            .map(|f| json!({ "path": format!("{}/{}", info.name, f.path), "length": f.length }))
            .collect(),
    };
    json!({
        "file": file,
        "name": info.name.as_str(),
        "id": info.id.to_string(),
        "magnet": magnet.to_string(),
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "comment": m.comment,
        "piece_length": info.piece_length,
        "pieces": info.chunk_count(),
        "total_size": info.total(),
        "directory": matches!(info.layout, Layout::Files(_)),
        "trackers": m.trackers,
        "files": files,
    })
}

/// What a magnet link says: the rest of a metainfo comes from peers.
pub fn magnet_text(magnet: &Magnet) -> String {
    let name = magnet
        .name
        .as_ref()
        .map_or("(none: no dn=)", |n| n.as_str());
    let mut out = format!("Name: {name}\n\nGENERAL\n\n");
    let _ = writeln!(out, "  Name: {name}");
    let _ = writeln!(out, "  Hash: {}", magnet.id);
    let _ = writeln!(out, "  Magnet: {magnet}");
    out.push_str("  (size, pieces and files come from peers: `peer get` fetches them)\n");
    out.push_str("\nTRACKERS\n\n");
    if magnet.trackers.is_empty() {
        out.push_str("  (none: give --tracker when downloading)\n");
    } else {
        out.push_str("  Tier #1\n");
    }
    for t in &magnet.trackers {
        let _ = writeln!(out, "  {t}");
    }
    out.trim_end().to_owned()
}

pub fn magnet_json(magnet: &Magnet) -> Value {
    json!({
        "magnet": magnet.to_string(),
        "name": magnet.name.as_ref().map(|n| n.as_str()),
        "id": magnet.id.to_string(),
        "trackers": if magnet.trackers.is_empty() { vec![] } else { vec![magnet.trackers.clone()] },
    })
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (days to a civil date as in Howard
/// Hinnant's `civil_from_days`).
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}

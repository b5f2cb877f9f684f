//! Page lines appended to a `String` without `core::fmt`: the lines of flag 1 and 6 pages are
//! most of what a tracker writes under load, and `write!` with `Display` for every number and
//! address was a third of the handler's time (the handler bench's flag 1, 10.3 µs a page).
//! `Display` for these types goes through the same code, so both write identical text.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::types::{ChunkRanges, FileId, FileSummary, ListedFile, PeerChunks, PeerEntry};

/// A line of a flag 1/2 or flag 6 page.
pub trait PageLine {
    /// Appends the line's wire text (no newline).
    fn push_to(&self, out: &mut String);
}

impl PageLine for PeerEntry {
    fn push_to(&self, out: &mut String) {
        push_addr(out, &self.addr);
        match &self.chunks {
            PeerChunks::Seeder => out.push_str(" seeder"),
            PeerChunks::Ranges(r) => {
                out.push(' ');
                r.push_to(out);
            }
            PeerChunks::Count(n) => {
                out.push_str(" have=");
                push_num(out, *n);
            }
        }
    }
}

impl PageLine for ListedFile {
    fn push_to(&self, out: &mut String) {
        out.push_str(self.name.as_str());
        out.push_str(" size=");
        push_num(out, self.size);
        out.push_str(" chunks=");
        push_num(out, self.chunks);
        out.push_str(" seeders=");
        push_num(out, self.seeders);
        out.push_str(" leechers=");
        push_num(out, self.leechers);
        if let Some(stats) = &self.stats {
            out.push_str(" completed=");
            push_num(out, stats.completed);
            out.push_str(" up=");
            push_num(out, stats.up);
            out.push_str(" down=");
            push_num(out, stats.down);
        }
    }
}

impl ChunkRanges {
    /// Appends the ranges' wire text (`0-9,12,20-31`).
    pub fn push_to(&self, out: &mut String) {
        for (i, &(start, end)) in self.ranges().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_num(out, start);
            if start != end {
                out.push('-');
                push_num(out, end);
            }
        }
    }
}

/// ` NAME size=S chunks=N chunk=C id=ID seeders=A leechers=B`: the file part of a flag 1, 2 and
/// 7 answer, in front of every listing page.
pub(crate) fn push_summary(out: &mut String, s: &FileSummary) {
    out.push(' ');
    out.push_str(s.info.name().as_str());
    out.push_str(" size=");
    push_num(out, s.info.size());
    out.push_str(" chunks=");
    push_num(out, s.info.chunks());
    out.push_str(" chunk=");
    push_num(out, s.info.chunk_size());
    out.push_str(" id=");
    push_id(out, &s.info.id());
    out.push_str(" seeders=");
    push_num(out, s.seeders);
    out.push_str(" leechers=");
    push_num(out, s.leechers);
}

pub(crate) fn push_id(out: &mut String, id: &FileId) {
    out.push_str("sha256:");
    let digits = id.hex_digits();
    out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
}

pub(crate) fn push_num(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `a.b.c.d:port`, or `[v6]:port` as `Display` writes it.
pub(crate) fn push_addr(out: &mut String, addr: &SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_num(out, octet);
            }
            out.push(':');
            push_num(out, v4.port());
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FileName;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    fn text(line: &impl PageLine) -> String {
        let mut s = String::new();
        line.push_to(&mut s);
        s
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<u32>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::from((Ipv4Addr::from(ip), port))),
            (any::<u128>(), any::<u16>()).prop_map(|(ip, port)| {
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
            }),
        ]
    }

    proptest! {
        /// The same text std's formatting writes, for every address and count.
        #[test]
        fn peer_lines_match_std_formatting(addr in arb_addr(), n in any::<u32>(), which in 0u8..3,
                                           starts in proptest::collection::vec(0u32..1000, 1..20)) {
            let mut ranges = Vec::new();
            let mut at = 0u32;
            for gap in starts {
                let start = at + gap % 7 + u32::from(!ranges.is_empty());
                let end = start + gap % 3;
                ranges.push((start, end));
                at = end + 1;
            }
            let chunks = match which {
                0 => PeerChunks::Seeder,
                1 => PeerChunks::Count(n),
                _ => PeerChunks::Ranges(ChunkRanges::from_sorted(ranges.clone()).unwrap()),
            };
            let expected = match &chunks {
                PeerChunks::Seeder => format!("{addr} seeder"),
                PeerChunks::Count(n) => format!("{addr} have={n}"),
                PeerChunks::Ranges(_) => {
                    let r: Vec<String> = ranges
                        .iter()
                        .map(|&(s, e)| if s == e { s.to_string() } else { format!("{s}-{e}") })
                        .collect();
                    format!("{addr} {}", r.join(","))
                }
            };
            prop_assert_eq!(text(&PeerEntry { addr, chunks }), expected);
        }

        #[test]
        fn file_lines_match_std_formatting(size in any::<u64>(), chunks in any::<u32>(),
                                           seeders in any::<u32>(), leechers in any::<u32>(),
                                           figures in proptest::option::of(any::<(u64, u64, u64)>())) {
            let stats = figures.map(|(completed, up, down)| crate::SwarmStats { completed, up, down });
            let file = ListedFile { name: FileName::new("a.bin").unwrap(), size, chunks, seeders, leechers, stats };
            let tail = figures.map_or(String::new(), |(c, u, d)| format!(" completed={c} up={u} down={d}"));
            prop_assert_eq!(
                text(&file),
                format!("a.bin size={size} chunks={chunks} seeders={seeders} leechers={leechers}{tail}")
            );
        }
    }
}

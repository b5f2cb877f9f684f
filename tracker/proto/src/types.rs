//! Validated values that appear in tracker messages and are shared with the peer crate.
//!
//! Every type here can only hold a value the protocol allows, so code that receives one never
//! re-checks it: a [`FileName`] is always a safe plain name, a [`ChunkRanges`] is always sorted,
//! merged and non-empty, a [`FileInfo`]'s chunk count always matches its size.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use thiserror::Error;

use crate::transfer::SwarmStats;

/// Chunk size used when a peer does not say otherwise (DESIGN.md §3).
pub const DEFAULT_CHUNK_SIZE: u32 = 2048;
/// Largest chunk size a file may declare; larger chunks would make a single chunk transfer
/// unreasonably long and memory-hungry for peers.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Most chunks a file may have. Bounds the tracker's per-peer bitfield to 512 KiB
/// (an 8 GiB file at the default chunk size; larger files use larger chunks).
pub const MAX_CHUNKS: u32 = 1 << 22;
/// Longest file name, in bytes of UTF-8 (the common file-system limit).
pub const MAX_NAME_BYTES: usize = 255;
/// TCP port assumed when an address carries no port (the peer serving port of the seed protocol).
pub const DEFAULT_PEER_PORT: u16 = 6881;

/// A plain file name: what a peer shares from its share directory and what the tracker indexes.
/// Shared (`Arc`): the tracker copies names into every listing and peer record.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(Arc<str>);

/// Why a string is not an acceptable [`FileName`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FileNameError {
    #[error("file name is empty")]
    Empty,
    #[error("file name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    #[error("file name contains a path separator ('/' or '\\')")]
    PathSeparator,
    #[error("file name contains '..'")]
    DotDot,
    #[error("file name is '.'")]
    Dot,
    #[error("file name contains a control character")]
    Control,
    #[error("file name contains whitespace (tokens are separated by spaces)")]
    Whitespace,
    #[error("file name contains '=' (reserved for key=value fields)")]
    Equals,
    #[error(
        "file name contains U+{:04X}, a bidi control or invisible character (a listing would \
         not show the name as it is)",
        u32::from(*.0)
    )]
    Invisible(char),
}

/// Characters that change how a name displays without being seen: bidi embeddings, overrides,
/// isolates and marks (which can make `exe.txt` display as `txt.exe`), and zero-width or
/// invisible characters (which make two different names look the same).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                   // soft hyphen
        | '\u{034F}'                 // combining grapheme joiner
        | '\u{061C}'                 // Arabic letter mark
        | '\u{115F}' | '\u{1160}'    // Hangul fillers
        | '\u{17B4}' | '\u{17B5}'    // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}'    // Mongolian variation selectors and vowel separator
        | '\u{200B}'..='\u{200F}'    // zero-width space, non-joiner, joiner; LRM, RLM
        | '\u{202A}'..='\u{202E}'    // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}'    // word joiner, invisible operators, bidi isolates
        | '\u{3164}'                 // Hangul filler
        | '\u{FE00}'..='\u{FE0F}'    // variation selectors
        | '\u{FEFF}'                 // zero-width no-break space (BOM)
        | '\u{FFA0}'                 // halfwidth Hangul filler
        | '\u{FFF9}'..='\u{FFFB}'    // interlinear annotation controls
        | '\u{1D173}'..='\u{1D17A}'  // musical symbol format controls
        | '\u{E0000}'..='\u{E0FFF}'  // tags and variation selectors supplement
    )
}

impl FileName {
    /// Validates `name`. Besides path safety, names exclude whitespace and `=` because the
    /// protocol separates tokens with spaces and marks `key=value` fields with `=`, and bidi
    /// controls and invisible characters because a listing must show a name as it is.
    pub fn new(name: &str) -> Result<Self, FileNameError> {
        if name.is_empty() {
            return Err(FileNameError::Empty);
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(FileNameError::TooLong);
        }
        if name == "." {
            return Err(FileNameError::Dot);
        }
        if name.contains("..") {
            return Err(FileNameError::DotDot);
        }
        // Most names are printable ASCII, which holds no control, space or invisible
        // character: only the three forbidden marks need looking for, a byte at a time.
        if name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'\\' | b'='))
        {
            return Ok(FileName(name.into()));
        }
        for c in name.chars() {
            match c {
                '/' | '\\' => return Err(FileNameError::PathSeparator),
                '=' => return Err(FileNameError::Equals),
                c if c.is_control() => return Err(FileNameError::Control),
                c if c.is_whitespace() => return Err(FileNameError::Whitespace),
                c if is_invisible(c) => return Err(FileNameError::Invisible(c)),
                _ => {}
            }
        }
        Ok(FileName(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for FileName {
    type Err = FileNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileName::new(s)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for FileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A non-empty set of chunk indices, kept as sorted, merged, non-adjacent inclusive ranges.
/// On the wire: `0-99,120,200-201`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChunkRanges(Vec<(u32, u32)>);

/// Why a chunk range list is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkRangesError {
    #[error("chunk list is empty")]
    Empty,
    #[error("chunk range {0:?} is not a number or a range 'a-b'")]
    Syntax(String),
    #[error("chunk range {start}-{end} is reversed")]
    Reversed { start: u32, end: u32 },
    #[error("chunk index {0} is out of range (at most {max})", max = MAX_CHUNKS - 1)]
    OutOfRange(u64),
}

impl ChunkRanges {
    /// Builds the set from inclusive ranges in any order, overlapping or not.
    pub fn from_ranges(
        ranges: impl IntoIterator<Item = (u32, u32)>,
    ) -> Result<Self, ChunkRangesError> {
        let mut v: Vec<(u32, u32)> = Vec::new();
        for (start, end) in ranges {
            if start > end {
                return Err(ChunkRangesError::Reversed { start, end });
            }
            if end >= MAX_CHUNKS {
                return Err(ChunkRangesError::OutOfRange(u64::from(end)));
            }
            v.push((start, end));
        }
        if v.is_empty() {
            return Err(ChunkRangesError::Empty);
        }
        v.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (start, end) in v {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Ok(ChunkRanges(merged))
    }

    /// Ranges already sorted, merged and in bounds (as the tracker's store reads them off a
    /// bitfield), without re-sorting: one pass checks that they are; `None` when they are not,
    /// or when there are none.
    pub fn from_sorted(ranges: Vec<(u32, u32)>) -> Option<Self> {
        let in_bounds = ranges.iter().all(|&(s, e)| s <= e && e < MAX_CHUNKS);
        let apart = ranges.windows(2).all(|w| w[0].1.saturating_add(1) < w[1].0);
        (in_bounds && apart && !ranges.is_empty()).then_some(ChunkRanges(ranges))
    }

    /// The set of the given indices; `None` when there are none.
    pub fn from_indices(indices: impl IntoIterator<Item = u32>) -> Option<Self> {
        ChunkRanges::from_ranges(indices.into_iter().map(|i| (i, i))).ok()
    }

    /// All chunks of a file with `chunks` chunks; `None` for an empty file.
    pub fn full(chunks: u32) -> Option<Self> {
        if chunks == 0 || chunks > MAX_CHUNKS {
            return None;
        }
        Some(ChunkRanges(vec![(0, chunks - 1)]))
    }

    /// The inclusive ranges, sorted and non-overlapping.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.0
    }

    /// Every index in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().flat_map(|&(s, e)| s..=e)
    }

    pub fn contains(&self, index: u32) -> bool {
        self.0
            .binary_search_by(|&(s, e)| {
                if e < index {
                    std::cmp::Ordering::Less
                } else if s > index {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    /// Number of chunks in the set.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|&(s, e)| u64::from(e - s) + 1).sum()
    }

    /// The highest index in the set.
    pub fn max(&self) -> u32 {
        self.0.last().map_or(0, |r| r.1)
    }
}

impl FromStr for ChunkRanges {
    type Err = ChunkRangesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ChunkRangesError::Empty);
        }
        let parse_index = |t: &str| -> Result<u32, ChunkRangesError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ChunkRangesError::Syntax(t.to_string()));
            }
            match t.parse::<u64>() {
                Ok(n) if n < u64::from(MAX_CHUNKS) => Ok(n as u32),
                Ok(n) => Err(ChunkRangesError::OutOfRange(n)),
                Err(_) => Err(ChunkRangesError::OutOfRange(u64::MAX)),
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let range = match part.split_once('-') {
                Some((a, b)) => (parse_index(a)?, parse_index(b)?),
                None => {
                    let i = parse_index(part)?;
                    (i, i)
                }
            };
            ranges.push(range);
        }
        ChunkRanges::from_ranges(ranges)
    }
}

impl fmt::Display for ChunkRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.push_to(&mut text);
        f.write_str(&text)
    }
}

impl fmt::Debug for ChunkRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkRanges({self})")
    }
}

/// Content identity of a file: the SHA-256 of its manifest (the list of chunk hashes).
/// On the wire: `sha256:<64 lowercase hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId(pub [u8; 32]);

/// Why a file id is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("file id must be 'sha256:' followed by 64 hex digits")]
pub struct FileIdError;

impl FileId {
    /// The 64 lowercase hex digits, on the stack: every flag 1 and 7 answer writes an id.
    pub(crate) fn hex_digits(&self) -> [u8; 64] {
        let mut digits = [0u8; 64];
        // 32 bytes always fit 64 digits.
        let _ = hex::encode_to_slice(self.0, &mut digits);
        digits
    }
}

impl FromStr for FileId {
    type Err = FileIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").ok_or(FileIdError)?;
        let mut id = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut id).map_err(|_| FileIdError)?;
        Ok(FileId(id))
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        f.write_str(std::str::from_utf8(&self.hex_digits()).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What the tracker records about a shared file. The chunk count is derived from size and chunk
/// size, so it can never disagree with them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileInfo {
    name: FileName,
    size: u64,
    chunk_size: u32,
    chunks: u32,
    id: FileId,
}

/// Why a file description is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FileInfoError {
    #[error("chunk size {0} is outside 1..={MAX_CHUNK_SIZE}")]
    ChunkSize(u32),
    #[error("file of {size} bytes has more than {MAX_CHUNKS} chunks of {chunk_size} bytes")]
    TooManyChunks { size: u64, chunk_size: u32 },
    #[error(
        "declared {declared} chunks but {size} bytes in {chunk_size}-byte chunks make {actual}"
    )]
    ChunkCount {
        declared: u32,
        actual: u32,
        size: u64,
        chunk_size: u32,
    },
}

impl FileInfo {
    pub fn new(
        name: FileName,
        size: u64,
        chunk_size: u32,
        id: FileId,
    ) -> Result<Self, FileInfoError> {
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(FileInfoError::ChunkSize(chunk_size));
        }
        let chunks = size.div_ceil(u64::from(chunk_size));
        if chunks > u64::from(MAX_CHUNKS) {
            return Err(FileInfoError::TooManyChunks { size, chunk_size });
        }
        Ok(FileInfo {
            name,
            size,
            chunk_size,
            chunks: chunks as u32,
            id,
        })
    }

    /// Like [`FileInfo::new`], also checking a chunk count received on the wire.
    pub fn with_declared_chunks(
        name: FileName,
        size: u64,
        chunk_size: u32,
        chunks: u32,
        id: FileId,
    ) -> Result<Self, FileInfoError> {
        let info = FileInfo::new(name, size, chunk_size, id)?;
        if info.chunks != chunks {
            return Err(FileInfoError::ChunkCount {
                declared: chunks,
                actual: info.chunks,
                size,
                chunk_size,
            });
        }
        Ok(info)
    }

    pub fn name(&self) -> &FileName {
        &self.name
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }
    pub fn chunks(&self) -> u32 {
        self.chunks
    }
    pub fn id(&self) -> FileId {
        self.id
    }
}

/// Which chunks a listed peer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChunks {
    /// Every chunk of the file (`seeder` on the wire).
    Seeder,
    /// Exactly these chunks.
    Ranges(ChunkRanges),
    /// This many chunks, too scattered to list in a datagram (`have=<n>` on the wire); the
    /// downloader learns which from the peer's BITFIELD.
    Count(u32),
}

/// One peer in a file's swarm, as listed by flags 1 and 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    /// The peer's TCP serving address.
    pub addr: SocketAddr,
    pub chunks: PeerChunks,
}

/// How often a downloader should refresh its peer list (flags 1 and 2 with its address), as
/// BitTorrent's announce `interval` and `min interval`, in seconds: `interval=` and
/// `min_interval=` in the header of RESPONSE 1 and 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceIntervals {
    /// The period a downloader refreshes on while it is not starved.
    pub interval: u32,
    /// The least time between two refreshes, however starved the downloader is.
    pub min_interval: u32,
}

impl AnnounceIntervals {
    /// What a client assumes when a tracker sends no intervals (protocol.txt §1.3).
    pub const DEFAULT: AnnounceIntervals = AnnounceIntervals {
        interval: 30,
        min_interval: 5,
    };
}

/// One line of the file catalogue (flag 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    pub name: FileName,
    pub size: u64,
    pub chunks: u32,
    pub seeders: u32,
    pub leechers: u32,
    /// Completed downloads and bytes moved; `None` from a tracker that sends none.
    pub stats: Option<SwarmStats>,
}

/// A file with its swarm counts (flag 7, and the header of flags 1 and 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub info: FileInfo,
    pub seeders: u32,
    pub leechers: u32,
    /// Completed downloads and bytes moved: sent by flag 7 only (the header of flags 1 and 2
    /// stays short, protocol.txt §1.4), `None` from a tracker that sends none.
    pub stats: Option<SwarmStats>,
}

/// A peer's secret identity across address changes (`key=<32 hex>`), as BitTorrent's `key`:
/// an announcement from a new address with the same key moves the peer's rows.
/// Never printed in full (Debug shows nothing of it) and never sent back by the tracker.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerKey(pub [u8; 16]);

impl PeerKey {
    /// A fresh random key, for a peer that has none stored.
    pub fn random() -> Self {
        PeerKey(rand::random())
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerKey(..)")
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why a hex value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("expected exactly {0} hex digits")]
pub struct HexError(pub usize);

impl FromStr for PeerKey {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut k = [0u8; 16];
        hex::decode_to_slice(s, &mut k).map_err(|_| HexError(32))?;
        Ok(PeerKey(k))
    }
}

/// Proof that a source receives datagrams at its address (`cookie=<16 hex>`), handed out by the
/// tracker and echoed by the client; see protocol.txt §1.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cookie(pub [u8; 8]);

impl fmt::Display for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for Cookie {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut c = [0u8; 8];
        hex::decode_to_slice(s, &mut c).map_err(|_| HexError(16))?;
        Ok(Cookie(c))
    }
}

/// Why an address token is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddrError {
    #[error("{0:?} is not an IP address or IP:PORT")]
    Syntax(String),
    #[error("port 0 is not a serving port")]
    PortZero,
    #[error("{0} is not a specific address")]
    Unspecified(SocketAddr),
    #[error("{0} is not a unicast address (multicast or broadcast)")]
    NotUnicast(SocketAddr),
}

/// Whether a peer can be reached at `ip`: not unspecified, not in 0.0.0.0/8, not multicast and
/// not the IPv4 broadcast address. (Loopback and private addresses are unicast; whether they
/// make sense depends on where the request comes from, which only the tracker knows.)
pub fn is_unicast(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => !(v4.octets()[0] == 0 || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// Parses `ip:port`, `[v6]:port` or a bare IP (port 6881, the seed protocol's form).
/// An unspecified IP (`0.0.0.0`, `::`) is kept: it means "my datagram's source IP".
pub fn parse_peer_addr(s: &str) -> Result<SocketAddr, AddrError> {
    let addr = match SocketAddr::from_str(s) {
        Ok(a) => a,
        Err(_) => match IpAddr::from_str(s) {
            Ok(ip) => SocketAddr::new(ip, DEFAULT_PEER_PORT),
            Err(_) => return Err(AddrError::Syntax(s.chars().take(64).collect())),
        },
    };
    if addr.port() == 0 {
        return Err(AddrError::PortZero);
    }
    Ok(addr)
}

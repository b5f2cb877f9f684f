//! The metainfo file (`NAME.p2p`, protocol.txt §6): a bencoded dictionary in the shape of BEP
//! 3's `.torrent`, so a BitTorrent user finds `announce`, `announce-list`, `info.name`,
//! `info.piece length`, `info.length` or `info.files` where they expect them, and any bencode
//! decoder reads it. What BEP 3 puts in `pieces` (20 bytes per piece) is this protocol's content
//! id instead (`info.p2p id`): the manifest it names is fetched from peers and checked against
//! it, so a metainfo stays a few hundred bytes whatever the size of what it describes.
//!
//! [`Metainfo::parse`] is pure (bytes in, a checked value or a [`MetainfoError`] naming the
//! offending field out) and is where every untrusted path is validated: a metainfo that
//! decodes describes only relative paths of plain names, none of them twice.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use bt_bencode::{ByteString, Value};
use tracker_proto::{FileName, MAX_CHUNKS};

use crate::manifest::{chunk_count, FileId, MAX_CHUNK_SIZE};
use crate::name::ShareName;

/// Largest metainfo accepted, as a file or from peers (a million files at ~16 bytes each).
pub const MAX_METAINFO_BYTES: usize = 16 << 20;

/// Most files of one share.
pub const MAX_FILES: usize = 1_000_000;

/// Deepest folder nesting of a path inside a share.
pub const MAX_PATH_DEPTH: usize = 64;

/// Nesting of bencode lists and dictionaries a metainfo may use (it needs 5); the decoder
/// recurses, so this also bounds its stack.
const MAX_NESTING: usize = 32;

/// Suffix of metainfo files.
pub const METAINFO_SUFFIX: &str = ".p2p";

/// Why bytes are not a metainfo this peer accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    #[error("metainfo of {0} bytes is larger than {MAX_METAINFO_BYTES}")]
    TooLarge(usize),
    #[error("not bencode: {0}")]
    Bencode(String),
    #[error("bencode nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{field}: expected {want}")]
    Type { field: String, want: &'static str },
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
}

fn invalid(field: impl Into<String>, why: impl fmt::Display) -> MetainfoError {
    MetainfoError::Invalid {
        field: field.into(),
        why: why.to_string(),
    }
}

/// A relative path inside a shared directory: one or more components, each a plain name of
/// protocol.txt §1.1 (no separator, no `..`, no whitespace or control characters), so joining
/// it to a directory never leaves that directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(Vec<FileName>);

impl RelPath {
    pub fn new(components: Vec<FileName>) -> Result<RelPath, String> {
        if components.is_empty() {
            return Err("a path needs at least one component".into());
        }
        if components.len() > MAX_PATH_DEPTH {
            return Err(format!("deeper than {MAX_PATH_DEPTH} folders"));
        }
        Ok(RelPath(components))
    }

    /// Parses `a/b/c`, each component under the rules of [`FileName`].
    pub fn parse(text: &str) -> Result<RelPath, String> {
        let parts = text
            .split('/')
            .map(|c| FileName::new(c).map_err(|e| format!("{c:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        RelPath::new(parts)
    }

    pub fn components(&self) -> &[FileName] {
        &self.0
    }

    /// The path below `root` (never outside it: components are plain names).
    pub fn under(&self, root: &std::path::Path) -> std::path::PathBuf {
        let mut p = root.to_owned();
        for c in &self.0 {
            p.push(c.as_str());
        }
        p
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

/// One file of a directory share, in the order the swarm's bytes run through them, or an
/// empty folder (which has no bytes, but comes back with the directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: RelPath,
    pub length: u64,
    /// An empty folder (`"p2p folder": 1`, length 0), not a file.
    pub folder: bool,
}

/// What a share is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One file, named like the share.
    Single { length: u64 },
    /// A directory named like the share; its files' bytes laid end to end form the swarm's
    /// chunks (a chunk may span the end of one file and the start of the next).
    Files(Vec<FileEntry>),
}

impl Layout {
    /// Bytes of the whole share.
    pub fn total(&self) -> u64 {
        match self {
            Layout::Single { length } => *length,
            Layout::Files(files) => files.iter().map(|f| f.length).sum(),
        }
    }
}

/// The `info` dictionary: what the content is. Peers exchange exactly this (protocol.txt §2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: ShareName,
    /// BEP 3's `piece length`: the chunk size.
    pub piece_length: u32,
    /// The content id (protocol.txt §2.1: `sha256:` of the manifest).
    pub id: FileId,
    pub layout: Layout,
}

impl Info {
    /// Checks the geometry: a chunk size this peer handles and at most 2^22 chunks.
    fn check(&self) -> Result<(), MetainfoError> {
        if self.piece_length == 0 || self.piece_length > MAX_CHUNK_SIZE {
            return Err(invalid(
                "info.piece length",
                format!("{} is outside 1..={MAX_CHUNK_SIZE}", self.piece_length),
            ));
        }
        let total = match &self.layout {
            Layout::Single { length } => *length,
            Layout::Files(files) => files
                .iter()
                .try_fold(0u64, |sum, f| sum.checked_add(f.length))
                .ok_or_else(|| invalid("info.files", "lengths add up past 2^64"))?,
        };
        if chunk_count(total, self.piece_length) > u64::from(MAX_CHUNKS) {
            return Err(invalid(
                "info",
                format!(
                    "{total} bytes in {}-byte pieces are more than {MAX_CHUNKS} pieces",
                    self.piece_length
                ),
            ));
        }
        Ok(())
    }

    /// Bytes of the whole share.
    pub fn total(&self) -> u64 {
        self.layout.total()
    }

    pub fn chunk_count(&self) -> u32 {
        chunk_count(self.total(), self.piece_length) as u32
    }

    /// The canonical bencoding of this dictionary (what peers send each other).
    pub fn encode(&self) -> Vec<u8> {
        bt_bencode::to_vec(&self.to_value()).unwrap_or_default()
    }

    /// Reads an `info` dictionary on its own (as received from a peer).
    pub fn parse(bytes: &[u8]) -> Result<Info, MetainfoError> {
        let value = decode(bytes)?;
        Info::from_value(&value)
    }

    fn to_value(&self) -> Value {
        let mut d = BTreeMap::new();
        d.insert(key("name"), Value::from(self.name.as_str()));
        d.insert(key("piece length"), Value::from(self.piece_length));
        d.insert(key("p2p id"), Value::from(self.id.to_string()));
        match &self.layout {
            Layout::Single { length } => {
                d.insert(key("length"), Value::from(*length));
            }
            Layout::Files(files) => {
                d.insert(key("files"), files_value(files));
            }
        }
        Value::Dict(d)
    }

    fn from_value(value: &Value) -> Result<Info, MetainfoError> {
        let d = dict(value, "info")?;
        let name = text(get(d, "name", "info.name")?, "info.name")?;
        let name = ShareName::new(name).map_err(|e| invalid("info.name", e))?;
        let piece_length = uint(
            get(d, "piece length", "info.piece length")?,
            "info.piece length",
        )?;
        let piece_length = u32::try_from(piece_length)
            .map_err(|_| invalid("info.piece length", format!("{piece_length} is too large")))?;
        let id = text(get(d, "p2p id", "info.p2p id")?, "info.p2p id")?;
        let id: FileId = id.parse().map_err(|e| invalid("info.p2p id", e))?;
        let layout = match (d.get(b"length".as_slice()), d.get(b"files".as_slice())) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "info",
                    "has both length (one file) and files (a directory)",
                ))
            }
            (Some(l), None) => Layout::Single {
                length: uint(l, "info.length")?,
            },
            (None, Some(f)) => Layout::Files(parse_files(f)?),
            (None, None) => return Err(MetainfoError::Missing("info.length or info.files")),
        };
        let info = Info {
            name,
            piece_length,
            id,
            layout,
        };
        info.check()?;
        Ok(info)
    }
}

/// A whole metainfo file: the trackers and the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// Tracker tiers (BEP 12): every tracker of the first tier that works is announced to.
    pub trackers: Vec<Vec<String>>,
    pub info: Info,
    pub created_by: Option<String>,
    /// Seconds since the Unix epoch.
    pub creation_date: Option<i64>,
    pub comment: Option<String>,
}

impl Metainfo {
    /// The bencoded file.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        if let Some(first) = self.trackers.iter().flatten().next() {
            d.insert(key("announce"), Value::from(first.as_str()));
        }
        if !self.trackers.is_empty() {
            let tiers: Vec<Value> = self
                .trackers
                .iter()
                .map(|t| Value::List(t.iter().map(|s| Value::from(s.as_str())).collect()))
                .collect();
            d.insert(key("announce-list"), Value::List(tiers));
        }
        if let Some(c) = &self.created_by {
            d.insert(key("created by"), Value::from(c.as_str()));
        }
        if let Some(t) = self.creation_date {
            d.insert(key("creation date"), Value::from(t));
        }
        if let Some(c) = &self.comment {
            d.insert(key("comment"), Value::from(c.as_str()));
        }
        d.insert(key("info"), self.info.to_value());
        bt_bencode::to_vec(&Value::Dict(d)).unwrap_or_default()
    }

    /// Reads a metainfo file. `announce-list` wins over `announce` when both are there (BEP
    /// 12); keys this peer does not know are ignored.
    pub fn parse(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let value = decode(bytes)?;
        let d = dict(&value, "the metainfo")?;
        let info = Info::from_value(get(d, "info", "info")?)?;
        let mut trackers = Vec::new();
        if let Some(list) = d.get(b"announce-list".as_slice()) {
            for (i, tier) in list_of(list, "announce-list")?.iter().enumerate() {
                let field = format!("announce-list[{i}]");
                let tier = list_of(tier, &field)?
                    .iter()
                    .enumerate()
                    .map(|(j, t)| text(t, &format!("{field}[{j}]")).map(str::to_owned))
                    .collect::<Result<Vec<_>, _>>()?;
                if !tier.is_empty() {
                    trackers.push(tier);
                }
            }
        }
        if trackers.is_empty() {
            if let Some(a) = d.get(b"announce".as_slice()) {
                trackers.push(vec![text(a, "announce")?.to_owned()]);
            }
        }
        let optional_text = |k: &'static str| -> Result<Option<String>, MetainfoError> {
            d.get(k.as_bytes())
                .map(|v| text(v, k).map(str::to_owned))
                .transpose()
        };
        let creation_date = match d.get(b"creation date".as_slice()) {
            Some(v) => Some(
                v.as_i64()
                    .or_else(|| v.as_u64().and_then(|u| i64::try_from(u).ok()))
                    .ok_or_else(|| MetainfoError::Type {
                        field: "creation date".into(),
                        want: "an integer",
                    })?,
            ),
            None => None,
        };
        Ok(Metainfo {
            trackers,
            info,
            created_by: optional_text("created by")?,
            creation_date,
            comment: optional_text("comment")?,
        })
    }

    /// The file name this metainfo is saved under: `NAME.p2p`.
    pub fn file_name(&self) -> String {
        format!("{}{METAINFO_SUFFIX}", self.info.name)
    }
}

fn key(k: &str) -> ByteString {
    ByteString::from(k)
}

/// The bencoded `info.files` list of `files`: what a directory's id commits to (protocol.txt
/// §2.1).
pub fn encode_files(files: &[FileEntry]) -> Vec<u8> {
    bt_bencode::to_vec(&files_value(files)).unwrap_or_default()
}

/// Reads back what [`encode_files`] wrote, under the rules of `info.files`.
pub fn decode_files(bytes: &[u8]) -> Result<Vec<FileEntry>, MetainfoError> {
    parse_files(&decode(bytes)?)
}

fn files_value(files: &[FileEntry]) -> Value {
    Value::List(
        files
            .iter()
            .map(|f| {
                let mut e = BTreeMap::new();
                e.insert(key("length"), Value::from(f.length));
                if f.folder {
                    e.insert(key("p2p folder"), Value::from(1u8));
                }
                let path = f
                    .path
                    .components()
                    .iter()
                    .map(|c| Value::from(c.as_str()))
                    .collect();
                e.insert(key("path"), Value::List(path));
                Value::Dict(e)
            })
            .collect(),
    )
}

fn parse_files(value: &Value) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = list_of(value, "info.files")?;
    if list.is_empty() {
        return Err(invalid(
            "info.files",
            "a directory share needs at least one file",
        ));
    }
    if list.len() > MAX_FILES {
        return Err(invalid(
            "info.files",
            format!("more than {MAX_FILES} files"),
        ));
    }
    let mut files = Vec::with_capacity(list.len());
    let mut seen = HashSet::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let field = format!("info.files[{i}]");
        let d = dict(entry, &field)?;
        let length = uint(get(d, "length", "info.files[].length")?, &field)?;
        let path_field = format!("{field}.path");
        let components = list_of(get(d, "path", "info.files[].path")?, &path_field)?
            .iter()
            .map(|c| {
                let c = text(c, &path_field)?;
                FileName::new(c).map_err(|e| invalid(&path_field, format!("{c:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let path = RelPath::new(components).map_err(|e| invalid(&path_field, e))?;
        if !seen.insert(path.clone()) {
            return Err(invalid(&path_field, format!("{path} is listed twice")));
        }
        let folder = match d.get(b"p2p folder".as_slice()) {
            None => false,
            Some(v) if v.as_u64() == Some(1) && length == 0 => true,
            Some(_) => {
                return Err(invalid(
                    format!("{field}.p2p folder"),
                    "an empty folder is 1 with length 0",
                ))
            }
        };
        files.push(FileEntry {
            path,
            length,
            folder,
        });
    }
    // A file may not also be a folder of another ("a" and "a/b"): one of them could not be
    // written.
    for f in &files {
        let c = f.path.components();
        for depth in 1..c.len() {
            let folder = RelPath(c[..depth].to_vec());
            if seen.contains(&folder) {
                return Err(invalid(
                    "info.files",
                    format!("{folder} is both a file and the folder of {}", f.path),
                ));
            }
        }
    }
    Ok(files)
}

/// Decodes bencode after checking its size and nesting (the decoder recurses).
fn decode(bytes: &[u8]) -> Result<Value, MetainfoError> {
    if bytes.len() > MAX_METAINFO_BYTES {
        return Err(MetainfoError::TooLarge(bytes.len()));
    }
    check_nesting(bytes)?;
    bt_bencode::from_slice(bytes).map_err(|e| MetainfoError::Bencode(e.to_string()))
}

/// Walks the bencode structure without building it and refuses nesting deeper than
/// [`MAX_NESTING`] and byte strings longer than the input. Other malformed input is left for
/// the decoder to describe.
fn check_nesting(bytes: &[u8]) -> Result<(), MetainfoError> {
    let mut depth = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'l' | b'd' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(MetainfoError::TooDeep);
                }
                i += 1;
            }
            b'e' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'i' => match bytes[i..].iter().position(|&b| b == b'e') {
                Some(end) => i += end + 1,
                None => return Ok(()),
            },
            b'0'..=b'9' => {
                let Some(colon) = bytes[i..].iter().position(|&b| b == b':') else {
                    return Ok(());
                };
                let start = i + colon + 1;
                // bt_bencode 0.8 adds the declared length to its offset unchecked: a length
                // near usize::MAX wraps it and panics on slicing, so it never sees one.
                let len = std::str::from_utf8(&bytes[i..i + colon])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .filter(|len| *len <= bytes.len() - start);
                match len {
                    Some(len) => i = start + len,
                    None => {
                        return Err(MetainfoError::Bencode(format!(
                            "byte string at offset {i} is longer than the {} bytes left",
                            bytes.len() - start
                        )))
                    }
                }
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

type Dict = BTreeMap<ByteString, Value>;

fn dict<'a>(v: &'a Value, field: &str) -> Result<&'a Dict, MetainfoError> {
    v.as_dict().ok_or_else(|| MetainfoError::Type {
        field: field.to_owned(),
        want: "a dictionary",
    })
}

fn get<'a>(d: &'a Dict, k: &str, field: &'static str) -> Result<&'a Value, MetainfoError> {
    d.get(k.as_bytes()).ok_or(MetainfoError::Missing(field))
}

fn list_of<'a>(v: &'a Value, field: &str) -> Result<&'a Vec<Value>, MetainfoError> {
    v.as_array().ok_or_else(|| MetainfoError::Type {
        field: field.to_owned(),
        want: "a list",
    })
}

fn text<'a>(v: &'a Value, field: &str) -> Result<&'a str, MetainfoError> {
    v.as_str().ok_or_else(|| MetainfoError::Type {
        field: field.to_owned(),
        want: "a UTF-8 string",
    })
}

fn uint(v: &Value, field: &str) -> Result<u64, MetainfoError> {
    v.as_u64().ok_or_else(|| MetainfoError::Type {
        field: field.to_owned(),
        want: "a non-negative integer",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> FileId {
        FileId([7; 32])
    }

    fn dir_info(paths: &[(&str, u64)]) -> Info {
        Info {
            name: ShareName::new("album").unwrap(),
            piece_length: 2048,
            id: id(),
            layout: Layout::Files(
                paths
                    .iter()
                    .map(|(p, l)| FileEntry {
                        folder: false,
                        path: RelPath::parse(p).unwrap(),
                        length: *l,
                    })
                    .collect(),
            ),
        }
    }

    fn with_info(info: Info) -> Metainfo {
        Metainfo {
            trackers: vec![vec![
                "p2p://a.example:9000".into(),
                "p2p://b.example".into(),
            ]],
            info,
            created_by: Some("peer 0.1.0".into()),
            creation_date: Some(1_700_000_000),
            comment: None,
        }
    }

    #[test]
    fn the_shape_is_bep_3s() {
        let m = with_info(Info {
            name: ShareName::new("movie.mkv").unwrap(),
            piece_length: 2048,
            id: id(),
            layout: Layout::Single { length: 5000 },
        });
        let bytes = m.encode();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.starts_with("d8:announce20:p2p://a.example:900013:announce-listll"),
            "{text}"
        );
        assert!(
            text.contains("4:infod6:lengthi5000e4:name9:movie.mkv6:p2p id71:sha256:0707"),
            "{text}"
        );
        assert!(text.contains("12:piece lengthi2048e"), "{text}");
        assert_eq!(Metainfo::parse(&bytes).unwrap(), m);
    }

    #[test]
    fn directories_round_trip() {
        let info = dir_info(&[("a/one.txt", 10), ("a/b/two.bin", 0), ("three", 4097)]);
        let m = with_info(info.clone());
        let back = Metainfo::parse(&m.encode()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.info.total(), 4107);
        assert_eq!(back.info.chunk_count(), 3);
        assert_eq!(Info::parse(&info.encode()).unwrap(), info);
    }

    #[test]
    fn a_string_length_past_the_end_is_an_error_not_a_panic() {
        // Found by the metainfo fuzz target: bt_bencode's offset overflowed on it.
        let crash = b"d8:0000000018446744073709551615:000e\x04\x00";
        assert!(matches!(
            Metainfo::parse(crash),
            Err(MetainfoError::Bencode(_))
        ));
        assert!(matches!(
            Info::parse(b"99:x"),
            Err(MetainfoError::Bencode(_))
        ));
        assert!(matches!(
            Info::parse(b"d4:name18446744073709551615:x"),
            Err(MetainfoError::Bencode(_))
        ));
    }

    #[test]
    fn announce_alone_is_one_tier() {
        let bytes = b"d8:announce14:127.0.0.1:90004:infod6:lengthi1e4:name1:x12:piece lengthi2048e6:p2p id71:sha256:0000000000000000000000000000000000000000000000000000000000000000ee";
        let m = Metainfo::parse(bytes).unwrap();
        assert_eq!(m.trackers, vec![vec!["127.0.0.1:9000".to_owned()]]);
    }

    fn info_with_files(files: &str) -> Vec<u8> {
        format!(
            "d4:infod5:files{files}4:name1:x12:piece lengthi2048e6:p2p id71:sha256:{}ee",
            "0".repeat(64)
        )
        .into_bytes()
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for (files, why) in [
            (
                "ld6:lengthi1e4:pathl1:ae10:p2p folderi1eee",
                "an empty folder is 1 with length 0",
            ),
            (
                "ld6:lengthi0e4:pathl1:ae10:p2p folderi1eed6:lengthi1e4:pathl1:a1:beee",
                "both a file",
            ),
            ("ld6:lengthi1e4:pathl2:..eee", "'..'"),
            ("ld6:lengthi1e4:pathl0:eee", "empty"),
            ("ld6:lengthi1e4:pathl4:/etceee", "separator"),
            ("ld6:lengthi1e4:pathl3:a\\beee", "separator"),
            ("ld6:lengthi1e4:pathleee", "at least one"),
            ("ld6:lengthi1e4:pathl3:a beee", "whitespace"),
            (
                "ld6:lengthi1e4:pathl1:aeed6:lengthi1e4:pathl1:aeee",
                "twice",
            ),
            (
                "ld6:lengthi1e4:pathl1:aeed6:lengthi1e4:pathl1:a1:beee",
                "both a file",
            ),
            ("le", "at least one file"),
            ("ld6:lengthi-1e4:pathl1:aeee", "non-negative"),
        ] {
            let err = Metainfo::parse(&info_with_files(files)).unwrap_err();
            assert!(err.to_string().contains(why), "{files}: {err}");
        }
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        for bad in [
            &b""[..],
            b"d",
            b"i3e",
            b"d4:infoi3ee",
            b"d4:infod4:name1:xee",
            b"d4:infod6:lengthi1e4:name2:.x12:piece lengthi2048e6:p2p id2:noee",
        ] {
            assert!(Metainfo::parse(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{}{}", "l".repeat(10_000), "e".repeat(10_000));
        assert_eq!(
            Metainfo::parse(deep.as_bytes()),
            Err(MetainfoError::TooDeep)
        );
        let huge = vec![b'0'; MAX_METAINFO_BYTES + 1];
        assert!(matches!(
            Metainfo::parse(&huge),
            Err(MetainfoError::TooLarge(_))
        ));
        let too_many = format!(
            "d4:infod6:lengthi{}e4:name1:x12:piece lengthi1e6:p2p id71:sha256:{}ee",
            u64::from(MAX_CHUNKS) + 1,
            "0".repeat(64)
        );
        assert!(Metainfo::parse(too_many.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("more than"));
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_.-]{1,12}".prop_filter("plain names", |s| FileName::new(s).is_ok())
    }

    proptest! {
        #[test]
        fn round_trip(
            files in proptest::collection::btree_map(
                proptest::collection::vec(component(), 1..4), 0u64..100_000, 1..20),
            piece in 1u32..=MAX_CHUNK_SIZE,
            tiers in proptest::collection::vec(proptest::collection::vec("[a-z0-9.:]{1,20}", 1..3), 0..3),
        ) {
            // Drop entries that are folders of others (not a valid layout).
            let paths: Vec<(Vec<String>, u64)> = files.iter()
                .filter(|(p, _)| !files.keys().any(|q| q.len() > p.len() && q.starts_with(p)))
                .map(|(p, l)| (p.clone(), *l)).collect();
            // Zero-length entries stand for empty folders half the time.
            let layout = Layout::Files(paths.iter().map(|(p, l)| FileEntry {
                folder: *l == 0 && p.len() % 2 == 0,
                path: RelPath::parse(&p.join("/")).unwrap(), length: *l }).collect());
            let info = Info { name: ShareName::new("d").unwrap(), piece_length: piece, id: id(), layout };
            let m = Metainfo { trackers: tiers, info, created_by: None, creation_date: None, comment: Some("c".into()) };
            prop_assert_eq!(Metainfo::parse(&m.encode()).unwrap(), m);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Metainfo::parse(&data);
            let _ = Info::parse(&data);
        }

        #[test]
        fn mutated_metainfo_never_panics(flip in 0usize..200, byte in any::<u8>()) {
            let mut bytes = with_info(dir_info(&[("a/b", 3), ("c", 9)])).encode();
            let at = flip % bytes.len();
            bytes[at] = byte;
            if let Ok(m) = Metainfo::parse(&bytes) {
                prop_assert!(m.info.chunk_count() <= MAX_CHUNKS);
            }
        }
    }
}

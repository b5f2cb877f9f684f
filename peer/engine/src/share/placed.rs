//! Files shared in place (`DIR/.peer/NAME.share`): `peer share PATH` of a file outside the share
//! directory records where it is instead of copying it, as Transmission and rqbit seed files
//! where they lie. A record per share, read back by the daemon after a restart:
//!
//! ```text
//! p2p-share 1
//! path-hex <the absolute path, canonical (no links), bytes in hex>
//! size <bytes>
//! mtime-ns <modification time, ns since the epoch>
//! device <st_dev>
//! inode <st_ino>
//! chunk-size <bytes>
//! id sha256:<64 hex>
//! file <size> <mtime-ns> <device> <inode> <relative/path>    (directories: one per file)
//! folder <device> <inode> <relative/path>                  (and one per empty folder)
//! ```
//!
//! A directory is recorded with its own device and inode (size and mtime 0: adding an
//! unrelated file to it changes nothing that is served) and one `file` line per file, in the
//! order of its layout; a path is written as it is, its components being plain names
//! (protocol.txt §1.1) without whitespace or separators.
//!
//! Only recorded paths are ever served under a name. A recorded file whose size, modification
//! time, device or inode differ from the record has changed since it was hashed: it is not
//! served and is withdrawn from the tracker, never re-hashed behind the user's back (the
//! tracker binds the name to the old content id, so a new hash could not be announced under
//! that name anyway; `peer share PATH` again shares the new content once the old swarm is
//! gone). [`parse`] is pure, so it can be fuzzed and property-tested.

use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use std::sync::Arc;

use crate::manifest::FileId;
use crate::metainfo::{FileEntry, RelPath};
use crate::name::ShareName;

const HEADER: &str = "p2p-share 1";

/// Largest record read: a path of PATH_MAX bytes in hex and the numbers, plus a line per file
/// of a directory of up to a million files.
pub const MAX_RECORD: usize = 64 << 20;

/// Which file a recorded path is and when it last changed, as `fstat` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: u128,
    pub device: u64,
    pub inode: u64,
}

impl FileStamp {
    pub fn of(meta: &Metadata) -> FileStamp {
        FileStamp {
            size: meta.len(),
            mtime_ns: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos()),
            device: meta.dev(),
            inode: meta.ino(),
        }
    }
}

/// One share in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub path: PathBuf,
    pub stamp: FileStamp,
    pub chunk_size: u32,
    pub id: FileId,
    /// A directory's files, in layout order; empty for a single file.
    pub files: Vec<PlacedFile>,
}

/// One file of a directory shared in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedFile {
    pub path: RelPath,
    /// For an empty folder, [`FileStamp::of_dir`].
    pub stamp: FileStamp,
    pub folder: bool,
}

impl FileStamp {
    /// The stamp a directory is recorded with: which directory it is, nothing that moves when
    /// entries come and go.
    pub fn of_dir(meta: &Metadata) -> FileStamp {
        FileStamp {
            size: 0,
            mtime_ns: 0,
            device: meta.dev(),
            inode: meta.ino(),
        }
    }
}

impl Placed {
    pub fn is_dir(&self) -> bool {
        !self.files.is_empty()
    }

    /// A directory's layout (paths and lengths), as its id commits to it.
    pub fn layout(&self) -> Arc<[FileEntry]> {
        self.files
            .iter()
            .map(|f| FileEntry {
                path: f.path.clone(),
                length: f.stamp.size,
                folder: f.folder,
            })
            .collect()
    }

    /// Why the file of this record (shared as `name`) is no longer served.
    pub fn changed(&self, name: &ShareName, why: &'static str) -> super::StoreError {
        super::StoreError::Changed {
            name: name.clone(),
            path: self.path.clone(),
            why,
        }
    }
}

/// Why a share record cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacedError {
    #[error("share record of {0} bytes; at most {MAX_RECORD}")]
    TooLong(usize),
    #[error("share record is not UTF-8 text")]
    NotText,
    #[error("share record does not start with {HEADER:?}")]
    Header,
    #[error("share record: line {0:?} is not KEY VALUE")]
    Line(String),
    #[error("share record: {0} is missing")]
    Missing(&'static str),
    #[error("share record: {key} appears twice")]
    Twice { key: String },
    #[error("share record: bad {key}: {value:?}")]
    Value { key: &'static str, value: String },
    #[error("share record: unknown key {0:?}")]
    Unknown(String),
    #[error("share record: the path is not absolute")]
    Relative,
    #[error("share record: bad file line {line:?}: {why}")]
    File { line: String, why: String },
}

impl Placed {
    pub fn encode(&self) -> String {
        let mut out = format!(
            "{HEADER}\npath-hex {}\nsize {}\nmtime-ns {}\ndevice {}\ninode {}\nchunk-size {}\nid {}\n",
            hex::encode(self.path.as_os_str().as_bytes()),
            self.stamp.size,
            self.stamp.mtime_ns,
            self.stamp.device,
            self.stamp.inode,
            self.chunk_size,
            self.id,
        );
        for f in &self.files {
            let s = &f.stamp;
            if f.folder {
                out.push_str(&format!("folder {} {} {}\n", s.device, s.inode, f.path));
                continue;
            }
            out.push_str(&format!(
                "file {} {} {} {} {}\n",
                s.size, s.mtime_ns, s.device, s.inode, f.path
            ));
        }
        out
    }
}

/// Parses a share record.
pub fn parse(bytes: &[u8]) -> Result<Placed, PlacedError> {
    if bytes.len() > MAX_RECORD {
        return Err(PlacedError::TooLong(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| PlacedError::NotText)?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(PlacedError::Header);
    }
    const KEYS: [&str; 7] = [
        "path-hex",
        "size",
        "mtime-ns",
        "device",
        "inode",
        "chunk-size",
        "id",
    ];
    let mut values: [Option<&str>; 7] = [None; 7];
    let mut files = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (key, value) = line
            .split_once(' ')
            .ok_or_else(|| PlacedError::Line(line.to_owned()))?;
        if key == "file" || key == "folder" {
            files.push(parse_file(line, value, key == "folder")?);
            continue;
        }
        let i = KEYS
            .iter()
            .position(|k| *k == key)
            .ok_or_else(|| PlacedError::Unknown(key.to_owned()))?;
        if values[i].replace(value).is_some() {
            return Err(PlacedError::Twice {
                key: key.to_owned(),
            });
        }
    }
    let get = |i: usize| values[i].ok_or(PlacedError::Missing(KEYS[i]));
    let bad = |i: usize| PlacedError::Value {
        key: KEYS[i],
        value: values[i].unwrap_or_default().to_owned(),
    };
    fn number<T: std::str::FromStr>(
        text: Result<&str, PlacedError>,
        bad: impl FnOnce() -> PlacedError,
    ) -> Result<T, PlacedError> {
        text?.parse().map_err(|_| bad())
    }
    let path = PathBuf::from(OsString::from_vec(
        hex::decode(get(0)?).map_err(|_| bad(0))?,
    ));
    if !path.is_absolute() {
        return Err(PlacedError::Relative);
    }
    let chunk_size: u32 = number(get(5), || bad(5))?;
    if chunk_size == 0 || chunk_size > crate::manifest::MAX_CHUNK_SIZE {
        return Err(bad(5));
    }
    Ok(Placed {
        path,
        stamp: FileStamp {
            size: number(get(1), || bad(1))?,
            mtime_ns: number(get(2), || bad(2))?,
            device: number(get(3), || bad(3))?,
            inode: number(get(4), || bad(4))?,
        },
        chunk_size,
        id: number(get(6), || bad(6))?,
        files,
    })
}

/// `<size> <mtime-ns> <device> <inode> <path>` of a `file` line, `<device> <inode> <path>` of
/// a `folder` line.
fn parse_file(line: &str, value: &str, folder: bool) -> Result<PlacedFile, PlacedError> {
    let bad = |why: String| PlacedError::File {
        line: line.to_owned(),
        why,
    };
    let mut fields: Vec<&str> = value.split(' ').collect();
    if folder && fields.len() == 3 {
        fields.splice(0..0, ["0", "0"]);
    } else if folder {
        return Err(bad("expected 3 fields".into()));
    }
    let [size, mtime, device, inode, path] = fields[..] else {
        return Err(bad("expected 5 fields".into()));
    };
    let number = |t: &str| t.parse::<u64>().map_err(|_| bad(format!("{t:?}")));
    Ok(PlacedFile {
        stamp: FileStamp {
            size: number(size)?,
            mtime_ns: mtime.parse().map_err(|_| bad(format!("{mtime:?}")))?,
            device: number(device)?,
            inode: number(inode)?,
        },
        path: RelPath::parse(path).map_err(bad)?,
        folder,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> Placed {
        Placed {
            path: PathBuf::from("/home/a b/film\n.mkv"),
            stamp: FileStamp {
                size: 9 << 30,
                mtime_ns: 1_764_000_000_123_456_789,
                device: 2049,
                inode: 77,
            },
            chunk_size: 4096,
            id: format!("sha256:{}", "ab".repeat(32)).parse().unwrap(),
            files: Vec::new(),
        }
    }

    #[test]
    fn a_directory_record_reads_back_with_its_files_in_order() {
        let stamp = FileStamp {
            size: 5,
            mtime_ns: 1,
            device: 2,
            inode: 3,
        };
        let p = Placed {
            files: ["z.txt", "a/b/c", "a/empty"]
                .iter()
                .map(|path| PlacedFile {
                    path: RelPath::parse(path).unwrap(),
                    stamp,
                    folder: false,
                })
                .chain([PlacedFile {
                    path: RelPath::parse("empty/folder").unwrap(),
                    stamp: FileStamp {
                        size: 0,
                        mtime_ns: 0,
                        ..stamp
                    },
                    folder: true,
                }])
                .collect(),
            ..sample()
        };
        assert!(p.is_dir());
        assert_eq!(parse(p.encode().as_bytes()), Ok(p.clone()));
        assert_eq!(p.layout()[1].path.to_string(), "a/b/c");
        for bad in [
            "file 1 2 3 4 ../x",
            "file 1 2 3 a/b",
            "file x 2 3 4 a",
            "file 1 2 3 4 /a",
        ] {
            let text = format!("{}{bad}\n", sample().encode());
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("bad file line"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let p = sample();
        assert_eq!(parse(p.encode().as_bytes()), Ok(p));
    }

    #[test]
    fn malformed_records_are_refused_with_the_reason() {
        let good = sample().encode();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "does not start"),
            (good.replace("p2p-share 1", "p2p-share 2"), "does not start"),
            (good.replace("\nsize ", "\nsize x"), "bad size"),
            (
                good.replace("chunk-size 4096", "chunk-size 0"),
                "bad chunk-size",
            ),
            (good.replace("inode 77\n", ""), "inode is missing"),
            (format!("{good}inode 78\n"), "inode appears twice"),
            (format!("{good}colour red\n"), "unknown key"),
            (format!("{good}loose\n"), "not KEY VALUE"),
            (
                good.replace(&hex::encode("/home/a b/film\n.mkv"), &hex::encode("rel/x")),
                "not absolute",
            ),
            (good.replace("path-hex 2f", "path-hex zz"), "bad path-hex"),
            (good.replace("id sha256:", "id md5:"), "bad id"),
        ];
        for (text, want) in cases {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(want), "{text:?}: {err}");
        }
        assert!(matches!(
            parse(&vec![b'a'; MAX_RECORD + 1]),
            Err(PlacedError::TooLong(_))
        ));
        assert_eq!(parse(&[0xff, 0xfe]), Err(PlacedError::NotText));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn any_path_round_trips(raw in proptest::collection::vec(1u8..=255, 0..300)) {
            let mut bytes = b"/".to_vec();
            bytes.extend(raw);
            let p = Placed { path: PathBuf::from(OsString::from_vec(bytes)), ..sample() };
            prop_assert_eq!(parse(p.encode().as_bytes()), Ok(p));
        }
    }
}

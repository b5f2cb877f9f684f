//! The resume record (`DIR/.peer/NAME.part.have`): which chunks of `NAME.part` are verified
//! and on disk, and which `.part` that is. A file we read back, never sent anywhere.
//!
//! ```text
//! "P2PR" | version u8 (2) | file id (32 raw bytes) | chunk count u32
//!        | part device u64 | part inode u64 | part size u64 | part changed u64 | bitfield
//! ```
//! Integers are big-endian. `part changed` is the `.part`'s status-change time (ctime, in
//! nanoseconds since the epoch) as it was right after the fsync the record follows. The
//! bitfield has the wire layout (protocol.txt §2.3): exactly `ceil(chunks / 8)` bytes, spare
//! bits clear.
//!
//! A record is believed only for the manifest it names (same id and chunk count), so a leftover
//! of another version of the file is never taken for this one, and only for the `.part` it
//! describes ([`Record::standing`]): a `.part` deleted and created again, or replaced, is
//! another file (device, inode or size differ), and one written since the record (a download
//! running, or one that stopped without recording its last chunks) has another change time.
//! The change time rather than the modification time because nobody can set it back: every
//! write, truncation, `chmod` or `touch` moves it.
//!
//! Version 1 records carried no `.part` stamp; they are refused, and their download starts over.
//! [`parse`] is pure (bytes in, a [`Record`] or a typed error out), so it can be fuzzed.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use tracker_proto::MAX_CHUNKS;

use crate::bitfield::{Bitfield, BitfieldError};
use crate::manifest::{FileId, Manifest, HASH_LEN};

const RECORD_MAGIC: &[u8; 4] = b"P2PR";

/// Version of the record format this peer writes and reads.
pub const RECORD_VERSION: u8 = 2;

/// Bytes before the bitfield.
const HEAD: usize = 4 + 1 + HASH_LEN + 4 + 4 * 8;

/// Which file a `.part` is and when it last changed, as `fstat` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartStamp {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub changed_ns: u64,
}

impl PartStamp {
    pub fn of(meta: &Metadata) -> PartStamp {
        let secs = u64::try_from(meta.ctime()).unwrap_or(0);
        let nanos = u64::try_from(meta.ctime_nsec()).unwrap_or(0);
        PartStamp {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            changed_ns: secs.saturating_mul(1_000_000_000).saturating_add(nanos),
        }
    }
}

/// How a `.part` stands against the record that describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The very file, untouched since the record: every chunk it lists is there.
    Unchanged,
    /// The same file, written (or touched) since the record. Normal while its download runs,
    /// and after a stop that skipped the last record; anything else must re-check the chunks.
    Written,
    /// Another file (deleted and created again, replaced, truncated): the record says nothing
    /// about it.
    Other,
}

/// A parsed resume record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The file id of the manifest the chunks were verified against.
    pub id: FileId,
    /// The `.part` the chunks were written to.
    pub part: PartStamp,
    /// The verified chunks; its length is the file's chunk count.
    pub have: Bitfield,
}

/// Why bytes are not a resume record this peer can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("resume record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("not a resume record (no P2PR magic)")]
    Magic,
    #[error("resume record version {0}; this peer reads version {RECORD_VERSION} only")]
    Version(u8),
    #[error("resume record of {0} chunks; a file has at most {MAX_CHUNKS}")]
    TooManyChunks(u32),
    #[error("resume record: {0}")]
    Bitfield(#[from] BitfieldError),
}

impl Record {
    /// True when the record is about the content `manifest` describes.
    pub fn is_for(&self, manifest: &Manifest) -> bool {
        self.id == manifest.id() && self.have.len() == manifest.chunk_count()
    }

    /// How the `.part` whose stamp is `now` stands against this record.
    pub fn standing(&self, now: &PartStamp) -> Standing {
        let r = &self.part;
        if (r.device, r.inode, r.size) != (now.device, now.inode, now.size) {
            Standing::Other
        } else if r.changed_ns != now.changed_ns {
            Standing::Written
        } else {
            Standing::Unchanged
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let field = self.have.as_wire();
        let mut rec = Vec::with_capacity(HEAD + field.len());
        rec.extend_from_slice(RECORD_MAGIC);
        rec.push(RECORD_VERSION);
        rec.extend_from_slice(&self.id.0);
        rec.extend_from_slice(&self.have.len().to_be_bytes());
        for n in [
            self.part.device,
            self.part.inode,
            self.part.size,
            self.part.changed_ns,
        ] {
            rec.extend_from_slice(&n.to_be_bytes());
        }
        rec.extend_from_slice(field);
        rec
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Reads a whole record file.
pub fn parse(bytes: &[u8]) -> Result<Record, RecordError> {
    if bytes.len() < 5 {
        return Err(RecordError::Short(bytes.len()));
    }
    if &bytes[..4] != RECORD_MAGIC {
        return Err(RecordError::Magic);
    }
    if bytes[4] != RECORD_VERSION {
        return Err(RecordError::Version(bytes[4]));
    }
    if bytes.len() < HEAD {
        return Err(RecordError::Short(bytes.len()));
    }
    let mut id = [0u8; HASH_LEN];
    id.copy_from_slice(&bytes[5..5 + HASH_LEN]);
    let at = 5 + HASH_LEN;
    let chunks = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if chunks > MAX_CHUNKS {
        return Err(RecordError::TooManyChunks(chunks));
    }
    let stamp = &bytes[at + 4..HEAD];
    Ok(Record {
        id: FileId(id),
        part: PartStamp {
            device: be_u64(stamp),
            inode: be_u64(&stamp[8..]),
            size: be_u64(&stamp[16..]),
            changed_ns: be_u64(&stamp[24..]),
        },
        have: Bitfield::from_wire(&bytes[HEAD..], chunks)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(chunks: u32, set: &[u32]) -> Record {
        let mut have = Bitfield::empty(chunks);
        for &i in set {
            have.set(i);
        }
        Record {
            id: FileId([7; HASH_LEN]),
            part: PartStamp {
                device: 1,
                inode: 2,
                size: 3,
                changed_ns: 4,
            },
            have,
        }
    }

    #[test]
    fn layout_is_the_documented_one() {
        let bytes = record(10, &[0, 9]).encode();
        assert_eq!(&bytes[..5], b"P2PR\x02");
        assert_eq!(&bytes[5..37], &[7; 32]);
        assert_eq!(&bytes[37..41], &[0, 0, 0, 10]);
        assert_eq!(&bytes[41..49], &1u64.to_be_bytes());
        assert_eq!(&bytes[65..73], &4u64.to_be_bytes());
        assert_eq!(&bytes[73..], &[0x80, 0x40]);
    }

    #[test]
    fn malformed_records_are_typed_errors() {
        let good = record(10, &[3]).encode();
        assert_eq!(parse(&good[..3]), Err(RecordError::Short(3)));
        assert_eq!(parse(&good[..60]), Err(RecordError::Short(60)));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(parse(&bad), Err(RecordError::Magic));
        // A version 1 record (no .part stamp) is refused, never read as version 2.
        let mut v1 = b"P2PR\x01".to_vec();
        v1.extend_from_slice(&[7; 32]);
        v1.extend_from_slice(&10u32.to_be_bytes());
        v1.extend_from_slice(&[0xff, 0xc0]);
        assert_eq!(parse(&v1), Err(RecordError::Version(1)));
        let mut huge = good.clone();
        huge[37..41].copy_from_slice(&(MAX_CHUNKS + 1).to_be_bytes());
        assert_eq!(
            parse(&huge),
            Err(RecordError::TooManyChunks(MAX_CHUNKS + 1))
        );
        assert!(matches!(
            parse(&good[..good.len() - 1]),
            Err(RecordError::Bitfield(BitfieldError::Length { .. }))
        ));
        let mut spare = good;
        *spare.last_mut().unwrap() |= 1;
        assert!(matches!(
            parse(&spare),
            Err(RecordError::Bitfield(BitfieldError::SpareBits(10)))
        ));
    }

    #[test]
    fn standing_tells_the_file_and_its_changes_apart() {
        let r = record(4, &[1]);
        let same = r.part;
        assert_eq!(r.standing(&same), Standing::Unchanged);
        let written = PartStamp {
            changed_ns: 5,
            ..same
        };
        assert_eq!(r.standing(&written), Standing::Written);
        for other in [
            PartStamp { inode: 9, ..same },
            PartStamp { device: 9, ..same },
            PartStamp { size: 0, ..written },
        ] {
            assert_eq!(r.standing(&other), Standing::Other);
        }
    }

    proptest! {
        #[test]
        fn round_trip(chunks in 0u32..300, set in proptest::collection::vec(any::<u32>(), 0..40),
                      stamp in any::<[u64; 4]>()) {
            let mut r = record(chunks, &set.iter().map(|i| i % chunks.max(1)).collect::<Vec<_>>());
            r.part = PartStamp { device: stamp[0], inode: stamp[1], size: stamp[2], changed_ns: stamp[3] };
            prop_assert_eq!(parse(&r.encode()), Ok(r));
        }

        #[test]
        fn garbage_is_an_error_or_a_record_that_encodes_back(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = data;
            if bytes.len() >= 5 && bytes[0] % 2 == 0 {
                bytes[..5].copy_from_slice(b"P2PR\x02");
            }
            if let Ok(r) = parse(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }
    }
}

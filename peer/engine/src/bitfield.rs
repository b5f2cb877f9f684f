//! Which chunks of a file someone holds: one type for BITFIELD frames, the resume record and
//! every peer's view in the downloader, so the bit layout is written down once.

use bitvec::prelude::{BitVec, Msb0};

/// One bit per chunk in the wire layout of protocol.txt §2.3: chunk i is bit `0x80 >> (i % 8)`
/// of byte `i / 8`, spare bits of the last byte zero. The resume record stores the same bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Bitfield {
    bits: BitVec<u8, Msb0>,
}

/// Why bytes are not a bitfield of a given file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    #[error("BITFIELD of {got} bytes for {chunks} chunks (expected {want})")]
    Length {
        got: usize,
        want: usize,
        chunks: u32,
    },
    #[error("BITFIELD has bits set past its {0} chunks")]
    SpareBits(u32),
}

impl Bitfield {
    /// `chunks` chunks, none held.
    pub fn empty(chunks: u32) -> Bitfield {
        Bitfield {
            bits: BitVec::repeat(false, chunks as usize),
        }
    }

    /// `chunks` chunks, all held (a complete file).
    pub fn full(chunks: u32) -> Bitfield {
        let mut bits = BitVec::repeat(true, chunks as usize);
        bits.set_uninitialized(false);
        Bitfield { bits }
    }

    /// Reads the wire form of a field of `chunks` chunks: exactly `ceil(chunks / 8)` bytes with
    /// the spare bits clear, as protocol.txt §2.4 requires of a BITFIELD.
    pub fn from_wire(bytes: &[u8], chunks: u32) -> Result<Bitfield, BitfieldError> {
        let want = wire_len(chunks);
        if bytes.len() != want {
            return Err(BitfieldError::Length {
                got: bytes.len(),
                want,
                chunks,
            });
        }
        let mut bits = BitVec::from_slice(bytes);
        if bits[chunks as usize..].any() {
            return Err(BitfieldError::SpareBits(chunks));
        }
        bits.truncate(chunks as usize);
        Ok(Bitfield { bits })
    }

    /// The wire form: `ceil(len / 8)` bytes, spare bits clear.
    pub fn as_wire(&self) -> &[u8] {
        self.bits.as_raw_slice()
    }

    /// Number of chunks the field covers.
    pub fn len(&self) -> u32 {
        self.bits.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// True when chunk `i` is held; chunks past the end are not.
    pub fn get(&self, i: u32) -> bool {
        self.bits.get(i as usize).is_some_and(|b| *b)
    }

    /// Marks chunk `i` held; returns whether it was not held before. Past the end: no-op.
    pub fn set(&mut self, i: u32) -> bool {
        match self.bits.get_mut(i as usize) {
            Some(mut bit) if !*bit => {
                *bit = true;
                true
            }
            _ => false,
        }
    }

    /// Marks chunk `i` not held. Past the end: no-op.
    pub fn clear(&mut self, i: u32) {
        if let Some(mut bit) = self.bits.get_mut(i as usize) {
            *bit = false;
        }
    }

    /// Number of chunks held.
    pub fn count(&self) -> u32 {
        self.bits.count_ones() as u32
    }

    /// True when no chunk is held.
    pub fn none(&self) -> bool {
        self.bits.not_any()
    }

    /// True when this field holds a chunk `other` does not (fields of the same length).
    pub fn has_any_not_in(&self, other: &Bitfield) -> bool {
        self.as_wire()
            .iter()
            .zip(other.as_wire())
            .any(|(mine, theirs)| mine & !theirs != 0)
    }

    /// Indices of the chunks held, in increasing order.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter_ones().map(|i| i as u32)
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.count(), self.len())
    }
}

/// Bytes of the wire form of a field of `chunks` chunks.
pub fn wire_len(chunks: u32) -> usize {
    (chunks as usize).div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_the_wire_one() {
        let mut f = Bitfield::empty(10);
        assert!(f.set(0) && f.set(9) && !f.set(9));
        assert_eq!(f.as_wire(), &[0x80, 0x40]);
        assert!(f.get(9) && !f.get(8) && !f.get(99));
        assert_eq!(Bitfield::from_wire(&[0x80, 0x40], 10).unwrap(), f);
        assert!(matches!(
            Bitfield::from_wire(&[0x80, 0x20], 10),
            Err(BitfieldError::SpareBits(10))
        ));
        assert!(matches!(
            Bitfield::from_wire(&[0x80, 0x40], 17),
            Err(BitfieldError::Length { .. })
        ));
        f.clear(0);
        assert_eq!((f.count(), f.ones().collect::<Vec<_>>()), (1, vec![9]));
        let mut other = Bitfield::empty(10);
        assert!(f.has_any_not_in(&other) && !other.has_any_not_in(&f));
        other.set(9);
        assert!(!f.has_any_not_in(&other));
    }

    #[test]
    fn full_sets_exactly_the_chunks() {
        assert_eq!(Bitfield::full(10).as_wire(), &[0xff, 0xc0]);
        assert_eq!(Bitfield::full(16).as_wire(), &[0xff, 0xff]);
        assert_eq!(Bitfield::full(0).as_wire(), &[] as &[u8]);
        assert_eq!(Bitfield::full(10).count(), 10);
        assert!(Bitfield::empty(3).none() && !Bitfield::full(3).none());
    }

    proptest! {
        #[test]
        fn wire_round_trip(chunks in 0u32..200, set in proptest::collection::vec(any::<u32>(), 0..50)) {
            let mut f = Bitfield::empty(chunks);
            for i in set {
                f.set(i % chunks.max(1));
            }
            prop_assert_eq!(f.as_wire().len(), wire_len(chunks));
            prop_assert_eq!(Bitfield::from_wire(f.as_wire(), chunks).unwrap(), f);
        }
    }
}

//! Which chunk size a share gets (protocol.txt §2.1). The tracker keeps at most 2^22 chunks per
//! file, 8 GiB at the default 2048 bytes; as BitTorrent's piece size does, the chunk size grows
//! with the file instead (powers of two, up to the 1 MiB a CHUNK frame carries: files of up to
//! 4 TiB). `--chunk-size` picks one, within the same bounds.

use tracker_proto::MAX_CHUNKS;

use crate::manifest::{chunk_count, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE};

/// Smallest chunk size a user may choose: below it a manifest costs more than 1.5 % of the
/// file and every chunk a frame and a hash.
pub const MIN_CHOSEN_CHUNK_SIZE: u32 = 1024;

/// Why a chunk size cannot be used for a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkSizeError {
    #[error(
        "chunk size {0} is not a power of two between {MIN_CHOSEN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} (e.g. 2048, 65536, 1048576)"
    )]
    Invalid(u32),
    #[error(
        "{size} bytes in chunks of {chunk_size} bytes make {chunks} chunks; a file has at most {MAX_CHUNKS} (choose a larger --chunk-size, or leave it out)"
    )]
    TooManyChunks {
        size: u64,
        chunk_size: u32,
        chunks: u64,
    },
    #[error(
        "{size} bytes is too large to share: a file has at most {MAX_CHUNKS} chunks of at most {MAX_CHUNK_SIZE} bytes ({} bytes)",
        largest_file()
    )]
    TooLarge { size: u64 },
}

/// The largest file any chunk size can carry.
pub fn largest_file() -> u64 {
    u64::from(MAX_CHUNKS) * u64::from(MAX_CHUNK_SIZE)
}

/// Checks a chunk size the user typed: a power of two within the bounds.
pub fn check_chosen(chunk_size: u32) -> Result<u32, ChunkSizeError> {
    if chunk_size.is_power_of_two()
        && (MIN_CHOSEN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
    {
        Ok(chunk_size)
    } else {
        Err(ChunkSizeError::Invalid(chunk_size))
    }
}

/// The chunk size for a `size`-byte file: `chosen` when given (checked, and it must keep the
/// file within the tracker's chunk limit), else the default 2048 bytes doubled until it does.
pub fn for_file(size: u64, chosen: Option<u32>) -> Result<u32, ChunkSizeError> {
    if let Some(c) = chosen {
        let c = check_chosen(c)?;
        let chunks = chunk_count(size, c);
        if chunks > u64::from(MAX_CHUNKS) {
            return Err(ChunkSizeError::TooManyChunks {
                size,
                chunk_size: c,
                chunks,
            });
        }
        return Ok(c);
    }
    let mut c = DEFAULT_CHUNK_SIZE;
    while chunk_count(size, c) > u64::from(MAX_CHUNKS) {
        if c >= MAX_CHUNK_SIZE {
            return Err(ChunkSizeError::TooLarge { size });
        }
        c *= 2;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_default_holds_up_to_8_gib_then_doubles() {
        assert_eq!(for_file(0, None), Ok(2048));
        assert_eq!(for_file(8 * GIB, None), Ok(2048));
        assert_eq!(for_file(8 * GIB + 1, None), Ok(4096));
        assert_eq!(for_file(9 * GIB, None), Ok(4096));
        assert_eq!(for_file(16 * GIB + 1, None), Ok(8192));
        assert_eq!(for_file(4096 * GIB, None), Ok(MAX_CHUNK_SIZE));
        assert_eq!(
            for_file(4096 * GIB + 1, None),
            Err(ChunkSizeError::TooLarge {
                size: 4096 * GIB + 1
            })
        );
    }

    #[test]
    fn a_chosen_size_is_a_power_of_two_within_bounds() {
        assert_eq!(for_file(10, Some(8192)), Ok(8192));
        for bad in [0, 1, 512, 3000, 2049, MAX_CHUNK_SIZE * 2, u32::MAX] {
            let err = for_file(10, Some(bad)).unwrap_err();
            assert_eq!(err, ChunkSizeError::Invalid(bad));
            assert!(err.to_string().contains("power of two"), "{err}");
        }
        let err = for_file(9 * GIB, Some(2048)).unwrap_err();
        assert!(
            matches!(err, ChunkSizeError::TooManyChunks { .. }),
            "{err:?}"
        );
    }

    proptest! {
        #[test]
        fn the_rule_picks_the_smallest_power_that_fits(size in 0u64..=4096 * GIB) {
            let c = for_file(size, None).unwrap();
            prop_assert!(c.is_power_of_two() && c >= DEFAULT_CHUNK_SIZE);
            prop_assert!(chunk_count(size, c) <= u64::from(MAX_CHUNKS));
            if c > DEFAULT_CHUNK_SIZE {
                prop_assert!(chunk_count(size, c / 2) > u64::from(MAX_CHUNKS));
            }
        }
    }
}

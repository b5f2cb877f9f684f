//! Why bytes are not a usable STUN message.

use stun_rs::error::StunDecodeError;
use stun_rs::MessageClass;

/// Why bytes are not a usable STUN message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a STUN message (shorter than a header, leading bits set or wrong magic cookie)")]
    NotStun,
    #[error("STUN message length {0} is not a multiple of 4")]
    UnalignedLength(usize),
    #[error("STUN message declares {declared} bytes but {actual} arrived")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("STUN message of {size} bytes exceeds the limit of {max}")]
    TooLong { size: usize, max: usize },
    #[error("transaction id does not match the request")]
    WrongTransaction,
    #[error("not a Binding {expected} (method 0x{method:03x}, class {class:?})")]
    UnexpectedType {
        expected: &'static str,
        method: u16,
        class: MessageClass,
    },
    #[error("invalid STUN attributes: {0}")]
    Attributes(StunDecodeError),
    #[error("unknown comprehension-required attributes {0:04x?}")]
    UnknownRequired(Vec<u16>),
    #[error("FINGERPRINT does not match the message")]
    BadFingerprint,
    #[error("success response carries neither XOR-MAPPED-ADDRESS nor MAPPED-ADDRESS")]
    NoAddress,
}

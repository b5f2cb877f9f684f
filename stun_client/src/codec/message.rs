//! Whole messages: the header and its length field (all TCP framing is), the FINGERPRINT
//! check, and encoding. What `stun-rs` decodes generically, checked as RFC 8489 asks.

use stun_rs::attributes::stun::Fingerprint;
use stun_rs::{
    MessageDecoderBuilder, MessageEncoderBuilder, MessageHeader, StunAttribute, StunMessage,
    MESSAGE_HEADER_SIZE,
};

use super::DecodeError;

/// Size of the fixed STUN header; a TCP reader needs it to find the message length.
pub const HEADER_SIZE: usize = MESSAGE_HEADER_SIZE;

/// The largest STUN message: the length field is 16 bits.
pub const MAX_MESSAGE_SIZE: usize = HEADER_SIZE + u16::MAX as usize;

/// The total size of the message whose header starts `bytes`, once the header has arrived: TCP
/// framing (RFC 8489 §6.2.2) is nothing but this.
pub fn message_size(header: &[u8]) -> Result<usize, DecodeError> {
    let parsed = MessageHeader::try_from(header_of(header)?).map_err(|_| DecodeError::NotStun)?;
    let length = usize::from(parsed.msg_length);
    if length % 4 != 0 {
        return Err(DecodeError::UnalignedLength(length));
    }
    Ok(HEADER_SIZE + length)
}

/// Room for a header, an IPv6 XOR-MAPPED-ADDRESS and the fixed part of an ERROR-CODE.
pub(super) const SMALL_MESSAGE: usize = 512;

pub(super) fn encode(msg: &StunMessage, capacity: usize) -> Vec<u8> {
    let encoder = MessageEncoderBuilder::default().build();
    let mut buffer = vec![0; capacity];
    // Our messages are a header plus a few short attributes sized by the callers' capacity, and
    // every attribute was validated when it was built, so encoding cannot fail.
    let size = encoder
        .encode(&mut buffer, msg)
        .expect("a Binding message with validated attributes always encodes");
    buffer.truncate(size);
    buffer
}

pub(super) fn header_of(bytes: &[u8]) -> Result<&[u8; HEADER_SIZE], DecodeError> {
    bytes
        .get(..HEADER_SIZE)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::NotStun)
}

pub(super) fn check_framing(bytes: &[u8]) -> Result<(), DecodeError> {
    let declared = message_size(bytes)?;
    if declared != bytes.len() {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: bytes.len(),
        });
    }
    Ok(())
}

pub(super) fn decode_message(bytes: &[u8]) -> Result<StunMessage, DecodeError> {
    let decoder = MessageDecoderBuilder::default().build();
    let (msg, _) = decoder.decode(bytes).map_err(DecodeError::Attributes)?;
    if let Some(attr) = msg.get::<Fingerprint>() {
        let valid = match (attr, stun_rs::get_input_text::<Fingerprint>(bytes)) {
            (StunAttribute::Fingerprint(fingerprint), Some(input)) => fingerprint.validate(&input),
            _ => false,
        };
        if !valid {
            return Err(DecodeError::BadFingerprint);
        }
    }
    Ok(msg)
}

pub(super) fn unexpected(expected: &'static str, msg: &StunMessage) -> DecodeError {
    DecodeError::UnexpectedType {
        expected,
        method: msg.method().as_u16(),
        class: msg.class(),
    }
}

//! TURN messages of a TCP allocation (RFC 8656, RFC 6062), pure: bytes in, typed value or typed
//! error out.
//!
//! `stun-rs` encodes the header and the attributes it knows (USERNAME, REALM, NONCE, LIFETIME,
//! XOR-PEER-ADDRESS) and decodes replies. Two things it cannot express are added here as raw
//! attributes: REQUESTED-TRANSPORT with TCP (its protocol numbers stop at UDP) and RFC 6062's
//! CONNECTION-ID. MESSAGE-INTEGRITY therefore has to cover bytes stun-rs never saw, so it is
//! computed here too (RFC 8489 §14.5: HMAC-SHA1 over the message up to the attribute, with the
//! length field already counting it), for requests and for checking replies alike.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use stun_rs::attributes::stun::{ErrorCode, Nonce, Realm, UserName, XorMappedAddress};
use stun_rs::attributes::turn::{LifeTime, XorPeerAddress, XorRelayedAddress};
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, MessageHeader, MessageMethod,
    StunMessage, StunMessageBuilder, TransactionId,
};

use crate::codec::{message_size, HEADER_SIZE};

pub const ALLOCATE: u16 = 0x003;
pub const REFRESH: u16 = 0x004;
pub const CREATE_PERMISSION: u16 = 0x008;
pub const CONNECTION_BIND: u16 = 0x00b;
pub const CONNECTION_ATTEMPT: u16 = 0x00c;

const REQUESTED_TRANSPORT: u16 = 0x0019;
const CONNECTION_ID: u16 = 0x002a;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const MESSAGE_INTEGRITY_SIZE: usize = 20;
/// IANA protocol number of TCP, the transport of every allocation this crate makes.
const PROTOCOL_TCP: u8 = 6;

/// What a request asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnRequest {
    /// A TCP allocation living `lifetime` unless refreshed (RFC 6062 §4.1).
    Allocate { lifetime: Duration },
    /// Keep the allocation for `lifetime` more; zero deletes it (RFC 8656 §7).
    Refresh { lifetime: Duration },
    /// Let these IPs connect to the relayed address (RFC 8656 §9; ports are ignored).
    CreatePermission { peers: Vec<IpAddr> },
    /// Turn the TCP connection the request is sent on into the data connection of
    /// `connection_id` (RFC 6062 §4.4).
    ConnectionBind { connection_id: u32 },
}

impl TurnRequest {
    fn method(&self) -> u16 {
        match self {
            TurnRequest::Allocate { .. } => ALLOCATE,
            TurnRequest::Refresh { .. } => REFRESH,
            TurnRequest::CreatePermission { .. } => CREATE_PERMISSION,
            TurnRequest::ConnectionBind { .. } => CONNECTION_BIND,
        }
    }
}

/// Long-term credential attributes of one request (RFC 8489 §9.2): the server's realm and
/// current nonce, and the key derived from username, realm and password.
#[derive(Debug, Clone, Copy)]
pub struct Auth<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub key: &'a [u8],
}

/// Why a message could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnCodecError {
    #[error("invalid {what} for a TURN request: {reason}")]
    BadAttribute { what: &'static str, reason: String },
    #[error("not a STUN message")]
    NotStun,
    #[error("transaction id does not match the request")]
    WrongTransaction,
    #[error("malformed TURN message: {0}")]
    Malformed(String),
    #[error("MESSAGE-INTEGRITY of the reply does not match our credentials")]
    BadIntegrity,
    #[error("reply to method 0x{got:03x}, expected 0x{expected:03x}")]
    WrongMethod { expected: u16, got: u16 },
    #[error("success response without {0}")]
    Missing(&'static str),
}

fn bad(what: &'static str) -> impl FnOnce(stun_rs::StunError) -> TurnCodecError {
    move |e| TurnCodecError::BadAttribute {
        what,
        reason: e.to_string(),
    }
}

/// Encodes `request`, with credentials when `auth` is given (the first Allocate goes without,
/// to learn the realm and nonce from the 401 answer).
pub fn encode_request(
    transaction_id: &TransactionId,
    request: &TurnRequest,
    auth: Option<&Auth<'_>>,
) -> Result<Vec<u8>, TurnCodecError> {
    let method = MessageMethod::try_from(request.method()).map_err(bad("method"))?;
    let mut builder =
        StunMessageBuilder::new(method, MessageClass::Request).with_transaction_id(*transaction_id);
    match request {
        TurnRequest::Allocate { lifetime } | TurnRequest::Refresh { lifetime } => {
            let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
            builder = builder.with_attribute(LifeTime::new(secs));
        }
        TurnRequest::CreatePermission { peers } => {
            for ip in peers {
                builder = builder.with_attribute(XorPeerAddress::from(SocketAddr::new(*ip, 0)));
            }
        }
        TurnRequest::ConnectionBind { .. } => {}
    }
    if let Some(auth) = auth {
        builder = builder
            .with_attribute(UserName::new(auth.username).map_err(bad("USERNAME"))?)
            .with_attribute(Realm::new(auth.realm).map_err(bad("REALM"))?)
            .with_attribute(Nonce::new(auth.nonce).map_err(bad("NONCE"))?);
    }
    let mut bytes = encode_plain(&builder.build())?;
    match request {
        TurnRequest::Allocate { .. } => {
            append_attribute(&mut bytes, REQUESTED_TRANSPORT, &[PROTOCOL_TCP, 0, 0, 0])
        }
        TurnRequest::ConnectionBind { connection_id } => {
            append_attribute(&mut bytes, CONNECTION_ID, &connection_id.to_be_bytes())
        }
        _ => {}
    }
    if let Some(auth) = auth {
        sign(&mut bytes, auth.key);
    }
    Ok(bytes)
}

fn encode_plain(msg: &StunMessage) -> Result<Vec<u8>, TurnCodecError> {
    let encoder = MessageEncoderBuilder::default().build();
    let mut buffer = vec![0; 2048];
    let size = encoder
        .encode(&mut buffer, msg)
        .map_err(|e| TurnCodecError::BadAttribute {
            what: "message",
            reason: e.to_string(),
        })?;
    buffer.truncate(size);
    Ok(buffer)
}

/// Appends one attribute (padded to four bytes) and updates the header's length field.
fn append_attribute(msg: &mut Vec<u8>, kind: u16, value: &[u8]) {
    msg.extend_from_slice(&kind.to_be_bytes());
    msg.extend_from_slice(&(value.len() as u16).to_be_bytes());
    msg.extend_from_slice(value);
    msg.resize(msg.len().next_multiple_of(4), 0);
    set_length(msg);
}

fn set_length(msg: &mut [u8]) {
    let length = (msg.len() - HEADER_SIZE) as u16;
    msg[2..4].copy_from_slice(&length.to_be_bytes());
}

/// Appends MESSAGE-INTEGRITY: HMAC-SHA1 with `key` over everything before it, the header's
/// length already counting the attribute (RFC 8489 §14.5).
fn sign(msg: &mut Vec<u8>, key: &[u8]) {
    let covered = msg.len();
    append_attribute(msg, MESSAGE_INTEGRITY, &[0; MESSAGE_INTEGRITY_SIZE]);
    let mac = hmac_sha1::hmac_sha1(key, &msg[..covered]);
    msg[covered + 4..covered + 4 + MESSAGE_INTEGRITY_SIZE].copy_from_slice(&mac);
}

/// One attribute as it is on the wire: (type, value, offset of the attribute in the message).
type RawAttribute<'a> = (u16, &'a [u8], usize);

/// The raw attributes of a well-framed message.
fn raw_attributes(msg: &[u8]) -> Result<Vec<RawAttribute<'_>>, TurnCodecError> {
    let mut attrs = Vec::new();
    let mut offset = HEADER_SIZE;
    while offset < msg.len() {
        let header = msg
            .get(offset..offset + 4)
            .ok_or_else(|| TurnCodecError::Malformed("truncated attribute header".into()))?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = msg
            .get(offset + 4..offset + 4 + len)
            .ok_or_else(|| TurnCodecError::Malformed(format!("attribute 0x{kind:04x} overruns")))?;
        attrs.push((kind, value, offset));
        offset += 4 + len.next_multiple_of(4);
    }
    Ok(attrs)
}

/// Checks MESSAGE-INTEGRITY when the message carries one: `Ok(true)` valid, `Ok(false)` absent.
fn verify(msg: &[u8], key: &[u8]) -> Result<bool, TurnCodecError> {
    let Some(&(_, value, offset)) = raw_attributes(msg)?
        .iter()
        .find(|(kind, _, _)| *kind == MESSAGE_INTEGRITY)
    else {
        return Ok(false);
    };
    if value.len() != MESSAGE_INTEGRITY_SIZE {
        return Err(TurnCodecError::BadIntegrity);
    }
    // The MAC covers the message up to the attribute, with a length field that ends right after
    // it (attributes after it, FINGERPRINT, are not counted).
    let mut covered = msg[..offset].to_vec();
    let length = (offset + 4 + MESSAGE_INTEGRITY_SIZE - HEADER_SIZE) as u16;
    covered[2..4].copy_from_slice(&length.to_be_bytes());
    if hmac_sha1::hmac_sha1(key, &covered)[..] == value[..] {
        Ok(true)
    } else {
        Err(TurnCodecError::BadIntegrity)
    }
}

/// A reply to one of our requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnReply {
    Success(TurnSuccess),
    /// An error response: the code, the reason, and the realm and nonce a 401 or 438 brings.
    Error {
        code: u16,
        reason: String,
        realm: Option<String>,
        nonce: Option<String>,
    },
}

/// What a success response carries (each only where the method defines it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnSuccess {
    /// Allocate: the relayed transport address peers connect to.
    pub relayed: Option<SocketAddr>,
    /// Allocate: our address as the server sees the control connection.
    pub mapped: Option<SocketAddr>,
    /// Allocate and Refresh: how long the allocation lives now.
    pub lifetime: Option<Duration>,
}

/// A peer connected to the relayed address (RFC 6062 §4.4: ConnectionAttempt indication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionAttempt {
    pub connection_id: u32,
    pub peer: SocketAddr,
}

/// A message arriving on the control connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// A response (success or error) of the given transaction, still to be decoded with
    /// [`decode_reply`] once the caller knows which request it answers.
    Response(TransactionId),
    Attempt(ConnectionAttempt),
    /// Something we do not act on (other indications); skipped.
    Other {
        method: u16,
        class: MessageClass,
    },
}

fn decode(msg: &[u8]) -> Result<StunMessage, TurnCodecError> {
    let declared = message_size(msg).map_err(|_| TurnCodecError::NotStun)?;
    if declared != msg.len() {
        return Err(TurnCodecError::Malformed(format!(
            "length field says {declared} bytes, message has {}",
            msg.len()
        )));
    }
    let decoder = MessageDecoderBuilder::default().build();
    let (decoded, _) = decoder
        .decode(msg)
        .map_err(|e| TurnCodecError::Malformed(format!("{e:?}")))?;
    Ok(decoded)
}

/// Sorts a control-connection message: a response to match, or a ConnectionAttempt.
pub fn classify(msg: &[u8]) -> Result<ControlMessage, TurnCodecError> {
    let header = msg
        .get(..HEADER_SIZE)
        .and_then(|h| <&[u8; HEADER_SIZE]>::try_from(h).ok())
        .ok_or(TurnCodecError::NotStun)?;
    let parsed = MessageHeader::try_from(header).map_err(|_| TurnCodecError::NotStun)?;
    let kind = stun_rs::MessageType::from(parsed.msg_type);
    let (method, class) = (kind.method().as_u16(), kind.class());
    match class {
        MessageClass::SuccessResponse | MessageClass::ErrorResponse => {
            let tid: [u8; 12] = msg[8..HEADER_SIZE]
                .try_into()
                .map_err(|_| TurnCodecError::NotStun)?;
            Ok(ControlMessage::Response(TransactionId::from(tid)))
        }
        MessageClass::Indication if method == CONNECTION_ATTEMPT => {
            let decoded = decode(msg)?;
            let peer = decoded
                .get::<XorPeerAddress>()
                .and_then(|a| a.as_xor_peer_address().ok())
                .map(|a| *a.socket_address())
                .ok_or(TurnCodecError::Missing("XOR-PEER-ADDRESS"))?;
            Ok(ControlMessage::Attempt(ConnectionAttempt {
                connection_id: connection_id(msg)?,
                peer,
            }))
        }
        _ => Ok(ControlMessage::Other { method, class }),
    }
}

fn connection_id(msg: &[u8]) -> Result<u32, TurnCodecError> {
    raw_attributes(msg)?
        .iter()
        .find(|(kind, _, _)| *kind == CONNECTION_ID)
        .and_then(|(_, value, _)| <[u8; 4]>::try_from(*value).ok())
        .map(u32::from_be_bytes)
        .ok_or(TurnCodecError::Missing("CONNECTION-ID"))
}

/// Decodes the reply to the request of `method` sent as `expected`. With `key`, a
/// MESSAGE-INTEGRITY in the reply must verify (a reply without one is accepted: servers sign
/// only answers to authenticated requests, and 401s are never signed).
pub fn decode_reply(
    msg: &[u8],
    expected: &TransactionId,
    method: u16,
    key: Option<&[u8]>,
) -> Result<TurnReply, TurnCodecError> {
    if msg.get(8..HEADER_SIZE) != Some(&expected.as_bytes()[..]) {
        return Err(TurnCodecError::WrongTransaction);
    }
    let decoded = decode(msg)?;
    if decoded.method().as_u16() != method {
        return Err(TurnCodecError::WrongMethod {
            expected: method,
            got: decoded.method().as_u16(),
        });
    }
    if let Some(key) = key {
        verify(msg, key)?;
    }
    let realm = decoded
        .get::<Realm>()
        .and_then(|a| a.as_realm().ok())
        .map(|r| r.as_str().to_owned());
    let nonce = decoded
        .get::<Nonce>()
        .and_then(|a| a.as_nonce().ok())
        .map(|n| n.as_str().to_owned());
    match decoded.class() {
        MessageClass::ErrorResponse => {
            let (code, reason) = match decoded
                .get::<ErrorCode>()
                .and_then(|a| a.as_error_code().ok())
            {
                Some(e) => (
                    e.error_code().error_code(),
                    e.error_code().reason().to_owned(),
                ),
                None => (500, "error response without ERROR-CODE".to_owned()),
            };
            Ok(TurnReply::Error {
                code,
                reason,
                realm,
                nonce,
            })
        }
        MessageClass::SuccessResponse => {
            let success = TurnSuccess {
                relayed: decoded
                    .get::<XorRelayedAddress>()
                    .and_then(|a| a.as_xor_relayed_address().ok())
                    .map(|a| *a.socket_address()),
                mapped: decoded
                    .get::<XorMappedAddress>()
                    .and_then(|a| a.as_xor_mapped_address().ok())
                    .map(|a| *a.socket_address()),
                lifetime: decoded
                    .get::<LifeTime>()
                    .and_then(|a| a.as_life_time().ok())
                    .map(|l| Duration::from_secs(u64::from(l.as_u32()))),
            };
            if method == ALLOCATE && success.relayed.is_none() {
                return Err(TurnCodecError::Missing("XOR-RELAYED-ADDRESS"));
            }
            Ok(TurnReply::Success(success))
        }
        class => Err(TurnCodecError::Malformed(format!(
            "a {class:?} is not a reply"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use stun_rs::attributes::stun::MessageIntegrity;
    use stun_rs::{Algorithm, AlgorithmId, DecoderContextBuilder, HMACKey};

    fn key() -> HMACKey {
        HMACKey::new_long_term(
            "user",
            "example.org",
            "pass",
            Algorithm::from(AlgorithmId::MD5),
        )
        .unwrap()
    }

    fn auth(key: &HMACKey) -> Auth<'_> {
        Auth {
            username: "user",
            realm: "example.org",
            nonce: "abcdef",
            key: key.as_bytes(),
        }
    }

    fn attribute_types(msg: &[u8]) -> Vec<u16> {
        raw_attributes(msg).unwrap().iter().map(|a| a.0).collect()
    }

    /// stun-rs, given the key, validates our MESSAGE-INTEGRITY: the two implementations agree.
    fn stun_rs_accepts_integrity(msg: &[u8], key: &HMACKey) -> bool {
        let ctx = DecoderContextBuilder::default()
            .with_key(key.clone())
            .with_validation()
            .build();
        let decoder = MessageDecoderBuilder::default().with_context(ctx).build();
        match decoder.decode(msg) {
            Ok((decoded, _)) => decoded.get::<MessageIntegrity>().is_some(),
            Err(_) => false,
        }
    }

    #[test]
    fn allocate_requests_tcp_and_signs_last() {
        let tid = TransactionId::default();
        let key = key();
        let plain = encode_request(
            &tid,
            &TurnRequest::Allocate {
                lifetime: Duration::from_secs(600),
            },
            None,
        )
        .unwrap();
        assert_eq!(&plain[..2], &[0x00, 0x03]);
        assert_eq!(attribute_types(&plain), vec![0x000d, REQUESTED_TRANSPORT]);
        let transport = raw_attributes(&plain).unwrap()[1].1.to_vec();
        assert_eq!(transport, vec![6, 0, 0, 0]);

        let signed = encode_request(
            &tid,
            &TurnRequest::Allocate {
                lifetime: Duration::from_secs(600),
            },
            Some(&auth(&key)),
        )
        .unwrap();
        assert_eq!(
            attribute_types(&signed),
            vec![
                0x000d,
                0x0006,
                0x0014,
                0x0015,
                REQUESTED_TRANSPORT,
                MESSAGE_INTEGRITY
            ]
        );
        assert_eq!(message_size(&signed).unwrap(), signed.len());
        assert!(verify(&signed, key.as_bytes()).unwrap());
        assert!(stun_rs_accepts_integrity(&signed, &key));
    }

    #[test]
    fn connection_bind_carries_the_connection_id_under_integrity() {
        let tid = TransactionId::default();
        let key = key();
        let bytes = encode_request(
            &tid,
            &TurnRequest::ConnectionBind {
                connection_id: 0xdead_beef,
            },
            Some(&auth(&key)),
        )
        .unwrap();
        assert_eq!(&bytes[..2], &[0x00, 0x0b]);
        assert_eq!(connection_id(&bytes).unwrap(), 0xdead_beef);
        assert!(verify(&bytes, key.as_bytes()).unwrap());
        let mut tampered = bytes.clone();
        let at = raw_attributes(&bytes)
            .unwrap()
            .iter()
            .find(|a| a.0 == CONNECTION_ID)
            .unwrap()
            .2;
        tampered[at + 4] ^= 1;
        assert_eq!(
            verify(&tampered, key.as_bytes()),
            Err(TurnCodecError::BadIntegrity)
        );
    }

    #[test]
    fn create_permission_lists_every_peer() {
        let tid = TransactionId::default();
        let peers: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap(), "::1".parse().unwrap()];
        let bytes = encode_request(
            &tid,
            &TurnRequest::CreatePermission {
                peers: peers.clone(),
            },
            None,
        )
        .unwrap();
        let decoded = decode(&bytes).unwrap();
        let listed: Vec<IpAddr> = decoded
            .attributes()
            .iter()
            .filter_map(|a| a.as_xor_peer_address().ok())
            .map(|a| a.socket_address().ip())
            .collect();
        assert_eq!(listed, peers);
    }

    #[test]
    fn bad_credentials_are_errors_not_panics() {
        let tid = TransactionId::default();
        let key = key();
        let mut a = auth(&key);
        a.realm = "bad\u{7}realm";
        let err = encode_request(
            &tid,
            &TurnRequest::Refresh {
                lifetime: Duration::ZERO,
            },
            Some(&a),
        )
        .unwrap_err();
        assert!(
            matches!(err, TurnCodecError::BadAttribute { what: "REALM", .. }),
            "{err}"
        );
    }

    fn response(class: MessageClass, method: u16, tid: &TransactionId) -> StunMessageBuilder {
        StunMessageBuilder::new(MessageMethod::try_from(method).unwrap(), class)
            .with_transaction_id(*tid)
    }

    #[test]
    fn decodes_allocate_success_and_checks_integrity() {
        let tid = TransactionId::default();
        let key = key();
        let relayed: SocketAddr = "203.0.113.3:50000".parse().unwrap();
        let mapped: SocketAddr = "198.51.100.9:40000".parse().unwrap();
        let msg = response(MessageClass::SuccessResponse, ALLOCATE, &tid)
            .with_attribute(XorRelayedAddress::from(relayed))
            .with_attribute(XorMappedAddress::from(mapped))
            .with_attribute(LifeTime::new(600))
            .build();
        let mut bytes = encode_plain(&msg).unwrap();
        sign(&mut bytes, key.as_bytes());
        let reply = decode_reply(&bytes, &tid, ALLOCATE, Some(key.as_bytes())).unwrap();
        assert_eq!(
            reply,
            TurnReply::Success(TurnSuccess {
                relayed: Some(relayed),
                mapped: Some(mapped),
                lifetime: Some(Duration::from_secs(600)),
            })
        );
        let other = HMACKey::new_long_term(
            "user",
            "example.org",
            "nope",
            Algorithm::from(AlgorithmId::MD5),
        )
        .unwrap();
        assert_eq!(
            decode_reply(&bytes, &tid, ALLOCATE, Some(other.as_bytes())),
            Err(TurnCodecError::BadIntegrity)
        );
        assert_eq!(
            decode_reply(&bytes, &TransactionId::default(), ALLOCATE, None),
            Err(TurnCodecError::WrongTransaction)
        );
        assert!(matches!(
            decode_reply(&bytes, &tid, REFRESH, None),
            Err(TurnCodecError::WrongMethod { .. })
        ));
    }

    #[test]
    fn allocate_success_without_relayed_address_is_an_error() {
        let tid = TransactionId::default();
        let bytes =
            encode_plain(&response(MessageClass::SuccessResponse, ALLOCATE, &tid).build()).unwrap();
        assert_eq!(
            decode_reply(&bytes, &tid, ALLOCATE, None),
            Err(TurnCodecError::Missing("XOR-RELAYED-ADDRESS"))
        );
    }

    #[test]
    fn decodes_401_with_realm_and_nonce() {
        let tid = TransactionId::default();
        let msg = response(MessageClass::ErrorResponse, ALLOCATE, &tid)
            .with_attribute(ErrorCode::new(
                stun_rs::ErrorCode::new(401, "Unauthorized").unwrap(),
            ))
            .with_attribute(Realm::new("example.org").unwrap())
            .with_attribute(Nonce::new("n0nce").unwrap())
            .build();
        let bytes = encode_plain(&msg).unwrap();
        assert_eq!(
            decode_reply(&bytes, &tid, ALLOCATE, None).unwrap(),
            TurnReply::Error {
                code: 401,
                reason: "Unauthorized".into(),
                realm: Some("example.org".into()),
                nonce: Some("n0nce".into()),
            }
        );
    }

    #[test]
    fn classifies_connection_attempts_and_responses() {
        let tid = TransactionId::default();
        let peer: SocketAddr = "198.51.100.20:41000".parse().unwrap();
        let msg = StunMessageBuilder::new(
            MessageMethod::try_from(CONNECTION_ATTEMPT).unwrap(),
            MessageClass::Indication,
        )
        .with_transaction_id(tid)
        .with_attribute(XorPeerAddress::from(peer))
        .build();
        let mut bytes = encode_plain(&msg).unwrap();
        append_attribute(&mut bytes, CONNECTION_ID, &7u32.to_be_bytes());
        assert_eq!(
            classify(&bytes).unwrap(),
            ControlMessage::Attempt(ConnectionAttempt {
                connection_id: 7,
                peer
            })
        );
        let without_id = encode_plain(&msg).unwrap();
        assert_eq!(
            classify(&without_id),
            Err(TurnCodecError::Missing("CONNECTION-ID"))
        );
        let reply =
            encode_plain(&response(MessageClass::SuccessResponse, REFRESH, &tid).build()).unwrap();
        assert_eq!(classify(&reply).unwrap(), ControlMessage::Response(tid));
        assert_eq!(
            classify(b"hello, not stun at all"),
            Err(TurnCodecError::NotStun)
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let tid = TransactionId::default();
            let _ = classify(&bytes);
            let _ = decode_reply(&bytes, &tid, ALLOCATE, Some(&[1, 2, 3]));
            let _ = verify(&bytes, &[0; 16]);
        }

        /// Random attributes behind a real header reach every parser.
        #[test]
        fn garbage_attributes_never_panic(
            attrs in proptest::collection::vec(
                (prop_oneof![
                    proptest::sample::select(vec![0x0008u16, 0x0009, 0x000d, 0x0012, 0x0014,
                        0x0015, 0x0016, 0x0019, 0x0020, 0x002a, 0x8028]),
                    any::<u16>(),
                ], proptest::collection::vec(any::<u8>(), 0..40)),
                0..6),
            class in 0u16..4,
        ) {
            let tid = TransactionId::default();
            let mut bytes = encode_plain(&response(MessageClass::SuccessResponse, CONNECTION_ATTEMPT, &tid).build()).unwrap();
            let class_bits = ((class & 2) << 7) | ((class & 1) << 4);
            bytes[0..2].copy_from_slice(&(CONNECTION_ATTEMPT | class_bits).to_be_bytes());
            for (kind, value) in &attrs {
                append_attribute(&mut bytes, *kind, value);
            }
            let _ = classify(&bytes);
            let _ = decode_reply(&bytes, &tid, CONNECTION_ATTEMPT, Some(&[0; 16]));
        }
    }
}

//! What the attributes of a Binding message say: the mapped address of a success response
//! (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS) and the RFC 5780 extras, the code of an error
//! response, and the unknown comprehension-required attributes that make a message unusable.

use std::net::SocketAddr;

use stun_rs::attributes::discovery::{OtherAddress, ResponseOrigin};
use stun_rs::attributes::stun::{ErrorCode, MappedAddress, Software, XorMappedAddress};
use stun_rs::{StunAttribute, StunMessage};

use super::{DecodeError, Reply};

/// What a Binding success response told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSuccess {
    /// The address the server saw the request come from: our public address.
    pub mapped: SocketAddr,
    /// Whether `mapped` came from XOR-MAPPED-ADDRESS (false: the RFC 3489 MAPPED-ADDRESS fallback).
    pub from_xor: bool,
    /// RFC 5780 OTHER-ADDRESS: the server's alternate IP and port, used by the NAT probe.
    pub other_address: Option<SocketAddr>,
    /// RFC 5780 RESPONSE-ORIGIN: the address the response was sent from.
    pub response_origin: Option<SocketAddr>,
    /// The server's SOFTWARE description, shown by `stun-probe`.
    pub software: Option<String>,
}

pub(super) fn decode_success(msg: &StunMessage) -> Result<BindingSuccess, DecodeError> {
    let unknown = unknown_required(msg);
    if !unknown.is_empty() {
        return Err(DecodeError::UnknownRequired(unknown));
    }
    let xor = msg
        .get::<XorMappedAddress>()
        .and_then(|a| a.as_xor_mapped_address().ok())
        .map(|a| *a.socket_address());
    let plain = msg
        .get::<MappedAddress>()
        .and_then(|a| a.as_mapped_address().ok())
        .map(|a| *a.socket_address());
    // A server on a dual-stack socket may report an IPv4 client as `::ffff:a.b.c.d`; what we
    // announce and compare across refreshes is the IPv4 address itself.
    let (mapped, from_xor) = match (xor, plain) {
        (Some(addr), _) => (canonical(addr), true),
        (None, Some(addr)) => (canonical(addr), false),
        (None, None) => return Err(DecodeError::NoAddress),
    };
    Ok(BindingSuccess {
        mapped,
        from_xor,
        other_address: msg
            .get::<OtherAddress>()
            .and_then(|a| a.as_other_address().ok())
            .map(|a| *a.socket_address()),
        response_origin: msg
            .get::<ResponseOrigin>()
            .and_then(|a| a.as_response_origin().ok())
            .map(|a| *a.socket_address()),
        software: msg
            .get::<Software>()
            .and_then(|a| a.as_software().ok())
            .map(|s| s.as_str().to_owned()),
    })
}

pub(super) fn decode_error(msg: &StunMessage) -> Reply {
    match msg.get::<ErrorCode>().and_then(|a| a.as_error_code().ok()) {
        Some(attr) => Reply::Error {
            code: attr.error_code().error_code(),
            reason: attr.error_code().reason().to_owned(),
        },
        // RFC 8489 requires ERROR-CODE in an error response; without it all we know is that
        // the server refused, which 500 (server error) describes best.
        None => Reply::Error {
            code: 500,
            reason: "error response without ERROR-CODE".to_owned(),
        },
    }
}

pub(super) fn unknown_required(msg: &StunMessage) -> Vec<u16> {
    msg.attributes()
        .iter()
        .filter_map(|attr| match attr {
            StunAttribute::Unknown(unknown)
                if unknown.attribute_type().is_comprehension_required() =>
            {
                Some(unknown.attribute_type().as_u16())
            }
            _ => None,
        })
        .collect()
}
/// An IPv4 peer reaching a dual-stack socket shows up as `::ffff:a.b.c.d`; the mapped address we
/// report is the IPv4 one the peer actually has.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

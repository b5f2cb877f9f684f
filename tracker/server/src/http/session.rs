//! Session tokens of the HTTP API (seed 000's `session_token`): the §1.7 key mechanism, carried
//! in a token the tracker signs, so sessions need no table and cost no memory.
//!
//! `POST /api/peers/register` mints a fresh random [`PeerKey`] for the peer and seals it, with
//! the serving address the peer registered, under a MAC over the peer id and the IP the
//! request came from. Every later request presents the token (`Authorization: Bearer`); the
//! tracker recomputes the MAC with that request's peer id and source IP, so a token works only
//! for the peer it was issued to and only from its IP, and then announces with the sealed key
//! and address exactly as a datagram carrying `key=` would. Tokens die with the tracker's
//! secret (a restart): the peer registers again, as a UDP peer that lost its rows announces again.

use std::net::{IpAddr, SocketAddr};

use sha2::{Digest, Sha256};
use thiserror::Error;
use tracker_proto::PeerKey;

const VERSION: u8 = 1;
const MAC_BYTES: usize = 16;

/// What a valid token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub key: PeerKey,
    /// The serving address the peer registered (already checked against its IP).
    pub addr: SocketAddr,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    #[error("the session token is malformed (register with POST /api/peers/register)")]
    Malformed,
    #[error(
        "the session token was not issued to this peer id at this IP by this tracker (register \
         again)"
    )]
    Forged,
}

/// The tracker's secret for sealing tokens.
pub struct SessionKeys {
    secret: [u8; 32],
}

impl SessionKeys {
    pub fn new() -> Self {
        SessionKeys {
            secret: rand::random(),
        }
    }

    /// A token for `peer_id` registering `addr` from `source`, with a fresh key.
    pub fn issue(&self, peer_id: &str, addr: SocketAddr, source: IpAddr) -> (String, Session) {
        let session = Session {
            key: PeerKey::random(),
            addr,
        };
        let mut blob = sealed_part(&session);
        let mac = self.mac(&blob, peer_id, source);
        blob.extend_from_slice(&mac);
        (hex::encode(blob), session)
    }

    /// The session `token` stands for, when it was issued to `peer_id` at `source`'s IP.
    pub fn verify(
        &self,
        token: &str,
        peer_id: &str,
        source: IpAddr,
    ) -> Result<Session, SessionError> {
        let blob = hex::decode(token).map_err(|_| SessionError::Malformed)?;
        let session = parse_sealed(&blob)?;
        let (sealed, mac) = blob.split_at(blob.len() - MAC_BYTES);
        let expected = self.mac(sealed, peer_id, source);
        // Compared without an early exit, so timing tells nothing about a guessed MAC.
        let differs = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differs != 0 {
            return Err(SessionError::Forged);
        }
        Ok(session)
    }

    fn mac(&self, sealed: &[u8], peer_id: &str, source: IpAddr) -> [u8; MAC_BYTES] {
        let mut hash = Sha256::new();
        hash.update(self.secret);
        hash.update(sealed);
        hash.update((peer_id.len() as u32).to_be_bytes());
        hash.update(peer_id.as_bytes());
        match source.to_canonical() {
            IpAddr::V4(ip) => hash.update(ip.octets()),
            IpAddr::V6(ip) => hash.update(ip.octets()),
        }
        let mut mac = [0u8; MAC_BYTES];
        mac.copy_from_slice(&hash.finalize()[..MAC_BYTES]);
        mac
    }
}

impl Default for SessionKeys {
    fn default() -> Self {
        SessionKeys::new()
    }
}

/// version, key, address family, IP, port.
fn sealed_part(session: &Session) -> Vec<u8> {
    let mut blob = vec![VERSION];
    blob.extend_from_slice(&session.key.0);
    match session.addr.ip() {
        IpAddr::V4(ip) => {
            blob.push(4);
            blob.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            blob.push(6);
            blob.extend_from_slice(&ip.octets());
        }
    }
    blob.extend_from_slice(&session.addr.port().to_be_bytes());
    blob
}

fn parse_sealed(blob: &[u8]) -> Result<Session, SessionError> {
    let (&version, rest) = blob.split_first().ok_or(SessionError::Malformed)?;
    if version != VERSION || rest.len() < 16 + 1 {
        return Err(SessionError::Malformed);
    }
    let (key, rest) = rest.split_at(16);
    let (&family, rest) = rest.split_first().ok_or(SessionError::Malformed)?;
    let ip_len = match family {
        4 => 4,
        6 => 16,
        _ => return Err(SessionError::Malformed),
    };
    if rest.len() != ip_len + 2 + MAC_BYTES {
        return Err(SessionError::Malformed);
    }
    let ip: IpAddr = if ip_len == 4 {
        <[u8; 4]>::try_from(&rest[..4])
            .map_err(|_| SessionError::Malformed)?
            .into()
    } else {
        <[u8; 16]>::try_from(&rest[..16])
            .map_err(|_| SessionError::Malformed)?
            .into()
    };
    let port = u16::from_be_bytes([rest[ip_len], rest[ip_len + 1]]);
    let key = <[u8; 16]>::try_from(key).map_err(|_| SessionError::Malformed)?;
    Ok(Session {
        key: PeerKey(key),
        addr: SocketAddr::new(ip, port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_token_works_for_its_peer_at_its_ip_only() {
        let keys = SessionKeys::new();
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let addr: SocketAddr = "203.0.113.5:6881".parse().unwrap();
        let (token, session) = keys.issue("peer-1", addr, ip);
        assert_eq!(keys.verify(&token, "peer-1", ip), Ok(session));
        assert_eq!(session.addr, addr);
        let other_ip: IpAddr = "203.0.113.6".parse().unwrap();
        assert_eq!(
            keys.verify(&token, "peer-1", other_ip),
            Err(SessionError::Forged)
        );
        assert_eq!(keys.verify(&token, "peer-2", ip), Err(SessionError::Forged));
        assert_eq!(
            SessionKeys::new().verify(&token, "peer-1", ip),
            Err(SessionError::Forged)
        );
        // The sealed address cannot be edited: the MAC covers it.
        let mut blob = hex::decode(&token).unwrap();
        let port_at = blob.len() - MAC_BYTES - 1;
        blob[port_at] ^= 1;
        assert_eq!(
            keys.verify(&hex::encode(blob), "peer-1", ip),
            Err(SessionError::Forged)
        );
        let v6: SocketAddr = "[2001:db8::1]:7000".parse().unwrap();
        let (token, session) = keys.issue("p", v6, v6.ip());
        assert_eq!(keys.verify(&token, "p", v6.ip()), Ok(session));
    }

    proptest! {
        #[test]
        fn any_text_is_refused_without_panic(token in "\\PC{0,120}", hexy in "[0-9a-f]{0,120}") {
            let keys = SessionKeys::new();
            let ip: IpAddr = "127.0.0.1".parse().unwrap();
            prop_assert!(keys.verify(&token, "p", ip).is_err());
            prop_assert!(keys.verify(&hexy, "p", ip).is_err());
        }
    }
}

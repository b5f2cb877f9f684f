//! Why a TURN allocation could not be made or kept, one variant per thing a user can act on.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::codec::TurnCodecError;

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("cannot reach TURN server {server} over TCP: {error}")]
    Connect {
        server: SocketAddr,
        error: io::Error,
    },
    #[error(
        "TURN server {server} rejected the credentials (401 Unauthorized): check the username \
         and password, or the shared secret the tracker uses"
    )]
    Unauthorized { server: SocketAddr },
    #[error("TURN server {server} refused the request (403 Forbidden: {reason})")]
    Forbidden { server: SocketAddr, reason: String },
    #[error("TURN server {server}: allocation quota reached (486: {reason})")]
    Quota { server: SocketAddr, reason: String },
    #[error(
        "TURN server {server} does not know this allocation (437 Allocation Mismatch: {reason})"
    )]
    Mismatch { server: SocketAddr, reason: String },
    #[error(
        "TURN server {server} does not relay TCP (442 Unsupported Transport Protocol); coturn \
         relays TCP unless started with --no-tcp-relay"
    )]
    NoTcpRelay { server: SocketAddr },
    #[error("TURN server {server} is out of capacity (508 Insufficient Capacity: {reason})")]
    Capacity { server: SocketAddr, reason: String },
    #[error("TURN server {server} answered error {code}: {reason}")]
    Refused {
        server: SocketAddr,
        code: u16,
        reason: String,
    },
    #[error("TURN server {server} did not answer within {waited:?}")]
    Timeout {
        server: SocketAddr,
        waited: Duration,
    },
    #[error("TURN server {server} closed the control connection; the allocation is gone")]
    Closed { server: SocketAddr },
    #[error("talking to TURN server {server}: {error}")]
    Io {
        server: SocketAddr,
        error: io::Error,
    },
    #[error("malformed message from TURN server {server}: {error}")]
    Malformed {
        server: SocketAddr,
        error: TurnCodecError,
    },
    #[error("cannot build a TURN request: {0}")]
    Request(TurnCodecError),
}

impl TurnError {
    /// The error for an error response with `code` (RFC 8656 §19, RFC 6062 §6.3).
    pub fn from_code(server: SocketAddr, code: u16, reason: String) -> Self {
        match code {
            401 => TurnError::Unauthorized { server },
            403 => TurnError::Forbidden { server, reason },
            437 => TurnError::Mismatch { server, reason },
            442 => TurnError::NoTcpRelay { server },
            486 => TurnError::Quota { server, reason },
            508 => TurnError::Capacity { server, reason },
            _ => TurnError::Refused {
                server,
                code,
                reason,
            },
        }
    }

    /// The server's error code, when it refused.
    pub fn code(&self) -> Option<u16> {
        match self {
            TurnError::Unauthorized { .. } => Some(401),
            TurnError::Forbidden { .. } => Some(403),
            TurnError::Mismatch { .. } => Some(437),
            TurnError::NoTcpRelay { .. } => Some(442),
            TurnError::Quota { .. } => Some(486),
            TurnError::Capacity { .. } => Some(508),
            TurnError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

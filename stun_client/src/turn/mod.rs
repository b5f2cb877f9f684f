//! TURN (RFC 8656) with TCP allocations (RFC 6062), client side: a peer nobody can reach
//! directly holds a relayed address on a TURN server (coturn, what operators run), and peers
//! connect to that address like to any other. The server announces each such connection on
//! the control connection and the holder binds a data connection for it; from then on the data
//! connection carries the peer's bytes and nothing else, so the peer protocol runs over it
//! unchanged and the connecting side needs no TURN code at all.
//!
//! `codec` is pure (bytes in, typed value out), `credentials` the long-term and REST-API kinds,
//! `allocation` the I/O: allocate, refresh, permissions, ConnectionAttempt -> ConnectionBind,
//! release.

mod allocation;
mod codec;
mod credentials;
mod error;

pub use allocation::{Permits, RelayedConnection, TcpAllocation, TurnConfig};
pub use codec::TurnCodecError;
pub use credentials::Credentials;
pub use error::TurnError;

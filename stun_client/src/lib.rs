//! STUN (RFC 5389/8489) Binding, client and server side: learn the public address a NAT maps a
//! socket to, probe the NAT's mapping behaviour, notice when the mapping changes, and answer
//! Binding requests; and a TURN client (RFC 8656, RFC 6062) for relayed TCP. It knows nothing of the tracker or the peer and must never depend on them.
//!
//! `codec` is pure (bytes in, typed value out); `binding` does the I/O of one transaction over
//! UDP or TCP; `nat` and `refresher` build on `binding`; `responder` is the server side, which
//! `tracker --stun` embeds so a small network needs no separate STUN server. `turn` is the
//! TURN client (TCP allocations) for peers no one can reach directly.

pub mod binding;
pub mod codec;
pub mod nat;
pub mod refresher;
pub mod responder;
pub mod turn;

pub use binding::{
    binding_tcp, binding_udp, reusable_tcp_socket, Binding, BindingConfig, BindingError,
};

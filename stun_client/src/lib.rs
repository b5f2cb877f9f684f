//! STUN (RFC 5389/8489) Binding, client and server side: learn the public address a NAT maps a
//! socket to, probe the NAT's mapping behaviour, notice when the mapping changes, and answer
//! Binding requests. It knows nothing of the tracker or the peer and must never depend on them.
//!
//! `codec` is pure (bytes in, typed value out); `binding` does the I/O of one transaction over
//! UDP or TCP; `nat` and `refresher` build on `binding`; `responder` is the server side, which
//! `tracker --stun` embeds so a small network needs no separate STUN server.

pub mod binding;
pub mod codec;
pub mod nat;
pub mod refresher;
pub mod responder;

pub use binding::{
    binding_tcp, binding_udp, reusable_tcp_socket, Binding, BindingConfig, BindingError,
};

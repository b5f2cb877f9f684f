//! STUN (RFC 5389/8489) for peers behind NATs: learn the public address a NAT maps a socket to,
//! probe the NAT's mapping behaviour, notice when the mapping changes, and answer Binding
//! requests so a small network needs no separate STUN server.
//!
//! `codec` is pure (bytes in, typed value out); `binding` does the I/O of one transaction over
//! UDP or TCP; `nat` and `refresher` build on `binding`; `responder` is the server side.

pub mod binding;
pub mod codec;
pub mod nat;
pub mod refresher;
pub mod responder;

pub use binding::{
    binding_tcp, binding_udp, reusable_tcp_socket, Binding, BindingConfig, BindingError,
};

//! STUN (RFC 5389/8489) for peers behind NATs: learn the public address a NAT maps a socket to,
//! probe the NAT's mapping behaviour, notice when the mapping changes, and answer Binding
//! requests so a small network needs no separate STUN server.

pub mod responder;

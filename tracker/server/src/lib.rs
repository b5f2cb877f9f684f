//! The UDP tracker of the p2p file-sharing system: the swarm store, the request handler and the
//! batched UDP server behind the `tracker` binary. It speaks the protocol of `tracker-proto` and
//! must never be a dependency of the peer, which needs only that crate.
//!
//! [`Tracker::handle`] is the protocol decision without I/O, over a [`store::SwarmStore`];
//! [`serve`] runs it on UDP sockets from [`bind_sockets`]; [`ServerConfig`] is every knob.

#[cfg(target_os = "linux")]
pub mod batch;
mod config;
pub mod cookie;
pub mod file_index;
mod handler;
pub mod host;
pub mod http;
pub mod metrics;
mod rate_limit;
pub mod store;
mod udp;

pub use config::{
    RelayConfig, ServerConfig, DEFAULT_CREDENTIAL_TTL, MAX_INTERVAL_SECS, MIN_RESPONSE_BYTES,
};
pub use handler::{Outcome, Refused, Reply, Tracker};
pub use udp::{bind_sockets, serve};

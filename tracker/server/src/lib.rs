//! The UDP tracker of the p2p file-sharing system: the swarm store, the request handler and the
//! batched UDP server behind the `tracker` binary. It speaks the protocol of `tracker-proto` and
//! must never be a dependency of the peer, which needs only that crate.

#[cfg(target_os = "linux")]
pub mod batch;
pub mod cookie;
pub mod server;
pub mod store;

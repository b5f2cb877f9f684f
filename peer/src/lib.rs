//! The peer: chunked sharing, the TCP peer wire protocol, verified multi-peer downloads, the
//! console and the daemon.

pub mod connection;
pub mod daemon;
pub mod download;
pub mod manifest;
pub mod serve;
pub mod share;
pub mod store;
pub mod wire;

pub mod address;
pub mod console;
pub mod punch;
pub mod stats;

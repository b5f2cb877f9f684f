//! The peer engine: everything a peer does, driven by the `peer` command's console, subcommands
//! and daemon alike. It promises verified transfers (no byte is written or served before it
//! matches the manifest) and never depends on a terminal, clap or the tracker's server.
//!
//! - [`share`]: the share directory on disk (layout, manifests, resume records, staging);
//!   [`manifest`], [`bitfield`] and [`name`] are the values it stores.
//! - [`wire`] (the pure codec of protocol.txt §2) and [`connection`] (its buffered I/O).
//! - [`swarm`]: one file's connections, carrying chunks both ways, its picker and choker;
//!   [`serve`]: the TCP server that hands connections to swarms; [`download`]: joining a swarm
//!   and driving it to a complete file; [`publish`]: flag 4.
//! - [`metainfo`] (`NAME.p2p`, BEP 3-shaped) and [`magnet`] links: how a share is named to
//!   others.
//! - [`reach`]: the announced address and NAT traversal; [`node`]: what a daemon runs.

pub mod bitfield;
pub mod chunking;
pub mod connection;
pub mod download;
pub mod magnet;
pub mod manifest;
pub mod metainfo;
pub mod metrics;
pub mod name;
pub mod node;
pub mod publish;
pub mod rate;
pub mod reach;
pub mod serve;
pub mod share;
pub mod storage;
pub mod swarm;
pub mod wire;

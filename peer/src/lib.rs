//! The peer: chunked sharing, the TCP peer wire protocol, verified multi-peer downloads, the
//! console and the daemon.

//! What shapes the tracker's behaviour, as one typed value; the binary maps its flags onto it.

use std::time::Duration;

use tracker_proto::AnnounceIntervals;

use crate::store::Limits;

/// Everything that shapes the tracker's behaviour; the binary maps its flags onto this.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Peers silent for longer than this are no longer listed and their rows are freed.
    pub ttl: Duration,
    /// Accept announced addresses whose IP is not the datagram's source (LAN demos only).
    pub trust_ip_field: bool,
    /// Require cookies from every source, including loopback and private ones.
    pub require_cookies: bool,
    /// Largest answer datagram; longer listings are paged.
    pub max_response_bytes: usize,
    /// Answer STUN Binding requests arriving on the tracker port.
    pub stun: bool,
    pub limits: Limits,
    /// PUNCH relays per second allowed per source IP (burst of twice as many).
    pub punch_rate: u32,
    /// What RESPONSE 1/2 tell downloaders about refreshing (`interval=`, `min_interval=`).
    pub intervals: AnnounceIntervals,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ttl: Duration::from_secs(90),
            trust_ip_field: false,
            require_cookies: false,
            max_response_bytes: 1400,
            stun: false,
            limits: Limits::default(),
            punch_rate: 10,
            intervals: AnnounceIntervals::DEFAULT,
        }
    }
}

/// Smallest accepted `max_response_bytes`: the longest peer-list header (255-byte name, every
/// number at its widest, intervals at [`MAX_INTERVAL_SECS`]: 501 bytes) and the longest peer
/// line (IPv6 address and 200 bytes of ranges: 249 bytes) must fit, or a page could hold nothing.
pub const MIN_RESPONSE_BYTES: usize = 768;

/// Longest announce interval a tracker may hand out (a day): longer would leave downloaders
/// with a peer list older than any peer's TTL.
pub const MAX_INTERVAL_SECS: u32 = 86_400;

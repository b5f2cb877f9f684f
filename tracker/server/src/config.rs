//! What shapes the tracker's behaviour, as one typed value; the binary maps its flags onto it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tracker_proto::AnnounceIntervals;

use crate::store::Limits;

/// The TURN relay the tracker hands to peers (flag 10, protocol.txt §5.2), so that peers behind
/// NATs nobody can get through need no relay configuration of their own.
#[derive(Clone)]
pub struct RelayConfig {
    /// The TURN server (coturn), reached by peers over TCP.
    pub server: SocketAddr,
    /// coturn's `--static-auth-secret`: short-lived REST-API credentials are minted from it.
    pub secret: String,
    /// How long minted credentials stay valid.
    pub credential_ttl: Duration,
    /// IPs whose addresses announcements may carry although they are not the sender's: the
    /// TURN server's relayed addresses (§1.7). The server's own IP is always among them.
    pub relay_ips: Vec<IpAddr>,
}

impl fmt::Debug for RelayConfig {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConfig")
            .field("server", &self.server)
            .field("credential_ttl", &self.credential_ttl)
            .field("relay_ips", &self.relay_ips)
            .finish_non_exhaustive()
    }
}

/// Default lifetime of the TURN credentials the tracker mints: a day, as the TURN REST API
/// draft suggests; peers ask again before it ends.
pub const DEFAULT_CREDENTIAL_TTL: Duration = Duration::from_secs(86_400);

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
    /// The TURN relay offered to peers, if any.
    pub relay: Option<RelayConfig>,
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
            relay: None,
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

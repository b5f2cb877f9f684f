//! What this peer knows about its own NAT, learned only when a punch failed, to tell the user
//! which side is the problem.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use log::debug;
use tokio::net::UdpSocket;

/// What this peer knows about its own NAT, for error messages that tell the user why a peer
/// could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnNat {
    /// Nothing learned (no STUN server configured or none answered).
    Unknown,
    /// STUN reported our local address: no NAT in front of us.
    NoNat,
    /// Every STUN server saw the same public address: a cone NAT, punchable.
    EndpointIndependent,
    /// STUN servers saw different public ports: a symmetric NAT, which hole punching cannot
    /// traverse towards another filtering NAT.
    Symmetric,
}

impl OwnNat {
    pub(super) fn describe(self) -> &'static str {
        match self {
            OwnNat::Unknown => {
                "this peer's NAT type is unknown (no STUN answer), so either side may be behind a \
                 symmetric NAT, or the other peer is gone"
            }
            OwnNat::NoNat => {
                "this peer is not behind a NAT, so the other peer is behind a NAT that drops these \
                 attempts (symmetric, or filtering without hole punching), or is gone"
            }
            OwnNat::EndpointIndependent => {
                "this peer is behind a cone NAT (endpoint-independent mapping), so the other peer is \
                 probably behind a symmetric NAT, or is gone"
            }
            OwnNat::Symmetric => {
                "this peer is behind a symmetric NAT (a new public port per destination), which hole \
                 punching cannot traverse when the other peer's NAT filters too"
            }
        }
    }

    /// Learns our NAT's mapping behaviour (stun-probe --probe-nat) from a throwaway UDP socket:
    /// the serving port's TCP mapping is the STUN refresher's to ask, and two connections with
    /// one address pair cannot coexist. A NAT maps UDP and TCP alike in practice (the same
    /// MASQUERADE rule on Linux routers). `servers[1]`, if given, is the second server;
    /// otherwise the first one's RFC 5780 OTHER-ADDRESS. Servers are `HOST:PORT`.
    pub async fn probe(servers: &[String]) -> OwnNat {
        let mut resolved = Vec::new();
        for spec in servers.iter().take(2) {
            let lookup = tokio::net::lookup_host(spec.as_str());
            match tokio::time::timeout(Duration::from_secs(2), lookup).await {
                Ok(Ok(mut addrs)) => resolved.extend(addrs.next()),
                Ok(Err(e)) => debug!("punch: cannot resolve STUN server {spec}: {e}"),
                Err(_) => debug!("punch: resolving STUN server {spec} timed out"),
            }
        }
        let Some(&first) = resolved.first() else {
            return OwnNat::Unknown;
        };
        let servers = resolved;
        let any = if first.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        let socket = match UdpSocket::bind((any, 0)).await {
            Ok(s) => s,
            Err(e) => {
                debug!("punch: no UDP socket for the NAT probe: {e}");
                return OwnNat::Unknown;
            }
        };
        // Short timers: this runs on the failure path, only to explain the failure.
        let config = stun::BindingConfig {
            rto: Duration::from_millis(250),
            max_requests: 4,
            last_wait_factor: 4,
            ..Default::default()
        };
        match stun::nat::probe_udp(&socket, first, servers.get(1).copied(), &config).await {
            Ok(report) => match report.mapping {
                stun::nat::Mapping::NotBehindNat => OwnNat::NoNat,
                stun::nat::Mapping::EndpointIndependent => OwnNat::EndpointIndependent,
                stun::nat::Mapping::EndpointDependent => OwnNat::Symmetric,
            },
            Err(e) => {
                debug!("punch: NAT probe via {first}: {e}");
                OwnNat::Unknown
            }
        }
    }
}

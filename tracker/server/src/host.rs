//! What counts as one host for quotas and rate limits (protocol.txt §1.9): an IPv4 address, or an
//! IPv6 /64. A site is handed a whole /64 and may rotate through 2^64 addresses, so a limit per
//! IPv6 address would limit nothing.

use std::net::{IpAddr, Ipv6Addr};

/// One host: an IPv4 address or the first 64 bits of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl Host {
    /// The host `ip` belongs to; an IPv4-mapped IPv6 address is its IPv4 address.
    pub fn of(ip: IpAddr) -> Host {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Host::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                Host::V6Prefix(prefix)
            }
        }
    }

    /// An address of this host (an IPv6 /64's first), from which [`Host::of`] gives it back:
    /// how a state file names a host.
    pub fn ip(&self) -> IpAddr {
        match *self {
            Host::V4(octets) => IpAddr::from(octets),
            Host::V6Prefix(prefix) => {
                let mut octets = [0u8; 16];
                octets[..8].copy_from_slice(&prefix);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_64_is_one_host_and_mapped_ipv4_is_ipv4() {
        let host = |s: &str| Host::of(s.parse().unwrap());
        assert_eq!(host("2001:db8:1:2::1"), host("2001:db8:1:2:ffff::9"));
        assert_ne!(host("2001:db8:1:2::1"), host("2001:db8:1:3::1"));
        assert_eq!(host("::ffff:10.0.0.1"), host("10.0.0.1"));
        assert_ne!(host("10.0.0.1"), host("10.0.0.2"));
    }

    #[test]
    fn a_host_comes_back_from_its_ip() {
        for ip in [
            "10.0.0.1",
            "2001:db8:1:2::9",
            "::ffff:10.0.0.1",
            "::1",
            "::",
        ] {
            let host = Host::of(ip.parse().unwrap());
            assert_eq!(Host::of(host.ip()), host, "{ip}");
        }
    }
}

//! NAT mapping behaviour (RFC 5780 §4.3): does the NAT give one local address the same public
//! address towards every destination (endpoint-independent: others can reach us at the address
//! STUN reports) or a new one per destination ("symmetric": the reported address is useless to
//! anyone but the STUN server, and hole punching by prediction is out of reach)?
//!
//! Two Binding requests leave the same local address towards two server addresses: the one the
//! caller gives, or the server's RFC 5780 OTHER-ADDRESS (its alternate IP, same port).

use std::fmt;
use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::binding::{binding_tcp, binding_udp, Binding, BindingConfig, BindingError};
use crate::codec::canonical;

/// How the NAT in front of us maps one local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// The server sees our local address: there is no NAT (or one that preserves addresses).
    NotBehindNat,
    /// The same public address towards both servers: reachable at the mapped address.
    EndpointIndependent,
    /// A different public address per destination ("symmetric NAT").
    EndpointDependent,
}

impl Mapping {
    /// Whether the mapping differs per destination, so the STUN address cannot be shared.
    pub fn is_symmetric(self) -> bool {
        self == Mapping::EndpointDependent
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mapping::NotBehindNat => "not behind NAT",
            Mapping::EndpointIndependent => "endpoint-independent mapping",
            Mapping::EndpointDependent => "endpoint-dependent mapping (symmetric NAT)",
        })
    }
}

/// What the probe observed and concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatReport {
    /// Our local address as the network layer uses it (a concrete IP, even for a socket bound
    /// to `0.0.0.0`).
    pub local: SocketAddr,
    /// The answer of the first server.
    pub first: Binding,
    /// The answer of the second server address; `None` when the first showed there is no NAT.
    pub second: Option<Binding>,
    pub mapping: Mapping,
}

/// Why the probe reached no conclusion.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Binding(#[from] BindingError),
    #[error("server {0} offers no OTHER-ADDRESS (RFC 5780); give a second STUN server")]
    NoSecondServer(SocketAddr),
    #[error("cannot determine the local address towards {server}: {error}")]
    LocalAddress {
        server: SocketAddr,
        error: io::Error,
    },
}

/// The pure decision of RFC 5780 §4.3 from the local address and the two mappings seen.
pub fn classify(local: SocketAddr, first: SocketAddr, second: Option<SocketAddr>) -> Mapping {
    if canonical(first) == canonical(local) {
        Mapping::NotBehindNat
    } else if second.is_none() || second == Some(first) {
        Mapping::EndpointIndependent
    } else {
        Mapping::EndpointDependent
    }
}

/// Probes the mapping of `socket` over UDP. `second` is another server address; when `None`,
/// the first server's OTHER-ADDRESS is used (its IP with the first server's port, as RFC 5780
/// test II does).
pub async fn probe_udp(
    socket: &UdpSocket,
    server: SocketAddr,
    second: Option<SocketAddr>,
    config: &BindingConfig,
) -> Result<NatReport, ProbeError> {
    let first = binding_udp(socket, server, config).await?;
    let local = concrete_local(first.local, server).await?;
    if classify(local, first.mapped(), None) == Mapping::NotBehindNat {
        return Ok(report(local, first, None));
    }
    let second_server = second_server(&first, second)?;
    let second = binding_udp(socket, second_server, config).await?;
    Ok(report(local, first, Some(second)))
}

/// Probes the mapping of TCP connections from `local`, typically the serving port. Both
/// connections leave from the same port: with port 0, the second reuses the first one's.
pub async fn probe_tcp(
    local: SocketAddr,
    server: SocketAddr,
    second: Option<SocketAddr>,
    config: &BindingConfig,
) -> Result<NatReport, ProbeError> {
    let first = binding_tcp(local, server, config).await?;
    let local = first.local;
    if classify(local, first.mapped(), None) == Mapping::NotBehindNat {
        return Ok(report(local, first, None));
    }
    let second_server = second_server(&first, second)?;
    let second = binding_tcp(local, second_server, config).await?;
    Ok(report(local, first, Some(second)))
}

fn report(local: SocketAddr, first: Binding, second: Option<Binding>) -> NatReport {
    let mapping = classify(local, first.mapped(), second.as_ref().map(Binding::mapped));
    NatReport {
        local,
        first,
        second,
        mapping,
    }
}

fn second_server(first: &Binding, second: Option<SocketAddr>) -> Result<SocketAddr, ProbeError> {
    match (second, first.reply.other_address) {
        (Some(second), _) => Ok(second),
        (None, Some(other)) => Ok(SocketAddr::new(other.ip(), first.server.port())),
        (None, None) => Err(ProbeError::NoSecondServer(first.server)),
    }
}

/// A socket bound to `0.0.0.0` sends from the IP of the route towards the server; connecting a
/// throwaway UDP socket asks the kernel for that IP without sending anything.
pub async fn concrete_local(
    local: SocketAddr,
    server: SocketAddr,
) -> Result<SocketAddr, ProbeError> {
    if !local.ip().is_unspecified() {
        return Ok(local);
    }
    let error = |error| ProbeError::LocalAddress { server, error };
    let unspecified = SocketAddr::new(local.ip(), 0);
    let probe = UdpSocket::bind(unspecified).await.map_err(error)?;
    probe.connect(server).await.map_err(error)?;
    let routed = probe.local_addr().map_err(error)?;
    Ok(SocketAddr::new(routed.ip(), local.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_mappings() {
        let local = addr("10.0.0.2:6881");
        assert_eq!(classify(local, local, None), Mapping::NotBehindNat);
        let ipv6_mapped = addr("[::ffff:10.0.0.2]:6881");
        assert_eq!(classify(ipv6_mapped, local, None), Mapping::NotBehindNat);
        let public = addr("203.0.113.5:40000");
        assert_eq!(classify(local, public, None), Mapping::EndpointIndependent);
        assert_eq!(
            classify(local, public, Some(public)),
            Mapping::EndpointIndependent
        );
        let other = addr("203.0.113.5:40001");
        assert_eq!(
            classify(local, public, Some(other)),
            Mapping::EndpointDependent
        );
        assert!(Mapping::EndpointDependent.is_symmetric());
        assert!(!Mapping::EndpointIndependent.is_symmetric());
    }
}

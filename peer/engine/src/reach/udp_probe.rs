//! STUN over UDP from the serving port number (RFC 5389 from port 6881, as the seed asks), once
//! per refresh period, for two reasons: most public STUN servers answer over UDP only, so the
//! UDP mapping is the best guess of the serving port's TCP mapping when TCP gets no answer
//! (see [`super::address::follow`]); and asking two server addresses from one socket tells an
//! endpoint-dependent ("symmetric") NAT apart (RFC 5780 §4.3), which decides whether this peer
//! needs a relay (section 5 of protocol.txt).
//!
//! One task owns the socket and asks the servers one after the other: two transactions reading
//! one socket at once would eat each other's answers.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use stun::binding::{binding_udp, BindingConfig};
use stun::nat::{classify, concrete_local, Mapping};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::address::Sighting;
use super::own_nat::OwnNat;

/// Short timers: a round must end well inside the refresh period even when a server is dead
/// (0.25 + 0.5 + 1 s between requests, 1 s more for the last answer: under 3 s).
fn binding_config() -> BindingConfig {
    BindingConfig {
        rto: Duration::from_millis(250),
        max_requests: 4,
        last_wait_factor: 4,
        ..BindingConfig::default()
    }
}

/// A UDP socket on the serving address (same IP, same port number: a NAT that preserves ports
/// maps it like the TCP one), or any port when that one is taken.
pub(super) async fn bind(listen: SocketAddr) -> io::Result<UdpSocket> {
    match UdpSocket::bind(listen).await {
        Ok(socket) => Ok(socket),
        Err(e) => {
            log::debug!(
                "UDP port {} is taken ({e}); STUN over UDP from any port",
                listen.port()
            );
            UdpSocket::bind(SocketAddr::new(listen.ip(), 0)).await
        }
    }
}

/// The NAT type one round shows: the local address and the mappings seen towards two
/// destinations (the second may be missing).
pub(super) fn nat_of(local: SocketAddr, first: SocketAddr, second: Option<SocketAddr>) -> OwnNat {
    match (classify(local, first, second), second) {
        (Mapping::NotBehindNat, _) => OwnNat::NoNat,
        (Mapping::EndpointDependent, _) => OwnNat::Symmetric,
        (Mapping::EndpointIndependent, Some(_)) => OwnNat::EndpointIndependent,
        // One destination cannot tell endpoint-independent from symmetric.
        (Mapping::EndpointIndependent, None) => OwnNat::Unknown,
    }
}

/// Every `period`: a Binding to each server (reported as [`Sighting::Udp`]) and, with a single
/// server, to its RFC 5780 OTHER-ADDRESS; publishes the NAT type on `nat` when it changes.
pub(super) async fn run(
    socket: UdpSocket,
    servers: Vec<SocketAddr>,
    period: Duration,
    sightings: mpsc::Sender<Sighting>,
    nat: watch::Sender<OwnNat>,
) {
    let config = binding_config();
    let Ok(bound) = socket.local_addr() else {
        return;
    };
    loop {
        let mut mappings: Vec<SocketAddr> = Vec::new();
        let mut other_address = None;
        for (index, &server) in servers.iter().enumerate() {
            let mapped = match binding_udp(&socket, server, &config).await {
                Ok(binding) => {
                    if index == 0 {
                        other_address = binding.reply.other_address;
                    }
                    mappings.push(binding.mapped());
                    Some(binding.mapped())
                }
                Err(e) => {
                    log::debug!("STUN over UDP: {e}");
                    None
                }
            };
            if sightings.send(Sighting::Udp(index, mapped)).await.is_err() {
                return;
            }
        }
        if let (1, [_], Some(other)) = (servers.len(), mappings.as_slice(), other_address) {
            // RFC 5780 test II: the server's other IP, its primary port.
            let second = SocketAddr::new(other.ip(), servers[0].port());
            match binding_udp(&socket, second, &config).await {
                Ok(binding) => mappings.push(binding.mapped()),
                Err(e) => log::debug!("STUN over UDP to OTHER-ADDRESS {second}: {e}"),
            }
        }
        if let (Some(&first), Some(&server)) = (mappings.first(), servers.first()) {
            let local = concrete_local(bound, server).await.unwrap_or(bound);
            let seen = nat_of(
                local,
                first,
                mappings
                    .iter()
                    .copied()
                    .find(|m| *m != first)
                    .or(mappings.get(1).copied()),
            );
            let before = *nat.borrow();
            if seen != before && seen != OwnNat::Unknown {
                log::info!("NAT type from STUN over UDP: {seen:?} (mappings {mappings:?})");
                nat.send_replace(seen);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = nat.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_round_names_the_nat() {
        let local = addr("10.0.0.2:6881");
        let public = addr("203.0.113.5:6881");
        assert_eq!(nat_of(local, local, None), OwnNat::NoNat);
        assert_eq!(
            nat_of(local, public, Some(public)),
            OwnNat::EndpointIndependent
        );
        assert_eq!(
            nat_of(local, public, Some(addr("203.0.113.5:41234"))),
            OwnNat::Symmetric
        );
        assert_eq!(nat_of(local, public, None), OwnNat::Unknown);
    }
}

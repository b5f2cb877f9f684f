//! Router port mapping, on by default as in Transmission: ask the home router to forward the
//! serving port, with UPnP IGD (`igd-next`) or NAT-PMP / PCP (`crab_nat`, RFC 6886 / 6887),
//! so peers connect to us directly instead of punching or relaying. The mapping is renewed at
//! half its lease and deleted when the peer stops; a router that speaks neither costs one debug
//! line and no delay (all of this runs beside the peer, never before it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::time::Duration;

use crab_nat::{InternetProtocol, PortMapping, PortMappingOptions, TimeoutConfig};
use igd_next::aio::tokio::Tokio;
use igd_next::aio::Gateway;
use igd_next::{PortMappingProtocol, SearchOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Lease asked of the router; renewed at half of it.
const LEASE: Duration = Duration::from_secs(3600);
/// How long finding a router may take (SSDP search, NAT-PMP/PCP requests).
const DISCOVERY: Duration = Duration::from_secs(2);
/// Pause before trying again after the router refused or vanished.
const RETRY: Duration = Duration::from_secs(300);
const DESCRIPTION: &str = "p2p peer";

/// The default gateway of the IPv4 routing table (Linux `/proc/net/route`: hex fields,
/// little-endian addresses), the router NAT-PMP and PCP talk to.
pub fn default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    route_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, gateway) = (fields.get(1)?, fields.get(2)?);
        if *destination != "00000000" {
            return None;
        }
        let raw = u32::from_str_radix(gateway, 16).ok()?;
        (raw != 0).then(|| Ipv4Addr::from(raw.swap_bytes()))
    })
}

/// Whether a router's external address can be announced: behind a second NAT (a carrier's,
/// or a modem's) the router's "external" IP is private and a mapping on it reaches nobody.
/// STUN's view, when known, must agree.
pub fn usable_external(external: SocketAddr, stun_public: Option<IpAddr>) -> bool {
    let ip = external.ip();
    let private = match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                // RFC 6598 shared address space (carrier-grade NAT).
                || (v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]))
        }
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
    };
    !private && stun_public.is_none_or(|stun| stun == ip)
}

/// A mapping the router holds for us.
enum Held {
    Upnp {
        gateway: Gateway<Tokio>,
        external: SocketAddr,
        /// Our LAN address the router forwards to.
        local: SocketAddr,
    },
    Pmp {
        mapping: PortMapping,
        external: SocketAddr,
    },
}

impl Held {
    fn external(&self) -> SocketAddr {
        match self {
            Held::Upnp { external, .. } | Held::Pmp { external, .. } => *external,
        }
    }

    fn how(&self) -> &'static str {
        match self {
            Held::Upnp { .. } => "UPnP IGD",
            Held::Pmp { mapping, .. } => match mapping.mapping_type() {
                crab_nat::PortMappingType::NatPmp => "NAT-PMP",
                crab_nat::PortMappingType::Pcp { .. } => "PCP",
            },
        }
    }

    async fn renew(&mut self) -> Result<(), String> {
        match self {
            Held::Upnp {
                gateway,
                external,
                local,
            } => gateway
                .add_port(
                    PortMappingProtocol::TCP,
                    external.port(),
                    *local,
                    LEASE.as_secs() as u32,
                    DESCRIPTION,
                )
                .await
                .map_err(|e| e.to_string()),
            Held::Pmp { mapping, .. } => mapping.renew().await.map_err(|e| e.to_string()),
        }
    }

    async fn remove(self) {
        let result = match self {
            Held::Upnp {
                gateway, external, ..
            } => gateway
                .remove_port(PortMappingProtocol::TCP, external.port())
                .await
                .map_err(|e| e.to_string()),
            Held::Pmp { mapping, .. } => mapping.try_drop().await.map_err(|(e, _)| e.to_string()),
        };
        match result {
            Ok(()) => log::info!("port mapping removed from the router"),
            Err(e) => log::warn!("removing the port mapping from the router: {e}"),
        }
    }
}

/// The LAN address the router forwards to: our IP on the route towards `gateway`.
async fn local_towards(gateway: IpAddr, port: u16) -> Option<SocketAddr> {
    let probe = tokio::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .await
        .ok()?;
    probe.connect((gateway, 9)).await.ok()?;
    Some(SocketAddr::new(probe.local_addr().ok()?.ip(), port))
}

async fn map_upnp(port: u16) -> Result<Held, String> {
    let mut options = SearchOptions::default();
    options.timeout = Some(DISCOVERY);
    options.single_search_timeout = Some(DISCOVERY);
    let gateway = igd_next::aio::tokio::search_gateway(options)
        .await
        .map_err(|e| format!("UPnP: {e}"))?;
    let local = local_towards(gateway.addr.ip(), port)
        .await
        .ok_or("UPnP: no route to the gateway")?;
    let external_ip = gateway
        .get_external_ip()
        .await
        .map_err(|e| format!("UPnP: external address: {e}"))?;
    let lease = LEASE.as_secs() as u32;
    let external_port = match gateway
        .add_port(PortMappingProtocol::TCP, port, local, lease, DESCRIPTION)
        .await
    {
        Ok(()) => port,
        // The same external port is taken (another host's peer): let the router pick one.
        Err(_) => gateway
            .add_any_port(PortMappingProtocol::TCP, local, lease, DESCRIPTION)
            .await
            .map_err(|e| format!("UPnP: mapping: {e}"))?,
    };
    Ok(Held::Upnp {
        gateway,
        external: SocketAddr::new(external_ip, external_port),
        local,
    })
}

async fn map_pmp(port: u16) -> Result<Held, String> {
    // A small procfs file: no disk behind it, so reading it cannot block the worker.
    let table = std::fs::read_to_string("/proc/net/route")
        .map_err(|e| format!("NAT-PMP/PCP: no routing table: {e}"))?;
    let gateway = IpAddr::V4(default_gateway(&table).ok_or("NAT-PMP/PCP: no default gateway")?);
    let local = local_towards(gateway, port)
        .await
        .ok_or("NAT-PMP/PCP: no route to the gateway")?;
    let internal = NonZeroU16::new(port).ok_or("NAT-PMP/PCP: port 0")?;
    let timeouts = TimeoutConfig {
        initial_timeout: Duration::from_millis(250),
        max_retries: 2,
        max_retry_timeout: Some(DISCOVERY),
    };
    let options = PortMappingOptions {
        external_port: Some(internal),
        lifetime_seconds: Some(LEASE.as_secs() as u32),
        timeout_config: Some(timeouts),
    };
    let mapping = PortMapping::new(
        gateway.into(),
        local.ip(),
        InternetProtocol::Tcp,
        internal,
        options,
    )
    .await
    .map_err(|e| format!("NAT-PMP/PCP: {e}"))?;
    let external_ip = match mapping.mapping_type() {
        crab_nat::PortMappingType::Pcp { external_ip, .. } => external_ip,
        crab_nat::PortMappingType::NatPmp => {
            crab_nat::natpmp::external_address(gateway.into(), Some(timeouts))
                .await
                .map(IpAddr::V4)
                .map_err(|e| format!("NAT-PMP: external address: {e}"))?
        }
    };
    let external = SocketAddr::new(external_ip, mapping.external_port().get());
    Ok(Held::Pmp { mapping, external })
}

/// Keeps a router mapping of TCP `listen.port()` while `stop` is not cancelled, publishing the
/// external address on `out` (`None` while there is none). `stun` is the public address STUN
/// learned, to tell a router behind another NAT.
pub async fn run(
    listen: SocketAddr,
    stun: watch::Receiver<SocketAddr>,
    out: watch::Sender<Option<SocketAddr>>,
    stop: CancellationToken,
) {
    if listen.ip().is_loopback() {
        log::debug!("port mapping: not for a loopback listener");
        return;
    }
    let port = listen.port();
    loop {
        let attempt = async {
            match map_upnp(port).await {
                Ok(held) => Ok(held),
                Err(upnp) => map_pmp(port).await.map_err(|pmp| format!("{upnp}; {pmp}")),
            }
        };
        let held = tokio::select! {
            held = attempt => held,
            _ = stop.cancelled() => return,
        };
        let mut held = match held {
            Ok(held) => held,
            Err(why) => {
                log::debug!("no router port mapping ({why})");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        let stun_ip = Some(*stun.borrow())
            .filter(|a| !a.ip().is_unspecified())
            .map(|a| a.ip());
        if !usable_external(held.external(), stun_ip) {
            log::info!(
                "port mapping: the router ({}) reports external address {}, but STUN sees {}: \
                 another NAT is in front of it; not announcing the mapping",
                held.how(),
                held.external(),
                stun_ip.map_or("nothing yet".to_owned(), |ip| ip.to_string())
            );
            held.remove().await;
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => continue,
                _ = stop.cancelled() => return,
            }
        }
        log::info!(
            "port mapping: TCP {port} forwarded from {} by {}; announcing it",
            held.external(),
            held.how()
        );
        out.send_replace(Some(held.external()));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(LEASE / 2) => {}
                _ = stop.cancelled() => {
                    out.send_replace(None);
                    held.remove().await;
                    return;
                }
            }
            if let Err(e) = held.renew().await {
                log::warn!("port mapping: renewing with the router failed ({e}); looking again");
                out.send_replace(None);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_default_gateway_in_the_route_table() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0007000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth0\t00000000\t0107000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_gateway(table), Some(Ipv4Addr::new(10, 0, 7, 1)));
        assert_eq!(default_gateway("Iface\tDestination\tGateway\n"), None);
        assert_eq!(default_gateway("garbage"), None);
    }

    #[test]
    fn a_router_behind_another_nat_is_not_announced() {
        let public: SocketAddr = "203.0.113.17:6881".parse().unwrap();
        assert!(usable_external(public, None));
        assert!(usable_external(public, Some(public.ip())));
        assert!(!usable_external(
            public,
            Some("203.0.113.99".parse().unwrap())
        ));
        for private in [
            "192.168.1.2:6881",
            "10.1.1.1:6881",
            "100.64.0.9:6881",
            "0.0.0.0:6881",
        ] {
            assert!(
                !usable_external(private.parse().unwrap(), None),
                "{private}"
            );
        }
    }
}

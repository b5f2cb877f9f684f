//! Interop with coturn (`turnserver`, Debian package `coturn`): our client against a real STUN
//! server over UDP and TCP, including RFC 5780 OTHER-ADDRESS. `stun-probe` has its own coturn
//! tests in its package.

mod coturn_server;

use std::net::{IpAddr, SocketAddr};

use coturn_server::{free_port, loopback, Coturn};
use stun::binding::{binding_tcp, binding_udp, BindingConfig};
use stun::nat::{probe_tcp, probe_udp, Mapping};
use tokio::net::UdpSocket;

#[tokio::test]
async fn udp_binding_against_coturn() {
    let coturn = Coturn::start(&[loopback()]).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let binding = binding_udp(&socket, coturn.primary, &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(binding.mapped(), socket.local_addr().unwrap());
    assert!(binding.reply.from_xor);
    assert!(binding
        .reply
        .software
        .as_deref()
        .is_some_and(|s| s.contains("oturn")));
}

#[tokio::test]
async fn tcp_binding_against_coturn_from_a_fixed_port() {
    let coturn = Coturn::start(&[loopback()]).await;
    let port = free_port(&[loopback()]);
    let local = SocketAddr::new(loopback(), port);
    for _ in 0..3 {
        let binding = binding_tcp(local, coturn.primary, &BindingConfig::default())
            .await
            .unwrap();
        assert_eq!(binding.mapped(), local);
    }
}

#[tokio::test]
async fn rfc5780_other_address_and_nat_probe_against_coturn() {
    let second_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let coturn = Coturn::start(&[loopback(), second_ip]).await;
    let alternate = coturn.alternate.unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let config = BindingConfig::default();
    let binding = binding_udp(&socket, coturn.primary, &config).await.unwrap();
    assert_eq!(binding.reply.other_address, Some(alternate));
    // The alternate address answers too, with the same (unNATed) mapping.
    let other = binding_udp(&socket, alternate, &config).await.unwrap();
    assert_eq!(other.mapped(), socket.local_addr().unwrap());

    let report = probe_udp(&socket, coturn.primary, None, &config)
        .await
        .unwrap();
    assert_eq!(report.mapping, Mapping::NotBehindNat);
    assert_eq!(report.local, socket.local_addr().unwrap());

    // From a socket bound to 0.0.0.0 the probe still finds the concrete local address.
    let any = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let report = probe_udp(&any, coturn.primary, None, &config)
        .await
        .unwrap();
    assert_eq!(report.mapping, Mapping::NotBehindNat);
    assert_eq!(report.local.ip(), loopback());

    let local = SocketAddr::new(loopback(), free_port(&[loopback()]));
    let report = probe_tcp(local, coturn.primary, Some(alternate), &config)
        .await
        .unwrap();
    assert_eq!(report.mapping, Mapping::NotBehindNat);
}

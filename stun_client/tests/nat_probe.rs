//! The NAT mapping probe over real sockets against scripted servers that play a NAT's part:
//! they report chosen mapped addresses, so endpoint-independent and symmetric mappings can be
//! shown on loopback (the NAT lab shows them through real NATs).

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use stun::binding::BindingConfig;
use stun::codec::{decode_request, Request, TransactionId};
use stun::nat::{probe_tcp, probe_udp, Mapping, ProbeError};
use stun_rs::attributes::discovery::OtherAddress;
use stun_rs::attributes::stun::XorMappedAddress;
use stun_rs::methods::BINDING;
use stun_rs::{MessageClass, MessageEncoderBuilder, StunMessageBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

fn answer(tid: TransactionId, mapped: SocketAddr, other: Option<SocketAddr>) -> Vec<u8> {
    let mut builder = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
        .with_transaction_id(tid)
        .with_attribute(XorMappedAddress::from(mapped));
    if let Some(other) = other {
        builder = builder.with_attribute(OtherAddress::from(other));
    }
    let mut buf = [0; 128];
    let len = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, &builder.build())
        .unwrap();
    buf[..len].to_vec()
}

/// A UDP server on `bind` that tells every client it is `mapped`, advertising `other`.
async fn udp_puppet(bind: &str, mapped: SocketAddr, other: Option<SocketAddr>) -> SocketAddr {
    serve_puppet(UdpSocket::bind(bind).await.unwrap(), mapped, other)
}

fn serve_puppet(socket: UdpSocket, mapped: SocketAddr, other: Option<SocketAddr>) -> SocketAddr {
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0; 1500];
        loop {
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            if let Ok(Request::Binding(tid)) = decode_request(&buf[..len]) {
                let _ = socket.send_to(&answer(tid, mapped, other), from).await;
            }
        }
    });
    addr
}

fn public(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test]
async fn same_mapping_from_two_servers_is_endpoint_independent() {
    let mapped = public("203.0.113.1:50000");
    let first = udp_puppet("127.0.0.1:0", mapped, None).await;
    let second = udp_puppet("127.0.0.1:0", mapped, None).await;
    let socket = client().await;
    let report = probe_udp(&socket, first, Some(second), &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(report.mapping, Mapping::EndpointIndependent);
    assert_eq!(report.local, socket.local_addr().unwrap());
    let second_binding = report.second.unwrap();
    assert_eq!(second_binding.server, second);
    assert_eq!(second_binding.mapped(), mapped);
}

#[tokio::test]
async fn different_mappings_are_a_symmetric_nat() {
    let first = udp_puppet("127.0.0.1:0", public("203.0.113.1:50000"), None).await;
    let second = udp_puppet("127.0.0.1:0", public("203.0.113.1:50001"), None).await;
    let socket = client().await;
    let report = probe_udp(&socket, first, Some(second), &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(report.mapping, Mapping::EndpointDependent);
    assert!(report.mapping.is_symmetric());
}

#[tokio::test]
async fn other_address_names_the_second_server() {
    // RFC 5780 test II goes to OTHER-ADDRESS's IP with the primary port: two sockets on one
    // port, at 127.0.0.1 and 127.0.0.2 (Linux loopback answers for all of 127/8).
    let (primary, alternate) = loop {
        let primary = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = primary.local_addr().unwrap().port();
        if let Ok(alternate) = UdpSocket::bind(("127.0.0.2", port)).await {
            break (primary, alternate);
        }
    };
    let advertised = public("127.0.0.2:1"); // test II ignores OTHER-ADDRESS's port
    let first = serve_puppet(primary, public("203.0.113.1:50000"), Some(advertised));
    let second = serve_puppet(alternate, public("203.0.113.1:50002"), None);
    let socket = client().await;
    let report = probe_udp(&socket, first, None, &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(report.second.as_ref().unwrap().server, second);
    assert_eq!(report.mapping, Mapping::EndpointDependent);
}

#[tokio::test]
async fn without_other_address_a_second_server_is_required() {
    let first = udp_puppet("127.0.0.1:0", public("203.0.113.1:50000"), None).await;
    let socket = client().await;
    let error = probe_udp(&socket, first, None, &BindingConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProbeError::NoSecondServer(s) if s == first),
        "{error}"
    );
}

/// A TCP server that tells every client it is `mapped` and records the client's source port.
async fn tcp_puppet(mapped: SocketAddr, seen: Arc<Mutex<Vec<u16>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, from) = listener.accept().await.unwrap();
            seen.lock().push(from.port());
            let mut request = [0; 20];
            if stream.read_exact(&mut request).await.is_err() {
                continue;
            }
            if let Ok(Request::Binding(tid)) = decode_request(&request) {
                let _ = stream.write_all(&answer(tid, mapped, None)).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn tcp_probe_asks_both_servers_from_one_port() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mapped = public("203.0.113.1:6881");
    let first = tcp_puppet(mapped, seen.clone()).await;
    let second = tcp_puppet(mapped, seen.clone()).await;
    let report = probe_tcp(
        public("127.0.0.1:0"),
        first,
        Some(second),
        &BindingConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.mapping, Mapping::EndpointIndependent);
    let ports = seen.lock().clone();
    assert_eq!(ports.len(), 2);
    assert_eq!(
        ports[0], ports[1],
        "both connections must leave from one port"
    );
    assert_eq!(report.local.port(), ports[0]);
}

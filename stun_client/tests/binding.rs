//! Binding transactions over real loopback sockets against scripted servers: retransmission,
//! strays and forgeries, broken and error replies, and TCP framing from a shared local port.

use std::net::SocketAddr;
use std::time::Duration;

use stun::binding::{binding_tcp, binding_udp, reusable_tcp_socket, BindingConfig, BindingError};
use stun::codec::{
    decode_request, encode_binding_error, encode_binding_request, encode_binding_success,
    new_transaction_id, Request, TransactionId,
};
use stun::responder::serve_tcp;
use stun_rs::methods::BINDING;
use stun_rs::{MessageClass, MessageEncoderBuilder, StunMessageBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::timeout;

/// Short timers for tests that must time out; tests that get answers use the defaults.
fn quick() -> BindingConfig {
    BindingConfig {
        rto: Duration::from_millis(20),
        max_requests: 3,
        last_wait_factor: 2,
        tcp_timeout: Duration::from_millis(500),
    }
}

const LIMIT: Duration = Duration::from_secs(60);

async fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Receives one Binding request on `server` and returns its source and transaction id.
async fn next_request(server: &UdpSocket) -> (SocketAddr, TransactionId) {
    let mut buf = [0; 1500];
    let (len, from) = timeout(LIMIT, server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    match decode_request(&buf[..len]).unwrap() {
        Request::Binding(tid) => (from, tid),
        other => panic!("unexpected request {other:?}"),
    }
}

fn success_without_address(tid: &TransactionId) -> Vec<u8> {
    let msg = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
        .with_transaction_id(*tid)
        .build();
    let mut buf = [0; 64];
    let len = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, &msg)
        .unwrap();
    buf[..len].to_vec()
}

#[tokio::test]
async fn udp_binding_reports_the_source_address() {
    let server = udp().await;
    let server_addr = server.local_addr().unwrap();
    let client = udp().await;
    let answering = tokio::spawn(async move {
        let (from, tid) = next_request(&server).await;
        server
            .send_to(&encode_binding_success(&tid, from), from)
            .await
            .unwrap();
    });
    let binding = binding_udp(&client, server_addr, &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(binding.mapped(), client.local_addr().unwrap());
    assert_eq!(binding.server, server_addr);
    answering.await.unwrap();
}

#[tokio::test]
async fn udp_retransmits_until_answered() {
    let server = udp().await;
    let server_addr = server.local_addr().unwrap();
    let client = udp().await;
    let config = BindingConfig {
        rto: Duration::from_millis(50),
        ..BindingConfig::default()
    };
    let answering = tokio::spawn(async move {
        // Lose the first two requests; all three carry the same transaction id.
        let (_, first) = next_request(&server).await;
        let (_, second) = next_request(&server).await;
        let (from, third) = next_request(&server).await;
        assert_eq!(first, second);
        assert_eq!(second, third);
        server
            .send_to(&encode_binding_success(&third, from), from)
            .await
            .unwrap();
    });
    let binding = binding_udp(&client, server_addr, &config).await.unwrap();
    assert_eq!(binding.mapped(), client.local_addr().unwrap());
    answering.await.unwrap();
}

#[tokio::test]
async fn udp_times_out_after_rc_requests() {
    let server = udp().await;
    let client = udp().await;
    let error = binding_udp(&client, server.local_addr().unwrap(), &quick())
        .await
        .unwrap_err();
    assert!(
        matches!(error, BindingError::Timeout { requests: 3, .. }),
        "{error}"
    );
    // Loopback delivers synchronously: every request is queued at the server by now.
    let mut buf = [0; 64];
    let mut received = 0;
    while server.try_recv_from(&mut buf).is_ok() {
        received += 1;
    }
    assert_eq!(received, 3);
}

#[tokio::test]
async fn udp_ignores_strays_forgeries_garbage_and_oversized_datagrams() {
    let server = udp().await;
    let server_addr = server.local_addr().unwrap();
    let attacker = udp().await;
    let client = udp().await;
    let answering = tokio::spawn(async move {
        let (from, tid) = next_request(&server).await;
        let bogus: SocketAddr = "198.51.100.66:666".parse().unwrap();
        // Right transaction, wrong source: a forgery.
        attacker
            .send_to(&encode_binding_success(&tid, bogus), from)
            .await
            .unwrap();
        // Right source, another transaction.
        server
            .send_to(&encode_binding_success(&new_transaction_id(), bogus), from)
            .await
            .unwrap();
        server
            .send_to(b"garbage that is not STUN", from)
            .await
            .unwrap();
        let mut oversized = encode_binding_success(&tid, bogus);
        oversized.resize(4000, 0);
        server.send_to(&oversized, from).await.unwrap();
        server
            .send_to(&encode_binding_success(&tid, from), from)
            .await
            .unwrap();
    });
    let binding = binding_udp(&client, server_addr, &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(binding.mapped(), client.local_addr().unwrap());
    answering.await.unwrap();
}

#[tokio::test]
async fn udp_reports_a_broken_reply_when_nothing_better_arrives() {
    let server = udp().await;
    let server_addr = server.local_addr().unwrap();
    let client = udp().await;
    tokio::spawn(async move {
        loop {
            let (from, tid) = next_request(&server).await;
            let reply = encode_binding_success(&tid, from);
            let _ = server.send_to(&reply[..reply.len() - 4], from).await;
        }
    });
    let error = binding_udp(&client, server_addr, &quick())
        .await
        .unwrap_err();
    assert!(matches!(error, BindingError::Malformed { .. }), "{error}");
}

#[tokio::test]
async fn udp_error_response_and_missing_address_end_the_transaction() {
    let server = udp().await;
    let server_addr = server.local_addr().unwrap();
    let client = udp().await;
    tokio::spawn(async move {
        let (from, tid) = next_request(&server).await;
        let error = encode_binding_error(&tid, 401, "Unauthorized", &[]);
        server.send_to(&error, from).await.unwrap();
        let (from, tid) = next_request(&server).await;
        server
            .send_to(&success_without_address(&tid), from)
            .await
            .unwrap();
    });
    let config = BindingConfig::default();
    let error = binding_udp(&client, server_addr, &config)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, BindingError::ErrorResponse { code: 401, reason, .. } if reason == "Unauthorized"),
        "{error}"
    );
    let error = binding_udp(&client, server_addr, &config)
        .await
        .unwrap_err();
    assert!(matches!(error, BindingError::NoAddress { .. }), "{error}");
}

#[tokio::test]
async fn udp_over_ipv6_loopback() {
    let server = match UdpSocket::bind("[::1]:0").await {
        Ok(server) => server,
        Err(e) => {
            // Some CI containers run without IPv6; the codec tests cover IPv6 addresses.
            eprintln!("no IPv6 loopback here ({e}); IPv6 I/O not exercised");
            return;
        }
    };
    let server_addr = server.local_addr().unwrap();
    let client = UdpSocket::bind("[::1]:0").await.unwrap();
    tokio::spawn(async move {
        let (from, tid) = next_request(&server).await;
        server
            .send_to(&encode_binding_success(&tid, from), from)
            .await
            .unwrap();
    });
    let binding = binding_udp(&client, server_addr, &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(binding.mapped(), client.local_addr().unwrap());
}

async fn responder() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tcp(listener));
    addr
}

#[tokio::test]
async fn tcp_binding_from_a_port_shared_with_a_listener() {
    let server = responder().await;
    // The peer's serving socket: a listener with SO_REUSEADDR + SO_REUSEPORT.
    let listener = reusable_tcp_socket("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .listen(16)
        .unwrap();
    let serving = listener.local_addr().unwrap();
    let binding = binding_tcp(serving, server, &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(binding.mapped(), serving);
    assert_eq!(binding.local, serving);
    // Asking twice from the same port works, and the listener still serves.
    let again = binding_tcp(serving, server, &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(again.mapped(), serving);
    let connecting = tokio::spawn(tokio::net::TcpStream::connect(serving));
    timeout(LIMIT, listener.accept()).await.unwrap().unwrap();
    connecting.await.unwrap().unwrap();
}

/// A TCP server that reads one request and then runs `reply` on the stream.
async fn scripted_tcp<F>(reply: F) -> SocketAddr
where
    F: FnOnce(TransactionId, SocketAddr) -> Option<Vec<u8>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, from) = listener.accept().await.unwrap();
        let mut request = [0; 20];
        stream.read_exact(&mut request).await.unwrap();
        let Ok(Request::Binding(tid)) = decode_request(&request) else {
            panic!("not a Binding request")
        };
        match reply(tid, from) {
            Some(bytes) => {
                stream.write_all(&bytes).await.unwrap();
                // Hold the connection open so the client decides on what it read.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
            }
            None => drop(stream),
        }
    });
    addr
}

fn any_local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn tcp_skips_other_transactions_then_takes_ours() {
    let server = scripted_tcp(|tid, from| {
        let mut bytes =
            encode_binding_success(&new_transaction_id(), "192.0.2.9:9".parse().unwrap());
        bytes.extend(encode_binding_success(&tid, from));
        Some(bytes)
    })
    .await;
    let binding = binding_tcp(any_local(), server, &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(binding.mapped(), binding.local);
}

#[tokio::test]
async fn tcp_garbage_error_close_and_silence_are_typed_errors() {
    let config = quick();
    let garbage = scripted_tcp(|_, _| Some(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec())).await;
    let error = binding_tcp(any_local(), garbage, &config)
        .await
        .unwrap_err();
    assert!(matches!(error, BindingError::Malformed { .. }), "{error}");

    let refused =
        scripted_tcp(|tid, _| Some(encode_binding_error(&tid, 400, "Bad Request", &[]))).await;
    let error = binding_tcp(any_local(), refused, &config)
        .await
        .unwrap_err();
    assert!(
        matches!(error, BindingError::ErrorResponse { code: 400, .. }),
        "{error}"
    );

    let closing = scripted_tcp(|_, _| None).await;
    let error = binding_tcp(any_local(), closing, &config)
        .await
        .unwrap_err();
    assert!(matches!(error, BindingError::Io { .. }), "{error}");

    let truncated = scripted_tcp(|tid, from| {
        let reply = encode_binding_success(&tid, from);
        Some(reply[..reply.len() - 4].to_vec())
    })
    .await;
    let error = binding_tcp(any_local(), truncated, &config)
        .await
        .unwrap_err();
    assert!(matches!(error, BindingError::Timeout { .. }), "{error}");
}

#[tokio::test]
async fn tcp_responder_frames_pipelined_requests_and_drops_garbage() {
    let server = responder().await;
    let mut stream = tokio::net::TcpStream::connect(server).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (first, second) = (new_transaction_id(), new_transaction_id());
    let mut both = encode_binding_request(&first);
    both.extend(encode_binding_request(&second));
    stream.write_all(&both).await.unwrap();
    for tid in [first, second] {
        let mut answer = [0; 32];
        timeout(LIMIT, stream.read_exact(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer, encode_binding_success(&tid, local)[..]);
    }
    stream
        .write_all(b"GET / HTTP/1.1\r\n\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = timeout(LIMIT, stream.read_to_end(&mut rest)).await.unwrap();
    assert!(
        read.is_err() || rest.is_empty(),
        "garbage got an answer: {rest:?}"
    );
}

#[tokio::test]
async fn udp_from_a_dual_stack_socket_to_an_ipv4_server() {
    let client = match UdpSocket::bind("[::]:0").await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("no IPv6 sockets here ({e}); dual-stack path not exercised");
            return;
        }
    };
    let server = udp().await;
    let server_addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let (from, tid) = next_request(&server).await;
        server
            .send_to(&encode_binding_success(&tid, from), from)
            .await
            .unwrap();
    });
    let binding = binding_udp(&client, server_addr, &BindingConfig::default())
        .await
        .unwrap();
    assert_eq!(
        binding.mapped(),
        SocketAddr::new(
            "127.0.0.1".parse().unwrap(),
            client.local_addr().unwrap().port()
        )
    );
}

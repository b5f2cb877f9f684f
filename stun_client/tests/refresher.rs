//! The refresher against a scripted UDP server whose answer (or silence) the test controls, and
//! over TCP against the responder from a port shared with a listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use stun::binding::{reusable_tcp_socket, BindingConfig};
use stun::codec::{decode_request, encode_binding_success, Request};
use stun::refresher::{MappingEvent, Refresher, RefresherConfig, Transport};
use stun::responder::serve_tcp;
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

/// A server that answers with whatever address `mapping` holds, or stays silent on `None`.
async fn puppet_server(mapping: Arc<Mutex<Option<SocketAddr>>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0; 1500];
        loop {
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            let Ok(Request::Binding(tid)) = decode_request(&buf[..len]) else {
                continue;
            };
            let answer = *mapping.lock();
            if let Some(mapped) = answer {
                let _ = socket
                    .send_to(&encode_binding_success(&tid, mapped), from)
                    .await;
            }
        }
    });
    addr
}

async fn next(refresher: &mut Refresher) -> MappingEvent {
    timeout(LIMIT, refresher.next_event())
        .await
        .expect("no refresher event in time")
        .expect("refresher task ended")
}

fn config(period: Duration) -> RefresherConfig {
    RefresherConfig {
        period,
        binding: BindingConfig {
            rto: Duration::from_millis(20),
            max_requests: 2,
            last_wait_factor: 2,
            tcp_timeout: Duration::from_secs(10),
        },
    }
}

#[tokio::test]
async fn udp_refresher_reports_changes_outage_and_recovery() {
    let a: SocketAddr = "203.0.113.10:40000".parse().unwrap();
    let b: SocketAddr = "203.0.113.10:40001".parse().unwrap();
    let mapping = Arc::new(Mutex::new(Some(a)));
    let server = puppet_server(mapping.clone()).await;
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let mut refresher = Refresher::spawn(
        Transport::Udp(socket),
        server,
        config(Duration::from_millis(50)),
    );

    assert!(matches!(next(&mut refresher).await, MappingEvent::Mapped(x) if x == a));
    assert_eq!(refresher.current(), Some(a));

    *mapping.lock() = Some(b);
    let event = next(&mut refresher).await;
    assert!(
        matches!(event, MappingEvent::Changed { old, new } if old == a && new == b),
        "{event:?}"
    );
    assert_eq!(refresher.current(), Some(b));

    *mapping.lock() = None;
    let event = next(&mut refresher).await;
    assert!(
        matches!(event, MappingEvent::Unreachable { last_known: Some(x), .. } if x == b),
        "{event:?}"
    );

    *mapping.lock() = Some(b);
    let event = next(&mut refresher).await;
    assert!(
        matches!(event, MappingEvent::Back(x) if x == b),
        "{event:?}"
    );
}

#[tokio::test]
async fn refresh_now_asks_before_the_period_ends() {
    let a: SocketAddr = "203.0.113.10:40000".parse().unwrap();
    let b: SocketAddr = "203.0.113.11:40000".parse().unwrap();
    let mapping = Arc::new(Mutex::new(Some(a)));
    let server = puppet_server(mapping.clone()).await;
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    // A period far beyond the test's limit: only refresh_now can produce the second event.
    let mut refresher = Refresher::spawn(
        Transport::Udp(socket),
        server,
        config(Duration::from_secs(3600)),
    );
    assert!(matches!(next(&mut refresher).await, MappingEvent::Mapped(x) if x == a));
    *mapping.lock() = Some(b);
    refresher.refresh_now();
    let event = next(&mut refresher).await;
    assert!(
        matches!(event, MappingEvent::Changed { old, new } if old == a && new == b),
        "{event:?}"
    );
}

#[tokio::test]
async fn tcp_refresher_watches_the_serving_port() {
    let stun = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = stun.local_addr().unwrap();
    tokio::spawn(serve_tcp(stun));
    let listener = reusable_tcp_socket("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .listen(16)
        .unwrap();
    let serving = listener.local_addr().unwrap();
    let mut refresher = Refresher::spawn(
        Transport::Tcp(serving),
        server,
        config(Duration::from_millis(20)),
    );
    assert!(matches!(next(&mut refresher).await, MappingEvent::Mapped(x) if x == serving));
    // Several more rounds from the same port to the same server. None may fail (no TIME_WAIT
    // collision): a failure would queue an Unreachable event before the next round's update.
    let mut watch = refresher.watch();
    for _ in 0..5 {
        timeout(LIMIT, watch.changed()).await.unwrap().unwrap();
        assert_eq!(*watch.borrow(), Some(serving));
    }
    // Polled once: only an event already queued can be returned.
    if let Ok(event) = timeout(Duration::ZERO, refresher.next_event()).await {
        panic!("unexpected event {event:?}");
    }
    drop(listener);
}

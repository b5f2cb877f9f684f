//! STUN refresh against a server that answers over UDP only (coturn `--no-tcp`, like most
//! public servers): the announced address is the UDP mapping of the serving port number,
//! inferred for TCP, instead of nothing at all.

#[path = "../../../stun_client/tests/coturn_server/mod.rs"]
mod coturn_server;

use std::net::SocketAddr;
use std::time::Duration;

use coturn_server::{free_port, loopback, Coturn};
use peer_engine::reach::address::start_refresh;

#[tokio::test]
async fn udp_only_stun_server_still_gives_the_announce_address() {
    let coturn = Coturn::udp_only(&[loopback()]).await;
    let listen = SocketAddr::new(loopback(), free_port(&[loopback()]));
    let initial: SocketAddr = format!("0.0.0.0:{}", listen.port()).parse().unwrap();
    let refresh = start_refresh(
        listen,
        initial,
        vec![coturn.primary.to_string()],
        Duration::from_secs(1),
    )
    .await;
    let mut announce = refresh.announce;
    let learned = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            announce.changed().await.expect("refresh running");
            let now = *announce.borrow_and_update();
            if now != initial {
                return now;
            }
        }
    })
    .await
    .expect("an address from UDP within 20 s although TCP STUN is refused");
    // No NAT on loopback: the UDP mapping is the serving address itself.
    assert_eq!(learned, listen);
}

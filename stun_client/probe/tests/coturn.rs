//! `stun-probe` against coturn (`turnserver`, Debian package `coturn`) over UDP and TCP, and its
//! errors without a server. The coturn harness is the `stun` library's.

#[path = "../../tests/coturn_server/mod.rs"]
mod coturn_server;

use std::net::IpAddr;
use std::process::{Command, Stdio};

use coturn_server::{free_port, loopback, Coturn};

fn stun_probe(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_stun-probe"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn stun_probe_prints_the_mapping_over_udp_and_tcp() {
    let second_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let coturn = Coturn::start(&[loopback(), second_ip]).await;
    let server = coturn.primary.to_string();

    let port = free_port(&[loopback()]).to_string();
    let (ok, out, err) = stun_probe(&["--local-port", &port, &server]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("mapped: 127.0.0.1:{port}\n")),
        "{out}"
    );
    assert!(out.contains("protocol: udp\n"), "{out}");

    let port = free_port(&[loopback()]).to_string();
    let (ok, out, err) = stun_probe(&["--tcp", "--local-port", &port, &server]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("mapped: 127.0.0.1:{port}\n")),
        "{out}"
    );
    assert!(out.contains("protocol: tcp\n"), "{out}");

    let (ok, out, err) = stun_probe(&["--probe-nat", "--json", &server]);
    assert!(ok, "{err}");
    assert!(out.starts_with('{') && out.ends_with("}\n"), "{out}");
    assert!(out.contains("\"mapping\":\"not-behind-nat\""), "{out}");
    assert!(
        out.contains(&format!(
            "\"other_address\":\"{}\"",
            coturn.alternate.unwrap()
        )),
        "{out}"
    );
}

#[test]
fn stun_probe_fails_clearly_without_a_server() {
    let port = free_port(&[loopback()]).to_string();
    let server = format!("127.0.0.1:{port}");
    let (ok, out, err) = stun_probe(&[
        "--rto-ms",
        "20",
        "--requests",
        "2",
        "--last-wait",
        "2",
        &server,
    ]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("no answer from STUN server"), "{err}");

    let (ok, _, err) = stun_probe(&["--tcp", &server]);
    assert!(!ok);
    assert!(err.contains("cannot talk to STUN server"), "{err}");

    let (ok, _, err) = stun_probe(&["not a server:xyz"]);
    assert!(!ok);
    assert!(err.contains("cannot resolve"), "{err}");
}

//! Interop with coturn (`turnserver`, Debian package `coturn`): our client and `stun-probe`
//! against a real STUN server over UDP and TCP, including RFC 5780 OTHER-ADDRESS.
//!
//! The server runs STUN-only on loopback ports chosen per test, with an empty config file (the
//! Debian `/etc/turnserver.conf` disables RFC 5780 and logs to syslog), and is killed when the
//! test ends, pass or fail.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use stun_client::binding::{binding_tcp, binding_udp, BindingConfig};
use stun_client::nat::{probe_tcp, probe_udp, Mapping};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// A running `turnserver`, killed on drop.
struct Coturn {
    child: Child,
    dir: PathBuf,
    primary: SocketAddr,
    /// The RFC 5780 alternate address (second IP, alternate port) when started with two IPs.
    alternate: Option<SocketAddr>,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free for both UDP and TCP on every IP in `ips`, at the time of asking.
fn free_port(ips: &[IpAddr]) -> u16 {
    loop {
        let port = StdUdpSocket::bind((ips[0], 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let free = ips.iter().all(|&ip| {
            StdUdpSocket::bind((ip, port)).is_ok() && TcpListener::bind((ip, port)).is_ok()
        });
        if free {
            return port;
        }
    }
}

fn turnserver_missing() -> ! {
    panic!(
        "`turnserver` (Debian package coturn) is needed for the interop tests: \
         apt-get install coturn"
    )
}

impl Coturn {
    /// Starts coturn on `ips` (one, or two for RFC 5780) and waits until it answers over UDP
    /// and TCP. Port races with other processes are retried with fresh ports.
    async fn start(ips: &[IpAddr]) -> Coturn {
        for _ in 0..5 {
            if let Some(server) = Self::try_start(ips).await {
                return server;
            }
        }
        panic!("turnserver did not come up on {ips:?} after 5 attempts");
    }

    async fn try_start(ips: &[IpAddr]) -> Option<Coturn> {
        let port = free_port(ips);
        let alt_port = free_port(ips);
        let dir = std::env::temp_dir().join(format!("stun-coturn-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("turnserver.conf");
        std::fs::write(&config, "").unwrap();
        let mut command = Command::new("turnserver");
        command
            .arg("-c")
            .arg(&config)
            .args(["--stun-only", "--no-cli", "--no-tls", "--no-dtls"])
            .args(["--listening-port", &port.to_string()])
            .args(["--alt-listening-port", &alt_port.to_string()])
            .arg("--pidfile")
            .arg(dir.join("turnserver.pid"))
            .arg("--db")
            .arg(dir.join("turndb"))
            .args(["--log-file", "stdout", "--simple-log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for ip in ips {
            command.args(["--listening-ip", &ip.to_string()]);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => turnserver_missing(),
            Err(e) => panic!("cannot start turnserver: {e}"),
        };
        let mut server = Coturn {
            child,
            dir,
            primary: SocketAddr::new(ips[0], port),
            alternate: ips.get(1).map(|&ip| SocketAddr::new(ip, alt_port)),
        };
        server.ready().await.then_some(server)
    }

    /// Polls with Binding requests until coturn answers on UDP and TCP (its readiness signal:
    /// it prints nothing useful when it has bound), or it exits, or 30 s pass.
    async fn ready(&mut self) -> bool {
        let quick = BindingConfig {
            rto: Duration::from_millis(100),
            max_requests: 2,
            last_wait_factor: 2,
            tcp_timeout: Duration::from_secs(2),
        };
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local_any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("turnserver exited early ({status}); retrying with other ports");
                return false;
            }
            if binding_udp(&socket, self.primary, &quick).await.is_ok()
                && binding_tcp(local_any, self.primary, &quick).await.is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

fn loopback() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

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

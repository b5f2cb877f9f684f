//! A coturn (`turnserver`, Debian package `coturn`) for interop tests, shared by the `stun`
//! library's tests and `stun-probe`'s: STUN-only by default, or a TURN server with the options a
//! test gives ([`Coturn::turn`]).
//!
//! The server runs on loopback ports chosen per test, with an empty config file (the Debian
//! `/etc/turnserver.conf` disables RFC 5780 and logs to syslog), and is killed when the test
//! ends, pass or fail.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use stun::binding::{binding_tcp, binding_udp, BindingConfig};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// A running `turnserver`, killed on drop.
pub struct Coturn {
    child: Child,
    dir: PathBuf,
    pub primary: SocketAddr,
    /// The RFC 5780 alternate address (second IP, alternate port) when started with two IPs.
    pub alternate: Option<SocketAddr>,
    /// Whether it answers over TCP (not when started with `--no-tcp`, like most public servers).
    tcp: bool,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free for both UDP and TCP on every IP in `ips`, at the time of asking.
pub fn free_port(ips: &[IpAddr]) -> u16 {
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
    pub async fn start(ips: &[IpAddr]) -> Coturn {
        Self::start_with(ips, &["--stun-only"]).await
    }

    /// A TURN server on loopback relaying from 127.0.0.1 (loopback peers allowed), with `args`
    /// added (credentials, quotas, lifetimes).
    pub async fn turn(args: &[&str]) -> Coturn {
        let mut all = vec!["--relay-ip", "127.0.0.1", "--allow-loopback-peers"];
        all.extend_from_slice(args);
        Self::start_with(&[loopback()], &all).await
    }

    /// What the server logged so far (each request it processed, with its outcome).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("turnserver.log")).unwrap_or_default()
    }

    /// Ends the server now (a TURN server going away under its clients).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A STUN-only server answering over UDP alone (`--no-tcp`), as most public ones do.
    pub async fn udp_only(ips: &[IpAddr]) -> Coturn {
        Self::start_with(ips, &["--stun-only", "--no-tcp"]).await
    }

    async fn start_with(ips: &[IpAddr], args: &[&str]) -> Coturn {
        for _ in 0..5 {
            if let Some(server) = Self::try_start(ips, args).await {
                return server;
            }
        }
        panic!("turnserver did not come up on {ips:?} after 5 attempts");
    }

    async fn try_start(ips: &[IpAddr], args: &[&str]) -> Option<Coturn> {
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
            .args(args)
            .args(["--no-cli", "--no-tls", "--no-dtls"])
            .args(["--listening-port", &port.to_string()])
            .args(["--alt-listening-port", &alt_port.to_string()])
            .arg("--pidfile")
            .arg(dir.join("turnserver.pid"))
            .arg("--db")
            .arg(dir.join("turndb"))
            .arg("--log-file")
            .arg(dir.join("turnserver.log"))
            .arg("--simple-log")
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
            tcp: !args.contains(&"--no-tcp"),
        };
        server.ready().await.then_some(server)
    }

    /// Polls with Binding requests until coturn answers on UDP and TCP (its readiness signal:
    /// it prints nothing useful when it has bound), or it exits, or 30 s pass. A `--no-tcp`
    /// server is ready when UDP answers.
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
                && (!self.tcp || binding_tcp(local_any, self.primary, &quick).await.is_ok())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

pub fn loopback() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

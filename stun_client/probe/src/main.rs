//! `stun-probe`: prints the address a STUN server sees us as, and optionally the NAT's mapping
//! behaviour. A diagnostic for users ("what will peers see?") and for the NAT lab scripts.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use stun::binding::{binding_tcp, binding_udp, Binding, BindingConfig};
use stun::nat::{probe_tcp, probe_udp, NatReport};
use tokio::net::UdpSocket;

/// Ask a STUN server (RFC 8489) which public address it sees this host as.
///
/// Prints `key: value` lines (or one JSON object with --json): protocol, server, local address,
/// mapped address, and with --probe-nat the second server's answer and the NAT mapping
/// behaviour. Exits with status 1 and a message on stderr when no answer arrives.
#[derive(Debug, Parser)]
#[command(name = "stun-probe", version)]
struct Args {
    /// STUN server as host:port, or host alone for the standard port 3478.
    server: String,

    /// Ask over TCP instead of UDP.
    #[arg(long)]
    tcp: bool,

    /// Local port to send from; 0 picks any. Over TCP the port is shared (SO_REUSEADDR +
    /// SO_REUSEPORT) with a peer listening on it, so `--tcp --local-port 6881` shows the
    /// mapping peers get for the serving port.
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    local_port: u16,

    /// Local IP to send from (default: any, of the server's address family).
    #[arg(long, value_name = "IP")]
    local_ip: Option<IpAddr>,

    /// Also probe the NAT's mapping behaviour (RFC 5780): ask a second server address from the
    /// same local port and compare. Uses --second-server, or else the server's OTHER-ADDRESS.
    #[arg(long)]
    probe_nat: bool,

    /// Second STUN server (host:port) for --probe-nat.
    #[arg(long, value_name = "SERVER", requires = "probe_nat")]
    second_server: Option<String>,

    /// Print one JSON object instead of `key: value` lines.
    #[arg(long)]
    json: bool,

    /// Initial UDP retransmission timeout in milliseconds (RTO; doubles after each request).
    #[arg(long, default_value_t = 500, value_name = "MS")]
    rto_ms: u64,

    /// UDP requests to send before giving up (Rc).
    #[arg(long, default_value_t = 7, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    requests: u32,

    /// After the last UDP request, wait this many RTOs for the answer (Rm).
    #[arg(long, default_value_t = 16, value_name = "N")]
    last_wait: u32,

    /// Time allowed for a TCP transaction (connect, request, answer) in milliseconds (Ti).
    #[arg(long, default_value_t = 39_500, value_name = "MS")]
    tcp_timeout_ms: u64,
}

#[tokio::main]
async fn main() {
    env_logger::init();
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("stun-probe: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    let config = BindingConfig {
        rto: Duration::from_millis(args.rto_ms),
        max_requests: args.requests,
        last_wait_factor: args.last_wait,
        tcp_timeout: Duration::from_millis(args.tcp_timeout_ms),
    };
    let server = resolve(&args.server).await?;
    let second = match &args.second_server {
        Some(second) => Some(resolve(second).await?),
        None => None,
    };
    let local_ip = args.local_ip.unwrap_or(match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let local = SocketAddr::new(local_ip, args.local_port);

    let (binding, nat) = if args.tcp {
        if args.probe_nat {
            let report = probe_tcp(local, server, second, &config).await?;
            (report.first.clone(), Some(report))
        } else {
            (binding_tcp(local, server, &config).await?, None)
        }
    } else {
        let socket = UdpSocket::bind(local)
            .await
            .with_context(|| format!("cannot bind UDP {local}"))?;
        if args.probe_nat {
            let report = probe_udp(&socket, server, second, &config).await?;
            (report.first.clone(), Some(report))
        } else {
            (binding_udp(&socket, server, &config).await?, None)
        }
    };
    let output = if args.json {
        json(&binding, nat.as_ref())
    } else {
        lines(&binding, nat.as_ref())
    };
    print!("{output}");
    Ok(())
}

async fn resolve(server: &str) -> Result<SocketAddr> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = server.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 3478));
    }
    let with_port = if server.contains(':') {
        server.to_owned()
    } else {
        format!("{server}:3478")
    };
    let mut addrs = tokio::net::lookup_host(&with_port)
        .await
        .with_context(|| format!("cannot resolve STUN server {server:?}"))?;
    addrs
        .next()
        .ok_or_else(|| anyhow!("STUN server {server:?} resolves to no address"))
}

fn lines(binding: &Binding, nat: Option<&NatReport>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "protocol: {}", binding.protocol);
    let _ = writeln!(out, "server: {}", binding.server);
    let _ = writeln!(out, "local: {}", binding.local);
    let _ = writeln!(out, "mapped: {}", binding.mapped());
    if let Some(other) = binding.reply.other_address {
        let _ = writeln!(out, "other-address: {other}");
    }
    if let Some(software) = &binding.reply.software {
        let printable: String = software
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let _ = writeln!(out, "software: {printable}");
    }
    if let Some(nat) = nat {
        if let Some(second) = &nat.second {
            let _ = writeln!(out, "second-server: {}", second.server);
            let _ = writeln!(out, "second-mapped: {}", second.mapped());
        }
        let _ = writeln!(out, "nat: {}", nat.mapping);
    }
    out
}

fn json(binding: &Binding, nat: Option<&NatReport>) -> String {
    let optional = |value: Option<String>| value.map_or("null".to_owned(), |v| json_string(&v));
    let mut out = format!(
        "{{\"protocol\":\"{}\",\"server\":\"{}\",\"local\":\"{}\",\"mapped\":\"{}\",\"other_address\":{},\"software\":{}",
        binding.protocol,
        binding.server,
        binding.local,
        binding.mapped(),
        optional(binding.reply.other_address.map(|a| a.to_string())),
        optional(binding.reply.software.clone()),
    );
    if let Some(nat) = nat {
        let _ = write!(
            out,
            ",\"nat\":{{\"local\":\"{}\",\"second_server\":{},\"second_mapped\":{},\"mapping\":\"{}\",\"symmetric\":{}}}",
            nat.local,
            optional(nat.second.as_ref().map(|s| s.server.to_string())),
            optional(nat.second.as_ref().map(|s| s.mapped().to_string())),
            match nat.mapping {
                stun::nat::Mapping::NotBehindNat => "not-behind-nat",
                stun::nat::Mapping::EndpointIndependent => "endpoint-independent",
                stun::nat::Mapping::EndpointDependent => "endpoint-dependent",
            },
            nat.mapping.is_symmetric(),
        );
    }
    out.push_str("}\n");
    out
}

/// A JSON string literal; the server's SOFTWARE text is the only free text we print.
fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

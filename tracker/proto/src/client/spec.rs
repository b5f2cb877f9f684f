//! How a tracker is named (protocol.txt §6.5): `IP:PORT`, `HOST:PORT` (every A/AAAA record of
//! HOST, tried in order) or a bare `DOMAIN`, whose DNS SRV records `_p2p-tracker._udp.DOMAIN`
//! list the trackers. Parsed once, at the edge, into a [`TrackerSpec`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use thiserror::Error;

/// The SRV service label a bare domain is looked up under (RFC 2782: `_service._proto.name`).
pub const SRV_SERVICE: &str = "_p2p-tracker._udp";

/// Longest DNS name (RFC 1035: 255 bytes on the wire, 253 as text).
const MAX_HOST_BYTES: usize = 253;

/// One tracker as a user, a metainfo file or a magnet link names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrackerSpec {
    /// An IP address and port: asked as is.
    Addr(SocketAddr),
    /// A host name and port: every address it resolves to, in order, until one answers.
    Host { host: String, port: u16 },
    /// A domain without a port: the SRV records of `_p2p-tracker._udp.DOMAIN` name the
    /// trackers (each one a tracker of the tier, in priority order).
    Srv { domain: String },
}

/// Why a tracker address cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("tracker address is empty")]
    Empty,
    #[error("tracker address {0:?} has an IP address but no port (expected IP:PORT)")]
    MissingPort(String),
    #[error("tracker address {0:?} has a bad port (expected a number 1-65535)")]
    BadPort(String),
    #[error(
        "tracker address {0:?} is not HOST:PORT or a DNS domain (letters, digits, '-', '_', '.')"
    )]
    BadHost(String),
}

impl FromStr for TrackerSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SpecError::Empty);
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(SpecError::BadPort(text.to_owned()));
            }
            return Ok(TrackerSpec::Addr(addr));
        }
        let bare_ip = text.trim_start_matches('[').trim_end_matches(']');
        if bare_ip.parse::<IpAddr>().is_ok() {
            return Err(SpecError::MissingPort(text.to_owned()));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            check_host(text)?;
            return Ok(TrackerSpec::Srv {
                domain: text.trim_end_matches('.').to_ascii_lowercase(),
            });
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(SpecError::BadPort(text.to_owned())),
        };
        check_host(host).map_err(|_| SpecError::BadHost(text.to_owned()))?;
        Ok(TrackerSpec::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// A DNS name of letters, digits, `-` and `_` labels (the underscore appears in service
/// names), none empty but an optional final dot.
fn check_host(host: &str) -> Result<(), SpecError> {
    let bad = || SpecError::BadHost(host.to_owned());
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > MAX_HOST_BYTES {
        return Err(bad());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

impl fmt::Display for TrackerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackerSpec::Addr(a) => write!(f, "{a}"),
            TrackerSpec::Host { host, port } => write!(f, "{host}:{port}"),
            TrackerSpec::Srv { domain } => write!(f, "{domain}"),
        }
    }
}

impl TrackerSpec {
    /// The SRV name looked up for a bare domain, fully qualified so no search list applies.
    pub fn srv_name(domain: &str) -> String {
        format!("{SRV_SERVICE}.{domain}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(s: &str) -> Result<TrackerSpec, SpecError> {
        s.parse()
    }

    #[test]
    fn every_form_parses_to_its_kind() {
        assert_eq!(
            spec("127.0.0.1:6969"),
            Ok(TrackerSpec::Addr("127.0.0.1:6969".parse().unwrap()))
        );
        assert_eq!(
            spec("[::1]:6969"),
            Ok(TrackerSpec::Addr("[::1]:6969".parse().unwrap()))
        );
        assert_eq!(
            spec("Tracker.Example.org:80"),
            Ok(TrackerSpec::Host {
                host: "tracker.example.org".into(),
                port: 80
            })
        );
        assert_eq!(
            spec("example.org."),
            Ok(TrackerSpec::Srv {
                domain: "example.org".into()
            })
        );
        assert_eq!(
            spec("localhost"),
            Ok(TrackerSpec::Srv {
                domain: "localhost".into()
            })
        );
        assert_eq!(
            TrackerSpec::srv_name("example.org"),
            "_p2p-tracker._udp.example.org."
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        assert_eq!(spec(""), Err(SpecError::Empty));
        assert_eq!(spec("  "), Err(SpecError::Empty));
        assert!(matches!(spec("127.0.0.1"), Err(SpecError::MissingPort(_))));
        assert!(matches!(spec("::1"), Err(SpecError::MissingPort(_))));
        assert!(matches!(spec("[::1]"), Err(SpecError::MissingPort(_))));
        assert!(matches!(spec("127.0.0.1:0"), Err(SpecError::BadPort(_))));
        assert!(matches!(spec("host:99999"), Err(SpecError::BadPort(_))));
        assert!(matches!(spec("host:"), Err(SpecError::BadPort(_))));
        assert!(matches!(spec("ho st:80"), Err(SpecError::BadHost(_))));
        assert!(matches!(spec("a..b"), Err(SpecError::BadHost(_))));
        assert!(matches!(spec("p2p://h:1"), Err(SpecError::BadHost(_))));
        assert!(matches!(spec(&"a".repeat(64)), Err(SpecError::BadHost(_))));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(text in "\\PC{0,80}") {
            if let Ok(s) = spec(&text) {
                prop_assert_eq!(spec(&s.to_string()), Ok(s));
            }
        }

        #[test]
        fn host_names_round_trip(host in "[a-z0-9]{1,10}(\\.[a-z0-9-]{1,10}){0,3}", port in 1u16..) {
            let text = format!("{host}:{port}");
            let s = spec(&text).unwrap();
            prop_assert_eq!(s.to_string(), text);
        }
    }
}

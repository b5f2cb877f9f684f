//! Name resolution for tracker addresses: A/AAAA records of a host, SRV records of a domain
//! (RFC 2782 order: lowest priority first, weighted random within a priority), each answer
//! with the time it stays valid (its DNS TTL, clamped) so the client asks again when it runs
//! out. hickory-resolver does the DNS; the system's resolver configuration (/etc/resolv.conf)
//! by default, or one given server (tests point it at their own DNS server on loopback).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use log::debug;
use rand::Rng;

use super::spec::TrackerSpec;

/// Answers are kept at least this long, whatever their TTL (dnsmasq serves its own records
/// with TTL 0), so a busy client does not ask DNS before every datagram.
const MIN_VALID: Duration = Duration::from_secs(30);
/// And at most this long, so a tracker that moved is found again within the hour.
const MAX_VALID: Duration = Duration::from_secs(3600);
/// How long one DNS question may take before the client gives up on it.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves tracker names. Cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    backend: Arc<Backend>,
}

enum Backend {
    Dns(Box<TokioResolver>),
    /// No usable resolver configuration: host names go through the C library
    /// (getaddrinfo), which has no SRV and no TTL.
    Libc {
        why: String,
    },
}

/// One SRV record: a tracker's host and port, with RFC 2782's ordering fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SrvTarget {
    pub host: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

impl Resolver {
    /// The system's resolver configuration (/etc/resolv.conf, and /etc/hosts).
    pub fn system() -> Resolver {
        let backend = match TokioResolver::builder_tokio() {
            Ok(mut builder) => {
                tune(builder.options_mut());
                Backend::Dns(Box::new(builder.build()))
            }
            Err(e) => {
                debug!("cannot read the system's DNS configuration ({e}); host names are resolved by the C library and SRV records cannot be looked up");
                Backend::Libc {
                    why: format!("no DNS configuration: {e}"),
                }
            }
        };
        Resolver {
            backend: Arc::new(backend),
        }
    }

    /// Host names through the C library (getaddrinfo): for a client of one address, which
    /// resolves nothing.
    pub(super) fn libc() -> Resolver {
        Resolver {
            backend: Arc::new(Backend::Libc {
                why: "no DNS resolver configured".into(),
            }),
        }
    }

    /// Asks only the DNS server at `server` (UDP, then TCP for long answers); /etc/hosts
    /// still answers for the names it lists.
    pub fn with_server(server: SocketAddr) -> Resolver {
        let group = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
        let config = ResolverConfig::from_parts(None, Vec::new(), group);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        tune(builder.options_mut());
        Resolver {
            backend: Arc::new(Backend::Dns(Box::new(builder.build()))),
        }
    }

    /// Every address of `host`, IPv4 ones first, and until when they hold.
    pub(super) async fn addresses(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(Vec<SocketAddr>, Instant), String> {
        let (addrs, until) = match &*self.backend {
            Backend::Dns(r) => {
                let lookup = r.lookup_ip(host).await.map_err(|e| e.to_string())?;
                let addrs: Vec<SocketAddr> =
                    lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
                (addrs, clamp(lookup.valid_until()))
            }
            Backend::Libc { .. } => {
                let addrs = tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| e.to_string())?
                    .collect();
                (addrs, Instant::now() + MIN_VALID)
            }
        };
        let mut unique = Vec::with_capacity(addrs.len());
        for a in addrs {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        // IPv4 first, each family in DNS order: many hosts have IPv6 that goes nowhere.
        unique.sort_by_key(SocketAddr::is_ipv6);
        if unique.is_empty() {
            return Err("no A or AAAA record".into());
        }
        debug!("{host}:{port} resolves to {unique:?}");
        Ok((unique, until))
    }

    /// The trackers `domain`'s SRV records name, in the order to try them.
    pub(super) async fn srv(&self, domain: &str) -> Result<(Vec<SrvTarget>, Instant), String> {
        let name = TrackerSpec::srv_name(domain);
        let resolver = match &*self.backend {
            Backend::Dns(r) => r,
            Backend::Libc { why } => return Err(format!("cannot look up SRV {name}: {why}")),
        };
        let lookup = resolver
            .srv_lookup(name.as_str())
            .await
            .map_err(|e| format!("SRV {name}: {e}"))?;
        let records: Vec<SrvTarget> = lookup
            .iter()
            .map(|srv| SrvTarget {
                host: srv.target().to_ascii().trim_end_matches('.').to_owned(),
                port: srv.port(),
                priority: srv.priority(),
                weight: srv.weight(),
            })
            // RFC 2782: a target of "." means the service is decidedly not offered there.
            .filter(|t| !t.host.is_empty() && t.port != 0)
            .collect();
        if records.is_empty() {
            return Err(format!("SRV {name}: no tracker offered"));
        }
        let ordered = srv_order(records, &mut rand::rng());
        debug!("{name}: {ordered:?}");
        Ok((ordered, clamp(lookup.as_lookup().valid_until())))
    }
}

fn tune(options: &mut ResolverOpts) {
    // Both families; IPv4 addresses are tried first (sorted in `addresses`).
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = LOOKUP_TIMEOUT;
    options.attempts = 2;
    options.positive_max_ttl = Some(MAX_VALID);
    // A name that does not exist yet may be added soon (a tracker being deployed).
    options.negative_max_ttl = Some(Duration::from_secs(10));
}

fn clamp(until: Instant) -> Instant {
    let now = Instant::now();
    until.clamp(now + MIN_VALID, now + MAX_VALID)
}

/// RFC 2782's order: ascending priority; within a priority, repeatedly pick a record with
/// probability weight / (sum of the weights left). Records of weight 0 come after the
/// weighted ones of their priority, in DNS order (RFC 2782 gives them "a very small chance").
pub(super) fn srv_order(mut records: Vec<SrvTarget>, rng: &mut impl Rng) -> Vec<SrvTarget> {
    records.sort_by_key(|r| r.priority);
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records
            .iter()
            .take_while(|r| r.priority == priority)
            .count();
        let mut group: Vec<SrvTarget> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut at = rng.random_range(0..total);
                group
                    .iter()
                    .position(|r| {
                        let w = u32::from(r.weight);
                        if at < w {
                            true
                        } else {
                            at -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            ordered.push(group.remove(pick));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn target(host: &str, priority: u16, weight: u16) -> SrvTarget {
        SrvTarget {
            host: host.into(),
            port: 6969,
            priority,
            weight,
        }
    }

    #[test]
    fn lower_priorities_always_come_first() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let order = srv_order(
                vec![
                    target("c", 30, 5),
                    target("a", 10, 0),
                    target("b", 20, 100),
                    target("a2", 10, 1),
                ],
                &mut rng,
            );
            let priorities: Vec<u16> = order.iter().map(|t| t.priority).collect();
            assert_eq!(priorities, vec![10, 10, 20, 30]);
            assert_eq!(order.len(), 4);
        }
    }

    #[test]
    fn weights_share_the_first_place_in_proportion() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut heavy_first = 0;
        let runs = 4000;
        for _ in 0..runs {
            let order = srv_order(vec![target("light", 1, 1), target("heavy", 1, 3)], &mut rng);
            if order[0].host == "heavy" {
                heavy_first += 1;
            }
        }
        // Expected 3/4: well within 65-85 % over 4000 runs.
        assert!(
            (runs * 65 / 100..runs * 85 / 100).contains(&heavy_first),
            "{heavy_first}"
        );
    }

    #[test]
    fn zero_weights_keep_every_record_after_the_weighted_ones() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let order = srv_order(
                vec![target("x", 0, 0), target("w", 0, 5), target("y", 0, 0)],
                &mut rng,
            );
            let hosts: Vec<&str> = order.iter().map(|t| t.host.as_str()).collect();
            assert_eq!(hosts, vec!["w", "x", "y"]);
        }
    }
}

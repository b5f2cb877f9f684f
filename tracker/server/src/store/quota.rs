//! Each host's share of the tracker (protocol.txt §1.9): without it one host could fill a global
//! cap (say `--max-files` with a loop of flag 4 shares) and every other host would be refused.
//! Every source counts, loopback and private ones included: under `--trust-ip-field` a LAN host
//! announcing many addresses is still one host, charged by where its datagrams come from.

use std::collections::HashMap;

use super::{Limits, StoreError};
use crate::host::Host;

/// What one host holds: files it created (still tracked), rows of its peers, serving
/// addresses (ports) it announced and bytes of its partial peers' bitfields.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Usage {
    pub files: usize,
    pub rows: usize,
    pub ports: usize,
    pub bitfield_bytes: usize,
}

impl Usage {
    pub const ROW: Usage = Usage {
        files: 0,
        rows: 1,
        ports: 0,
        bitfield_bytes: 0,
    };
    pub const PORT: Usage = Usage {
        files: 0,
        rows: 0,
        ports: 1,
        bitfield_bytes: 0,
    };
    pub const FILE: Usage = Usage {
        files: 1,
        rows: 0,
        ports: 0,
        bitfield_bytes: 0,
    };

    pub fn bitfield(bytes: usize) -> Usage {
        Usage {
            bitfield_bytes: bytes,
            ..Usage::default()
        }
    }

    fn plus(self, other: Usage) -> Usage {
        Usage {
            files: self.files + other.files,
            rows: self.rows + other.rows,
            ports: self.ports + other.ports,
            bitfield_bytes: self.bitfield_bytes + other.bitfield_bytes,
        }
    }

    fn minus(self, other: Usage) -> Usage {
        Usage {
            files: self.files.saturating_sub(other.files),
            rows: self.rows.saturating_sub(other.rows),
            ports: self.ports.saturating_sub(other.ports),
            bitfield_bytes: self.bitfield_bytes.saturating_sub(other.bitfield_bytes),
        }
    }
}

/// The most one host may hold: `ip_share_percent` of each global cap, rounded up and at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub files: usize,
    pub rows: usize,
    /// Serving addresses (peers) of one host across all swarms.
    pub ports: usize,
    pub peers_per_file: usize,
    pub bitfield_bytes: usize,
}

impl Quotas {
    pub fn new(limits: &Limits) -> Self {
        let share = |cap: usize| -> usize {
            let percent = limits.ip_share_percent.clamp(1, 100) as u128;
            (cap as u128 * percent).div_ceil(100).max(1) as usize
        };
        Quotas {
            files: share(limits.max_files),
            rows: share(limits.max_rows),
            ports: share(limits.max_peers),
            peers_per_file: share(limits.max_peers_per_file),
            bitfield_bytes: share(limits.max_bitfield_bytes),
        }
    }

    /// Whether a host holding `now` may take `more`; the error names the first quota exceeded.
    pub(super) fn check(&self, now: Usage, more: Usage) -> Result<(), StoreError> {
        let after = now.plus(more);
        let over = |used: usize, added: usize, quota: usize| added > 0 && used > quota;
        if over(after.files, more.files, self.files) {
            return Err(StoreError::HostQuota("files created"));
        }
        if over(after.rows, more.rows, self.rows) {
            return Err(StoreError::HostQuota("rows"));
        }
        if over(after.ports, more.ports, self.ports) {
            return Err(StoreError::HostQuota("serving addresses"));
        }
        if over(
            after.bitfield_bytes,
            more.bitfield_bytes,
            self.bitfield_bytes,
        ) {
            return Err(StoreError::HostQuota("bitfield memory"));
        }
        Ok(())
    }
}

/// What every host holds; hosts holding nothing have no entry.
#[derive(Default)]
pub(super) struct HostTable(HashMap<Host, Usage>);

impl HostTable {
    pub fn usage(&self, host: Host) -> Usage {
        self.0.get(&host).copied().unwrap_or_default()
    }

    pub fn add(&mut self, host: Host, more: Usage) {
        let usage = self.0.entry(host).or_default();
        *usage = usage.plus(more);
    }

    pub fn sub(&mut self, host: Host, less: Usage) {
        if let Some(usage) = self.0.get_mut(&host) {
            *usage = usage.minus(less);
            if *usage == Usage::default() {
                self.0.remove(&host);
            }
        }
    }

    #[cfg(test)]
    pub fn hosts(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_every_cap_rounded_up() {
        let limits = Limits {
            max_files: 1000,
            max_peers: 15,
            max_peers_per_file: 15,
            max_rows: 1_000_000,
            max_bitfield_bytes: 512 << 20,
            ip_share_percent: 10,
        };
        let q = Quotas::new(&limits);
        assert_eq!(
            (q.files, q.rows, q.ports, q.peers_per_file, q.bitfield_bytes),
            (100, 100_000, 2, 2, (512 << 20) / 10 + 1)
        );
        let tiny = Quotas::new(&Limits {
            max_files: 1,
            ip_share_percent: 1,
            ..limits
        });
        assert_eq!(tiny.files, 1);
        let all = Quotas::new(&Limits {
            ip_share_percent: 100,
            ..limits
        });
        assert_eq!((all.files, all.peers_per_file), (1000, 15));
    }

    #[test]
    fn check_names_the_quota_and_ignores_what_is_not_added() {
        let q = Quotas {
            files: 1,
            rows: 2,
            ports: 1,
            peers_per_file: 1,
            bitfield_bytes: 8,
        };
        let full = Usage {
            files: 1,
            rows: 2,
            ports: 1,
            bitfield_bytes: 8,
        };
        assert_eq!(
            q.check(full, Usage::FILE),
            Err(StoreError::HostQuota("files created"))
        );
        assert_eq!(
            q.check(full, Usage::ROW),
            Err(StoreError::HostQuota("rows"))
        );
        assert_eq!(
            q.check(full, Usage::PORT),
            Err(StoreError::HostQuota("serving addresses"))
        );
        assert_eq!(
            q.check(full, Usage::bitfield(1)),
            Err(StoreError::HostQuota("bitfield memory"))
        );
        assert_eq!(q.check(full, Usage::default()), Ok(()));
        let mut table = HostTable::default();
        let h = Host::of("10.0.0.1".parse().unwrap());
        table.add(h, full);
        table.sub(h, full);
        assert_eq!(table.hosts(), 0);
    }
}

//! Anti-amplification cookies (protocol.txt §1.6): a keyed hash of the source IP and a
//! two-minute time slot, so only a host that receives at an IP can present its cookie, and the
//! tracker needs no per-source state to check one.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use tracker_proto::Cookie;

/// Length of a cookie's time slot.
pub const SLOT_SECS: u64 = 120;

pub struct CookieJar {
    secret: [u8; 32],
}

impl CookieJar {
    /// A jar with a fresh random secret: cookies do not survive a tracker restart, which only
    /// costs clients one extra round trip.
    pub fn new() -> Self {
        CookieJar {
            secret: rand::random(),
        }
    }

    /// A jar keyed with `secret`: trackers sharing a store share it, so each accepts the
    /// cookies of the others.
    pub fn with_secret(secret: [u8; 32]) -> Self {
        CookieJar { secret }
    }

    fn cookie_for_slot(&self, ip: IpAddr, slot: u64) -> Cookie {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(slot.to_be_bytes());
        match ip.to_canonical() {
            IpAddr::V4(v4) => h.update(v4.octets()),
            IpAddr::V6(v6) => h.update(v6.octets()),
        }
        let digest = h.finalize();
        let mut c = [0u8; 8];
        c.copy_from_slice(&digest[..8]);
        Cookie(c)
    }

    /// The cookie to hand `ip` now (`unix_secs` is the current Unix time).
    pub fn issue(&self, ip: IpAddr, unix_secs: u64) -> Cookie {
        self.cookie_for_slot(ip, unix_secs / SLOT_SECS)
    }

    /// Whether `cookie` was issued to `ip` in this slot or the previous one. Compared without
    /// early exit so timing does not reveal how many bytes matched.
    pub fn check(&self, ip: IpAddr, cookie: Cookie, unix_secs: u64) -> bool {
        let slot = unix_secs / SLOT_SECS;
        let same =
            |a: Cookie, b: Cookie| a.0.iter().zip(b.0).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        let current = same(self.cookie_for_slot(ip, slot), cookie);
        let previous = same(self.cookie_for_slot(ip, slot.saturating_sub(1)), cookie);
        current | previous
    }
}

impl Default for CookieJar {
    fn default() -> Self {
        Self::new()
    }
}

/// Sources exempt from cookies by default: reflection attacks spoof public victims, and these
/// addresses are not routable from the public internet.
pub fn exempt(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_bound_to_ip_and_time() {
        let jar = CookieJar::new();
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let other: IpAddr = "203.0.113.6".parse().unwrap();
        let c = jar.issue(ip, 1_000_000);
        assert!(jar.check(ip, c, 1_000_000));
        assert!(jar.check(ip, c, 1_000_000 + SLOT_SECS));
        assert!(!jar.check(ip, c, 1_000_000 + 3 * SLOT_SECS));
        assert!(!jar.check(other, c, 1_000_000));
        assert!(!CookieJar::new().check(ip, c, 1_000_000));
    }

    #[test]
    fn private_sources_are_exempt() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(exempt(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.5", "8.8.8.8", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(!exempt(ip.parse().unwrap()), "{ip}");
        }
    }
}

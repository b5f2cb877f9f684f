//! TURN credentials: the long-term kind (RFC 8489 §9.2, a username and password the operator
//! gave out) and coturn's TURN REST API kind (`turnserver --use-auth-secret
//! --static-auth-secret=SECRET`), where whoever knows the secret mints short-lived ones.

use std::fmt;

use base64::Engine as _;
use stun_rs::{Algorithm, AlgorithmId, HMACKey};

use super::codec::TurnCodecError;

/// A username and password for a TURN server.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    /// Never prints the password (logs, panics).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Credentials of the TURN REST API (draft-uberti-behave-turn-rest, as coturn implements
    /// it): the username is `<expiry unix time>:<user>` and the password the base64 of
    /// HMAC-SHA1(secret, username). The server recomputes the password from its copy of the
    /// secret and refuses the username once the time in it has passed.
    pub fn rest_api(secret: &str, user: &str, expires_unix: u64) -> Self {
        let username = format!("{expires_unix}:{user}");
        let mac = hmac_sha1::hmac_sha1(secret.as_bytes(), username.as_bytes());
        let password = base64::engine::general_purpose::STANDARD.encode(mac);
        Credentials { username, password }
    }

    /// The long-term key, MD5(username ":" realm ":" password) after preparing realm and
    /// password (RFC 8489 §9.2.2; stun-rs applies RFC 8265's OpaqueString), that signs every request in `realm`.
    pub fn key(&self, realm: &str) -> Result<Vec<u8>, TurnCodecError> {
        HMACKey::new_long_term(
            &self.username,
            realm,
            &self.password,
            Algorithm::from(AlgorithmId::MD5),
        )
        .map(|k| k.as_bytes().to_vec())
        .map_err(|e| TurnCodecError::BadAttribute {
            what: "credentials",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_api_password_is_the_hmac_of_the_username() {
        // Known answer: HMAC-SHA1("secret", "1700000000:alice"), computed independently with
        // `printf %s 1700000000:alice | openssl dgst -sha1 -hmac secret -binary | base64`.
        let c = Credentials::rest_api("secret", "alice", 1_700_000_000);
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.password, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
    }

    #[test]
    fn long_term_key_is_md5_of_user_realm_password() {
        // RFC 5769 §2.4's user and password as SASLprep leaves it ("TheMatrIX"; stun-rs applies
        // RFC 8265's OpaqueString, which refuses the soft hyphen of the RFC's raw form);
        // expected bytes: MD5 of the UTF-8 of "<user>:example.org:TheMatrIX", computed apart.
        let c = Credentials::new(
            "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}",
            "TheMatrIX",
        );
        let key = c.key("example.org").unwrap();
        assert_eq!(
            key,
            [
                0xe8, 0xca, 0x7a, 0xd5, 0x9d, 0x5e, 0xb0, 0x51, 0x8e, 0x31, 0x29, 0x11, 0xd2, 0xda,
                0xb2, 0xa9
            ]
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", Credentials::new("u", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

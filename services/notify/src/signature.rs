//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): what notify puts
//! in `webhook-signature`, and what a receiver (the tests, the demo sink) checks.
//!
//! The signed content is `"{msg_id}.{timestamp}.{body}"`, so a receiver knows the body
//! came from us, was not altered, and (with its own timestamp tolerance) is not a replay
//! of an old request. The message id stays the same across retries of one delivery, which
//! is what lets receivers deduplicate.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of Standard Webhooks secrets; what follows it is the base64 key.
pub const SECRET_PREFIX: &str = "whsec_";

/// The signature scheme this module writes and accepts.
const VERSION: &str = "v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("signing secret is empty")]
    Empty,
    #[error("signing secret starts with {SECRET_PREFIX:?} but the rest is not base64")]
    NotBase64,
}

/// Checks a configured secret once at start-up, so a typo fails the service instead of
/// every delivery being signed with a key the receiver does not know.
pub fn validate_secret(secret: &str) -> Result<(), SecretError> {
    if secret.is_empty() {
        return Err(SecretError::Empty);
    }
    match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => STANDARD
            .decode(encoded)
            .map(|_| ())
            .map_err(|_| SecretError::NotBase64),
        None => Ok(()),
    }
}

/// The HMAC key of a secret: base64-decoded after `whsec_`, else the raw bytes.
fn key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        // Not a valid `whsec_` secret: fall back to the raw bytes, like any other secret.
        // `validate_secret` keeps such secrets out of the configuration in the first place.
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

fn mac(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    let mut mac =
        HmacSha256::new_from_slice(&key(secret)).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` header value: `v1,<base64 HMAC-SHA256>`.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, msg_id, timestamp, body).finalize().into_bytes();
    format!("{VERSION},{}", STANDARD.encode(tag))
}

/// Whether `signature_header` holds a valid `v1` signature of the message. The header
/// may list several space-separated signatures (during key rotation); one valid one is
/// enough. Comparison is constant-time (`verify_slice`).
pub fn verify(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signature_header: &str,
) -> bool {
    signature_header.split_whitespace().any(|candidate| {
        let Some((version, encoded)) = candidate.split_once(',') else {
            return false;
        };
        if version != VERSION {
            return false;
        }
        let Ok(tag) = STANDARD.decode(encoded) else {
            return false;
        };
        mac(secret, msg_id, timestamp, body)
            .verify_slice(&tag)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_example() {
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn raw_secrets_are_used_as_bytes() {
        // Computed independently of `sign`, straight from the definition.
        let mut mac = HmacSha256::new_from_slice(b"plain-secret").unwrap();
        mac.update(b"id-1.42.hello");
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(sign("plain-secret", "id-1", 42, b"hello"), expected);
    }

    #[test]
    fn round_trip_and_tampering() {
        let secret = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=";
        let header = sign(secret, "d-1", 1_700_000_000, b"{\"a\":1}");
        assert!(verify(secret, "d-1", 1_700_000_000, b"{\"a\":1}", &header));
        assert!(!verify(secret, "d-1", 1_700_000_000, b"{\"a\":2}", &header));
        assert!(!verify(secret, "d-2", 1_700_000_000, b"{\"a\":1}", &header));
        assert!(!verify(secret, "d-1", 1_700_000_001, b"{\"a\":1}", &header));
        assert!(!verify(
            "whsec_b3RoZXI=",
            "d-1",
            1_700_000_000,
            b"{\"a\":1}",
            &header
        ));
    }

    #[test]
    fn accepts_one_valid_signature_among_several() {
        let secret = "s3cret";
        let good = sign(secret, "m", 1, b"x");
        assert!(verify(secret, "m", 1, b"x", &format!("v1,AAAA {good}")));
        assert!(!verify(secret, "m", 1, b"x", "v1,not-base64!! v2,abc"));
        assert!(!verify(secret, "m", 1, b"x", &good.replace("v1,", "v2,")));
        assert!(!verify(secret, "m", 1, b"x", ""));
    }

    #[test]
    fn validates_secrets() {
        assert_eq!(validate_secret(""), Err(SecretError::Empty));
        assert_eq!(validate_secret("whsec_%%%"), Err(SecretError::NotBase64));
        assert!(validate_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(validate_secret("anything-else").is_ok());
    }
}

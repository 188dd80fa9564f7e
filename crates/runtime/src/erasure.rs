//! What every service's erasure handler shares: the pseudonym an erased customer's rows
//! keep in place of their id (`erased:` + hex HMAC-SHA256 of the id under a configured
//! secret key), and scrubbing the disk once the rows are changed.
//!
//! Every service derives the same value from the same key, so rows of one customer stay
//! one (distinct customer counts and per-(action, customer) idempotency keep working), a
//! replayed erasure is a no-op, and late feedback of an erased customer is recognised
//! without the id itself being kept anywhere. Keyed, because an unkeyed hash lets anyone
//! who guesses an id confirm it against a stored pseudonym; with the key secret, only
//! the services can.
//!
//! Rotation: a new key only changes pseudonyms derived from then on. Rows erased under
//! the old key keep their old pseudonym, so counts stay exact; the erasure ledgers hold
//! old-key pseudonyms, so rotate only once the consumers have caught up (late feedback
//! of a customer erased before the rotation would no longer be recognised).

use closeloop_bus::HandlerError;
use closeloop_store::{Backend, Database};
use closeloop_telemetry::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key used when none is configured: public (it is in the source), so it only
/// keeps the loop working locally; a production store must have its own.
const DEVELOPMENT_KEY: &str = "closeloop-development-pseudonym-key";

/// Shortest key accepted: 128 bits of a random hex or base64 string.
const MIN_KEY_LEN: usize = 16;

/// The pseudonym key, one flag / variable shared by categorise, trends and notify.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PseudonymArgs {
    /// Secret key of erased customers' pseudonyms (HMAC-SHA256), the same for every
    /// service, at least 16 characters [default: a public development key].
    #[arg(long = "pseudonym-key", env = "CLOSELOOP_PSEUDONYM_KEY", value_parser = parse_key)]
    pub pseudonym_key: Option<Secret>,
}

fn parse_key(value: &str) -> Result<Secret, String> {
    if value.len() < MIN_KEY_LEN {
        return Err(format!(
            "the pseudonym key must be at least {MIN_KEY_LEN} characters long"
        ));
    }
    Ok(Secret::new(value))
}

impl PseudonymArgs {
    /// The service's pseudonyms. Without a configured key on PostgreSQL (the production
    /// form) it says loudly that the public development key is in use.
    pub fn pseudonyms(&self, service: &'static str, db: &Database) -> Pseudonyms {
        match &self.pseudonym_key {
            Some(key) => Pseudonyms::new(key.expose()),
            None => {
                if db.backend() == Backend::Postgres {
                    tracing::warn!(
                        service,
                        "CLOSELOOP_PSEUDONYM_KEY is not set: erased customers' pseudonyms use the \
                         public development key, so a guessed customer id can be confirmed \
                         against them; set a secret key (the same for every service)"
                    );
                }
                Pseudonyms::development()
            }
        }
    }
}

/// Derives pseudonyms under one key.
#[derive(Clone)]
pub struct Pseudonyms {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms([redacted])")
    }
}

impl Pseudonyms {
    pub fn new(key: &str) -> Self {
        Self {
            // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
            mac: Hmac::<Sha256>::new_from_slice(key.as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC accepts every key length")),
        }
    }

    /// Under the public development key (local runs and tests).
    pub fn development() -> Self {
        Self::new(DEVELOPMENT_KEY)
    }

    /// The pseudonym of `customer_id`.
    pub fn of(&self, customer_id: &str) -> String {
        let digest = self
            .mac
            .clone()
            .chain_update(customer_id.as_bytes())
            .finalize()
            .into_bytes();
        // One hex formatting of the whole digest: a `format!` per byte had made this a
        // few per cent of the whole loop's CPU (categorise and notify call it per
        // feedback).
        format!("erased:{digest:x}")
    }
}

/// After an erasure was applied to the tables: no copy of what it changed left in the
/// database files ([`Database::scrub_after_erasure`]), as a handler's result. A
/// checkpoint that readers kept from finishing is transient, so the erasure is retried
/// (every step of it is idempotent) until the disk is clean too.
pub async fn scrub_after_erasure(db: &Database) -> Result<(), HandlerError> {
    db.scrub_after_erasure().await.map_err(|error| {
        if error.is_transient() {
            HandlerError::transient(error)
        } else {
            HandlerError::permanent(format!(
                "could not scrub the database after an erasure: {error}"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use sha2::Digest;

    #[test]
    fn pseudonyms_are_stable_distinct_and_do_not_contain_the_id() {
        let p = Pseudonyms::new("a-secret-key-of-some-length");
        let a = p.of("cust-4711");
        assert_eq!(a, p.of("cust-4711"));
        assert_ne!(a, p.of("cust-4712"));
        assert!(a.starts_with("erased:") && !a.contains("4711"), "{a}");
        assert_eq!(a.len(), "erased:".len() + 64);
    }

    /// Pseudonyms are stored: the same id must give the same text in every version.
    #[test]
    fn a_pseudonym_is_the_lowercase_hex_hmac_of_the_id() {
        let key = "a-secret-key-of-some-length";
        let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
            .expect("any key length")
            .chain_update(b"cust-4711")
            .finalize()
            .into_bytes();
        let hex: String = mac.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(
            Pseudonyms::new(key).of("cust-4711"),
            format!("erased:{hex}")
        );
    }

    #[test]
    fn another_key_gives_another_pseudonym_and_none_is_a_plain_hash() {
        let id = "cust-4711";
        let one = Pseudonyms::new("a-secret-key-of-some-length").of(id);
        let other = Pseudonyms::new("another-secret-key-entirely").of(id);
        assert_ne!(one, other);
        // Not recomputable without the key: neither the plain SHA-256 of the id nor the
        // unkeyed form earlier versions stored.
        let plain = format!("erased:{:x}", sha2::Sha256::digest(id.as_bytes()));
        let unkeyed = format!(
            "erased:{:x}",
            sha2::Sha256::new()
                .chain_update(b"closeloop-erasure\0")
                .chain_update(id.as_bytes())
                .finalize()
        );
        for keyed in [&one, &other, &Pseudonyms::development().of(id)] {
            assert_ne!(keyed, &plain);
            assert_ne!(keyed, &unkeyed);
        }
    }

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        pseudonym: PseudonymArgs,
    }

    #[test]
    fn the_key_is_configured_checked_and_never_printed() {
        let flags = Flags::try_parse_from(["x", "--pseudonym-key", "0123456789abcdef-key"])
            .expect("a long enough key");
        assert!(!format!("{flags:?}").contains("0123456789abcdef"));
        let key = flags.pseudonym.pseudonym_key.expect("configured");
        assert_eq!(
            Pseudonyms::new(key.expose()).of("c"),
            Pseudonyms::new("0123456789abcdef-key").of("c")
        );
        let short = Flags::try_parse_from(["x", "--pseudonym-key", "short"]).unwrap_err();
        assert!(short.to_string().contains("at least 16"), "{short}");
    }
}

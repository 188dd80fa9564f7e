//! Who may act on actions: the JSON API's bearer token, and the session cookie and CSRF
//! values the `/ops` page derives from the same token. Secrets are compared in constant
//! time and never printed.

use std::fmt::Write;

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use closeloop_http::{bearer_token, tokens_match};

/// The secrets the page derives its session and CSRF values from.
#[derive(Clone)]
pub struct OpsSecrets {
    session: Option<String>,
    csrf: String,
}

impl std::fmt::Debug for OpsSecrets {
    // The session value is as good as the token: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpsSecrets([redacted])")
    }
}

impl OpsSecrets {
    /// The session cookie's value; `None` without an ops token (no sign-in then).
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The value every `/ops` form carries.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// From the ops token; without one, a random per-process secret keeps CSRF
    /// protection (forms rendered before a restart then need a reload).
    pub fn new(ops_token: Option<&str>) -> Self {
        let random = Uuid::new_v4().to_string();
        let secret = ops_token.unwrap_or(&random);
        Self {
            session: ops_token.map(|token| derive(token, "session")),
            csrf: derive(secret, "csrf"),
        }
    }
}

fn derive(secret: &str, purpose: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"closeloop-ops\0")
        .chain_update(purpose.as_bytes())
        .chain_update(b"\0")
        .chain_update(secret.as_bytes())
        .finalize();
    digest
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_derived_not_copied() {
        let secrets = OpsSecrets::new(Some("s3cret"));
        let session = secrets.session.clone().expect("session with a token");
        assert_eq!(session.len(), 64);
        assert!(!session.contains("s3cret"));
        assert_ne!(session, secrets.csrf);
        assert_eq!(
            OpsSecrets::new(Some("s3cret")).csrf,
            secrets.csrf,
            "stable across restarts"
        );
        let open = OpsSecrets::new(None);
        assert!(open.session.is_none());
        assert_ne!(
            open.csrf,
            OpsSecrets::new(None).csrf,
            "random without a token"
        );
    }
}

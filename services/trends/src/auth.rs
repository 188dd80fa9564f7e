//! Who may act on actions: the JSON API's bearer token (the [`OpsToken`] notify's API
//! shares), and the sessions and forgery checks of the `/ops` page.
//!
//! Signing in to `/ops` with the ops token starts a session: a random id (256 bits from
//! the operating system's CSPRNG) in an `HttpOnly; SameSite=Strict` cookie, and a random
//! CSRF token every form carries. Sessions live in trends' database — the SHA-256 of the
//! id only, so a copy of the table holds no usable cookie — so every replica accepts
//! them, signing out ends them everywhere, and they expire after a configured time.
//!
//! Every form post must also come from this site: its `Origin` (or, without one, its
//! `Referer`) must be a configured origin or the request's own host. `SameSite=Strict`
//! already keeps the cookie off cross-site posts; the origin check also covers the open
//! page (no token configured, the `up` default), which has no cookie to withhold.

use std::fmt::Write;

use axum::http::{header, HeaderMap, Uri};
use chrono::Utc;
use closeloop_http::{Problem, ProblemType};
use closeloop_store::sqlx;
use sha2::{Digest, Sha256};

pub use closeloop_http::{tokens_match, OpsToken};

use crate::store::TrendsStore;

/// The `/ops` session cookie.
pub const COOKIE: &str = "closeloop_ops";

/// An operator allowed to use the page: signed in, or anyone when no token is set.
#[derive(Clone)]
pub struct Session {
    /// The stored hash of the session id; `None` on the open page (no token configured).
    id_hash: Option<String>,
    csrf: String,
}

impl Session {
    /// The value every form of this session carries.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether the page offers to sign out (only a real session can).
    pub fn can_sign_out(&self) -> bool {
        self.id_hash.is_some()
    }

    /// Whether a form's CSRF field is this session's, in constant time.
    pub fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|presented| tokens_match(presented, &self.csrf))
    }
}

impl std::fmt::Debug for Session {
    // Both values are as good as a signed-in browser: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session([redacted])")
    }
}

/// The `/ops` sign-in settings and the per-process CSRF token of the open page.
pub struct OpsAuth {
    token: Option<OpsToken>,
    ttl_ms: i64,
    secure_cookie: bool,
    /// Origins forms may come from; empty: the request's own host.
    origins: Vec<String>,
    /// Without a token there are no sessions; one random CSRF token per process still
    /// keeps another site from posting the forms (a page rendered before a restart then
    /// needs a reload).
    open_csrf: String,
}

impl OpsAuth {
    pub fn new(
        token: Option<OpsToken>,
        ttl_minutes: i64,
        secure_cookie: bool,
        origins: &[String],
    ) -> Self {
        Self {
            token,
            ttl_ms: ttl_minutes.saturating_mul(60_000),
            secure_cookie,
            origins: origins
                .iter()
                .map(|origin| origin.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            open_csrf: random_token(),
        }
    }

    /// The configured ops token, if any.
    pub fn token(&self) -> Option<&OpsToken> {
        self.token.as_ref()
    }

    /// The session the request's cookie names, if it exists and has not expired; always
    /// the open session without a token.
    pub async fn session(
        &self,
        store: &TrendsStore,
        headers: &HeaderMap,
    ) -> Result<Option<Session>, sqlx::Error> {
        if self.token.is_none() {
            return Ok(Some(Session {
                id_hash: None,
                csrf: self.open_csrf.clone(),
            }));
        }
        let now_ms = Utc::now().timestamp_millis();
        for id in session_cookies(headers) {
            let id_hash = hash(id);
            if let Some(csrf) = store.session_csrf(&id_hash, now_ms).await? {
                return Ok(Some(Session {
                    id_hash: Some(id_hash),
                    csrf,
                }));
            }
        }
        Ok(None)
    }

    /// Starts a session (pruning expired ones on the way) and returns its `Set-Cookie`.
    pub async fn sign_in(&self, store: &TrendsStore) -> Result<String, sqlx::Error> {
        let now_ms = Utc::now().timestamp_millis();
        let pruned = store.prune_sessions(now_ms).await?;
        if pruned > 0 {
            tracing::debug!(pruned, "expired /ops sessions removed");
        }
        let id = random_token();
        store
            .create_session(
                &hash(&id),
                &random_token(),
                now_ms,
                now_ms.saturating_add(self.ttl_ms),
            )
            .await?;
        Ok(self.cookie(&id, self.ttl_ms / 1000))
    }

    /// Ends `session` for every replica (the open session has nothing to end).
    pub async fn sign_out(
        &self,
        store: &TrendsStore,
        session: &Session,
    ) -> Result<(), sqlx::Error> {
        match &session.id_hash {
            Some(id_hash) => store.delete_session(id_hash).await,
            None => Ok(()),
        }
    }

    /// The `Set-Cookie` that makes the browser forget its session cookie.
    pub fn cleared_cookie(&self) -> String {
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age_seconds: i64) -> String {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!(
            "{COOKIE}={value}; Path=/ops; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}"
        )
    }

    /// `Ok` when a form post comes from this site: its `Origin` (else its `Referer`'s
    /// origin) is a configured origin, or without any configured the request's own host.
    /// A post with neither header is refused: every browser sends one of them on a form
    /// post (the page's `Referrer-Policy: same-origin` keeps `Origin` for our own forms).
    pub fn check_form_origin(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), Problem> {
        let refused = |detail: &str| {
            Err(Problem::new(ProblemType::CrossSiteRequest).detail(format!(
                "{detail}; forms are only accepted from this site's own pages"
            )))
        };
        let Some(origin) = request_origin(headers) else {
            return refused("the post names no Origin or Referer");
        };
        let allowed = if self.origins.is_empty() {
            let host = headers
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
                .or_else(|| uri.authority().map(|authority| authority.as_str()));
            host.is_some_and(|host| {
                let host = host.to_ascii_lowercase();
                origin == format!("http://{host}") || origin == format!("https://{host}")
            })
        } else {
            self.origins.contains(&origin)
        };
        if allowed {
            Ok(())
        } else {
            refused("the form was posted from another origin")
        }
    }
}

/// An origin as configured: `http://` or `https://`, a host and an optional port,
/// nothing after it (a trailing `/` is tolerated).
pub fn check_origin(origin: &str) -> Result<(), String> {
    let trimmed = origin.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be scheme://host[:port] with no path".into());
    }
    Ok(())
}

/// Where a post came from, lower-cased: the `Origin` header (`null` counts as foreign),
/// else the scheme, host and port of the `Referer`.
fn request_origin(headers: &HeaderMap) -> Option<String> {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(origin) = text(header::ORIGIN) {
        return Some(origin.trim().to_ascii_lowercase());
    }
    let referer = text(header::REFERER)?.trim();
    let (scheme, rest) = referer.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// The values of the session cookie the request carries (well-formed ones only: 64 hex
/// digits, as [`random_token`] makes them).
fn session_cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, value)| {
            *name == COOKIE && value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|(_, value)| value)
}

/// 256 random bits as hex, from the thread-local CSPRNG (ChaCha, seeded by the OS).
fn random_token() -> String {
    hex(&rand::random::<[u8; 32]>())
}

/// What the database keeps of a session id.
fn hash(id: &str) -> String {
    hex(&Sha256::new()
        .chain_update(b"closeloop-ops-session\0")
        .chain_update(id.as_bytes())
        .finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name, value.parse().expect("header value"));
        }
        headers
    }

    #[test]
    fn tokens_are_random_and_the_stored_hash_is_not_the_id() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_ne!(hash(&a), a);
        assert_eq!(hash(&a), hash(&a));
        let open = OpsAuth::new(None, 60, false, &[]);
        assert_ne!(open.open_csrf, OpsAuth::new(None, 60, false, &[]).open_csrf);
    }

    #[test]
    fn only_well_formed_session_cookies_are_looked_up() {
        let id = random_token();
        let cookies = headers(&[(
            header::COOKIE,
            &format!("other=1; {COOKIE}=short; {COOKIE}={id}"),
        )]);
        assert_eq!(session_cookies(&cookies).collect::<Vec<_>>(), [id.as_str()]);
    }

    #[test]
    fn cookies_say_secure_only_when_configured() {
        let plain = OpsAuth::new(None, 480, false, &[]).cookie("v", 28_800);
        assert_eq!(
            plain,
            "closeloop_ops=v; Path=/ops; HttpOnly; SameSite=Strict; Max-Age=28800"
        );
        let secure = OpsAuth::new(None, 480, true, &[]).cleared_cookie();
        assert!(secure.ends_with("Max-Age=0; Secure"), "{secure}");
    }

    #[test]
    fn forms_must_come_from_this_site() {
        let uri = Uri::from_static("/ops/login");
        let auth = OpsAuth::new(None, 60, false, &[]);
        let host = (header::HOST, "127.0.0.1:8082");
        let check = |auth: &OpsAuth, pairs: &[(header::HeaderName, &str)]| {
            auth.check_form_origin(&headers(pairs), &uri).is_ok()
        };
        assert!(check(
            &auth,
            &[host.clone(), (header::ORIGIN, "http://127.0.0.1:8082")]
        ));
        assert!(check(
            &auth,
            &[host.clone(), (header::ORIGIN, "HTTPS://127.0.0.1:8082")]
        ));
        assert!(check(
            &auth,
            &[
                host.clone(),
                (header::REFERER, "http://127.0.0.1:8082/ops?notice=x")
            ]
        ));
        assert!(!check(
            &auth,
            &[host.clone(), (header::ORIGIN, "https://evil.example")]
        ));
        assert!(!check(
            &auth,
            &[host.clone(), (header::ORIGIN, "http://127.0.0.1:8083")]
        ));
        assert!(!check(&auth, &[host.clone(), (header::ORIGIN, "null")]));
        assert!(
            !check(
                &auth,
                &[
                    host.clone(),
                    (header::ORIGIN, "https://evil.example"),
                    (header::REFERER, "http://127.0.0.1:8082/ops"),
                ]
            ),
            "Origin wins over Referer"
        );
        assert!(!check(
            &auth,
            &[
                host.clone(),
                (header::REFERER, "https://evil.example/127.0.0.1:8082")
            ]
        ));
        assert!(!check(&auth, std::slice::from_ref(&host)), "neither header");
        assert!(
            !check(&auth, &[(header::ORIGIN, "http://127.0.0.1:8082")]),
            "no host"
        );

        let proxied = OpsAuth::new(None, 60, false, &["https://Ops.example.com/".to_owned()]);
        let internal = (header::HOST, "trends:8082");
        assert!(check(
            &proxied,
            &[
                internal.clone(),
                (header::ORIGIN, "https://ops.example.com")
            ]
        ));
        assert!(!check(
            &proxied,
            &[internal.clone(), (header::ORIGIN, "http://trends:8082")]
        ));
        let refused = proxied
            .check_form_origin(
                &headers(&[internal, (header::ORIGIN, "https://evil.example")]),
                &uri,
            )
            .expect_err("foreign");
        assert_eq!(refused.problem_type(), ProblemType::CrossSiteRequest);
    }

    #[test]
    fn configured_origins_are_bare_origins() {
        assert!(check_origin("https://ops.example.com").is_ok());
        assert!(check_origin("http://localhost:8082/").is_ok());
        assert!(check_origin("ops.example.com").is_err());
        assert!(check_origin("https://ops.example.com/ops").is_err());
        assert!(check_origin("https://").is_err());
    }
}

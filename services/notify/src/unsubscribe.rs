//! One-click unsubscribe (RFC 8058). Every message carries a per-customer link,
//! `{public URL}/unsubscribe/{token}`: in e-mails as `List-Unsubscribe` with
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, in webhook payloads as
//! `unsubscribe_url` for the source system to show. A GET shows a small confirmation
//! page (link scanners GET, so a GET never unsubscribes); a POST — the mail client's
//! one click, or the page's button — unsubscribes at once: the customer's preferences
//! say so, what they were still waiting for is cancelled, and the record is published
//! on `customers.preferences.v1`.
//!
//! The token is `{customer id, base64url}.{expiry, Unix seconds}.{HMAC-SHA256 of both,
//! base64url}`: nobody without the key can make one for another customer or extend
//! one, and notify needs no table of links. It names the customer to whoever holds
//! it, which is the customer themselves (and the source system that knows them).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use closeloop_events::{Envelope, SET_BY_CUSTOMER};
use closeloop_http::html::{escape, page};
use closeloop_telemetry::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::handlers::{report_cancelled, Context};
use crate::preferences::{self, UNSUBSCRIBED};

type HmacSha256 = Hmac<Sha256>;

/// What signs links when no key is configured: public, so links are forgeable; fine
/// on a laptop, said loudly on PostgreSQL (see `lib.rs`).
pub const DEVELOPMENT_KEY: &str = "closeloop-development-unsubscribe-key";

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is not one of ours")]
    Invalid,
    #[error("the link has expired")]
    Expired,
}

/// Makes and checks unsubscribe links.
#[derive(Clone)]
pub struct Links {
    key: Secret,
    /// Ends with `/unsubscribe/`.
    base: String,
    lifetime: chrono::Duration,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base", &self.base)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Links {
    /// Links under `public_url` (where customers reach notify), valid for `lifetime`.
    pub fn new(key: Secret, public_url: &str, lifetime: chrono::Duration) -> Self {
        Links {
            key,
            base: format!("{}/unsubscribe/", public_url.trim_end_matches('/')),
            lifetime,
        }
    }

    fn mac(&self, signed: &str) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(self.key.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"closeloop-unsubscribe-v1.");
        mac.update(signed.as_bytes());
        mac
    }

    /// The token of `customer_id`, valid until `now` + the lifetime.
    pub fn token(&self, customer_id: &str, now: DateTime<Utc>) -> String {
        let expires = (now + self.lifetime).timestamp();
        let signed = format!("{}.{expires}", URL_SAFE_NO_PAD.encode(customer_id));
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&signed).finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The link of `customer_id`, as messages carry it.
    pub fn url(&self, customer_id: &str, now: DateTime<Utc>) -> String {
        format!("{}{}", self.base, self.token(customer_id, now))
    }

    /// The customer a token names, if it is ours and has not expired. The tag is
    /// compared in constant time.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<String, TokenError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Invalid)?;
        self.mac(signed)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Invalid)?;
        let (customer, expires) = signed.split_once('.').ok_or(TokenError::Invalid)?;
        let expires: i64 = expires.parse().map_err(|_| TokenError::Invalid)?;
        if now.timestamp() > expires {
            return Err(TokenError::Expired);
        }
        let customer = URL_SAFE_NO_PAD
            .decode(customer)
            .map_err(|_| TokenError::Invalid)?;
        String::from_utf8(customer).map_err(|_| TokenError::Invalid)
    }
}

/// `GET` and `POST /unsubscribe/{token}`: no ops token, the link is the credential.
pub fn routes(ctx: Context, links: Arc<Links>) -> Router {
    Router::new()
        .route("/unsubscribe/{token}", get(confirm).post(unsubscribe))
        .with_state(Unsubscribe { ctx, links })
}

#[derive(Clone)]
struct Unsubscribe {
    ctx: Context,
    links: Arc<Links>,
}

/// The page's words in one language.
struct Words {
    lang: &'static str,
    title: &'static str,
    question: &'static str,
    button: &'static str,
    done: &'static str,
    already: &'static str,
    invalid: &'static str,
    expired: &'static str,
    failed: &'static str,
}

const ENGLISH: Words = Words {
    lang: "en",
    title: "Unsubscribe",
    question: "Do you no longer want to hear from us about what became of your feedback?",
    button: "Unsubscribe",
    done: "You are unsubscribed. We will not write to you about your feedback again.",
    already: "You are already unsubscribed. We will not write to you about your feedback again.",
    invalid: "This unsubscribe link is not valid. Please use the link from our most recent message.",
    expired: "This unsubscribe link has expired. Please use the link from our most recent message.",
    failed: "Something went wrong on our side and you are not unsubscribed yet. Please try again in a minute.",
};

const GERMAN: Words = Words {
    lang: "de",
    title: "Abmelden",
    question: "Möchten Sie keine Nachrichten mehr darüber erhalten, was aus Ihrer Rückmeldung geworden ist?",
    button: "Abmelden",
    done: "Sie sind abgemeldet. Wir schreiben Ihnen nicht mehr zu Ihren Rückmeldungen.",
    already: "Sie sind bereits abgemeldet. Wir schreiben Ihnen nicht mehr zu Ihren Rückmeldungen.",
    invalid: "Dieser Abmeldelink ist ungültig. Bitte verwenden Sie den Link aus unserer letzten Nachricht.",
    expired: "Dieser Abmeldelink ist abgelaufen. Bitte verwenden Sie den Link aus unserer letzten Nachricht.",
    failed: "Bei uns ist etwas schiefgegangen, Sie sind noch nicht abgemeldet. Bitte versuchen Sie es in einer Minute noch einmal.",
};

/// German when the customer's preferences or, failing those, their browser ask for it.
fn words(language: Option<&str>, headers: &HeaderMap) -> &'static Words {
    let browser = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(str::trim);
    match language.or(browser) {
        Some(tag) if tag.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("de")) => &GERMAN,
        _ => &ENGLISH,
    }
}

fn render(status: StatusCode, words: &Words, body: &str) -> Response {
    page(
        status,
        format!(
            "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{}</title><style>body{{font-family:sans-serif;max-width:32rem;\
             margin:3rem auto;padding:0 1rem;line-height:1.5}}button{{font-size:1rem;\
             padding:.5rem 1rem}}</style></head><body><h1>{}</h1>{body}</body></html>",
            words.lang,
            escape(words.title),
            escape(words.title)
        ),
    )
}

fn refused(error: TokenError, words: &Words) -> Response {
    let (status, text) = match error {
        TokenError::Invalid => (StatusCode::NOT_FOUND, words.invalid),
        TokenError::Expired => (StatusCode::GONE, words.expired),
    };
    render(status, words, &format!("<p>{}</p>", escape(text)))
}

/// `GET`: asks; never unsubscribes (mail scanners follow links).
async fn confirm(
    State(state): State<Unsubscribe>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let customer_id = match state.links.verify(&token, Utc::now()) {
        Ok(customer_id) => customer_id,
        Err(error) => return refused(error, words(None, &headers)),
    };
    let known = preferences::get(&state.ctx.db, &customer_id)
        .await
        .ok()
        .flatten();
    let words = words(known.as_ref().and_then(|p| p.language.as_deref()), &headers);
    if known.is_some_and(|p| p.unsubscribed) {
        return render(
            StatusCode::OK,
            words,
            &format!("<p>{}</p>", escape(words.already)),
        );
    }
    // The form posts what a one-click client posts, to this very URL.
    render(
        StatusCode::OK,
        words,
        &format!(
            "<p>{}</p><form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" \
             value=\"One-Click\"><button type=\"submit\">{}</button></form>",
            escape(words.question),
            escape(words.button)
        ),
    )
}

/// `POST`: unsubscribes at once. The body (`List-Unsubscribe=One-Click`) is not
/// required: the signed link is what authorises it.
async fn unsubscribe(
    State(state): State<Unsubscribe>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Utc::now();
    let customer_id = match state.links.verify(&token, now) {
        Ok(customer_id) => customer_id,
        Err(error) => {
            state
                .ctx
                .metrics
                .unsubscribes
                .with_label_values(&[match error {
                    TokenError::Invalid => "invalid",
                    TokenError::Expired => "expired",
                }])
                .inc();
            return refused(error, words(None, &headers));
        }
    };
    match unsubscribe_customer(&state.ctx, &customer_id, now).await {
        Ok((language, newly)) => {
            let words = words(language.as_deref(), &headers);
            let text = if newly { words.done } else { words.already };
            render(StatusCode::OK, words, &format!("<p>{}</p>", escape(text)))
        }
        Err(error) => {
            tracing::error!(%error, "could not store an unsubscribe");
            let words = words(None, &headers);
            render(
                StatusCode::SERVICE_UNAVAILABLE,
                words,
                &format!("<p>{}</p>", escape(words.failed)),
            )
        }
    }
}

/// Stores the customer's unsubscribe, cancels what they were waiting for and publishes
/// their new preferences. Returns their language and whether they were subscribed.
async fn unsubscribe_customer(
    ctx: &Context,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<(Option<String>, bool), sqlx::Error> {
    let current = preferences::get(&ctx.db, customer_id).await?;
    let language = current.as_ref().and_then(|p| p.language.clone());
    if current.as_ref().is_some_and(|p| p.unsubscribed) {
        return Ok((language, false));
    }
    let mut record = match &current {
        Some(current) => current.to_record(SET_BY_CUSTOMER, now),
        // Nobody told notify anything but their feedback: they do not want to hear
        // from us, so no consent either.
        None => closeloop_events::CustomerPreferences {
            customer_id: customer_id.to_owned(),
            source: SET_BY_CUSTOMER.to_owned(),
            updated_at: now,
            consent: false,
            channels: None,
            language: None,
            unsubscribed: true,
        },
    };
    record.unsubscribed = true;
    // A record applied in this very millisecond would win the tie: be after it.
    if let Some(last) = current.as_ref().and_then(|p| p.updated_at_ms) {
        if last >= now.timestamp_millis() {
            record.updated_at = DateTime::from_timestamp_millis(last + 1).unwrap_or(now);
        }
    }
    let applied = preferences::apply(&ctx.db, &ctx.pseudonyms, &record).await?;
    ctx.metrics
        .unsubscribes
        .with_label_values(&["unsubscribed"])
        .inc();
    tracing::info!(
        pseudonym = %ctx.pseudonyms.of(customer_id),
        cancelled = applied.cancelled.len(),
        "customer unsubscribed"
    );
    report_cancelled(ctx, applied.cancelled, customer_id, UNSUBSCRIBED).await;
    // notify already acts on it; the event tells everyone else (and a replay of the
    // topic leaves the same row).
    let envelope = Envelope::new(record);
    if let Err(error) = ctx.publisher.publish(&envelope, None).await {
        ctx.metrics.outcome_publish_failures.inc();
        tracing::warn!(%error, "could not publish an unsubscribe; notify stored it");
    }
    Ok((language, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Links {
        Links::new(
            Secret::new("test-key-0123456789"),
            "https://care.example.com/",
            chrono::Duration::days(30),
        )
    }

    #[test]
    fn a_link_names_its_customer_until_it_expires() {
        let now = Utc::now();
        let url = links().url("kunde/ä 7", now);
        let token = url
            .strip_prefix("https://care.example.com/unsubscribe/")
            .expect("under the public URL");
        assert!(!token.contains(['/', '?', '#', '+', '=']), "{token}");
        assert_eq!(links().verify(token, now).as_deref(), Ok("kunde/ä 7"));
        assert_eq!(
            links().verify(token, now + chrono::Duration::days(31)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forged_and_altered_tokens_are_refused() {
        let now = Utc::now();
        let token = links().token("c-1", now);
        let (signed, tag) = token.rsplit_once('.').unwrap();
        // Another customer under the same tag.
        let other = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("c-2"),
            &signed[signed.find('.').unwrap() + 1..]
        );
        assert_eq!(
            links().verify(&format!("{other}.{tag}"), now),
            Err(TokenError::Invalid)
        );
        // A later expiry under the same tag.
        let (customer, _) = signed.split_once('.').unwrap();
        let extended = format!("{customer}.{}.{tag}", i64::MAX);
        assert_eq!(links().verify(&extended, now), Err(TokenError::Invalid));
        // Another key.
        let foreign = Links::new(
            Secret::new("another-key-0123456"),
            "https://x",
            chrono::Duration::days(30),
        );
        assert_eq!(foreign.verify(&token, now), Err(TokenError::Invalid));
        for garbage in ["", ".", "..", "a.b.c", "not-a-token", &format!("{token}x")] {
            assert_eq!(
                links().verify(garbage, now),
                Err(TokenError::Invalid),
                "{garbage}"
            );
        }
    }

    #[test]
    fn the_page_speaks_german_when_asked() {
        let mut headers = HeaderMap::new();
        assert_eq!(words(None, &headers).lang, "en");
        headers.insert(header::ACCEPT_LANGUAGE, "de-CH,de;q=0.9".parse().unwrap());
        assert_eq!(words(None, &headers).lang, "de");
        assert_eq!(words(Some("en"), &headers).lang, "en");
    }
}

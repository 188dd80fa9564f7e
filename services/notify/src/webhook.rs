//! Channel 1: the source system's webhook. Each source has a URL and a secret; a
//! delivery is POSTed as JSON and signed following Standard Webhooks (`webhook-id` =
//! the delivery id, stable across retries so receivers can dedupe; `webhook-timestamp`;
//! `webhook-signature` = `v1,` + base64 HMAC-SHA256).

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use crate::outbox::Due;
use crate::signature;
use crate::worker::Attempt;
use closeloop_telemetry::Secret;

/// The longest `Retry-After` honoured; a receiver asking for more gets this.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// Where each source's notifications go and how they are signed.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    pub http: reqwest::Client,
    pub urls: HashMap<String, reqwest::Url>,
    /// Signing secrets per source (`Secret`: never in `Debug` output).
    pub secrets: HashMap<String, Secret>,
    pub timeout: Duration,
}

impl WebhookSender {
    /// Whether `source` has a webhook.
    pub fn routes(&self, source: &str) -> bool {
        self.urls.contains_key(source)
    }

    /// The rate-limit key of `source`'s receiver: its host and port, so sources that
    /// share a receiver share its limit.
    pub fn destination(&self, source: &str) -> Option<String> {
        Some(rate_limit_key("webhook", self.urls.get(source)?))
    }

    /// One signed POST.
    pub async fn send(&self, due: &Due) -> Attempt {
        let Some(url) = self.urls.get(&due.source) else {
            return Attempt::Reject {
                status: None,
                error: format!("no webhook configured for source {}", due.source),
            };
        };
        let (body, sent_at) = match with_sent_at(due.payload.as_deref()) {
            Ok(stamped) => stamped,
            Err(rejected) => return rejected,
        };
        post(
            &self.http,
            url,
            &due.delivery_id,
            self.secrets.get(&due.source),
            body,
            sent_at,
            self.timeout,
        )
        .await
    }
}

/// The stored JSON object with `sent_at` (now) added, encoded, and that time; a payload
/// that is missing or not an object is rejected (it will not get better).
pub fn with_sent_at(payload: Option<&str>) -> Result<(Vec<u8>, chrono::DateTime<Utc>), Attempt> {
    let reject = |error: String| Attempt::Reject {
        status: None,
        error,
    };
    let payload = payload.ok_or_else(|| reject("payload missing".to_owned()))?;
    let mut body = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(payload)
        .map_err(|error| reject(format!("stored payload is not a JSON object: {error}")))?;
    let sent_at = Utc::now();
    body.insert(
        "sent_at".to_owned(),
        serde_json::Value::String(sent_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    let body = serde_json::to_vec(&body)
        .map_err(|error| reject(format!("could not encode payload: {error}")))?;
    Ok((body, sent_at))
}

/// One JSON POST with the Standard Webhooks headers (`webhook-id` = `id`, stable across
/// retries; signed when there is a `secret`), its answer classified. Errors never quote
/// the URL: ops chat webhook URLs are secrets.
pub async fn post(
    http: &reqwest::Client,
    url: &reqwest::Url,
    id: &str,
    secret: Option<&Secret>,
    body: Vec<u8>,
    sent_at: chrono::DateTime<Utc>,
    timeout: Duration,
) -> Attempt {
    let timestamp = sent_at.timestamp();
    let mut request = http
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = secret {
        request = request.header(
            "webhook-signature",
            signature::sign(secret.expose(), id, timestamp, &body),
        );
    }
    match request.body(body).send().await {
        Ok(response) => classify(response.status(), response.headers().get(RETRY_AFTER)),
        Err(error) if error.is_builder() => Attempt::Reject {
            status: None,
            error: format!("invalid request: {}", error.without_url()),
        },
        Err(error) => Attempt::Retry {
            status: None,
            error: if error.is_timeout() {
                format!("timed out after {} ms", timeout.as_millis())
            } else if error.is_connect() {
                format!("could not connect: {}", error.without_url())
            } else {
                format!("request failed: {}", error.without_url())
            },
            retry_after: None,
        },
    }
}

/// The rate-limit key of a receiver: `kind`, host and port (never the path, which may
/// hold a secret), so senders that share a receiver share its limit.
pub fn rate_limit_key(kind: &str, url: &reqwest::Url) -> String {
    format!(
        "{kind}:{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// What a receiver's answer means for the delivery: 2xx delivered; 5xx, 408 (the
/// receiver timed out) and 429 retried; any other status is permanent.
pub fn classify(status: StatusCode, retry_after: Option<&HeaderValue>) -> Attempt {
    let code = status.as_u16();
    if status.is_success() {
        return Attempt::Delivered { status: code };
    }
    let error = format!(
        "HTTP {code}{}",
        status
            .canonical_reason()
            .map(|reason| format!(" {reason}"))
            .unwrap_or_default()
    );
    let retryable = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if retryable {
        let retry_after = retry_after
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        return Attempt::Retry {
            status: Some(code),
            error,
            retry_after,
        };
    }
    // Other 4xx: the receiver says the request itself is wrong; repeating it won't help.
    // 1xx / 3xx: redirects are deliberately not followed (a signed body should go only
    // where it was configured to), so they are permanent too.
    Attempt::Reject {
        status: Some(code),
        error,
    }
}

/// `Retry-After` as delay-seconds or as an HTTP date (RFC 9110 §10.2.3), capped at
/// [`RETRY_AFTER_MAX`]; a date in the past means "now".
pub fn parse_retry_after(value: &str, now: chrono::DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - now).to_std().unwrap_or_default()
        }
    };
    Some(wait.min(RETRY_AFTER_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn success_is_delivered() {
        assert_eq!(
            classify(StatusCode::NO_CONTENT, None),
            Attempt::Delivered { status: 204 }
        );
    }

    #[test]
    fn client_errors_are_permanent_except_408_and_429() {
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::NOT_FOUND,
            StatusCode::GONE,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::MOVED_PERMANENTLY,
        ] {
            assert!(
                matches!(classify(status, None), Attempt::Reject { status: Some(code), .. } if code == status.as_u16()),
                "{status}"
            );
        }
        for status in [
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
        ] {
            assert!(
                matches!(classify(status, None), Attempt::Retry { status: Some(code), .. } if code == status.as_u16()),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_seconds_are_honoured_and_capped() {
        let header = HeaderValue::from_static("120");
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some(&header)),
            Attempt::Retry {
                status: Some(429),
                error: "HTTP 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(120)),
            }
        );
        let huge = HeaderValue::from_static("99999999");
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, Some(&huge)),
            Attempt::Retry { retry_after: Some(d), .. } if d == RETRY_AFTER_MAX
        ));
        let junk = HeaderValue::from_static("soon");
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, Some(&junk)),
            Attempt::Retry {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_dates_are_honoured() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date: now"
        );
        assert_eq!(parse_retry_after("Thu, 99 Oct 2015", now), None);
    }
}

//! The delivery worker: drains the outbox. It polls for due rows (and wakes at once
//! when a handler rang), takes a short lease on each, POSTs it as a signed Standard
//! Webhooks request, and records the outcome in the row, which is the truth; the
//! `notifications.v1` record is the audit trail of that.
//!
//! On shutdown it starts nothing new but lets the requests in flight finish and be
//! recorded, so no delivery is left half-done.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use closeloop_bus::Publisher;
use closeloop_events::{DeliveryChannel, DeliveryOutcome, Envelope, NotificationOutcome};
use closeloop_store::Database;
use futures::StreamExt;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::NotifyMetrics;
use crate::outbox::{self, Due, Recorded};
use crate::signature;

/// How often the outbox is polled when nobody rings.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Rows fetched per poll.
const BATCH: i64 = 100;
/// Requests in flight at once: enough to not be held up by one slow receiver, few
/// enough to not flood one.
const CONCURRENCY: usize = 8;
/// The longest wait between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(600);
/// The longest `Retry-After` honoured; a receiver asking for more gets this.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// How long a claimed row stays invisible to other pollers beyond the HTTP timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// How long to wait for the broker to take a `notifications.v1` record.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest error text kept in the row.
const ERROR_CHARS: usize = 500;

pub struct Worker {
    pub db: Database,
    pub http: reqwest::Client,
    pub publisher: Publisher,
    pub metrics: NotifyMetrics,
    pub webhooks: HashMap<String, reqwest::Url>,
    pub secrets: HashMap<String, String>,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub http_timeout: Duration,
    pub wake: Arc<Notify>,
}

/// What one attempt came to, before it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered {
        status: u16,
    },
    /// Worth another try (5xx, 408, 429, timeout, connection trouble).
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Will never succeed as it is (4xx, no route): dead at once.
    Reject {
        status: Option<u16>,
        error: String,
    },
}

/// What a receiver's answer means for the delivery.
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
        // Only the delay-seconds form; an HTTP date falls back to our own backoff.
        let retry_after = retry_after
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(|seconds| Duration::from_secs(seconds).min(RETRY_AFTER_MAX));
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

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

impl Worker {
    /// Loops until `shutdown`, then returns once the deliveries in flight are recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!("delivery worker started");
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let full = match outbox::due(&self.db, now_ms(), BATCH).await {
                Ok(batch) => {
                    let full = batch.len() as i64 >= BATCH;
                    futures::stream::iter(batch)
                        .for_each_concurrent(CONCURRENCY, |due| self.process(due, &shutdown))
                        .await;
                    full
                }
                Err(error) => {
                    tracing::warn!(%error, "could not read the outbox, will retry");
                    false
                }
            };
            if full {
                continue; // more may be due right now
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        tracing::info!("delivery worker stopped");
    }

    async fn process(&self, due: Due, shutdown: &CancellationToken) {
        if shutdown.is_cancelled() {
            return; // not started: stays pending for the next run
        }
        let lease = self.http_timeout + LEASE_MARGIN;
        let lease_until = now_ms().saturating_add(lease.as_millis() as i64);
        match outbox::claim(&self.db, &due, lease_until).await {
            Ok(true) => {}
            Ok(false) => return, // another poller has it
            Err(error) => {
                tracing::warn!(delivery_id = %due.delivery_id, %error, "could not claim delivery");
                return;
            }
        }

        let attempt = self.send(&due).await;
        let attempts = due.attempts.saturating_add(1);
        let now = now_ms();
        let (recorded, outcome, status, error) = match attempt {
            Attempt::Delivered { status } => (
                Recorded::Delivered { at_ms: now },
                DeliveryOutcome::Delivered,
                Some(status),
                None,
            ),
            Attempt::Reject { status, error } => (
                Recorded::Dead,
                DeliveryOutcome::DeadLettered,
                status,
                Some(error),
            ),
            Attempt::Retry {
                status,
                error,
                retry_after,
            } => {
                if attempts >= i64::from(self.max_attempts) {
                    let error = format!("gave up after {attempts} attempts: {error}");
                    (
                        Recorded::Dead,
                        DeliveryOutcome::DeadLettered,
                        status,
                        Some(error),
                    )
                } else {
                    let exponent = u32::try_from(attempts - 1).unwrap_or(u32::MAX);
                    let mut wait = closeloop_bus::backoff(exponent, self.retry_base, RETRY_MAX);
                    if let Some(asked) = retry_after {
                        wait = wait.max(asked);
                    }
                    let next_attempt_at_ms = now.saturating_add(wait.as_millis() as i64);
                    (
                        Recorded::Retry { next_attempt_at_ms },
                        DeliveryOutcome::Retrying,
                        status,
                        Some(error),
                    )
                }
            }
        };
        let error = error.map(|error| truncate(&error));

        match outbox::record_attempt(
            &self.db,
            &due.delivery_id,
            attempts,
            &recorded,
            error.as_deref(),
            status,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                delivery_id = %due.delivery_id,
                "delivery changed meanwhile (erased?): outcome not recorded"
            ),
            Err(error) => {
                // The lease runs out and the row is tried again: at-least-once, and the
                // receiver dedupes by webhook-id.
                tracing::error!(delivery_id = %due.delivery_id, %error, "could not record attempt");
                return;
            }
        }

        self.metrics
            .notifications
            .with_label_values(&[due.channel.as_str(), outcome.as_str()])
            .inc();
        match outcome {
            DeliveryOutcome::Delivered => {
                let seconds = (now - due.created_at_ms).max(0) as f64 / 1000.0;
                self.metrics.delivery_seconds.observe(seconds);
                tracing::info!(
                    delivery_id = %due.delivery_id,
                    customer_id = %due.customer_id,
                    attempts,
                    "notification delivered"
                );
            }
            DeliveryOutcome::Retrying => tracing::warn!(
                delivery_id = %due.delivery_id,
                attempts,
                error = error.as_deref().unwrap_or_default(),
                "notification attempt failed, will retry"
            ),
            _ => tracing::warn!(
                delivery_id = %due.delivery_id,
                attempts,
                error = error.as_deref().unwrap_or_default(),
                "notification dead-lettered"
            ),
        }
        self.publish_outcome(&due, outcome, attempts, status, error)
            .await;
    }

    /// One HTTP attempt.
    async fn send(&self, due: &Due) -> Attempt {
        let Some(url) = self.webhooks.get(&due.source) else {
            return Attempt::Reject {
                status: None,
                error: format!("no webhook configured for source {}", due.source),
            };
        };
        let Some(payload) = due.payload.as_deref() else {
            return Attempt::Reject {
                status: None,
                error: "payload missing".to_owned(),
            };
        };
        let mut body =
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(payload) {
                Ok(body) => body,
                Err(error) => {
                    return Attempt::Reject {
                        status: None,
                        error: format!("stored payload is not a JSON object: {error}"),
                    }
                }
            };
        let sent_at = Utc::now();
        body.insert(
            "sent_at".to_owned(),
            serde_json::Value::String(sent_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => {
                return Attempt::Reject {
                    status: None,
                    error: format!("could not encode payload: {error}"),
                }
            }
        };
        let timestamp = sent_at.timestamp();
        let mut request = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &due.delivery_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(secret) = self.secrets.get(&due.source) {
            request = request.header(
                "webhook-signature",
                signature::sign(secret, &due.delivery_id, timestamp, &body),
            );
        }
        match request.body(body).send().await {
            Ok(response) => classify(response.status(), response.headers().get(RETRY_AFTER)),
            Err(error) if error.is_builder() => Attempt::Reject {
                status: None,
                error: format!("invalid request: {error}"),
            },
            Err(error) => Attempt::Retry {
                status: None,
                error: if error.is_timeout() {
                    format!("timed out after {} ms", self.http_timeout.as_millis())
                } else if error.is_connect() {
                    format!("could not connect: {error}")
                } else {
                    format!("request failed: {error}")
                },
                retry_after: None,
            },
        }
    }

    async fn publish_outcome(
        &self,
        due: &Due,
        outcome: DeliveryOutcome,
        attempts: i64,
        status_code: Option<u16>,
        error: Option<String>,
    ) {
        let record = NotificationOutcome {
            delivery_id: Uuid::parse_str(&due.delivery_id).unwrap_or_default(),
            action_id: Uuid::parse_str(&due.action_id).unwrap_or_default(),
            customer_id: due.customer_id.clone(),
            channel: match due.channel.as_str() {
                "email" => DeliveryChannel::Email,
                _ => DeliveryChannel::Webhook,
            },
            outcome,
            attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
            language: due.language.clone(),
            status_code,
            error,
        };
        let envelope = Envelope::new(record);
        let published =
            tokio::time::timeout(PUBLISH_TIMEOUT, self.publisher.publish(&envelope, None)).await;
        let failure = match published {
            Ok(Ok(_)) => return,
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no broker ack within {} s", PUBLISH_TIMEOUT.as_secs()),
        };
        // The outbox row already holds the outcome; the audit record is best effort.
        self.metrics.outcome_publish_failures.inc();
        tracing::warn!(delivery_id = %due.delivery_id, error = %failure, "could not publish notification outcome");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_delivered() {
        assert_eq!(
            classify(StatusCode::NO_CONTENT, None),
            Attempt::Delivered { status: 204 }
        );
    }

    #[test]
    fn client_errors_are_permanent_except_408_and_429() {
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None),
            Attempt::Reject {
                status: Some(400),
                ..
            }
        ));
        assert!(matches!(
            classify(StatusCode::GONE, None),
            Attempt::Reject {
                status: Some(410),
                ..
            }
        ));
        assert!(matches!(
            classify(StatusCode::REQUEST_TIMEOUT, None),
            Attempt::Retry {
                status: Some(408),
                ..
            }
        ));
        assert!(matches!(
            classify(StatusCode::MOVED_PERMANENTLY, None),
            Attempt::Reject {
                status: Some(301),
                ..
            }
        ));
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
        let date = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, Some(&date)),
            Attempt::Retry {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn long_errors_are_truncated_at_a_char_boundary() {
        let long = "ü".repeat(ERROR_CHARS + 10);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), ERROR_CHARS + 1);
    }
}

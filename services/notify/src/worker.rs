//! The delivery worker: drains the outbox. It polls for due rows (and wakes at once
//! when a handler rang), checks the destination's rate limit (postponing the row if
//! the destination had its share), takes a short lease on each row, sends it on its
//! channel (signed webhook or e-mail), and records the outcome in the row, which is
//! the truth; the `notifications.v1` record is the audit trail of that.
//!
//! Failures that may pass (timeouts, 5xx, 429, SMTP 4xx) are retried with exponential
//! backoff and jitter, honouring `Retry-After`; other failures, and the last allowed
//! attempt, dead-letter the row. On shutdown the worker starts nothing new but lets
//! the sends in flight finish and be recorded, so no delivery is left half-done. If
//! the process dies mid-send instead, the lease runs out and the row is sent again
//! under the same delivery id (the webhook-id / Message-ID receivers dedupe by).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use closeloop_bus::Publisher;
use closeloop_events::{DeliveryChannel, DeliveryOutcome, Envelope, NotificationOutcome};
use closeloop_store::Database;
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::email::EmailSender;
use crate::frequency::{self, Cap, Held};
use crate::handlers::combined_payload;
use crate::metrics::NotifyMetrics;
use crate::ops_alert::{OpsSender, Target, CHANNEL_PREFIX};
use crate::outbox::{self, Due, Recorded};
use crate::template::Templates;
use crate::webhook::WebhookSender;
use closeloop_runtime::RateLimiter;

/// How often the outbox is polled when nobody rings.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often the outbox gauge is refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(10);
/// Rows fetched per poll.
const BATCH: i64 = 100;
/// Sends in flight at once: enough to not be held up by one slow receiver, few
/// enough to not flood one (the per-destination rate limit does the rest).
const CONCURRENCY: usize = 8;
/// The longest wait between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(600);
/// How long to wait for the broker to take a `notifications.v1` record.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest error text kept in the row.
const ERROR_CHARS: usize = 500;

pub struct Worker {
    pub db: Database,
    pub publisher: Publisher,
    pub metrics: NotifyMetrics,
    pub webhook: WebhookSender,
    /// `None` when SMTP is not configured.
    pub email: Option<EmailSender>,
    /// Per destination; only ever locked briefly, never across an await.
    pub limiter: RateLimiter,
    pub max_attempts: u32,
    pub retry_base: Duration,
    /// How long a claimed row stays invisible to other pollers beyond the send timeout
    /// (time to record the outcome).
    pub lease_margin: Duration,
    pub wake: Arc<Notify>,
    /// The frequency cap, unless it is off: its held messages are released here.
    pub cap: Option<Cap>,
    /// For combined messages.
    pub templates: Arc<Templates>,
    /// Sends ops alerts (`ops_*` channels).
    pub ops: OpsSender,
}

/// What one attempt came to, before it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered {
        status: u16,
    },
    /// Worth another try (5xx, 408, 429, SMTP 4xx, timeout, connection trouble).
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Will never succeed as it is (4xx, SMTP 5xx, no route): dead at once.
    Reject {
        status: Option<u16>,
        error: String,
    },
}

/// The event's channel for a stored channel name.
pub fn channel_of(channel: &str) -> DeliveryChannel {
    match channel {
        "email" => DeliveryChannel::Email,
        _ => DeliveryChannel::Webhook,
    }
}

/// Publishes one `notifications.v1` record. The outbox (or skip) row already holds
/// the outcome, so this audit record is best effort: a failure is counted and logged.
pub async fn publish_outcome(
    publisher: &Publisher,
    metrics: &NotifyMetrics,
    record: NotificationOutcome,
) {
    let delivery_id = record.delivery_id;
    let envelope = Envelope::new(record);
    let published = tokio::time::timeout(PUBLISH_TIMEOUT, publisher.publish(&envelope, None)).await;
    let failure = match published {
        Ok(Ok(_)) => return,
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no broker ack within {} s", PUBLISH_TIMEOUT.as_secs()),
    };
    metrics.outcome_publish_failures.inc();
    tracing::warn!(%delivery_id, error = %failure, "could not publish notification outcome");
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
        let mut gauge_due = Instant::now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if Instant::now() >= gauge_due {
                self.refresh_gauge().await;
                gauge_due = Instant::now() + GAUGE_INTERVAL;
            }
            self.release_held().await;
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

    /// Makes the messages held for customers whose contact period ended due now.
    async fn release_held(&self) {
        let Some(cap) = &self.cap else {
            return;
        };
        let combine = |held: &[Held]| combined_payload(&self.templates, held);
        match frequency::release(&self.db, cap, now_ms(), combine).await {
            Ok(released) => {
                if released.messages > 0 {
                    tracing::info!(
                        messages = released.messages,
                        combined = released.combined,
                        "held notifications released"
                    );
                }
                self.metrics.combined.inc_by(released.combined as u64);
            }
            Err(error) => {
                tracing::warn!(%error, "could not release held notifications, will retry")
            }
        }
    }

    async fn process(&self, due: Due, shutdown: &CancellationToken) {
        if shutdown.is_cancelled() {
            return; // not started: stays pending for the next run
        }
        if let Some(destination) = self.destination(&due) {
            if let Err(wait) = self.limiter.try_acquire(&destination, 1) {
                let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                // Rounded up: a row claimed a millisecond early would only be refused again.
                let at_ms = now_ms().saturating_add(wait_ms.saturating_add(1));
                // Not now: the row waits for the destination's next slot, no attempt counted.
                if let Err(error) = outbox::claim(&self.db, &due, at_ms).await {
                    tracing::warn!(delivery_id = %due.delivery_id, %error, "could not postpone delivery");
                }
                self.metrics
                    .rate_limited
                    .with_label_values(&[due.channel.as_str()])
                    .inc();
                return;
            }
        }
        let timeout = self.timeout(&due);
        let lease = timeout + self.lease_margin;
        let lease_until = now_ms().saturating_add(lease.as_millis() as i64);
        match outbox::claim(&self.db, &due, lease_until).await {
            Ok(true) => {}
            Ok(false) => return, // another poller has it
            Err(error) => {
                tracing::warn!(delivery_id = %due.delivery_id, %error, "could not claim delivery");
                return;
            }
        }

        let started = Instant::now();
        let attempt = match tokio::time::timeout(timeout, self.send(&due)).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt::Retry {
                status: None,
                error: format!("timed out after {} ms", timeout.as_millis()),
                retry_after: None,
            },
        };
        self.metrics
            .attempt_seconds
            .with_label_values(&[due.channel.as_str()])
            .observe(started.elapsed().as_secs_f64());
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

        let ops_target = Target::of_channel(&due.channel);
        match ops_target {
            Some(target) => {
                let result = match outcome {
                    DeliveryOutcome::Delivered => "delivered",
                    DeliveryOutcome::Retrying => "failed",
                    _ => "dead_lettered",
                };
                self.metrics
                    .ops_alerts
                    .with_label_values(&[target.as_str(), result])
                    .inc();
            }
            None => self
                .metrics
                .notifications
                .with_label_values(&[due.channel.as_str(), outcome.as_str()])
                .inc(),
        }
        match outcome {
            DeliveryOutcome::Delivered => {
                let seconds = (now - due.created_at_ms).max(0) as f64 / 1000.0;
                self.metrics
                    .delivery_seconds
                    .with_label_values(&[due.channel.as_str()])
                    .observe(seconds);
                if let Some(said_at_ms) = due.said_at_ms {
                    self.metrics
                        .pipeline_latency
                        .with_label_values(&["notified"])
                        .observe((now - said_at_ms).max(0) as f64 / 1000.0);
                }
                tracing::info!(
                    delivery_id = %due.delivery_id,
                    customer_id = ?due.customer_id,
                    channel = %due.channel,
                    attempts,
                    "notification delivered"
                );
            }
            DeliveryOutcome::Retrying => tracing::warn!(
                delivery_id = %due.delivery_id,
                source = %due.source,
                channel = %due.channel,
                attempts,
                error = error.as_deref().unwrap_or_default(),
                "notification attempt failed, will retry"
            ),
            _ => tracing::warn!(
                delivery_id = %due.delivery_id,
                source = %due.source,
                channel = %due.channel,
                attempts,
                error = error.as_deref().unwrap_or_default(),
                "notification dead-lettered"
            ),
        }
        // notifications.v1 is the customers' audit trail; ops alerts have the ledger.
        if ops_target.is_none() {
            self.publish_outcome(&due, outcome, attempts, status, error)
                .await;
        }
    }

    /// The rate-limit key of a delivery's destination.
    fn destination(&self, due: &Due) -> Option<String> {
        match due.channel.as_str() {
            "email" => self.email.as_ref()?.destination(due),
            channel if channel.starts_with(CHANNEL_PREFIX) => self.ops.destination(&due.source),
            _ => self.webhook.destination(&due.source),
        }
    }

    /// The longest one attempt on the delivery's channel may take.
    fn timeout(&self, due: &Due) -> Duration {
        match (due.channel.as_str(), &self.email) {
            ("email", Some(email)) => email.timeout,
            (channel, _) if channel.starts_with(CHANNEL_PREFIX) => self.ops.timeout,
            _ => self.webhook.timeout,
        }
    }

    /// One attempt on the delivery's channel.
    async fn send(&self, due: &Due) -> Attempt {
        match due.channel.as_str() {
            "webhook" => self.webhook.send(due).await,
            channel if channel.starts_with(CHANNEL_PREFIX) => self.ops.send(due).await,
            "email" => match &self.email {
                Some(email) => email.send(due).await,
                None => Attempt::Reject {
                    status: None,
                    error: "e-mail delivery, but SMTP is not configured".to_owned(),
                },
            },
            other => Attempt::Reject {
                status: None,
                error: format!("unknown channel {other}"),
            },
        }
    }

    async fn refresh_gauge(&self) {
        match outbox::status_counts(&self.db).await {
            Ok(counts) => {
                for status in outbox::STATUSES {
                    let count = counts
                        .iter()
                        .find(|(s, _)| s == status)
                        .map_or(0, |(_, count)| *count);
                    self.metrics.outbox.with_label_values(&[status]).set(count);
                }
            }
            Err(error) => tracing::warn!(%error, "could not count the outbox"),
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
            channel: channel_of(&due.channel),
            outcome,
            attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
            language: due.language.clone(),
            status_code,
            error,
        };
        publish_outcome(&self.publisher, &self.metrics, record).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_truncated_at_a_char_boundary() {
        let long = "ü".repeat(ERROR_CHARS + 10);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), ERROR_CHARS + 1);
    }

    #[test]
    fn stored_channels_map_to_event_channels() {
        assert_eq!(channel_of("email"), DeliveryChannel::Email);
        assert_eq!(channel_of("webhook"), DeliveryChannel::Webhook);
    }
}

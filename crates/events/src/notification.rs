//! `notifications.v1`, `privacy.erasure.v1` and the dead-letter record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{topics, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryChannel {
    Webhook,
    Email,
}

impl DeliveryChannel {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryChannel::Webhook => "webhook",
            DeliveryChannel::Email => "email",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The destination accepted the message.
    Delivered,
    /// This attempt failed; another will follow.
    Retrying,
    /// Gave up: too many attempts or a permanent rejection.
    DeadLettered,
    /// Not sent, and will not be (no route, erased customer).
    Skipped,
}

impl DeliveryOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retrying => "retrying",
            DeliveryOutcome::DeadLettered => "dead_lettered",
            DeliveryOutcome::Skipped => "skipped",
        }
    }
}

/// The `notifications.v1` payload: one record per delivery attempt outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationOutcome {
    /// Stable across retries of the same (action, customer) message.
    pub delivery_id: Uuid,
    pub action_id: Uuid,
    pub customer_id: String,
    pub channel: DeliveryChannel,
    pub outcome: DeliveryOutcome,
    pub attempt: u32,
    pub language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event for NotificationOutcome {
    const SCHEMA: &'static str = "notifications.v1";
    const TOPIC: &'static str = topics::NOTIFICATIONS;
    fn key(&self) -> &str {
        &self.customer_id
    }
}

/// The `privacy.erasure.v1` payload: erase this customer's personal data everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureRequest {
    pub customer_id: String,
    /// The source that asked for it.
    pub source: String,
    pub requested_at: DateTime<Utc>,
}

impl ErasureRequest {
    /// What stores keep in place of the erased customer's id: see [`erased_customer_id`].
    pub fn tombstone(&self) -> String {
        erased_customer_id(&self.customer_id)
    }
}

/// The pseudonymous stand-in for an erased customer's id: `erased:` and a SHA-256 of the
/// id. Every service derives the same value, so rows of one customer stay one (distinct
/// customer counts and per-(action, customer) idempotency keep working), a replayed
/// erasure is a no-op, and feedback of theirs that arrives late can be recognised
/// without the id itself being kept anywhere. It is a pseudonym, not anonymisation:
/// whoever knows the id can recompute it, which is what recognising late feedback needs.
pub fn erased_customer_id(customer_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"closeloop-erasure\0")
        .chain_update(customer_id.as_bytes())
        .finalize();
    format!("erased:{digest:x}")
}

impl Event for ErasureRequest {
    const SCHEMA: &'static str = "privacy.erasure.v1";
    const TOPIC: &'static str = topics::PRIVACY_ERASURE;
    fn key(&self) -> &str {
        &self.customer_id
    }
}

/// What a consumer writes to `<topic>.dlq.v1` when it cannot process a record. It is
/// not enveloped: it must be writable even when the original could not be decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub origin_topic: String,
    pub origin_partition: i32,
    pub origin_offset: i64,
    pub consumer_group: String,
    pub error: String,
    /// The original payload, as UTF-8 where it was (lossy otherwise).
    pub payload: String,
    pub failed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::round_trip;

    #[test]
    fn notification_outcome_round_trips() {
        let json = round_trip(NotificationOutcome {
            delivery_id: Uuid::now_v7(),
            action_id: Uuid::now_v7(),
            customer_id: "cust-7".into(),
            channel: DeliveryChannel::Webhook,
            outcome: DeliveryOutcome::DeadLettered,
            attempt: 5,
            language: "de".into(),
            status_code: Some(503),
            error: Some("service unavailable".into()),
        });
        assert_eq!(json["outcome"], "dead_lettered");
        assert_eq!(json["channel"], "webhook");
    }

    #[test]
    fn erasure_request_round_trips() {
        let request = ErasureRequest {
            customer_id: "cust-7".into(),
            source: "shopdesk".into(),
            requested_at: Utc::now(),
        };
        assert_eq!(request.key(), "cust-7");
        round_trip(request);
    }

    #[test]
    fn dead_letter_round_trips() {
        let record = DeadLetter {
            origin_topic: topics::FEEDBACK_RAW.into(),
            origin_partition: 2,
            origin_offset: 41,
            consumer_group: "categorise".into(),
            error: "invalid JSON".into(),
            payload: "{oops".into(),
            failed_at: Utc::now(),
        };
        let bytes = serde_json::to_vec(&record).unwrap();
        let back: DeadLetter = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, record);
    }
}

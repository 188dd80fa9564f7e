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

/// The `privacy.erasure.v1` payload: erase a customer's personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureRequest {
    pub customer_id: String,
    /// Who asked for it: the source, or the name of the admin key.
    pub source: String,
    pub requested_at: DateTime<Utc>,
    /// What the erasure reaches. Events from before scoped erasure carry no scope and
    /// meant "everywhere", so that is what a missing field still means.
    #[serde(default)]
    pub scope: ErasureScope,
}

/// Which of a customer's data an erasure reaches. A customer id is only known to be
/// the same person within one source, and one source must not remove another's data,
/// so a source's API key erases what came through that source; only an admin key
/// erases across sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureScope {
    /// Everything about the customer, whichever source it came from (admin keys).
    #[default]
    All,
    /// Only what came through `ErasureRequest::source`.
    Source,
}

impl ErasureRequest {
    /// The one source the erasure is restricted to, or `None` for every source.
    pub fn only_source(&self) -> Option<&str> {
        match self.scope {
            ErasureScope::All => None,
            ErasureScope::Source => Some(&self.source),
        }
    }

    /// The scope as stores match it: the source, or [`ALL_SOURCES`]. Erasure ledgers
    /// keep this value beside the pseudonym.
    pub fn scope_key(&self) -> &str {
        self.only_source().unwrap_or(ALL_SOURCES)
    }
}

/// The scope key of an erasure that reaches every source; no valid source name (1-64
/// of a-z, 0-9, '-', '_') can be it.
pub const ALL_SOURCES: &str = "*";

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
            scope: ErasureScope::Source,
        };
        assert_eq!(request.key(), "cust-7");
        assert_eq!(
            (request.only_source(), request.scope_key()),
            (Some("shopdesk"), "shopdesk")
        );
        let json = round_trip(request);
        assert_eq!(json["scope"], "source");
    }

    #[test]
    fn an_erasure_without_scope_still_means_everywhere() {
        // As published before erasures were scoped.
        let old =
            r#"{"customer_id":"cust-7","source":"shopdesk","requested_at":"2026-01-01T00:00:00Z"}"#;
        let request: ErasureRequest = serde_json::from_str(old).unwrap();
        assert_eq!(request.scope, ErasureScope::All);
        assert_eq!(
            (request.only_source(), request.scope_key()),
            (None, ALL_SOURCES)
        );
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

//! The contracts between closeloop's services: topic names, the event envelope and
//! every event type that travels over Kafka.
//!
//! Services never import each other; they share only this crate. Every event is JSON in
//! one envelope, `{ "schema": "<name>.v1", "event_id": UUIDv7, "occurred_at": RFC 3339, ... }`,
//! with the payload's fields flattened beside the envelope's. Consumers ignore unknown
//! fields, so adding an optional field is not a breaking change; a breaking change gets
//! a new topic version (`.v2`).

mod action;
mod feedback;
mod notification;
mod preferences;
mod taxonomy;
pub mod text;

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

pub use action::{
    ActionEffect, ActionEvent, ActionEventKind, ActionStatus, ActionWorkflow, EffectVerdict,
    Evidence, EvidenceBucket, EvidenceCounts, EvidenceExcerpt, RelatedEvidence, Resolution,
    ScoreImpact, UnknownActionStatus,
};
pub use feedback::{
    Channel, CustomerRef, Feedback, FeedbackCategorised, Language, SentimentLabel, SentimentResult,
    ThemeMatch, ThemeMention, Touchpoint,
};
pub use notification::{
    DeadLetter, DeliveryChannel, DeliveryOutcome, ErasureRequest, ErasureScope,
    NotificationOutcome, ALL_SOURCES,
};
pub use preferences::{CustomerPreferences, SET_BY_CUSTOMER};
pub use taxonomy::{Period, TaxonomyApplied, TAXONOMY_KEY};

/// Topic names, one constant per row of the README's topic table (Architecture).
pub mod topics {
    pub const FEEDBACK_RAW: &str = "feedback.raw.v1";
    pub const FEEDBACK_CATEGORISED: &str = "feedback.categorised.v1";
    pub const FEEDBACK_THEMES: &str = "feedback.themes.v1";
    pub const ACTIONS: &str = "actions.v1";
    pub const NOTIFICATIONS: &str = "notifications.v1";
    pub const PRIVACY_ERASURE: &str = "privacy.erasure.v1";
    pub const CUSTOMER_PREFERENCES: &str = "customers.preferences.v1";
    /// Compacted, one partition: the current taxonomy version and those before it.
    pub const TAXONOMY: &str = "taxonomy.v1";

    /// Every topic the system reads or writes (dead-letter topics excluded).
    pub const ALL: &[&str] = &[
        FEEDBACK_RAW,
        FEEDBACK_CATEGORISED,
        FEEDBACK_THEMES,
        ACTIONS,
        NOTIFICATIONS,
        PRIVACY_ERASURE,
        CUSTOMER_PREFERENCES,
        TAXONOMY,
    ];

    /// Topics compacted by key rather than deleted by age: their newest record per key
    /// is the state, and a consumer reads them from the start.
    pub const COMPACTED: &[&str] = &[TAXONOMY];

    /// Topics with one partition whatever the others have, because their records must
    /// stay in one order.
    pub const SINGLE_PARTITION: &[&str] = &[TAXONOMY];

    /// The dead-letter topic of `topic`: `feedback.raw.v1` → `feedback.raw.dlq.v1`.
    pub fn dead_letter_of(topic: &str) -> String {
        match topic.strip_suffix(".v1") {
            Some(stem) => format!("{stem}.dlq.v1"),
            None => format!("{topic}.dlq"),
        }
    }
}

/// A payload that travels on a topic. `SCHEMA` is the envelope's `schema` value and
/// `TOPIC` where it is published; `key` decides the partition (and so the ordering).
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    const SCHEMA: &'static str;
    const TOPIC: &'static str;
    fn key(&self) -> &str;
}

/// The envelope every event travels in. The payload's fields sit beside the envelope's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub schema: String,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub data: T,
}

impl<T: Event> Envelope<T> {
    /// Wraps `data` with a fresh UUIDv7 and the current time.
    pub fn new(data: T) -> Self {
        Self::with_id(Uuid::now_v7(), Utc::now(), data)
    }

    /// Wraps `data` with a given id and time: used where a retry must reproduce the
    /// same event (ingest re-publishing after a crash, for example).
    pub fn with_id(event_id: Uuid, occurred_at: DateTime<Utc>, data: T) -> Self {
        Self {
            schema: T::SCHEMA.to_owned(),
            event_id,
            occurred_at,
            data,
        }
    }

    pub fn key(&self) -> &str {
        self.data.key()
    }
}

/// Why an envelope could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    Json(serde_json::Error),
    WrongSchema {
        expected: &'static str,
        found: String,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Json(e) => write!(f, "invalid JSON event: {e}"),
            DecodeError::WrongSchema { expected, found } => {
                write!(f, "expected schema {expected:?}, found {found:?}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes an envelope and checks that its `schema` is the one `T` expects.
pub fn decode<T: Event>(payload: &[u8]) -> Result<Envelope<T>, DecodeError> {
    // The envelope's fields first, so that a record of another type is reported as
    // such, not as whichever of its fields happens to be missing.
    #[derive(Deserialize)]
    struct Header {
        schema: String,
        event_id: Uuid,
        occurred_at: DateTime<Utc>,
    }
    let header: Header = serde_json::from_slice(payload).map_err(DecodeError::Json)?;
    if header.schema != T::SCHEMA {
        return Err(DecodeError::WrongSchema {
            expected: T::SCHEMA,
            found: header.schema,
        });
    }
    // Then the payload's fields straight from the bytes (the envelope's are unknown
    // fields to it): deserialising `Envelope<T>` goes through `#[serde(flatten)]`, which
    // first copies every field into an owned intermediate value.
    let data: T = serde_json::from_slice(payload).map_err(DecodeError::Json)?;
    Ok(Envelope {
        schema: header.schema,
        event_id: header.event_id,
        occurred_at: header.occurred_at,
        data,
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Serialises, deserialises and checks the value survived unchanged.
    pub fn round_trip<T: Event + PartialEq + std::fmt::Debug>(data: T) -> serde_json::Value {
        let envelope = Envelope::new(data);
        let bytes = serde_json::to_vec(&envelope).expect("serialise");
        let back: Envelope<T> = decode(&bytes).expect("decode");
        assert_eq!(back, envelope);
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["schema"], T::SCHEMA);
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_topic_names() {
        assert_eq!(
            topics::dead_letter_of(topics::FEEDBACK_RAW),
            "feedback.raw.dlq.v1"
        );
        assert_eq!(topics::dead_letter_of(topics::ACTIONS), "actions.dlq.v1");
    }

    #[test]
    fn decode_rejects_another_schema() {
        let erasure = Envelope::new(ErasureRequest {
            customer_id: "c1".into(),
            source: "shopdesk".into(),
            requested_at: Utc::now(),
            scope: Default::default(),
        });
        let bytes = serde_json::to_vec(&erasure).unwrap();
        let err = decode::<Feedback>(&bytes).unwrap_err();
        assert!(err.to_string().contains("expected schema"), "{err}");
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(matches!(
            decode::<Feedback>(b"{not json"),
            Err(DecodeError::Json(_))
        ));
    }
}

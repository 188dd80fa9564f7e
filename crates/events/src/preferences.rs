//! `customers.preferences.v1`: how a customer wants to hear back from closeloop.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{topics, DeliveryChannel, Event};

/// Who set preferences when the customer did it themselves with the one-click
/// unsubscribe link (no source key was involved). No source name can be it: source
/// names are 1-64 of a-z, 0-9, '-', '_'.
pub const SET_BY_CUSTOMER: &str = "customer:unsubscribe";

/// The `customers.preferences.v1` payload: a customer's whole preference record as of
/// `updated_at`. It replaces the previous one (the newest `updated_at` wins, so a
/// record that arrives late changes nothing); feedback events keep updating consent
/// as they always did, whichever is newer counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerPreferences {
    pub customer_id: String,
    /// Who set it: the source whose key made the API call, or [`SET_BY_CUSTOMER`].
    pub source: String,
    pub updated_at: DateTime<Utc>,
    /// May the customer be contacted about their feedback at all.
    pub consent: bool,
    /// The channels they may be contacted on; `None` means any channel closeloop has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<DeliveryChannel>>,
    /// The language messages should be in (a BCP 47 tag such as `de` or `de-CH`);
    /// `None` means the locale of their feedback, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Unsubscribed customers are never messaged, whatever their consent says, until
    /// a record with `unsubscribed: false` arrives.
    #[serde(default)]
    pub unsubscribed: bool,
}

impl Event for CustomerPreferences {
    const SCHEMA: &'static str = "customers.preferences.v1";
    const TOPIC: &'static str = topics::CUSTOMER_PREFERENCES;
    fn key(&self) -> &str {
        &self.customer_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::round_trip;

    #[test]
    fn preferences_round_trip_and_are_keyed_by_customer() {
        let record = CustomerPreferences {
            customer_id: "cust-7".into(),
            source: "shopdesk".into(),
            updated_at: Utc::now(),
            consent: true,
            channels: Some(vec![DeliveryChannel::Email]),
            language: Some("de-CH".into()),
            unsubscribed: false,
        };
        assert_eq!(record.key(), "cust-7");
        let json = round_trip(record);
        assert_eq!(json["channels"], serde_json::json!(["email"]));
    }

    #[test]
    fn a_minimal_record_means_any_channel_and_subscribed() {
        let minimal = r#"{"customer_id":"c","source":"s","updated_at":"2026-01-01T00:00:00Z","consent":false}"#;
        let record: CustomerPreferences = serde_json::from_str(minimal).unwrap();
        assert_eq!(record.channels, None);
        assert_eq!(record.language, None);
        assert!(!record.unsubscribed);
    }
}

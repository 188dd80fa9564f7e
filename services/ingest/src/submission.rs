//! Parse, don't validate: the JSON a source posts becomes a [`Feedback`] here, or a list
//! of precise field errors. Nothing downstream ever sees an unchecked value.

use chrono::{DateTime, Duration, Utc};
use closeloop_events::{Channel, CustomerRef, Feedback, Touchpoint};
use closeloop_http::FieldError;
use serde::Deserialize;
use uuid::Uuid;

/// The body of `POST /v1/feedback` (and each item of a batch), exactly as posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// Optional client-chosen id (a UUID). Re-posting the same id never creates a second
    /// feedback downstream.
    #[serde(default)]
    pub event_id: Option<Uuid>,
    /// When the customer gave the feedback (RFC 3339); defaults to now.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    pub channel: Channel,
    #[serde(default)]
    pub touchpoint: Option<Touchpoint>,
    pub customer: CustomerSubmission,
    pub text: String,
    #[serde(default)]
    pub rating: Option<u8>,
    #[serde(default)]
    pub nps: Option<u8>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerSubmission {
    pub id: String,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub consent: bool,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
}

/// The body of `POST /v1/feedback/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSubmission {
    pub items: Vec<Submission>,
}

/// Limits that validation enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_text_chars: usize,
    pub max_metadata_bytes: usize,
    /// How far in the future `occurred_at` may be (clock skew).
    pub max_future_skew: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_text_chars: 10_000,
            max_metadata_bytes: 8 * 1024,
            max_future_skew: Duration::minutes(5),
        }
    }
}

pub fn is_valid_source(source: &str) -> bool {
    (1..=64).contains(&source.len())
        && source
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Submission {
    /// Checks every field and builds the feedback, or lists every problem found (with
    /// JSON pointers under `pointer_prefix`, e.g. `/items/3`).
    pub fn into_feedback(
        self,
        source: &str,
        now: DateTime<Utc>,
        limits: &Limits,
        pointer_prefix: &str,
    ) -> Result<Feedback, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut error = |field: &str, detail: String| {
            errors.push(FieldError {
                pointer: format!("{pointer_prefix}/{field}"),
                detail,
            })
        };

        let text = strip_control_characters(self.text.trim());
        if text.is_empty() {
            error("text", "must not be empty".into());
        } else if text.chars().count() > limits.max_text_chars {
            error(
                "text",
                format!("must be at most {} characters", limits.max_text_chars),
            );
        }
        let customer_id = self.customer.id.trim().to_owned();
        if customer_id.is_empty() || customer_id.len() > 200 {
            error("customer/id", "must be 1 to 200 bytes long".into());
        } else if customer_id.chars().any(char::is_control) {
            error("customer/id", "must not contain control characters".into());
        }
        let locale = self.customer.locale.map(|l| l.trim().to_owned());
        if let Some(locale) = &locale {
            let valid = (2..=35).contains(&locale.len())
                && locale
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                error(
                    "customer/locale",
                    "must be a BCP 47 tag such as en-GB or de-DE".into(),
                );
            }
        }
        let email = self.customer.email.map(|e| e.trim().to_owned());
        if let Some(email) = &email {
            let valid = email.len() <= 254
                && !email.chars().any(|c| c.is_control() || c.is_whitespace())
                && email
                    .split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
            if !valid {
                error("customer/email", "must be an e-mail address".into());
            }
        }
        let reference = self.customer.reference.map(|r| r.trim().to_owned());
        if reference
            .as_ref()
            .is_some_and(|r| r.len() > 200 || r.chars().any(char::is_control))
        {
            error(
                "customer/reference",
                "must be at most 200 bytes without control characters".into(),
            );
        }
        if let Some(rating) = self.rating {
            if !(1..=5).contains(&rating) {
                error("rating", "must be between 1 and 5".into());
            }
        }
        if let Some(nps) = self.nps {
            if nps > 10 {
                error("nps", "must be between 0 and 10".into());
            }
        }
        let given_at = self.occurred_at.unwrap_or(now);
        if given_at > now + limits.max_future_skew {
            error("occurred_at", "must not be in the future".into());
        }
        let metadata = self.metadata.unwrap_or_default();
        let metadata_bytes = serde_json::to_vec(&metadata).map(|v| v.len()).unwrap_or(0);
        if metadata_bytes > limits.max_metadata_bytes {
            error(
                "metadata",
                format!(
                    "must be at most {} bytes of JSON",
                    limits.max_metadata_bytes
                ),
            );
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Feedback {
            feedback_id: self.event_id.unwrap_or_else(Uuid::now_v7),
            source: source.to_owned(),
            channel: self.channel,
            touchpoint: self.touchpoint,
            customer: CustomerRef {
                id: customer_id,
                locale,
                consent: self.customer.consent,
                email,
                reference,
            },
            text,
            rating: self.rating,
            nps: self.nps,
            given_at,
            received_at: now,
            metadata,
        })
    }
}

/// Control characters (NUL among them, which PostgreSQL text cannot hold) carry no
/// meaning in feedback; line breaks and tabs do and are kept.
fn strip_control_characters(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<Feedback, Vec<FieldError>> {
        let submission: Submission = serde_json::from_value(json).expect("shape");
        submission.into_feedback("shopdesk", Utc::now(), &Limits::default(), "")
    }

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "channel": "review",
            "customer": { "id": "c-1", "locale": "de-DE", "consent": true, "email": "a@b.de" },
            "text": "  Lieferung kam zu spät \u{0000}",
            "rating": 2
        })
    }

    #[test]
    fn builds_feedback_with_defaults_and_clean_text() {
        let feedback = parse(valid()).unwrap();
        assert_eq!(feedback.text, "Lieferung kam zu spät ");
        assert_eq!(feedback.source, "shopdesk");
        assert_eq!(feedback.given_at, feedback.received_at);
        assert!(feedback.customer.consent);
    }

    #[test]
    fn reports_every_bad_field_with_a_pointer() {
        let mut json = valid();
        json["text"] = "   ".into();
        json["rating"] = 9.into();
        json["nps"] = 11.into();
        json["customer"]["email"] = "not-an-address".into();
        json["occurred_at"] = "2999-01-01T00:00:00Z".into();
        let errors = parse(json).unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/text",
                "/customer/email",
                "/rating",
                "/nps",
                "/occurred_at"
            ]
        );
    }

    #[test]
    fn unknown_fields_and_channels_do_not_parse() {
        let mut json = valid();
        json["colour"] = "blue".into();
        assert!(serde_json::from_value::<Submission>(json).is_err());
        let mut json = valid();
        json["channel"] = "pigeon".into();
        assert!(serde_json::from_value::<Submission>(json).is_err());
    }

    #[test]
    fn client_event_id_is_kept() {
        let id = Uuid::now_v7();
        let mut json = valid();
        json["event_id"] = id.to_string().into();
        assert_eq!(parse(json).unwrap().feedback_id, id);
    }
}

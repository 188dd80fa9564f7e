//! Parse, don't validate: the JSON a source posts becomes a [`Feedback`] here, or a list
//! of precise field errors. Nothing downstream ever sees an unchecked value.

use chrono::{DateTime, Duration, Utc};
use closeloop_events::{Channel, CustomerRef, Feedback, Touchpoint};
use closeloop_http::{FieldError, JsonObject};
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;
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
    #[serde(deserialize_with = "closeloop_http::deserialize_object")]
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
    pub items: Vec<JsonObject<Submission>>,
}

/// Limits that validation enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_text_chars: usize,
    pub max_metadata_bytes: usize,
    /// How far in the future `occurred_at` may be (clock skew).
    pub max_future_skew: Duration,
    /// How far in the past `occurred_at` may be: older feedback no trend window counts,
    /// and the event-id ledger keeps ids only this long.
    pub max_event_age: Duration,
}

/// `INGEST_MAX_EVENT_AGE_DAYS`' default.
pub const DEFAULT_MAX_EVENT_AGE_DAYS: i64 = 365;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_text_chars: 10_000,
            max_metadata_bytes: 8 * 1024,
            max_future_skew: Duration::minutes(5),
            max_event_age: Duration::days(DEFAULT_MAX_EVENT_AGE_DAYS),
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
        } else if !text.chars().any(is_visible) {
            error("text", "must contain a visible character".into());
        } else if text.chars().count() > limits.max_text_chars {
            error(
                "text",
                format!("must be at most {} characters", limits.max_text_chars),
            );
        }
        let customer_id = match customer_id(&self.customer.id) {
            Ok(id) => id,
            Err(detail) => {
                error("customer/id", detail.into());
                String::new()
            }
        };
        let locale = match self.customer.locale.as_deref().map(language_tag) {
            Some(Err(detail)) => {
                error("customer/locale", detail.into());
                None
            }
            Some(Ok(locale)) => Some(locale),
            None => None,
        };
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
            .is_some_and(|r| r.len() > 200 || r.chars().any(is_forbidden_in_id))
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
        } else if given_at < now - limits.max_event_age {
            error(
                "occurred_at",
                format!(
                    "must not be more than {} days in the past",
                    limits.max_event_age.num_days()
                ),
            );
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

/// A customer id as every service keys it: trimmed, in Unicode NFC (so the composed and
/// decomposed spellings of "José" are one customer, and erasing one erases the other),
/// 1 to 200 bytes, without control or invisible formatting characters (a line break or
/// an escape sequence in an id would forge log lines). Used for feedback and erasure alike.
pub fn customer_id(raw: &str) -> Result<String, &'static str> {
    let id: String = raw.trim().nfc().collect();
    if id.is_empty() || id.len() > 200 {
        Err("must be 1 to 200 bytes long")
    } else if id.chars().any(is_forbidden_in_id) {
        Err("must not contain control or invisible formatting characters")
    } else {
        Ok(id)
    }
}

/// A language tag: trimmed, 2 to 35 ASCII letters, digits, `-` or `_` (the shape of BCP
/// 47's `de` or `de-CH`, not checked against the registry: notify reads the primary
/// subtag and falls back when it has no template for it). One check for a feedback's
/// `customer.locale` and a preference's `language`, so both take the same tags.
pub fn language_tag(raw: &str) -> Result<String, &'static str> {
    let tag = raw.trim();
    let valid = (2..=35).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(tag.to_owned())
    } else {
        Err("must be a BCP 47 tag such as en-GB or de-DE")
    }
}

/// Characters no id may hold: control characters, and formatting ones that are invisible
/// or reorder what a reader sees (zero-width, bidirectional overrides, byte-order mark).
pub fn is_forbidden_in_id(c: char) -> bool {
    c.is_control() || is_invisible_format(c)
}

/// Feedback text must have at least one of these: not whitespace, control or an invisible
/// formatting character, so "\u{200B}\u{FEFF}" is as empty as "".
fn is_visible(c: char) -> bool {
    !(c.is_whitespace() || c.is_control() || is_invisible_format(c))
}

/// Zero-width and formatting characters (mostly Unicode's Cf) and the Hangul fillers,
/// which render as nothing.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{AD}' | '\u{34F}' | '\u{61C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
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
    fn text_without_a_visible_character_is_refused() {
        for text in [
            "\u{0}\u{0}",
            "\u{200B}\u{200D}\u{FEFF}",
            " \u{3164} \u{2060}\n",
        ] {
            let mut json = valid();
            json["text"] = text.into();
            let errors = parse(json).unwrap_err();
            assert_eq!(errors[0].pointer, "/text", "{text:?}");
        }
        let mut json = valid();
        json["text"] = "\u{200B}ok".into();
        assert!(parse(json).is_ok());
    }

    #[test]
    fn occurred_at_is_bounded_in_the_past() {
        let mut json = valid();
        json["occurred_at"] = "0001-01-01T00:00:00Z".into();
        let errors = parse(json).unwrap_err();
        assert_eq!(errors[0].pointer, "/occurred_at");
        assert!(errors[0].detail.contains("365 days"), "{errors:?}");
        let mut json = valid();
        json["occurred_at"] = (Utc::now() - Duration::days(364)).to_rfc3339().into();
        assert!(parse(json).is_ok());
    }

    #[test]
    fn customer_ids_are_nfc_and_free_of_control_and_invisible_characters() {
        let composed = customer_id("Jos\u{e9}").unwrap();
        assert_eq!(customer_id("  Jose\u{301} ").unwrap(), composed);
        let mut json = valid();
        json["customer"]["id"] = "Jose\u{301}".into();
        assert_eq!(parse(json).unwrap().customer.id, "Jos\u{e9}");
        for bad in ["a\nb", "a\u{1b}[31mb", "a\u{202E}b", "a\u{200B}", "", "  "] {
            assert!(customer_id(bad).is_err(), "{bad:?}");
        }
        assert!(customer_id(&"x".repeat(201)).is_err());
        let mut json = valid();
        json["customer"]["reference"] = "R-1\r\nlevel=error".into();
        assert_eq!(parse(json).unwrap_err()[0].pointer, "/customer/reference");
    }

    #[test]
    fn language_tags_are_trimmed_and_shaped_like_bcp_47() {
        assert_eq!(language_tag(" de-CH ").unwrap(), "de-CH");
        assert_eq!(language_tag("en_GB").unwrap(), "en_GB");
        for bad in ["", "d", "en GB", "de<script>", "de\u{0}CH", &"x".repeat(36)] {
            assert!(language_tag(bad).is_err(), "{bad:?}");
        }
        let mut json = valid();
        json["customer"]["locale"] = " en-GB ".into();
        assert_eq!(
            parse(json).unwrap().customer.locale.as_deref(),
            Some("en-GB")
        );
    }

    #[test]
    fn arrays_are_not_objects() {
        let positional = serde_json::json!([null, null, "ticket", null, {"id": "c"}, "text"]);
        assert!(
            serde_json::from_value::<Submission>(positional).is_ok(),
            "serde's derived struct alone takes an array"
        );
        let nested = serde_json::json!({"channel": "ticket", "customer": ["c"], "text": "t"});
        assert!(serde_json::from_value::<Submission>(nested).is_err());
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

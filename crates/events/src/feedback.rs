//! Feedback as it enters (`feedback.raw.v1`), as categorised (`feedback.categorised.v1`)
//! and as one mention per theme (`feedback.themes.v1`).

use chrono::{DateTime, Utc};
use serde::{de, Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::{topics, Event};

/// Where the feedback was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Survey,
    Ticket,
    Review,
    AppStore,
    Social,
    Chat,
    Email,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 8] = [
        Channel::Survey,
        Channel::Ticket,
        Channel::Review,
        Channel::AppStore,
        Channel::Social,
        Channel::Chat,
        Channel::Email,
        Channel::Other,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Survey => "survey",
            Channel::Ticket => "ticket",
            Channel::Review => "review",
            Channel::AppStore => "app-store",
            Channel::Social => "social",
            Channel::Chat => "chat",
            Channel::Email => "email",
            Channel::Other => "other",
        }
    }
}

/// The customer-journey phase the feedback is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Touchpoint {
    Awareness,
    Consideration,
    Purchase,
    Onboarding,
    Delivery,
    Usage,
    Support,
    Billing,
    Returns,
    Renewal,
    Other,
}

impl Touchpoint {
    pub const ALL: [Touchpoint; 11] = [
        Touchpoint::Awareness,
        Touchpoint::Consideration,
        Touchpoint::Purchase,
        Touchpoint::Onboarding,
        Touchpoint::Delivery,
        Touchpoint::Usage,
        Touchpoint::Support,
        Touchpoint::Billing,
        Touchpoint::Returns,
        Touchpoint::Renewal,
        Touchpoint::Other,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Touchpoint::Awareness => "awareness",
            Touchpoint::Consideration => "consideration",
            Touchpoint::Purchase => "purchase",
            Touchpoint::Onboarding => "onboarding",
            Touchpoint::Delivery => "delivery",
            Touchpoint::Usage => "usage",
            Touchpoint::Support => "support",
            Touchpoint::Billing => "billing",
            Touchpoint::Returns => "returns",
            Touchpoint::Renewal => "renewal",
            Touchpoint::Other => "other",
        }
    }
}

/// Who gave the feedback and how (and whether) they may be contacted about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerRef {
    /// The source system's customer id; stable across that customer's feedback.
    pub id: String,
    /// BCP 47 locale such as `de-DE`, when the source knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Whether the customer agreed to be told what became of their feedback.
    #[serde(default)]
    pub consent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The source system's own reference (ticket number, review id) to reply through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// One piece of customer feedback, as accepted by ingest: the `feedback.raw.v1` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub feedback_id: Uuid,
    /// The authenticated source system that posted it.
    pub source: String,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touchpoint: Option<Touchpoint>,
    pub customer: CustomerRef,
    pub text: String,
    /// Star rating 1–5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    /// Net Promoter Score answer 0–10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nps: Option<u8>,
    /// Event time: when the customer gave the feedback. Trend windows use this.
    pub given_at: DateTime<Utc>,
    /// When ingest accepted it.
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Feedback {
    /// A digest of what the feedback says, so one `event_id` is known to name one event
    /// (ingest refuses the id with other content; categorise republishes only what it
    /// stored). The fields the server sets are left out: the id itself, `received_at`, and
    /// `given_at` when it is just the receiving time (no `occurred_at` was posted), so an
    /// identical retry has the identical hash. Object keys are hashed sorted, so the order a
    /// client wrote them in does not matter.
    pub fn content_hash(&self) -> String {
        // Written field by field in sorted key order, as the hash of the JSON object
        // `{source, channel, touchpoint, customer, text, rating, nps, given_at, metadata}`
        // (absent options as null) would be: the same digest as ever, without building
        // that object first (ingest hashes every item it accepts).
        let mut hash = CanonicalHash::default();
        hash.object(9);
        hash.key("channel");
        hash.string(self.channel.as_str());
        hash.key("customer");
        // CustomerRef serialises its absent options not at all, not as null.
        let customer = &self.customer;
        let (email, locale, reference) = (
            customer.email.as_deref(),
            customer.locale.as_deref(),
            customer.reference.as_deref(),
        );
        hash.object(2 + [email, locale, reference].iter().flatten().count());
        hash.key("consent");
        hash.bool(customer.consent);
        hash.string_field("email", email);
        hash.string_field("id", Some(&customer.id));
        hash.string_field("locale", locale);
        hash.string_field("reference", reference);
        hash.key("given_at");
        match (self.given_at != self.received_at).then_some(self.given_at) {
            // chrono's serde form of a UTC time is its Debug form.
            Some(given_at) => hash.string(&format!("{given_at:?}")),
            None => hash.null(),
        }
        hash.key("metadata");
        hash.map(&self.metadata);
        hash.key("nps");
        hash.number(self.nps);
        hash.key("rating");
        hash.number(self.rating);
        hash.key("source");
        hash.string(&self.source);
        hash.key("text");
        hash.string(&self.text);
        hash.key("touchpoint");
        match self.touchpoint {
            Some(touchpoint) => hash.string(touchpoint.as_str()),
            None => hash.null(),
        }
        hash.finish()
    }
}

/// A SHA-256 of a JSON value with object keys in sorted order and every part
/// length-prefixed, so no two values share an encoding.
#[derive(Default)]
struct CanonicalHash(sha2::Sha256);

impl CanonicalHash {
    fn put(&mut self, tag: u8, bytes: &[u8]) {
        use sha2::Digest;
        self.0.update([tag]);
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn null(&mut self) {
        self.put(b'n', b"");
    }

    fn bool(&mut self, value: bool) {
        self.put(b'b', &[u8::from(value)]);
    }

    fn number(&mut self, value: Option<u8>) {
        match value {
            Some(value) => self.put(b'#', value.to_string().as_bytes()),
            None => self.null(),
        }
    }

    fn string(&mut self, value: &str) {
        self.put(b's', value.as_bytes());
    }

    /// An object's header: then `len` pairs of [`Self::key`] and a value, keys sorted.
    fn object(&mut self, len: usize) {
        self.put(b'{', &(len as u64).to_le_bytes());
    }

    fn key(&mut self, key: &str) {
        self.put(b'k', key.as_bytes());
    }

    /// A key and its string value, or nothing when there is no value.
    fn string_field(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.key(key);
            self.string(value);
        }
    }

    fn map(&mut self, map: &serde_json::Map<String, serde_json::Value>) {
        self.object(map.len());
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (key, item) in entries {
            self.key(key);
            self.value(item);
        }
    }

    fn value(&mut self, value: &serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::Null => self.null(),
            Value::Bool(b) => self.bool(*b),
            Value::Number(n) => self.put(b'#', n.to_string().as_bytes()),
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.put(b'[', &(items.len() as u64).to_le_bytes());
                for item in items {
                    self.value(item);
                }
            }
            Value::Object(map) => self.map(map),
        }
    }

    fn finish(self) -> String {
        use sha2::Digest;
        format!("{:x}", self.0.finalize())
    }
}

impl Event for Feedback {
    const SCHEMA: &'static str = "feedback.raw.v1";
    const TOPIC: &'static str = topics::FEEDBACK_RAW;
    fn key(&self) -> &str {
        &self.customer.id
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    De,
    Other,
}

impl Language {
    pub fn as_str(&self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Other => "other",
        }
    }

    /// Maps a locale such as `"de-AT"`, `"en_GB"` or `"de"` to a language.
    pub fn from_locale(locale: &str) -> Language {
        let primary = locale
            .trim()
            .split(['-', '_', '.', '@'])
            .next()
            .unwrap_or("");
        if primary.eq_ignore_ascii_case("en") || primary.eq_ignore_ascii_case("eng") {
            Language::En
        } else if primary.eq_ignore_ascii_case("de")
            || primary.eq_ignore_ascii_case("deu")
            || primary.eq_ignore_ascii_case("ger")
        {
            Language::De
        } else {
            Language::Other
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentLabel {
    Positive,
    Negative,
    Neutral,
}

impl SentimentLabel {
    pub fn as_str(&self) -> &'static str {
        match self {
            SentimentLabel::Positive => "positive",
            SentimentLabel::Negative => "negative",
            SentimentLabel::Neutral => "neutral",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentimentResult {
    pub label: SentimentLabel,
    /// −1 (very negative) … +1 (very positive).
    #[serde(deserialize_with = "finite_f32")]
    pub score: f32,
    /// 0 … 1.
    #[serde(deserialize_with = "finite_f32")]
    pub confidence: f32,
}

/// One theme found in a feedback text, with the terms that matched it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThemeMatch {
    pub id: String,
    #[serde(deserialize_with = "finite_f32")]
    pub score: f32,
    /// The sentiment of the part of the text that mentions this theme.
    pub sentiment: SentimentLabel,
    pub matched_terms: Vec<String>,
}

/// The `feedback.categorised.v1` payload: the feedback plus what categorise made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackCategorised {
    pub feedback: Feedback,
    pub language: Language,
    pub sentiment: SentimentResult,
    pub themes: Vec<ThemeMatch>,
    /// Classifier and taxonomy version, so results can be compared across upgrades.
    pub classifier_version: String,
    /// Why: the rules and terms that decided the result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explanation: Vec<String>,
}

impl Event for FeedbackCategorised {
    const SCHEMA: &'static str = "feedback.categorised.v1";
    const TOPIC: &'static str = topics::FEEDBACK_CATEGORISED;
    fn key(&self) -> &str {
        &self.feedback.customer.id
    }
}

/// The `feedback.themes.v1` payload: one record per (feedback, theme), keyed by theme so
/// that each trends instance owns a disjoint set of themes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThemeMention {
    pub feedback_id: Uuid,
    pub theme: String,
    pub customer_id: String,
    pub source: String,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touchpoint: Option<Touchpoint>,
    pub language: Language,
    /// The sentiment of the part of the text about this theme.
    pub sentiment: SentimentLabel,
    /// The overall sentiment score of the feedback.
    #[serde(deserialize_with = "finite_f32")]
    pub score: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nps: Option<u8>,
    /// A short excerpt of the text, for an action's evidence.
    pub excerpt: String,
    /// Event time of the feedback.
    pub given_at: DateTime<Utc>,
    /// When ingest accepted the feedback: where the loop's latency to trends starts.
    /// Absent in mentions published before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
}

impl Event for ThemeMention {
    const SCHEMA: &'static str = "feedback.themes.v1";
    const TOPIC: &'static str = topics::FEEDBACK_THEMES;
    fn key(&self) -> &str {
        &self.theme
    }
}

/// Deserialises an `f32` that is finite. serde casts any JSON number to `f32`, so `1e39`
/// would decode as infinity, which serde_json then writes as `null`: the event could not be
/// re-published or replayed. Found by the `decode_event` fuzz target.
fn finite_f32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f32, D::Error> {
    let value = f32::deserialize(deserializer)?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(de::Error::custom(format_args!(
            "number out of range for a 32-bit float: {value}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::round_trip;

    pub(crate) fn feedback() -> Feedback {
        Feedback {
            feedback_id: Uuid::now_v7(),
            source: "shopdesk".into(),
            channel: Channel::AppStore,
            touchpoint: Some(Touchpoint::Delivery),
            customer: CustomerRef {
                id: "cust-1".into(),
                locale: Some("de-DE".into()),
                consent: true,
                email: Some("kunde@example.com".into()),
                reference: Some("TCK-1".into()),
            },
            text: "Lieferung kam zu spät".into(),
            rating: Some(2),
            nps: None,
            given_at: Utc::now(),
            received_at: Utc::now(),
            metadata: serde_json::Map::new(),
        }
    }

    #[test]
    fn content_hash_ignores_server_set_fields_and_key_order() {
        let first = feedback();
        let mut retry = first.clone();
        retry.feedback_id = Uuid::now_v7();
        retry.received_at = first.received_at + chrono::Duration::seconds(5);
        retry.given_at = retry.received_at; // no occurred_at posted: "now" both times
        let mut first = first;
        first.given_at = first.received_at;
        assert_eq!(first.content_hash(), retry.content_hash());

        let (mut a, mut b) = (first.clone(), first.clone());
        a.metadata.insert("x".into(), 1.into());
        a.metadata.insert("y".into(), 2.into());
        b.metadata.insert("y".into(), 2.into());
        b.metadata.insert("x".into(), 1.into());
        assert_eq!(a.content_hash(), b.content_hash());

        let mut other = first.clone();
        other.text.push('!');
        assert_ne!(other.content_hash(), first.content_hash());
        let mut other = first.clone();
        other.source = "surveyhub".into();
        assert_ne!(other.content_hash(), first.content_hash());
        let mut other = first.clone();
        other.given_at = first.received_at - chrono::Duration::days(1);
        assert_ne!(other.content_hash(), first.content_hash());
    }

    /// Hashes stored by earlier versions (ingest's event-id ledger, categorise's rows) must
    /// keep matching: these were computed by the first implementation.
    #[test]
    fn content_hash_is_stable_across_versions() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut full = feedback();
        full.given_at = at("2026-12-01T10:00:00.123Z");
        full.received_at = at("2026-12-01T10:05:00Z");
        full.nps = Some(3);
        full.metadata = serde_json::json!({
            "zone": "eu", "b": [1, 2.5, "x", null, true, {"k": -3}], "a": {"z": false, "y": -3}
        })
        .as_object()
        .unwrap()
        .clone();
        let mut minimal = feedback();
        minimal.touchpoint = None;
        minimal.customer = CustomerRef {
            id: "c-9".into(),
            locale: None,
            consent: false,
            email: None,
            reference: None,
        };
        minimal.rating = None;
        minimal.nps = Some(9);
        minimal.text = "Schnell und \"gut\" 👍\n".into();
        minimal.given_at = at("2026-12-01T10:05:00Z");
        minimal.received_at = minimal.given_at;
        assert_eq!(
            full.content_hash(),
            "e2dc1821457dd841c41259000d37d641c28645c28863bfd1fc9949a548fb2204"
        );
        assert_eq!(
            minimal.content_hash(),
            "d111abf252af9315f4d5f5777b3b2e1085520ec11688c39a0b3258207c066666"
        );
    }

    /// The content hash and the stores write these names; they must be the wire names.
    #[test]
    fn names_are_the_serialised_forms() {
        for channel in Channel::ALL {
            assert_eq!(serde_json::json!(channel), channel.as_str());
        }
        for touchpoint in Touchpoint::ALL {
            assert_eq!(serde_json::json!(touchpoint), touchpoint.as_str());
        }
    }

    #[test]
    fn raw_feedback_round_trips_with_kebab_case_channel() {
        let json = round_trip(feedback());
        assert_eq!(json["channel"], "app-store");
        assert_eq!(json["touchpoint"], "delivery");
        assert_eq!(json["customer"]["id"], "cust-1");
        assert!(json.get("nps").is_none(), "absent options are omitted");
    }

    #[test]
    fn categorised_round_trips() {
        let json = round_trip(FeedbackCategorised {
            feedback: feedback(),
            language: Language::De,
            sentiment: SentimentResult {
                label: SentimentLabel::Negative,
                score: -0.6,
                confidence: 0.8,
            },
            themes: vec![ThemeMatch {
                id: "delivery_time".into(),
                score: 0.9,
                sentiment: SentimentLabel::Negative,
                matched_terms: vec!["zu spät".into()],
            }],
            classifier_version: "lexicon-1".into(),
            explanation: vec!["negative: spät".into()],
        });
        assert_eq!(json["language"], "de");
        assert_eq!(json["sentiment"]["label"], "negative");
        assert_eq!(json["themes"][0]["id"], "delivery_time");
    }

    #[test]
    fn theme_mention_round_trips_and_is_keyed_by_theme() {
        let mention = ThemeMention {
            feedback_id: Uuid::now_v7(),
            theme: "delivery_time".into(),
            customer_id: "cust-1".into(),
            source: "shopdesk".into(),
            channel: Channel::Review,
            touchpoint: None,
            language: Language::En,
            sentiment: SentimentLabel::Negative,
            score: -0.5,
            rating: Some(1),
            nps: None,
            excerpt: "late again".into(),
            given_at: Utc::now(),
            received_at: Some(Utc::now()),
        };
        assert_eq!(mention.key(), "delivery_time");
        round_trip(mention);
    }

    #[test]
    fn a_record_of_another_type_is_reported_by_its_schema() {
        let bytes = serde_json::to_vec(&crate::Envelope::new(feedback())).unwrap();
        match crate::decode::<FeedbackCategorised>(&bytes) {
            Err(crate::DecodeError::WrongSchema { expected, found }) => {
                assert_eq!(expected, "feedback.categorised.v1");
                assert_eq!(found, Feedback::SCHEMA);
            }
            other => panic!("expected WrongSchema, got {other:?}"),
        }
        // Without its envelope's fields a record is invalid, whatever its payload.
        let mut json = serde_json::to_value(crate::Envelope::new(feedback())).unwrap();
        json.as_object_mut().unwrap().remove("event_id");
        let bytes = serde_json::to_vec(&json).unwrap();
        assert!(matches!(
            crate::decode::<Feedback>(&bytes),
            Err(crate::DecodeError::Json(_))
        ));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut json = serde_json::to_value(crate::Envelope::new(feedback())).unwrap();
        json["added_in_a_later_version"] = serde_json::json!(42);
        let bytes = serde_json::to_vec(&json).unwrap();
        assert!(crate::decode::<Feedback>(&bytes).is_ok());
    }

    /// Regression (fuzzing): `1e39` used to decode as an infinite `f32`, which re-encoded
    /// as `null` and so no longer decoded.
    #[test]
    fn out_of_range_floats_are_rejected_not_turned_into_infinity() {
        let mention = ThemeMention {
            feedback_id: Uuid::now_v7(),
            theme: "delivery_time".into(),
            customer_id: "cust-1".into(),
            source: "shopdesk".into(),
            channel: Channel::Review,
            touchpoint: None,
            language: Language::En,
            sentiment: SentimentLabel::Negative,
            score: f32::MAX,
            rating: None,
            nps: None,
            excerpt: "late".into(),
            given_at: Utc::now(),
            received_at: None,
        };
        let envelope = crate::Envelope::new(mention);
        let bytes = serde_json::to_vec(&envelope).unwrap();
        let back = crate::decode::<ThemeMention>(&bytes).unwrap();
        assert_eq!(back, envelope, "the largest finite f32 still round-trips");

        let mut json = serde_json::to_value(&envelope).unwrap();
        json["score"] = serde_json::json!(-1e39);
        let err = crate::decode::<ThemeMention>(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");

        let mut categorised = serde_json::to_value(crate::Envelope::new(FeedbackCategorised {
            feedback: feedback(),
            language: Language::De,
            sentiment: SentimentResult {
                label: SentimentLabel::Negative,
                score: -0.6,
                confidence: 0.8,
            },
            themes: vec![],
            classifier_version: "lexicon-2".into(),
            explanation: vec![],
        }))
        .unwrap();
        categorised["sentiment"]["confidence"] = serde_json::json!(1e300);
        let bytes = serde_json::to_vec(&categorised).unwrap();
        assert!(crate::decode::<FeedbackCategorised>(&bytes).is_err());
    }
}

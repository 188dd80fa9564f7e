//! Which column of the export is which field of a feedback event, and how a row's
//! values become one: the mapping file (TOML) and the flags that override it, dates in
//! the forms exports write them, ratings, consent, and channel and touchpoint names in
//! the words exports use for them.
//!
//! A value that does not fit is a problem of that row (it goes to the rejects file with
//! the reason); only a mapping that cannot work at all (a column missing from the
//! header, an unknown default) stops the import before anything is sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use closeloop_events::{Channel, CustomerRef, Touchpoint};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::read::{Fields, Format, Header};
use super::ImportError;

/// The mapping file: everything the flags can say about columns and defaults, so an
/// export that comes back every month is imported with one `--mapping` argument.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    pub source: Option<String>,
    pub format: Option<Format>,
    pub delimiter: Option<String>,
    pub date_format: Option<String>,
    pub utc_offset: Option<String>,
    #[serde(default)]
    pub columns: Columns,
    #[serde(default)]
    pub defaults: Defaults,
    /// Export values → channel names (`"Telefon" = "other"`), before the built-in ones.
    #[serde(default)]
    pub channel_values: BTreeMap<String, String>,
    /// Export values → touchpoint names (`"Versand" = "delivery"`).
    #[serde(default)]
    pub touchpoint_values: BTreeMap<String, String>,
}

impl MappingFile {
    pub fn load(path: &Path) -> Result<Self, ImportError> {
        let invalid = |reason: String| ImportError::Mapping {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        toml::from_str(&text).map_err(|e| invalid(e.to_string()))
    }
}

/// The column each field is read from (`[columns]` in the mapping file, `--text` etc.
/// on the command line).
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// Column of the feedback text (required, here or in the mapping file).
    #[arg(long, value_name = "COLUMN")]
    pub text: Option<String>,
    /// Column of the customer id (required, here or in the mapping file).
    #[arg(long, value_name = "COLUMN")]
    pub customer_id: Option<String>,
    /// Column of the customer's e-mail address.
    #[arg(long, value_name = "COLUMN")]
    pub email: Option<String>,
    /// Column of the customer's locale (`de-DE`, `en_GB`).
    #[arg(long, value_name = "COLUMN")]
    pub locale: Option<String>,
    /// Column of the date the feedback was given (`occurred_at`).
    #[arg(long, value_name = "COLUMN")]
    pub date: Option<String>,
    /// Column of a star rating, 1 to 5.
    #[arg(long, value_name = "COLUMN")]
    pub rating: Option<String>,
    /// Column of an NPS answer, 0 to 10.
    #[arg(long, value_name = "COLUMN")]
    pub nps: Option<String>,
    /// Column of the channel (survey, ticket, review, app-store, social, chat, email, other, or a synonym).
    #[arg(long, value_name = "COLUMN")]
    pub channel: Option<String>,
    /// Column of the touchpoint (delivery, billing, support, … or a synonym).
    #[arg(long, value_name = "COLUMN")]
    pub touchpoint: Option<String>,
    /// Column of the source system's reference (ticket number, review id); when mapped,
    /// it alone (with the source) makes the row's stable event id.
    #[arg(long, value_name = "COLUMN")]
    pub reference: Option<String>,
    /// Column of the customer's consent to be told what became of their feedback (yes/no, true/false, 1/0, ja/nein).
    #[arg(long, value_name = "COLUMN")]
    pub consent: Option<String>,
    /// Columns copied into the event's `metadata`, under their names.
    #[arg(long, value_delimiter = ',', value_name = "COLUMN,…")]
    pub metadata: Option<Vec<String>>,
}

impl Columns {
    /// `self`, with what it leaves open taken from `file`.
    fn or(self, file: Columns) -> Columns {
        Columns {
            text: self.text.or(file.text),
            customer_id: self.customer_id.or(file.customer_id),
            email: self.email.or(file.email),
            locale: self.locale.or(file.locale),
            date: self.date.or(file.date),
            rating: self.rating.or(file.rating),
            nps: self.nps.or(file.nps),
            channel: self.channel.or(file.channel),
            touchpoint: self.touchpoint.or(file.touchpoint),
            reference: self.reference.or(file.reference),
            consent: self.consent.or(file.consent),
            metadata: self.metadata.or(file.metadata),
        }
    }

    /// (field, column) of every mapped column.
    fn mapped(&self) -> Vec<(&'static str, &str)> {
        let single = [
            ("text", &self.text),
            ("customer_id", &self.customer_id),
            ("email", &self.email),
            ("locale", &self.locale),
            ("date", &self.date),
            ("rating", &self.rating),
            ("nps", &self.nps),
            ("channel", &self.channel),
            ("touchpoint", &self.touchpoint),
            ("reference", &self.reference),
            ("consent", &self.consent),
        ];
        let mut mapped: Vec<(&'static str, &str)> = single
            .into_iter()
            .filter_map(|(field, column)| Some((field, column.as_deref()?)))
            .collect();
        for column in self.metadata.iter().flatten() {
            mapped.push(("metadata", column));
        }
        mapped
    }
}

/// Values for rows whose column is not mapped or empty (`[defaults]`, `--…-default`).
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Channel of rows without one [default: other].
    #[arg(long = "channel-default", id = "channel_default")]
    pub channel: Option<String>,
    /// Touchpoint of rows without one.
    #[arg(long = "touchpoint-default", id = "touchpoint_default")]
    pub touchpoint: Option<String>,
    /// Locale of rows without one.
    #[arg(long = "locale-default", id = "locale_default")]
    pub locale: Option<String>,
    /// Consent of rows without a consent value [default: false]: only customers who
    /// agreed are ever told what became of their feedback.
    #[arg(long = "consent-default", id = "consent_default")]
    pub consent: Option<bool>,
}

impl Defaults {
    fn or(self, file: Defaults) -> Defaults {
        Defaults {
            channel: self.channel.or(file.channel),
            touchpoint: self.touchpoint.or(file.touchpoint),
            locale: self.locale.or(file.locale),
            consent: self.consent.or(file.consent),
        }
    }
}

/// How dates without a zone are read.
#[derive(Debug, Clone)]
pub struct DateRule {
    /// A chrono format tried before the built-in forms.
    pub format: Option<String>,
    /// The zone of dates that name none (UTC unless `--utc-offset`).
    pub offset: FixedOffset,
}

impl Default for DateRule {
    fn default() -> Self {
        Self {
            format: None,
            offset: FixedOffset::east_opt(0).expect("zero is a valid offset"),
        }
    }
}

/// The mapping in force: flags over the mapping file, checked.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub source: String,
    pub columns: Columns,
    channel_default: Channel,
    touchpoint_default: Option<Touchpoint>,
    locale_default: Option<String>,
    consent_default: bool,
    channel_values: BTreeMap<String, Channel>,
    touchpoint_values: BTreeMap<String, Touchpoint>,
    pub dates: DateRule,
}

/// What the command line says about the mapping (flags win over the file).
#[derive(Debug, Clone, Default)]
pub struct MappingFlags {
    pub source: Option<String>,
    pub columns: Columns,
    pub defaults: Defaults,
    pub date_format: Option<String>,
    pub utc_offset: Option<String>,
}

impl Mapping {
    /// Resolves the flags over the file (if any) and checks what can be checked before
    /// reading a row.
    pub fn resolve(
        flags: MappingFlags,
        file: MappingFile,
        file_path: Option<&Path>,
    ) -> Result<Self, ImportError> {
        let invalid = |reason: String| match file_path {
            Some(path) => ImportError::Mapping {
                path: path.to_owned(),
                reason,
            },
            None => ImportError::Config(reason),
        };
        let source = flags
            .source
            .or(file.source)
            .ok_or_else(|| invalid("no source: give --source (or `source` in the mapping file), the name the API key belongs to".into()))?;
        if !closeloop_ingest::submission::is_valid_source(&source) {
            return Err(invalid(format!(
                "invalid source name {source:?}: use 1-64 of a-z, 0-9, '-', '_'"
            )));
        }
        let columns = flags.columns.or(file.columns);
        if columns.text.is_none() {
            return Err(invalid(
                "no text column: give --text COLUMN (or `text` under [columns])".into(),
            ));
        }
        if columns.customer_id.is_none() {
            return Err(invalid(
                "no customer id column: give --customer-id COLUMN (or `customer_id` under [columns])"
                    .into(),
            ));
        }
        let defaults = flags.defaults.or(file.defaults);
        let mut channel_values = BTreeMap::new();
        for (value, channel) in &file.channel_values {
            let channel = builtin_channel(&normalise(channel))
                .ok_or_else(|| invalid(format!("channel_values: {channel:?} is no channel")))?;
            channel_values.insert(normalise(value), channel);
        }
        let mut touchpoint_values = BTreeMap::new();
        for (value, touchpoint) in &file.touchpoint_values {
            let touchpoint = builtin_touchpoint(&normalise(touchpoint)).ok_or_else(|| {
                invalid(format!(
                    "touchpoint_values: {touchpoint:?} is no touchpoint"
                ))
            })?;
            touchpoint_values.insert(normalise(value), touchpoint);
        }
        let channel_default = match &defaults.channel {
            Some(value) => builtin_channel(&normalise(value))
                .ok_or_else(|| invalid(format!("the default channel {value:?} is no channel")))?,
            None => Channel::Other,
        };
        let touchpoint_default = match &defaults.touchpoint {
            Some(value) => Some(builtin_touchpoint(&normalise(value)).ok_or_else(|| {
                invalid(format!("the default touchpoint {value:?} is no touchpoint"))
            })?),
            None => None,
        };
        let offset = match flags.utc_offset.or(file.utc_offset) {
            Some(offset) => parse_offset(&offset).ok_or_else(|| {
                invalid(format!(
                    "utc offset {offset:?}: write it as +01:00, -05:00 or Z"
                ))
            })?,
            None => DateRule::default().offset,
        };
        Ok(Self {
            source,
            columns,
            channel_default,
            touchpoint_default,
            locale_default: defaults.locale,
            consent_default: defaults.consent.unwrap_or(false),
            channel_values,
            touchpoint_values,
            dates: DateRule {
                format: flags.date_format.or(file.date_format),
                offset,
            },
        })
    }

    /// Every mapped column must be in the CSV header (JSON lines have none to check).
    pub fn check_header(&self, header: &Header) -> Result<(), ImportError> {
        let missing: Vec<String> = self
            .columns
            .mapped()
            .into_iter()
            .filter(|(_, column)| !header.contains(column))
            .map(|(field, column)| format!("{column:?} ({field})"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ImportError::Config(format!(
            "not in the file's header: {}; its columns are {}",
            missing.join(", "),
            header
                .names
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// The feedback event of one row, with its stable event id, or every problem found
    /// in it.
    pub fn map(&self, fields: &Fields) -> Result<Item, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut value = |field: &'static str, column: &Option<String>| -> Option<String> {
            let column = column.as_deref()?;
            match fields.get(column) {
                Ok(value) => value.map(|v| v.trim().to_owned()),
                Err(reason) => {
                    problems.push(Problem::new(field, reason));
                    None
                }
            }
        };
        let columns = &self.columns;
        let text = value("text", &columns.text);
        let customer_id = value("customer_id", &columns.customer_id);
        let email = value("email", &columns.email);
        let locale = value("locale", &columns.locale).or_else(|| self.locale_default.clone());
        let date = value("date", &columns.date);
        let rating = value("rating", &columns.rating);
        let nps = value("nps", &columns.nps);
        let channel = value("channel", &columns.channel);
        let touchpoint = value("touchpoint", &columns.touchpoint);
        let reference = value("reference", &columns.reference);
        let consent = value("consent", &columns.consent);
        let mut metadata = Map::new();
        for column in columns.metadata.iter().flatten() {
            if let Some(v) = value("metadata", &Some(column.clone())) {
                metadata.insert(column.clone(), Value::String(v));
            }
        }

        if text.is_none() {
            problems.push(Problem::new("text", "is empty"));
        }
        if customer_id.is_none() {
            problems.push(Problem::new("customer_id", "is empty"));
        }
        let p = &mut problems;
        let occurred_at = checked(p, "date", date.map(|d| parse_date(&d, &self.dates)));
        let rating = checked(p, "rating", rating.map(|r| parse_rating(&r)));
        let nps = checked(p, "nps", nps.map(|n| parse_nps(&n)));
        let channel = checked(
            p,
            "channel",
            channel.map(|c| {
                lookup(&c, &self.channel_values, builtin_channel).ok_or_else(|| {
                    format!(
                        "{c:?} is no channel (survey, ticket, review, app-store, social, chat, email, other); map it under [channel_values] in the mapping file"
                    )
                })
            }),
        )
        .unwrap_or(self.channel_default);
        let touchpoint = checked(
            p,
            "touchpoint",
            touchpoint.map(|t| {
                lookup(&t, &self.touchpoint_values, builtin_touchpoint).ok_or_else(|| {
                    format!(
                        "{t:?} is no touchpoint (awareness, consideration, purchase, onboarding, delivery, usage, support, billing, returns, renewal, other); map it under [touchpoint_values]"
                    )
                })
            }),
        )
        .or(self.touchpoint_default);
        let consent = checked(p, "consent", consent.map(|c| parse_consent(&c)))
            .unwrap_or(self.consent_default);
        let (Some(text), Some(customer_id)) = (text, customer_id) else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut item = Item {
            event_id: Uuid::nil(),
            occurred_at,
            channel,
            touchpoint,
            customer: CustomerRef {
                id: customer_id,
                locale,
                consent,
                email,
                reference,
            },
            text,
            rating,
            nps,
            metadata,
        };
        item.event_id = super::stable_id::event_id(&self.source, &item);
        Ok(item)
    }
}

/// The value of a parsed field, or `None` with the problem noted.
fn checked<T>(
    problems: &mut Vec<Problem>,
    field: &'static str,
    parsed: Option<Result<T, String>>,
) -> Option<T> {
    match parsed? {
        Ok(value) => Some(value),
        Err(reason) => {
            problems.push(Problem::new(field, reason));
            None
        }
    }
}

/// One thing wrong with a row: the field (as the mapping names it) and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub field: String,
    pub reason: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// One feedback event as posted to ingest (an item of `POST /v1/feedback/batch`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub event_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    pub channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub touchpoint: Option<Touchpoint>,
    pub customer: CustomerRef,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nps: Option<u8>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// Lower case, trimmed, spaces and underscores as hyphens: `App Store` = `app_store` =
/// `app-store`.
fn normalise(value: &str) -> String {
    value
        .trim()
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '_' || c == '-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn lookup<T: Copy>(
    value: &str,
    own: &BTreeMap<String, T>,
    builtin: fn(&str) -> Option<T>,
) -> Option<T> {
    let key = normalise(value);
    own.get(&key).copied().or_else(|| builtin(&key))
}

/// A channel by its name or a word exports use for it (English and German).
fn builtin_channel(normalised: &str) -> Option<Channel> {
    Some(match normalised {
        "survey" | "surveys" | "umfrage" | "befragung" | "questionnaire" | "fragebogen" | "nps"
        | "csat" | "poll" => Channel::Survey,
        "ticket" | "tickets" | "helpdesk" | "help-desk" | "support" | "support-ticket" | "case"
        | "anfrage" | "kundenanfrage" | "contact-form" | "kontaktformular" => Channel::Ticket,
        "review" | "reviews" | "bewertung" | "bewertungen" | "rezension" | "product-review"
        | "produktbewertung" => Channel::Review,
        "app-store" | "appstore" | "app" | "apple-app-store" | "ios" | "android"
        | "google-play" | "play-store" | "playstore" | "app-review" => Channel::AppStore,
        "social" | "social-media" | "soziale-medien" | "twitter" | "x" | "facebook"
        | "instagram" | "linkedin" | "tiktok" => Channel::Social,
        "chat" | "live-chat" | "livechat" | "web-chat" | "webchat" | "messenger" | "whatsapp" => {
            Channel::Chat
        }
        "email" | "e-mail" | "mail" => Channel::Email,
        "other" | "others" | "sonstige" | "sonstiges" | "andere" | "phone" | "telefon" | "call"
        | "letter" | "brief" => Channel::Other,
        _ => return None,
    })
}

/// A touchpoint by its name or a word exports use for it (English and German).
fn builtin_touchpoint(normalised: &str) -> Option<Touchpoint> {
    Some(match normalised {
        "awareness" | "advertising" | "marketing" | "werbung" => Touchpoint::Awareness,
        "consideration" | "beratung" | "pre-sales" => Touchpoint::Consideration,
        "purchase" | "checkout" | "order" | "ordering" | "kauf" | "bestellung" | "shop" => {
            Touchpoint::Purchase
        }
        "onboarding" | "signup" | "sign-up" | "registration" | "registrierung" | "setup"
        | "einrichtung" => Touchpoint::Onboarding,
        "delivery" | "shipping" | "shipment" | "lieferung" | "versand" | "zustellung" => {
            Touchpoint::Delivery
        }
        "usage" | "use" | "product" | "produkt" | "nutzung" => Touchpoint::Usage,
        "support" | "service" | "customer-service" | "kundenservice" | "kundendienst" => {
            Touchpoint::Support
        }
        "billing" | "invoice" | "payment" | "rechnung" | "zahlung" | "abrechnung" => {
            Touchpoint::Billing
        }
        "returns" | "return" | "refund" | "rücksendung" | "ruecksendung" | "retoure"
        | "retouren" | "erstattung" => Touchpoint::Returns,
        "renewal" | "subscription" | "verlängerung" | "verlaengerung" | "abo" => {
            Touchpoint::Renewal
        }
        "other" | "sonstige" | "sonstiges" => Touchpoint::Other,
        _ => return None,
    })
}

/// `+01:00`, `-0500`, `+01`, `Z` or `UTC`.
fn parse_offset(value: &str) -> Option<FixedOffset> {
    let value = value.trim();
    if matches!(value, "Z" | "z" | "UTC" | "GMT") {
        return FixedOffset::east_opt(0);
    }
    let (sign, digits) = match value.as_bytes().first()? {
        b'+' => (1, &value[1..]),
        b'-' => (-1, &value[1..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse().ok()?),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// Date-and-time forms without a zone, tried in order.
const NAIVE_DATE_TIMES: [&str; 6] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
];
/// Date forms, read as midnight.
const NAIVE_DATES: [&str; 2] = ["%Y-%m-%d", "%d.%m.%Y"];

/// A row's date: RFC 3339; `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS[.fff]]` (or with `T`),
/// `DD.MM.YYYY [HH:MM[:SS]]`, each with or without a zone (`Z`, `UTC`, `+01:00`,
/// `+0100`); or `--date-format` first. Without a zone, in `rule.offset` (UTC unless
/// `--utc-offset`); a date alone is midnight.
pub fn parse_date(value: &str, rule: &DateRule) -> Result<DateTime<Utc>, String> {
    let value = value.trim();
    if let Some(format) = &rule.format {
        if let Ok(at) = DateTime::parse_from_str(value, format) {
            return Ok(at.with_timezone(&Utc));
        }
        if let Ok(naive) = NaiveDateTime::parse_from_str(value, format) {
            return in_zone(naive, rule.offset);
        }
        if let Ok(date) = NaiveDate::parse_from_str(value, format) {
            return in_zone(date.and_time(chrono::NaiveTime::MIN), rule.offset);
        }
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    let (naive, offset) = split_zone(value);
    let offset = offset.unwrap_or(rule.offset);
    for format in NAIVE_DATE_TIMES {
        if let Ok(at) = NaiveDateTime::parse_from_str(naive, format) {
            return in_zone(at, offset);
        }
    }
    for format in NAIVE_DATES {
        if let Ok(date) = NaiveDate::parse_from_str(naive, format) {
            return in_zone(date.and_time(chrono::NaiveTime::MIN), offset);
        }
    }
    Err(format!(
        "{value:?} is not a date (RFC 3339, YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or DD.MM.YYYY HH:MM, with or without a zone{})",
        match &rule.format {
            Some(format) => format!(", or {format:?}"),
            None => "; --date-format for others".into(),
        }
    ))
}

/// Splits a trailing zone (`Z`, ` UTC`, `+01:00`, ` +0100`) off a date and time. A date
/// alone has none (its hyphens are no offset).
fn split_zone(value: &str) -> (&str, Option<FixedOffset>) {
    for suffix in [" UTC", " GMT", "UTC", "Z", "z"] {
        if let Some(rest) = value.strip_suffix(suffix) {
            if rest.contains(':') {
                return (rest.trim_end(), FixedOffset::east_opt(0));
            }
        }
    }
    // An offset follows the time: look for its sign after the last ':'.
    let Some(colon) = value.find(':') else {
        return (value, None);
    };
    if let Some(at) = value[colon..].rfind(['+', '-']) {
        let at = colon + at;
        if let Some(offset) = parse_offset(&value[at..]) {
            return (value[..at].trim_end(), Some(offset));
        }
    }
    (value, None)
}

fn in_zone(naive: NaiveDateTime, offset: FixedOffset) -> Result<DateTime<Utc>, String> {
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| format!("{naive} is not a time in {offset}"))
}

/// A whole number written as `4`, `4.0` or `4,0`.
fn whole_number(value: &str) -> Option<i64> {
    let number: f64 = value.trim().replace(',', ".").parse().ok()?;
    (number.fract() == 0.0 && number.is_finite()).then_some(number as i64)
}

/// A star rating 1–5: `4`, `4.0`, `4/5` or `★★★★☆`.
pub fn parse_rating(value: &str) -> Result<u8, String> {
    let value = value.trim();
    let stars = value.chars().all(|c| c == '★' || c == '☆');
    let number = if stars {
        Some(value.chars().filter(|&c| c == '★').count() as i64)
    } else {
        whole_number(value.strip_suffix("/5").unwrap_or(value))
    };
    match number {
        Some(n @ 1..=5) => Ok(n as u8),
        Some(_) => Err(format!("{value:?} is not between 1 and 5")),
        None => Err(format!("{value:?} is not a rating from 1 to 5")),
    }
}

/// An NPS answer 0–10.
pub fn parse_nps(value: &str) -> Result<u8, String> {
    match whole_number(value) {
        Some(n @ 0..=10) => Ok(n as u8),
        _ => Err(format!("{value:?} is not an NPS answer from 0 to 10")),
    }
}

/// Consent as exports write it: yes/no, true/false, 1/0, y/n, ja/nein, j/n, x (ticked).
pub fn parse_consent(value: &str) -> Result<bool, String> {
    match normalise(value).as_str() {
        "yes" | "y" | "true" | "1" | "ja" | "j" | "x" | "opt-in" | "opted-in" => Ok(true),
        "no" | "n" | "false" | "0" | "nein" | "opt-out" | "opted-out" => Ok(false),
        _ => Err(format!(
            "{value:?} is not a yes or no (yes/no, true/false, 1/0, ja/nein)"
        )),
    }
}

/// Where the rejects of `input` go by default: beside it, `<input>.rejects.jsonl`.
pub fn default_rejects_path(input: &Path) -> PathBuf {
    let mut name = input
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".rejects.jsonl");
    input.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("a test date")
            .with_timezone(&Utc)
    }

    #[test]
    fn dates_in_the_forms_exports_write() {
        let rule = DateRule::default();
        let parse = |s: &str| parse_date(s, &rule);
        assert_eq!(
            parse("2026-03-04T10:15:00+01:00"),
            Ok(utc("2026-03-04T09:15:00Z"))
        );
        assert_eq!(
            parse("2026-03-04T10:15:00Z"),
            Ok(utc("2026-03-04T10:15:00Z"))
        );
        assert_eq!(parse("2026-03-04"), Ok(utc("2026-03-04T00:00:00Z")));
        assert_eq!(
            parse("2026-03-04 10:15:30"),
            Ok(utc("2026-03-04T10:15:30Z"))
        );
        assert_eq!(parse("2026-03-04 10:15"), Ok(utc("2026-03-04T10:15:00Z")));
        assert_eq!(
            parse("2026-03-04 10:15:30.250"),
            Ok(utc("2026-03-04T10:15:30.250Z"))
        );
        assert_eq!(
            parse("2026-03-04 10:15:30 +0200"),
            Ok(utc("2026-03-04T08:15:30Z"))
        );
        assert_eq!(
            parse("2026-03-04 10:15:30-05:00"),
            Ok(utc("2026-03-04T15:15:30Z"))
        );
        assert_eq!(
            parse("2026-03-04 10:15:30 UTC"),
            Ok(utc("2026-03-04T10:15:30Z"))
        );
        assert_eq!(parse("04.03.2026"), Ok(utc("2026-03-04T00:00:00Z")));
        assert_eq!(parse("04.03.2026 10:15"), Ok(utc("2026-03-04T10:15:00Z")));
        for bad in ["yesterday", "2026-13-01", "03/04/2026", "2026-02-30", ""] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zone_less_dates_take_the_offset_and_a_format_comes_first() {
        let rule = DateRule {
            format: Some("%m/%d/%Y %I:%M %p".into()),
            offset: parse_offset("+01:00").expect("an offset"),
        };
        assert_eq!(
            parse_date("03/04/2026 02:15 PM", &rule),
            Ok(utc("2026-03-04T13:15:00Z"))
        );
        assert_eq!(
            parse_date("2026-03-04 10:00", &rule),
            Ok(utc("2026-03-04T09:00:00Z"))
        );
        assert_eq!(
            parse_date("2026-03-04T10:00:00Z", &rule),
            Ok(utc("2026-03-04T10:00:00Z")),
            "a date with its own zone keeps it"
        );
        let err = parse_date("4 March", &rule).unwrap_err();
        assert!(err.contains("%m/%d/%Y"), "{err}");
        assert_eq!(
            parse_offset("-0530"),
            FixedOffset::west_opt(5 * 3600 + 1800)
        );
        assert_eq!(parse_offset("+1"), None);
    }

    #[test]
    fn ratings_nps_and_consent() {
        assert_eq!(parse_rating("4"), Ok(4));
        assert_eq!(parse_rating("4.0"), Ok(4));
        assert_eq!(parse_rating("2,0"), Ok(2));
        assert_eq!(parse_rating("3/5"), Ok(3));
        assert_eq!(parse_rating("★★★★☆"), Ok(4));
        for bad in ["0", "6", "4.5", "five", "-1"] {
            assert!(parse_rating(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_nps("0"), Ok(0));
        assert_eq!(parse_nps("10"), Ok(10));
        assert!(parse_nps("11").is_err());
        assert_eq!(parse_consent("Ja"), Ok(true));
        assert_eq!(parse_consent("no"), Ok(false));
        assert_eq!(parse_consent("1"), Ok(true));
        assert!(parse_consent("maybe").is_err());
    }

    #[test]
    fn channel_and_touchpoint_synonyms() {
        let none = BTreeMap::new();
        let channel = |v: &str| lookup(v, &none, builtin_channel);
        assert_eq!(channel("App Store"), Some(Channel::AppStore));
        assert_eq!(channel("app_store"), Some(Channel::AppStore));
        assert_eq!(channel("E-Mail"), Some(Channel::Email));
        assert_eq!(channel("Umfrage"), Some(Channel::Survey));
        assert_eq!(channel("Live Chat"), Some(Channel::Chat));
        assert_eq!(channel("Kontaktformular"), Some(Channel::Ticket));
        assert_eq!(channel("fax"), None);
        let own = BTreeMap::from([("fax".to_owned(), Channel::Other)]);
        assert_eq!(lookup("FAX", &own, builtin_channel), Some(Channel::Other));
        let none = BTreeMap::new();
        let touchpoint = |v: &str| lookup(v, &none, builtin_touchpoint);
        assert_eq!(touchpoint("Versand"), Some(Touchpoint::Delivery));
        assert_eq!(touchpoint("Rücksendung"), Some(Touchpoint::Returns));
        assert_eq!(touchpoint("Customer Service"), Some(Touchpoint::Support));
    }

    #[test]
    fn rejects_go_beside_the_input() {
        assert_eq!(
            default_rejects_path(Path::new("exports/tickets.csv")),
            Path::new("exports/tickets.csv.rejects.jsonl")
        );
    }

    #[test]
    fn flags_win_over_the_mapping_file() {
        let file: MappingFile = toml::from_str(
            r#"
            source = "shopdesk"
            [columns]
            text = "Nachricht"
            customer_id = "Kunde"
            rating = "Sterne"
            [defaults]
            channel = "Ticket"
            consent = true
            [channel_values]
            "Telefon" = "other"
            "#,
        )
        .expect("a mapping file");
        let flags = MappingFlags {
            columns: Columns {
                rating: Some("Bewertung".into()),
                ..Columns::default()
            },
            defaults: Defaults {
                consent: Some(false),
                ..Defaults::default()
            },
            ..MappingFlags::default()
        };
        let mapping = Mapping::resolve(flags, file, None).expect("resolves");
        assert_eq!(mapping.source, "shopdesk");
        assert_eq!(mapping.columns.text.as_deref(), Some("Nachricht"));
        assert_eq!(mapping.columns.rating.as_deref(), Some("Bewertung"));
        assert_eq!(mapping.channel_default, Channel::Ticket);
        assert!(!mapping.consent_default);
        assert_eq!(mapping.channel_values["telefon"], Channel::Other);

        let unknown = toml::from_str::<MappingFile>("[columns]\ntxt = \"a\"");
        assert!(unknown.is_err(), "a typo in the mapping file is an error");
        let no_text = Mapping::resolve(
            MappingFlags {
                source: Some("shopdesk".into()),
                ..MappingFlags::default()
            },
            MappingFile::default(),
            None,
        );
        assert!(matches!(no_text, Err(ImportError::Config(reason)) if reason.contains("--text")));
    }
}

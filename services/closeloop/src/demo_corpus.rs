//! Demo corpus for `closeloop demo` (and the lab's bench): realistic, mixed English/German
//! customer feedback, deterministic for a seed.
//!
//! The texts are data, `data/demo-corpus.jsonl` (one JSON object a line: `set` surge or
//! background, `lang`, `theme`, `sentiment`, `touchpoint`, `text`), compiled into the binary
//! and parsed once on first use; this module only deals them out.
//!
//! About a third of the generated events are a *surge*: clearly negative feedback about
//! late / delayed deliveries (theme `delivery_time`) from many distinct customers. The rest
//! is a background mix over other themes and sentiments, so the demo shows the trend
//! detector picking the surge out of realistic noise.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The source systems the demo posts as.
pub const DEMO_SOURCES: &[&str] = &["shopdesk", "surveyhub"];

/// The corpus texts, one JSON object a line.
const CORPUS_JSONL: &str = include_str!("../data/demo-corpus.jsonl");

/// Number of customer ids in the pool (`cust-0001` ..= `cust-0400`).
const CUSTOMER_POOL: u32 = 400;

/// Events are spread over this many seconds before `now` (~50 minutes).
const SPREAD_SECS: f64 = 50.0 * 60.0;

/// `data/demo-corpus.jsonl` does not parse, or lacks texts the generator needs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("demo corpus (data/demo-corpus.jsonl), line {line}: {reason}")]
pub struct CorpusError {
    line: usize,
    reason: String,
}

/// One feedback submission, already in the JSON shape of `POST /v1/feedback`.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoFeedback {
    /// The source system to post as (one of [`DEMO_SOURCES`]).
    pub source: &'static str,
    /// The request body.
    pub body: Value,
    /// The theme a categoriser should find, if the text is about one.
    pub expected_theme: Option<&'static str>,
    /// Whether the feedback is negative.
    pub expected_negative: bool,
}

/// `count` feedback events, seeded. Roughly 60% English / 40% German. About a third are about
/// the surge theme `delivery_time` and negative (late / delayed deliveries), from many distinct
/// customers; the rest is a realistic background mix over other themes and sentiments.
///
/// Events come back ordered by `occurred_at` (oldest first), all within the last ~50 minutes
/// before `now`.
pub fn generate(
    seed: u64,
    count: usize,
    now: DateTime<Utc>,
) -> Result<Vec<DemoFeedback>, CorpusError> {
    let corpus = Corpus::embedded()?;
    let mut rng = StdRng::seed_from_u64(seed);

    // Customer pool, split by language so the language mix can be steered directly.
    let mut german: Vec<u32> = Vec::new();
    let mut english: Vec<u32> = Vec::new();
    for n in 1..=CUSTOMER_POOL {
        if Profile::of(n).german() {
            german.push(n);
        } else {
            english.push(n);
        }
    }

    // Exactly which events belong to the surge: about a third, at shuffled positions.
    let surge_count = ((count as f64) / 3.0).round() as usize;
    let mut is_surge: Vec<bool> = (0..count).map(|i| i < surge_count).collect();
    is_surge.shuffle(&mut rng);

    let mut events: Vec<(i64, DemoFeedback)> = Vec::with_capacity(count);
    for (i, surge) in is_surge.into_iter().enumerate() {
        let want_german = rng.random_bool(0.4);
        let pool = if want_german && !german.is_empty() {
            &german
        } else if !english.is_empty() {
            &english
        } else {
            &german
        };
        let customer = pick_customer(&mut rng, pool);
        let profile = Profile::of(customer);
        let lang = if profile.german() { Lang::De } else { Lang::En };

        let tpl = match (surge, lang) {
            (true, Lang::En) => &corpus.en_surge,
            (true, Lang::De) => &corpus.de_surge,
            (false, Lang::En) => &corpus.en_background,
            (false, Lang::De) => &corpus.de_background,
        }
        .choose(&mut rng)
        .unwrap_or(&FALLBACK);

        let channel = if surge {
            weighted(&mut rng, SURGE_CHANNELS)
        } else {
            weighted(&mut rng, BACKGROUND_CHANNELS)
        };
        let source = source_for(channel, i);

        // The surge ramps up towards `now`; the background is spread evenly.
        let u: f64 = rng.random();
        let offset_ms = if surge {
            (SPREAD_SECS * 1000.0 * u.powf(1.4)) as i64
        } else {
            (SPREAD_SECS * 1000.0 * u) as i64
        }
        .max(1_000);
        let occurred_at = now - Duration::milliseconds(offset_ms);

        let text = fill_placeholders(&mut rng, &tpl.text, lang);
        let text = dress_up(&mut rng, text, channel, lang);

        let mut body = Map::new();
        body.insert(
            "occurred_at".into(),
            Value::String(occurred_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        body.insert("channel".into(), Value::String(channel.into()));
        if rng.random_bool(0.9) {
            body.insert("touchpoint".into(), Value::String(tpl.touchpoint.clone()));
        }
        body.insert("customer".into(), profile.to_json(&mut rng, channel));
        body.insert("text".into(), Value::String(text));
        if let Some(rating) = rating_for(&mut rng, channel, tpl.sentiment) {
            body.insert("rating".into(), json!(rating));
        }
        if let Some(nps) = nps_for(&mut rng, channel, tpl.sentiment) {
            body.insert("nps".into(), json!(nps));
        }

        events.push((
            offset_ms,
            DemoFeedback {
                source,
                body: Value::Object(body),
                expected_theme: tpl.theme.as_deref(),
                expected_negative: tpl.sentiment == Sentiment::Negative,
            },
        ));
    }

    // Oldest first (largest offset first); stable, so ties keep generation order.
    events.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(events.into_iter().map(|(_, e)| e).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Lang {
    En,
    De,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Sentiment {
    Negative,
    Neutral,
    Positive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Set {
    Surge,
    Background,
}

/// One line of `data/demo-corpus.jsonl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    set: Set,
    lang: Lang,
    theme: Option<String>,
    sentiment: Sentiment,
    touchpoint: String,
    text: String,
}

/// What a feedback text is about; `text` may hold `{n}` (days) and `{order}` placeholders.
struct Template {
    theme: Option<String>,
    sentiment: Sentiment,
    touchpoint: String,
    text: String,
}

/// Only if a list were empty, which [`Corpus::parse`] rules out.
static FALLBACK: Template = Template {
    theme: None,
    sentiment: Sentiment::Neutral,
    touchpoint: String::new(),
    text: String::new(),
};

/// The corpus texts by set and language, each list in file order (the order decides which
/// text a seed picks).
struct Corpus {
    en_surge: Vec<Template>,
    de_surge: Vec<Template>,
    en_background: Vec<Template>,
    de_background: Vec<Template>,
}

impl Corpus {
    /// The corpus compiled into the binary, parsed on first use.
    fn embedded() -> Result<&'static Corpus, CorpusError> {
        static CORPUS: OnceLock<Result<Corpus, CorpusError>> = OnceLock::new();
        CORPUS
            .get_or_init(|| Corpus::parse(CORPUS_JSONL))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn parse(jsonl: &str) -> Result<Corpus, CorpusError> {
        let mut corpus = Corpus {
            en_surge: Vec::new(),
            de_surge: Vec::new(),
            en_background: Vec::new(),
            de_background: Vec::new(),
        };
        let mut lines = 0;
        for (i, raw) in jsonl.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            lines = i + 1;
            let line: Line = serde_json::from_str(raw).map_err(|e| CorpusError {
                line: i + 1,
                reason: e.to_string(),
            })?;
            let list = match (line.set, line.lang) {
                (Set::Surge, Lang::En) => &mut corpus.en_surge,
                (Set::Surge, Lang::De) => &mut corpus.de_surge,
                (Set::Background, Lang::En) => &mut corpus.en_background,
                (Set::Background, Lang::De) => &mut corpus.de_background,
            };
            list.push(Template {
                theme: line.theme,
                sentiment: line.sentiment,
                touchpoint: line.touchpoint,
                text: line.text,
            });
        }
        for (name, list) in [
            ("surge texts in English", &corpus.en_surge),
            ("surge texts in German", &corpus.de_surge),
            ("background texts in English", &corpus.en_background),
            ("background texts in German", &corpus.de_background),
        ] {
            if list.is_empty() {
                return Err(CorpusError {
                    line: lines,
                    reason: format!("no {name}"),
                });
            }
        }
        Ok(corpus)
    }
}

/// A customer's stable attributes, derived from the numeric id alone.
struct Profile {
    n: u32,
    locale: &'static str,
    consent: bool,
    email: Option<String>,
}

const GERMAN_LOCALES: &[&str] = &["de-DE", "de-DE", "de-DE", "de-AT", "de-CH"];
const ENGLISH_LOCALES: &[&str] = &["en-GB", "en-GB", "en-US", "en-US", "en-IE"];
const GERMAN_NAMES: &[&str] = &[
    "anna", "jonas", "lena", "lukas", "marie", "felix", "sophie", "paul", "laura", "tobias",
    "katrin", "stefan", "julia", "matthias", "sabine", "florian",
];
const ENGLISH_NAMES: &[&str] = &[
    "emma", "james", "olivia", "liam", "sophie", "oliver", "grace", "jack", "chloe", "harry",
    "megan", "sean", "aoife", "daniel", "hannah", "ryan",
];
const EMAIL_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];

impl Profile {
    fn of(n: u32) -> Profile {
        let h = splitmix64(u64::from(n).wrapping_mul(0x9E37_79B9));
        let german = h % 100 < 40;
        let locales = if german {
            GERMAN_LOCALES
        } else {
            ENGLISH_LOCALES
        };
        let names = if german { GERMAN_NAMES } else { ENGLISH_NAMES };
        let locale = locales[((h >> 8) % locales.len() as u64) as usize];
        let consent = (h >> 16) % 100 < 75;
        let has_email = if consent {
            (h >> 24) % 100 < 85
        } else {
            (h >> 24) % 100 < 35
        };
        let email = has_email.then(|| {
            let name = names[((h >> 32) % names.len() as u64) as usize];
            let domain = EMAIL_DOMAINS[((h >> 40) % EMAIL_DOMAINS.len() as u64) as usize];
            format!("{name}.{n}@{domain}")
        });
        Profile {
            n,
            locale,
            consent,
            email,
        }
    }

    fn german(&self) -> bool {
        self.locale.starts_with("de")
    }

    fn id(&self) -> String {
        format!("cust-{:04}", self.n)
    }

    fn to_json(&self, rng: &mut StdRng, channel: &str) -> Value {
        let mut c = Map::new();
        c.insert("id".into(), Value::String(self.id()));
        c.insert("locale".into(), Value::String(self.locale.into()));
        c.insert("consent".into(), Value::Bool(self.consent));
        if let Some(email) = &self.email {
            c.insert("email".into(), Value::String(email.clone()));
        }
        let (prefix, p) = match channel {
            "ticket" => ("TCK", 0.85),
            "chat" => ("CHAT", 0.6),
            "email" => ("MAIL", 0.7),
            "review" => ("REV", 0.5),
            "app-store" => ("APP", 0.4),
            "survey" => ("SRV", 0.3),
            "social" => ("SOC", 0.2),
            _ => ("REF", 0.1),
        };
        if rng.random_bool(p) {
            let number: u32 = rng.random_range(10_000..99_999);
            c.insert(
                "reference".into(),
                Value::String(format!("{prefix}-{number}")),
            );
        }
        Value::Object(c)
    }
}

/// Deterministic 64-bit mixer (SplitMix64 finaliser), independent of the rand crate version.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mostly anyone from the pool, sometimes one of a few "regulars" who give feedback often.
fn pick_customer(rng: &mut StdRng, pool: &[u32]) -> u32 {
    let regulars = pool.len().min(12);
    let idx = if regulars > 0 && rng.random_bool(0.2) {
        rng.random_range(0..regulars)
    } else {
        rng.random_range(0..pool.len().max(1))
    };
    pool.get(idx).copied().unwrap_or(1)
}

const SURGE_CHANNELS: &[(&str, u32)] = &[
    ("ticket", 25),
    ("chat", 15),
    ("email", 15),
    ("review", 20),
    ("survey", 10),
    ("social", 10),
    ("app-store", 5),
];

const BACKGROUND_CHANNELS: &[(&str, u32)] = &[
    ("survey", 20),
    ("ticket", 20),
    ("review", 15),
    ("app-store", 10),
    ("chat", 12),
    ("email", 12),
    ("social", 8),
    ("other", 3),
];

fn weighted(rng: &mut StdRng, options: &[(&'static str, u32)]) -> &'static str {
    let total: u32 = options.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for &(value, w) in options {
        if roll < w {
            return value;
        }
        roll -= w;
    }
    "other"
}

/// Support-desk channels come from `shopdesk`, survey-like ones from `surveyhub`;
/// the rest alternate.
fn source_for(channel: &str, i: usize) -> &'static str {
    match channel {
        "ticket" | "chat" | "email" => DEMO_SOURCES[0],
        "survey" | "review" | "app-store" => DEMO_SOURCES[1],
        _ => DEMO_SOURCES[i % DEMO_SOURCES.len()],
    }
}

fn rating_for(rng: &mut StdRng, channel: &str, sentiment: Sentiment) -> Option<u8> {
    let p = match channel {
        "review" | "app-store" => 0.95,
        "survey" => 0.7,
        _ => 0.08,
    };
    if !rng.random_bool(p) {
        return None;
    }
    Some(match sentiment {
        Sentiment::Negative => rng.random_range(1..=2),
        Sentiment::Neutral => 3,
        Sentiment::Positive => rng.random_range(4..=5),
    })
}

fn nps_for(rng: &mut StdRng, channel: &str, sentiment: Sentiment) -> Option<u8> {
    // Surveys ask for it; so does the short survey after a support contact.
    let p = match channel {
        "survey" => 0.8,
        "ticket" | "chat" | "email" => 0.4,
        _ => 0.0,
    };
    if !rng.random_bool(p) {
        return None;
    }
    Some(match sentiment {
        Sentiment::Negative => rng.random_range(0..=5),
        Sentiment::Neutral => rng.random_range(6..=8),
        Sentiment::Positive => rng.random_range(9..=10),
    })
}

/// Replaces `{n}` (a number of days) and `{order}` (an order number).
fn fill_placeholders(rng: &mut StdRng, text: &str, lang: Lang) -> String {
    let mut out = text.to_string();
    if out.contains("{n}") {
        let days: u32 = rng.random_range(4..=16);
        out = out.replace("{n}", &days.to_string());
    }
    if out.contains("{order}") {
        let number: u32 = rng.random_range(100_000..999_999);
        let order = match lang {
            Lang::En => format!("#{number}"),
            Lang::De => format!("Nr. {number}"),
        };
        out = out.replace("{order}", &order);
    }
    out
}

/// Channel-typical framing: greetings and sign-offs on emails, the odd shout on social.
fn dress_up(rng: &mut StdRng, text: String, channel: &str, lang: Lang) -> String {
    match channel {
        "email" if rng.random_bool(0.5) => {
            let (hello, bye) = match lang {
                Lang::En => (
                    *["Hi,", "Hello,", "Dear team,"]
                        .choose(rng)
                        .unwrap_or(&"Hi,"),
                    *["Thanks", "Regards", "Cheers"]
                        .choose(rng)
                        .unwrap_or(&"Thanks"),
                ),
                Lang::De => (
                    *["Hallo,", "Guten Tag,", "Hallo zusammen,"]
                        .choose(rng)
                        .unwrap_or(&"Hallo,"),
                    *["Viele Grüße", "MfG", "Danke und Gruß"]
                        .choose(rng)
                        .unwrap_or(&"Viele Grüße"),
                ),
            };
            format!("{hello}\n\n{text}\n\n{bye}")
        }
        "ticket" | "chat" if rng.random_bool(0.15) => {
            let hello = match lang {
                Lang::En => "Hi, ",
                Lang::De => "Hallo, ",
            };
            let mut chars = text.chars();
            match chars.next() {
                // Lower-case the first letter after a greeting ("Hi, my order ..."),
                // except for nouns in German which stay capitalised.
                Some(first) if lang == Lang::En => {
                    format!("{hello}{}{}", first.to_lowercase(), chars.as_str())
                }
                _ => format!("{hello}{text}"),
            }
        }
        "social" if rng.random_bool(0.2) => format!("{text} @shop"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    const SURGE_WORDS: &[&str] = &[
        "late",
        "delayed",
        "slow",
        "still waiting",
        "took two weeks",
        "lieferzeit",
        "verspätet",
        "zu spät",
        "warte seit",
        "wochenlang",
    ];

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-14T12:00:00Z")
            .expect("constant timestamp")
            .with_timezone(&Utc)
    }

    fn generated(seed: u64, count: usize, now: DateTime<Utc>) -> Vec<DemoFeedback> {
        generate(seed, count, now).expect("the embedded demo corpus parses")
    }

    fn is_german(locale: &str) -> bool {
        locale.starts_with("de-")
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = generated(42, 200, now());
        let b = generated(42, 200, now());
        assert_eq!(a, b);
        let c = generated(43, 200, now());
        assert_ne!(a, c);
    }

    #[test]
    fn count_is_honoured() {
        for count in [0, 1, 2, 3, 17, 300, 1000] {
            assert_eq!(generated(7, count, now()).len(), count);
        }
    }

    #[test]
    fn both_languages_present_roughly_60_40() {
        let events = generated(1, 300, now());
        let german = events
            .iter()
            .filter(|e| is_german(e.body["customer"]["locale"].as_str().unwrap_or("")))
            .count();
        assert!(german > 0 && german < events.len());
        let share = german as f64 / events.len() as f64;
        assert!((0.28..=0.52).contains(&share), "german share {share}");
    }

    #[test]
    fn surge_comes_from_many_customers() {
        for seed in [1, 2, 3, 99] {
            let events = generated(seed, 300, now());
            let surge: Vec<_> = events
                .iter()
                .filter(|e| e.expected_theme == Some("delivery_time") && e.expected_negative)
                .collect();
            assert!(
                (90..=110).contains(&surge.len()),
                "surge size {}",
                surge.len()
            );
            let customers: HashSet<&str> = surge
                .iter()
                .filter_map(|e| e.body["customer"]["id"].as_str())
                .collect();
            assert!(
                customers.len() >= 30,
                "only {} distinct customers",
                customers.len()
            );
            for e in &surge {
                let text = e.body["text"].as_str().unwrap_or("").to_lowercase();
                assert!(
                    SURGE_WORDS.iter().any(|w| text.contains(w)),
                    "no delivery-time word: {text}"
                );
                if let Some(r) = e.body.get("rating") {
                    assert!(matches!(r.as_u64(), Some(1..=2)), "rating {r}");
                }
            }
        }
    }

    #[test]
    fn every_body_has_the_required_fields() {
        let channels = [
            "survey",
            "ticket",
            "review",
            "app-store",
            "social",
            "chat",
            "email",
            "other",
        ];
        let touchpoints = [
            "awareness",
            "consideration",
            "purchase",
            "delivery",
            "usage",
            "support",
            "billing",
            "returns",
        ];
        let locales = ["de-DE", "de-AT", "de-CH", "en-GB", "en-US", "en-IE"];
        for e in generated(5, 500, now()) {
            assert!(DEMO_SOURCES.contains(&e.source));
            let b = &e.body;
            let channel = b["channel"].as_str().expect("channel");
            assert!(channels.contains(&channel));
            match channel {
                "ticket" | "chat" | "email" => assert_eq!(e.source, "shopdesk"),
                "survey" | "review" | "app-store" => assert_eq!(e.source, "surveyhub"),
                _ => {}
            }
            if let Some(tp) = b.get("touchpoint") {
                assert!(touchpoints.contains(&tp.as_str().expect("touchpoint str")));
            }
            let text = b["text"].as_str().expect("text");
            assert!(!text.trim().is_empty());
            assert!(
                !text.contains('{') && !text.contains('}'),
                "unfilled placeholder: {text}"
            );
            let c = &b["customer"];
            let id = c["id"].as_str().expect("customer id");
            assert!(id.starts_with("cust-") && id.len() == 9, "{id}");
            assert!(locales.contains(&c["locale"].as_str().expect("locale")));
            assert!(c["consent"].is_boolean());
            assert!(b["occurred_at"].is_string());
            if let Some(r) = b.get("rating") {
                let r = r.as_u64().expect("rating int");
                assert!((1..=5).contains(&r));
                if e.expected_negative {
                    assert!(r <= 2);
                }
            }
            if let Some(n) = b.get("nps") {
                assert!(n.as_u64().expect("nps int") <= 10);
            }
        }
    }

    #[test]
    fn customers_are_consistent_and_some_repeat() {
        let events = generated(11, 400, now());
        let mut seen: HashMap<String, (Value, Value, Value)> = HashMap::new();
        let mut per_customer: HashMap<String, usize> = HashMap::new();
        for e in &events {
            let c = &e.body["customer"];
            let id = c["id"].as_str().expect("id").to_string();
            let key = (
                c["locale"].clone(),
                c["consent"].clone(),
                c.get("email").cloned().unwrap_or(Value::Null),
            );
            if let Some(prev) = seen.get(&id) {
                assert_eq!(prev, &key, "customer {id} changed");
            } else {
                seen.insert(id.clone(), key);
            }
            *per_customer.entry(id).or_default() += 1;
        }
        assert!(per_customer.values().any(|&n| n >= 3));
        let consenting = seen.values().filter(|k| k.1 == Value::Bool(true)).count();
        let share = consenting as f64 / seen.len() as f64;
        assert!((0.6..=0.9).contains(&share), "consent share {share}");
    }

    #[test]
    fn occurred_at_within_the_last_hour_and_ordered() {
        let now = now();
        let events = generated(3, 300, now);
        let mut prev: Option<DateTime<Utc>> = None;
        for e in &events {
            let s = e.body["occurred_at"].as_str().expect("occurred_at");
            assert!(s.ends_with('Z'), "{s}");
            let t = DateTime::parse_from_rfc3339(s)
                .expect("rfc3339")
                .with_timezone(&Utc);
            assert!(t <= now && t >= now - Duration::hours(1), "{s}");
            if let Some(p) = prev {
                assert!(p <= t);
            }
            prev = Some(t);
        }
    }

    #[test]
    fn background_is_a_mix() {
        let events = generated(8, 300, now());
        let themes: HashSet<_> = events.iter().filter_map(|e| e.expected_theme).collect();
        assert!(themes.len() >= 8, "{themes:?}");
        assert!(events.iter().any(|e| !e.expected_negative));
        assert!(events
            .iter()
            .any(|e| e.expected_negative && e.expected_theme != Some("delivery_time")));
    }

    #[test]
    fn enough_distinct_texts() {
        let corpus = Corpus::embedded().expect("the embedded demo corpus parses");
        assert!(corpus.en_surge.len() + corpus.en_background.len() >= 40);
        assert!(corpus.de_surge.len() + corpus.de_background.len() >= 40);
        for t in corpus.en_surge.iter().chain(&corpus.de_surge) {
            let lower = t.text.to_lowercase();
            assert!(SURGE_WORDS.iter().any(|w| lower.contains(w)), "{}", t.text);
            assert_eq!(t.theme.as_deref(), Some("delivery_time"), "{}", t.text);
            assert_eq!(t.sentiment, Sentiment::Negative, "{}", t.text);
        }
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = Corpus::parse("{\"set\": \"surge\"}\n")
            .err()
            .expect("a line without text is refused");
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = Corpus::parse("").err().expect("an empty corpus is refused");
        assert!(err.to_string().contains("no surge texts"), "{err}");
    }
}

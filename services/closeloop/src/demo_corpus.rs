//! Demo corpus for `closeloop demo`: realistic, mixed English/German customer feedback,
//! deterministic for a seed.
//!
//! About a third of the generated events are a *surge*: clearly negative feedback about
//! late / delayed deliveries (theme `delivery_time`) from many distinct customers. The rest
//! is a background mix over other themes and sentiments, so the demo shows the trend
//! detector picking the surge out of realistic noise.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

/// The source systems the demo posts as.
pub const DEMO_SOURCES: &[&str] = &["shopdesk", "surveyhub"];

/// The theme the demo surge is about.
const SURGE_THEME: &str = "delivery_time";

/// Number of customer ids in the pool (`cust-0001` ..= `cust-0400`).
const CUSTOMER_POOL: u32 = 400;

/// Events are spread over this many seconds before `now` (~50 minutes).
const SPREAD_SECS: f64 = 50.0 * 60.0;

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
pub fn generate(seed: u64, count: usize, now: DateTime<Utc>) -> Vec<DemoFeedback> {
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

        let tpl = if surge {
            let texts = match lang {
                Lang::En => EN_SURGE,
                Lang::De => DE_SURGE,
            };
            let text = texts
                .choose(&mut rng)
                .copied()
                .unwrap_or("Delivery was late.");
            Template {
                theme: Some(SURGE_THEME),
                sentiment: Sentiment::Negative,
                touchpoint: "delivery",
                text,
            }
        } else {
            let list = match lang {
                Lang::En => EN_BACKGROUND,
                Lang::De => DE_BACKGROUND,
            };
            let &(theme, sentiment, touchpoint, text) =
                list.choose(&mut rng)
                    .unwrap_or(&(None, Sentiment::Neutral, "other", "ok"));
            Template {
                theme,
                sentiment,
                touchpoint,
                text,
            }
        };

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

        let text = fill_placeholders(&mut rng, tpl.text, lang);
        let text = dress_up(&mut rng, text, channel, lang);

        let mut body = Map::new();
        body.insert(
            "occurred_at".into(),
            Value::String(occurred_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        body.insert("channel".into(), Value::String(channel.into()));
        if rng.random_bool(0.9) {
            body.insert("touchpoint".into(), Value::String(tpl.touchpoint.into()));
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
                expected_theme: tpl.theme,
                expected_negative: tpl.sentiment == Sentiment::Negative,
            },
        ));
    }

    // Oldest first (largest offset first); stable, so ties keep generation order.
    events.sort_by_key(|e| std::cmp::Reverse(e.0));
    events.into_iter().map(|(_, e)| e).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    En,
    De,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sentiment {
    Negative,
    Neutral,
    Positive,
}

struct Template {
    theme: Option<&'static str>,
    sentiment: Sentiment,
    touchpoint: &'static str,
    text: &'static str,
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
    let p = if channel == "survey" { 0.8 } else { 0.0 };
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

// ---------------------------------------------------------------------------------------------
// Texts
// ---------------------------------------------------------------------------------------------

/// Surge: negative, about late / delayed delivery. Each contains an obvious delivery-time word.
const EN_SURGE: &[&str] = &[
    "My order still hasn't arrived and it's been {n} days. This is way too late.",
    "Delivery was delayed again. Third time this year.",
    "Great product, but the parcel arrived {n} days late.",
    "Ordered on the 2nd and it took two weeks to get here. Delivery is way too slow.",
    "Still waiting for order {order}. Tracking has said 'delayed' for a week now.",
    "late delivery AGAIN. not impressed",
    "The estimated delivery date came and went. {n} days late and no update from you.",
    "Needed this for a birthday and it arrived late. Really disappointed.",
    "Why is delivery so slow now? Used to be 2 days, now it's over a week.",
    "Shipment delayed with no explanation. I'd like to know where my stuff is.",
    "Your delivery times are a joke, took almost three weeks. Late every single time.",
    "Item was fine but delivery was super slow, arrived {n} days after the promised date.",
    "Been waiting since last Monday, order {order} is still delayed. Please just cancel it.",
    "Paid for express shipping and it still came late. I want the shipping fee back.",
    "delivery delayed twice now, im running out of patience",
    "Arrived way too late for the event I bought it for. Won't order again.",
    "Order page said 2-3 days, it's been {n}. Still waiting.",
    "Horribly late delivery. Nobody tells you anything, the date just keeps moving.",
    "Delivery took two weeks. Two weeks! For a phone case.",
    "Loved the jacket but it came so late that the trip was already over.",
];

/// Surge in German. Each contains an obvious delivery-time word.
const DE_SURGE: &[&str] = &[
    "Lieferung kam zu spät!",
    "Warte seit {n} Tagen auf meine Bestellung {order}. Das ist viel zu spät.",
    "Die Lieferzeit ist eine Katastrophe, fast drei Wochen für ein kleines Paket.",
    "Lieferung schon wieder verspätet. Sehr ärgerlich.",
    "Tolles Produkt, aber die Lieferung kam {n} Tage zu spät.",
    "Ich warte seit über einer Woche, die Sendung ist immer noch verspätet.",
    "Wochenlang auf die Bestellung gewartet. Nie wieder.",
    "Lieferzeit viel zu lang, angegeben waren 2-3 Werktage.",
    "Das Geschenk kam leider zu spät an, der Geburtstag war schon vorbei.",
    "Warum ist die Lieferzeit mittlerweile so lang? Früher ging das in zwei Tagen.",
    "Expressversand bezahlt und trotzdem verspätet. Bitte Versandkosten erstatten.",
    "lieferung verspätet sich jetzt schon zum dritten mal, was ist da los??",
    "Bestellung {order} ist {n} Tage verspätet. Keine Info, nix.",
    "Die Lieferzeiten sind inzwischen unzumutbar.",
    "Ware ok, aber Lieferung {n} Tage zu spät. Dafür gibts nur 2 Sterne.",
    "Warte seit zwei Wochen auf mein Paket. Jetzt brauch ich es auch nicht mehr.",
    "Lieferung kam eine Woche zu spät, ohne jede Benachrichtigung. Enttäuschend.",
    "Seit Tagen heißt es 'Lieferung verzögert sich'. Total verspätet, sowas hab ich noch nie erlebt.",
    "Schon wieder zu spät geliefert. Langsam reicht's.",
    "Qualität super, aber Lieferzeit von {n} Tagen geht gar nicht.",
];

use Sentiment::{Negative as Neg, Neutral as Neu, Positive as Pos};

type Background = (Option<&'static str>, Sentiment, &'static str, &'static str);

/// Background mix in English: other themes, all sentiments.
const EN_BACKGROUND: &[Background] = &[
    (
        Some("delivery"),
        Neg,
        "delivery",
        "The courier left my parcel outside in the rain. Box was soaked.",
    ),
    (
        Some("delivery"),
        Neg,
        "delivery",
        "Tracking link doesn't work, it just says 'label created'.",
    ),
    (
        Some("delivery"),
        Pos,
        "delivery",
        "Courier was friendly and the parcel tracking was spot on.",
    ),
    (
        Some("delivery_time"),
        Pos,
        "delivery",
        "Super fast delivery, arrived the next day!",
    ),
    (
        Some("price"),
        Neg,
        "consideration",
        "Prices went up again? Found the same thing 20% cheaper elsewhere.",
    ),
    (
        Some("price"),
        Pos,
        "purchase",
        "Good value for money, happy with the price.",
    ),
    (
        Some("price"),
        Neg,
        "purchase",
        "Way too expensive for what you get tbh",
    ),
    (
        Some("billing"),
        Neg,
        "billing",
        "I was charged twice for order {order}. Please refund the duplicate payment.",
    ),
    (
        Some("billing"),
        Neg,
        "billing",
        "The invoice shows the wrong address and I need it for my company.",
    ),
    (
        Some("billing"),
        Neu,
        "billing",
        "Can I get an invoice with my VAT number on it?",
    ),
    (
        Some("returns"),
        Neg,
        "returns",
        "Sent the item back {n} days ago and still no refund.",
    ),
    (
        Some("returns"),
        Pos,
        "returns",
        "Return was painless, refund arrived within 3 days. Thanks!",
    ),
    (
        Some("returns"),
        Neg,
        "returns",
        "Return label didn't print properly, had to pay the postage myself.",
    ),
    (
        Some("support"),
        Pos,
        "support",
        "Customer service sorted my issue in 5 minutes. Brilliant.",
    ),
    (
        Some("support"),
        Neg,
        "support",
        "Hotline kept me on hold for 40 minutes and then hung up on me.",
    ),
    (
        Some("support"),
        Neg,
        "support",
        "Sent three emails to customer service, no answer so far.",
    ),
    (
        Some("staff"),
        Pos,
        "support",
        "Sarah from the chat team was really helpful and patient, please pass on my thanks.",
    ),
    (
        Some("staff"),
        Neg,
        "support",
        "The agent on the phone was rude and didnt listen at all.",
    ),
    (
        Some("product_quality"),
        Neg,
        "usage",
        "The handle broke after two uses. Cheap quality.",
    ),
    (
        Some("product_quality"),
        Pos,
        "usage",
        "Great quality, feels really solid. Would buy again.",
    ),
    (
        Some("product_quality"),
        Neg,
        "usage",
        "Arrived broken, the glass was cracked.",
    ),
    (
        Some("product_quality"),
        Pos,
        "usage",
        "Love it! Exactly as described and great quality.",
    ),
    (
        Some("usability"),
        Neg,
        "purchase",
        "Checkout is confusing, I couldn't find where to enter my voucher code.",
    ),
    (
        Some("usability"),
        Neg,
        "usage",
        "The app is so confusing, took me ages to find my order history.",
    ),
    (
        Some("usability"),
        Pos,
        "purchase",
        "The new checkout is much quicker, nice job.",
    ),
    (
        Some("performance"),
        Neg,
        "usage",
        "App crashes every time I open the basket.",
    ),
    (
        Some("performance"),
        Neg,
        "usage",
        "Website is really sluggish this morning, pages take forever to load.",
    ),
    (
        Some("performance"),
        Neg,
        "usage",
        "the app keeps freezing on android since the last update",
    ),
    (
        Some("account"),
        Neg,
        "usage",
        "Can't log in, the password reset email never arrives.",
    ),
    (
        Some("account"),
        Neg,
        "usage",
        "Got locked out of my account after one wrong password. Annoying.",
    ),
    (
        Some("account"),
        Neu,
        "usage",
        "How do I change the email address on my account?",
    ),
    (
        Some("packaging"),
        Neg,
        "delivery",
        "So much plastic packaging for one small item. Please do better.",
    ),
    (
        Some("packaging"),
        Pos,
        "delivery",
        "Love the recyclable packaging, no plastic at all.",
    ),
    (None, Neu, "awareness", "Do you ship to Ireland as well?"),
    (None, Pos, "usage", "All good, no complaints."),
    (
        None,
        Neu,
        "consideration",
        "Is the blue version coming back in stock?",
    ),
    (None, Pos, "purchase", "Easy order, everything fine. Thanks"),
];

/// Background mix in German: other themes, all sentiments.
const DE_BACKGROUND: &[Background] = &[
    (
        Some("delivery"),
        Neg,
        "delivery",
        "Der Zusteller hat das Paket einfach beim Nachbarn abgegeben, ohne Benachrichtigung.",
    ),
    (
        Some("delivery"),
        Neg,
        "delivery",
        "Sendungsverfolgung sagt zugestellt, das Paket ist aber nicht da.",
    ),
    (
        Some("delivery"),
        Pos,
        "delivery",
        "Paket kam gut an, der Zusteller war sehr freundlich.",
    ),
    (
        Some("delivery_time"),
        Pos,
        "delivery",
        "Super schnelle Lieferung, schon am nächsten Tag da!",
    ),
    (
        Some("price"),
        Neg,
        "consideration",
        "Die Preise sind in letzter Zeit ganz schön gestiegen.",
    ),
    (
        Some("price"),
        Pos,
        "purchase",
        "Preis-Leistung stimmt, gerne wieder.",
    ),
    (
        Some("price"),
        Neg,
        "purchase",
        "Viel zu teuer im Vergleich zu anderen Shops.",
    ),
    (
        Some("billing"),
        Neg,
        "billing",
        "Mir wurde der Betrag doppelt abgebucht! Bitte um Korrektur.",
    ),
    (
        Some("billing"),
        Neg,
        "billing",
        "Die Rechnung ist falsch, der Rabatt wurde nicht berücksichtigt.",
    ),
    (
        Some("billing"),
        Neu,
        "billing",
        "Können Sie mir die Rechnung bitte nochmal per Mail schicken?",
    ),
    (
        Some("billing"),
        Neg,
        "billing",
        "Abbuchung vom Konto, obwohl ich die Bestellung storniert habe.",
    ),
    (
        Some("returns"),
        Neg,
        "returns",
        "Rücksendung vor {n} Tagen abgeschickt, Erstattung immer noch nicht da.",
    ),
    (
        Some("returns"),
        Pos,
        "returns",
        "Rücksendung hat problemlos geklappt, das Geld war schnell zurück.",
    ),
    (
        Some("returns"),
        Neg,
        "returns",
        "Warum muss ich die Rücksendung selbst bezahlen? Das war früher kostenlos.",
    ),
    (
        Some("support"),
        Pos,
        "support",
        "Kundenservice war super hilfsbereit und schnell, danke!",
    ),
    (
        Some("support"),
        Neg,
        "support",
        "Hotline ist nie erreichbar, immer nur Warteschleife.",
    ),
    (
        Some("support"),
        Neg,
        "support",
        "Habe dem Kundenservice dreimal geschrieben, keine Antwort.",
    ),
    (
        Some("staff"),
        Pos,
        "support",
        "Die Mitarbeiterin am Telefon war total nett und hat sich echt Mühe gegeben.",
    ),
    (
        Some("staff"),
        Neg,
        "support",
        "Der Mitarbeiter im Chat war ziemlich unfreundlich.",
    ),
    (
        Some("product_quality"),
        Neg,
        "usage",
        "Gerät war nach einer Woche kaputt.",
    ),
    (
        Some("product_quality"),
        Neg,
        "usage",
        "Artikel kam defekt an, das Display hat einen Riss.",
    ),
    (
        Some("product_quality"),
        Pos,
        "usage",
        "Top Qualität, bin sehr zufrieden!",
    ),
    (
        Some("product_quality"),
        Pos,
        "usage",
        "Verarbeitung ist hochwertig, fühlt sich richtig gut an.",
    ),
    (
        Some("usability"),
        Neg,
        "purchase",
        "Der Bestellvorgang ist total umständlich, musste dreimal meine Adresse eingeben.",
    ),
    (
        Some("usability"),
        Neg,
        "usage",
        "Die App ist unübersichtlich, ich finde meine Bestellungen nicht.",
    ),
    (
        Some("usability"),
        Pos,
        "purchase",
        "Der Checkout geht jetzt viel schneller, gefällt mir.",
    ),
    (
        Some("performance"),
        Neg,
        "usage",
        "App stürzt beim Bezahlen ständig ab.",
    ),
    (
        Some("performance"),
        Neg,
        "usage",
        "Ständige Abstürze seit dem letzten Update, so nicht nutzbar.",
    ),
    (
        Some("performance"),
        Neg,
        "usage",
        "Webseite lädt ewig, hab es dann auf gegeben.",
    ),
    (
        Some("account"),
        Neg,
        "usage",
        "Kann mich nicht einloggen, Passwort zurücksetzen funktioniert nicht.",
    ),
    (
        Some("account"),
        Neg,
        "usage",
        "Konto gesperrt, obwohl ich das Passwort richtig eingegeben habe.",
    ),
    (
        Some("account"),
        Neu,
        "usage",
        "Wie kann ich meine E-Mail-Adresse im Kundenkonto ändern?",
    ),
    (
        Some("packaging"),
        Neg,
        "delivery",
        "Viel zu viel Plastik in der Verpackung, das muss doch nicht sein.",
    ),
    (
        Some("packaging"),
        Neg,
        "delivery",
        "Riesiger Karton für ein kleines Teil, Verpackung total übertrieben.",
    ),
    (
        Some("packaging"),
        Pos,
        "delivery",
        "Schöne Verpackung, alles gut geschützt und ohne Plastik.",
    ),
    (None, Neu, "awareness", "Liefert ihr auch in die Schweiz?"),
    (None, Pos, "usage", "Alles bestens, danke!"),
    (
        None,
        Neu,
        "consideration",
        "Wann gibt es die Jacke wieder in Größe M?",
    ),
    (
        None,
        Pos,
        "purchase",
        "Hat alles gut geklappt, gerne wieder.",
    ),
];

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

    fn is_german(locale: &str) -> bool {
        locale.starts_with("de-")
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = generate(42, 200, now());
        let b = generate(42, 200, now());
        assert_eq!(a, b);
        let c = generate(43, 200, now());
        assert_ne!(a, c);
    }

    #[test]
    fn count_is_honoured() {
        for count in [0, 1, 2, 3, 17, 300, 1000] {
            assert_eq!(generate(7, count, now()).len(), count);
        }
    }

    #[test]
    fn both_languages_present_roughly_60_40() {
        let events = generate(1, 300, now());
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
            let events = generate(seed, 300, now());
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
        for e in generate(5, 500, now()) {
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
        let events = generate(11, 400, now());
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
        let events = generate(3, 300, now);
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
        let events = generate(8, 300, now());
        let themes: HashSet<_> = events.iter().filter_map(|e| e.expected_theme).collect();
        assert!(themes.len() >= 8, "{themes:?}");
        assert!(events.iter().any(|e| !e.expected_negative));
        assert!(events
            .iter()
            .any(|e| e.expected_negative && e.expected_theme != Some("delivery_time")));
    }

    #[test]
    fn enough_distinct_texts() {
        assert!(EN_SURGE.len() + EN_BACKGROUND.len() >= 40);
        assert!(DE_SURGE.len() + DE_BACKGROUND.len() >= 40);
        for t in EN_SURGE.iter().chain(DE_SURGE) {
            let lower = t.to_lowercase();
            assert!(SURGE_WORDS.iter().any(|w| lower.contains(w)), "{t}");
        }
    }
}

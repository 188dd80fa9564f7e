//! The "you said, we did" message, per language. Small template functions rather than a
//! template engine: two languages, one sentence each, and every piece of text that goes
//! into them is cleaned here (control characters out, whitespace collapsed), because
//! the excerpt is customer text and the message goes to another system.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use closeloop_events::Language;

/// How many characters of the feedback text notify keeps to quote back.
pub const EXCERPT_CHARS: usize = 140;

/// The message language for a customer: the language of their locale when we have a
/// template for it (`de-AT` → `de`), else the language the text was written in, else
/// English.
pub fn language_for(locale: Option<&str>, detected: Language) -> &'static str {
    match locale.map(Language::from_locale) {
        Some(Language::De) => "de",
        Some(Language::En) => "en",
        _ => match detected {
            Language::De => "de",
            Language::En | Language::Other => "en",
        },
    }
}

/// Removes control characters and collapses runs of whitespace (newlines included) to
/// one space, so quoted text cannot break the message's layout or smuggle terminal
/// escapes into a receiver's logs.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if c.is_control() {
            continue;
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// The first `max_chars` characters of the cleaned text (never splitting a character),
/// with `…` when something was cut.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let cleaned = clean(text);
    match cleaned.char_indices().nth(max_chars) {
        None => cleaned,
        Some((cut, _)) => format!("{}…", cleaned[..cut].trim_end()),
    }
}

/// The theme's display name in `language`, else English, else the theme id.
pub fn theme_name<'a>(
    names: &'a BTreeMap<String, String>,
    language: &str,
    theme: &'a str,
) -> &'a str {
    names
        .get(language)
        .or_else(|| names.get("en"))
        .map(String::as_str)
        .filter(|name| !name.trim().is_empty())
        .unwrap_or(theme)
}

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_DE: [&str; 12] = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
];

/// `3 November 2026` / `3. November 2026` (UTC).
pub fn format_date(language: &str, date: DateTime<Utc>) -> String {
    // month0() is 0..=11 by construction; `get` keeps that an invariant, not a panic.
    let month =
        |names: &[&'static str; 12]| names.get(date.month0() as usize).copied().unwrap_or("");
    match language {
        "de" => format!("{}. {} {}", date.day(), month(&MONTHS_DE), date.year()),
        _ => format!("{} {} {}", date.day(), month(&MONTHS_EN), date.year()),
    }
}

/// What goes into one message.
#[derive(Debug, Clone)]
pub struct Parts<'a> {
    /// When the customer told us (the mention's event time).
    pub told_at: DateTime<Utc>,
    pub theme_name: &'a str,
    /// What they said (already an excerpt; cleaned again here).
    pub you_said: &'a str,
    /// What was done, in the message's language.
    pub we_did: &'a str,
}

/// Ends `text` with sentence punctuation, so the template's next sentence reads right
/// whatever the operator typed.
fn sentence(text: &str) -> String {
    let text = clean(text);
    match text.chars().last() {
        None => text,
        Some('.' | '!' | '?' | '…') => text,
        Some(_) => format!("{text}."),
    }
}

/// The message text in `language` (`en` or `de`; anything else gets English).
pub fn render(language: &str, parts: &Parts<'_>) -> String {
    let theme = clean(parts.theme_name);
    let you_said = clean(parts.you_said);
    let we_did = sentence(parts.we_did);
    let date = format_date(language, parts.told_at);
    match language {
        "de" => render_de(&date, &theme, &you_said, &we_did),
        _ => render_en(&date, &theme, &you_said, &we_did),
    }
}

fn render_en(date: &str, theme: &str, you_said: &str, we_did: &str) -> String {
    let quote = if you_said.is_empty() {
        String::new()
    } else {
        format!(": \"{you_said}\"")
    };
    format!(
        "On {date} you told us about {theme}{quote}. We did: {we_did} Thank you for telling us."
    )
}

fn render_de(date: &str, theme: &str, you_said: &str, we_did: &str) -> String {
    let quote = if you_said.is_empty() {
        String::new()
    } else {
        format!(": „{you_said}“")
    };
    format!(
        "Am {date} haben Sie uns zum Thema {theme} geschrieben{quote}. Das haben wir getan: {we_did} Danke, dass Sie uns das gesagt haben."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn told_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 3, 10, 30, 0).unwrap()
    }

    #[test]
    fn renders_english() {
        let text = render(
            "en",
            &Parts {
                told_at: told_at(),
                theme_name: "delivery time",
                you_said: "Parcel took two weeks",
                we_did: "We added a second carrier.",
            },
        );
        assert_eq!(
            text,
            "On 3 November 2026 you told us about delivery time: \"Parcel took two weeks\". \
             We did: We added a second carrier. Thank you for telling us."
        );
    }

    #[test]
    fn renders_german_with_german_month_and_quotes() {
        let text = render(
            "de",
            &Parts {
                told_at: Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
                theme_name: "Lieferzeit",
                you_said: "Lieferung kam zu spät",
                we_did: "Wir haben einen zweiten Versender",
            },
        );
        assert_eq!(
            text,
            "Am 1. März 2026 haben Sie uns zum Thema Lieferzeit geschrieben: „Lieferung kam zu spät“. \
             Das haben wir getan: Wir haben einen zweiten Versender. Danke, dass Sie uns das gesagt haben."
        );
    }

    #[test]
    fn other_languages_fall_back_to_english() {
        let parts = Parts {
            told_at: told_at(),
            theme_name: "x",
            you_said: "y",
            we_did: "z.",
        };
        assert_eq!(render("fr", &parts), render("en", &parts));
    }

    #[test]
    fn quoted_text_loses_control_characters() {
        let text = render(
            "en",
            &Parts {
                told_at: told_at(),
                theme_name: "app\u{7}",
                you_said: "bad\u{1b}[31m\nreally\tbad",
                we_did: "Fixed\r\nit",
            },
        );
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains("about app: \"bad[31m really bad\""), "{text}");
        assert!(text.contains("We did: Fixed it. Thank"), "{text}");
    }

    #[test]
    fn no_quote_without_an_excerpt() {
        let text = render(
            "en",
            &Parts {
                told_at: told_at(),
                theme_name: "billing",
                you_said: "  ",
                we_did: "Done!",
            },
        );
        assert_eq!(
            text,
            "On 3 November 2026 you told us about billing. We did: Done! Thank you for telling us."
        );
    }

    #[test]
    fn excerpt_cuts_at_a_char_boundary_and_collapses_whitespace() {
        assert_eq!(excerpt("  short \n\n text ", 140), "short text");
        // Multi-byte characters right at the cut: byte slicing would panic here.
        let long = "ä".repeat(200);
        let cut = excerpt(&long, 140);
        assert_eq!(cut.chars().count(), 141);
        assert!(cut.ends_with("ää…"));
        assert_eq!(
            excerpt(&"é".repeat(140), 140),
            "é".repeat(140),
            "exactly max: no cut"
        );
        assert_eq!(
            excerpt("abc def", 4),
            "abc…",
            "no trailing space before the ellipsis"
        );
    }

    #[test]
    fn theme_name_falls_back_to_english_then_id() {
        let names = BTreeMap::from([
            ("en".to_owned(), "Delivery time".to_owned()),
            ("de".to_owned(), "Lieferzeit".to_owned()),
        ]);
        assert_eq!(theme_name(&names, "de", "delivery_time"), "Lieferzeit");
        assert_eq!(theme_name(&names, "fr", "delivery_time"), "Delivery time");
        assert_eq!(
            theme_name(&BTreeMap::new(), "de", "delivery_time"),
            "delivery_time"
        );
    }

    #[test]
    fn language_prefers_the_locale() {
        assert_eq!(language_for(Some("de-AT"), Language::En), "de");
        assert_eq!(language_for(Some("EN_gb"), Language::De), "en");
        assert_eq!(language_for(Some("fr-FR"), Language::De), "de");
        assert_eq!(language_for(Some("fr-FR"), Language::Other), "en");
        assert_eq!(language_for(None, Language::Other), "en");
    }

    #[test]
    fn dates_per_language() {
        assert_eq!(format_date("en", told_at()), "3 November 2026");
        assert_eq!(format_date("de", told_at()), "3. November 2026");
    }
}

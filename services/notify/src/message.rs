//! The pieces of text a message is made of, and how they are made safe: every piece of
//! text that goes into a template is cleaned here (control characters out, whitespace
//! collapsed), because the excerpt is customer text and the message goes to another
//! system. The templates themselves are in [`crate::template`].

use std::collections::BTreeMap;

use closeloop_events::Language;

/// How many characters of the feedback text notify keeps to quote back.
pub const EXCERPT_CHARS: usize = 140;

/// The language a customer asked for through their locale: its primary subtag,
/// lower-cased (`de-AT` → `de`, `EN_gb` → `en`), when it looks like a language code.
pub fn locale_language(locale: Option<&str>) -> Option<String> {
    let primary = locale?.trim().split(['-', '_', '.', '@']).next()?;
    let primary = match primary.to_ascii_lowercase().as_str() {
        // ISO 639-2 codes for the languages notify has templates for.
        "eng" => "en".to_owned(),
        "deu" | "ger" => "de".to_owned(),
        other => other.to_owned(),
    };
    ((2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase()))
        .then_some(primary)
}

/// The language the customer wrote in, as a code (`None` when it was not recognised).
pub fn text_language(detected: Language) -> Option<&'static str> {
    match detected {
        Language::En => Some("en"),
        Language::De => Some("de"),
        Language::Other => None,
    }
}

pub use closeloop_events::text::{clean, excerpt};

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn locale_language_is_the_primary_subtag() {
        assert_eq!(locale_language(Some("de-AT")).as_deref(), Some("de"));
        assert_eq!(locale_language(Some("EN_gb")).as_deref(), Some("en"));
        assert_eq!(locale_language(Some("fr")).as_deref(), Some("fr"));
        assert_eq!(locale_language(Some("deu")).as_deref(), Some("de"));
        assert_eq!(locale_language(Some("")), None);
        assert_eq!(locale_language(Some("x1-y")), None);
        assert_eq!(locale_language(None), None);
        assert_eq!(text_language(Language::Other), None);
        assert_eq!(text_language(Language::De), Some("de"));
    }
}

//! The project's own labelled customer feedback (English and German), written
//! for this repository and licensed with it (Apache-2.0).
//!
//! One JSON object per line:
//! `{"text": "...", "sentiment": "negative", "themes": ["returns"], "tags": ["negation"]}`.
//! `themes` lists every theme a careful reader would tag (may be empty);
//! `tags` name the hard case a line exercises (negation, sarcasm, mixed,
//! typo, short, contrast, emoji, compound, rating, ...). The sets are used
//! by the unit tests (offline) and by `closeloop-lab eval classify`.

use serde::Deserialize;

use crate::{Language, SentimentLabel};

/// English labelled feedback (JSON lines).
pub const FEEDBACK_EN: &str = include_str!("../eval/feedback-en.jsonl");
/// German labelled feedback (JSON lines).
pub const FEEDBACK_DE: &str = include_str!("../eval/feedback-de.jsonl");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledText {
    pub text: String,
    pub sentiment: SentimentLabel,
    #[serde(default)]
    pub themes: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Star rating given with the text, 1..=5.
    #[serde(default)]
    pub rating: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("labelled data line {line}: {source}")]
pub struct LabelledError {
    pub line: usize,
    #[source]
    pub source: serde_json::Error,
}

/// Parses JSON lines; blank lines and lines starting with `//` are skipped.
pub fn parse_jsonl(jsonl: &str) -> Result<Vec<LabelledText>, LabelledError> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| LabelledError {
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// The built-in set for `lang` (`Other` has none).
pub fn builtin(lang: Language) -> Result<Vec<LabelledText>, LabelledError> {
    match lang {
        Language::En => parse_jsonl(FEEDBACK_EN),
        Language::De => parse_jsonl(FEEDBACK_DE),
        Language::Other => Ok(Vec::new()),
    }
}

//! Fast, explainable, bilingual (English/German) feedback classifier.
//!
//! The classifier is pure: no I/O and no network on the hot path. Everything
//! it needs (lexicons, stemmed theme keywords, phrase indexes) is computed once
//! in [`LexiconClassifier::new`], so [`Classifier::classify`] only tokenizes,
//! looks things up in hash maps and adds numbers.
//!
//! Every [`Classification`] carries an `explanation`: the terms and rules that
//! decided the result ("negation: 'nicht gut' -> -1.41", "rating 1/5 fused"),
//! so an operator can always see *why* a piece of feedback landed where it did.
//!
//! Pipeline (see the module docs for details):
//! 1. [`text`]: Unicode-aware tokenizer with German folding (ä→ae, ß→ss),
//!    emoji and emoticons as tokens, sentence and clause boundaries.
//! 2. [`language`]: stopword vote, `whatlang` restricted to EN/DE, the
//!    locale hint for short or ambiguous texts.
//! 3. [`sentiment`]: VADER-style lexicon scoring with negation, intensifiers,
//!    contrast, exclamation marks, emoji, then fusion with rating / NPS.
//! 4. [`themes`]: taxonomy keywords by surface form, Snowball stem, German
//!    compound component, plus multi-word phrases; each theme hit takes the
//!    sentiment of the clause that mentions it.
//!
//! Beside the classifier, [`emerging`] cuts a text into the phrases that could name a
//! topic the taxonomy does not know yet, with the same tokenizer, function words,
//! stemmers and compound splitting.

use serde::{Deserialize, Serialize};

mod classifier;
pub mod emerging;
mod explain;
mod hash;
pub mod labelled;
mod language;
mod lexicon;
mod phrase;
mod sentiment;
mod taxonomy;
mod text;
mod themes;

#[cfg(test)]
mod eval_tests;

pub use classifier::LexiconClassifier;
pub use emerging::{Phrase, PhraseExtractor};
pub use taxonomy::{Taxonomy, TaxonomyError, ThemeDef};

/// Version of the classification algorithm and its built-in lexicons.
/// Bump on any change that can alter results; combined with the taxonomy
/// version in [`Classifier::version`].
pub const CLASSIFIER_VERSION: &str = "lexicon-2";

/// Language and polarity are part of the event contracts; classify produces exactly them.
pub use closeloop_events::{Language, SentimentLabel};

/// One piece of feedback to classify.
#[derive(Debug, Clone, Copy, Default)]
pub struct Input<'a> {
    pub text: &'a str,
    /// Locale like `"de-DE"` or `"de"`; wins when the text is too short or
    /// ambiguous to tell.
    pub language_hint: Option<&'a str>,
    /// Star rating, 1..=5. Out-of-range values are ignored (and explained).
    pub rating: Option<u8>,
    /// Net promoter score, 0..=10. Out-of-range values are ignored.
    pub nps: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    pub label: SentimentLabel,
    /// -1.0..=1.0
    pub score: f32,
    /// 0.0..=1.0
    pub confidence: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThemeHit {
    /// Taxonomy theme id, e.g. `"delivery_time"`.
    pub id: String,
    /// Strength of the evidence, 0.0..=1.0.
    pub score: f32,
    /// Sentiment of the clause/sentence mentioning the theme.
    pub sentiment: SentimentLabel,
    /// Terms (folded, lowercase) that matched, e.g. `["lieferzeit"]`.
    pub matched_terms: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub language: Language,
    pub language_confidence: f32,
    pub sentiment: Sentiment,
    /// Sorted by score, strongest first.
    pub themes: Vec<ThemeHit>,
    /// Human-readable rules and terms that decided the result.
    pub explanation: Vec<String>,
}

/// Anything that turns feedback into a [`Classification`]. A learned model
/// can be added behind this trait later without touching the services.
pub trait Classifier: Send + Sync {
    fn classify(&self, input: &Input<'_>) -> Classification;
    /// Classifier + taxonomy version, e.g. `"lexicon-2+taxonomy-2026.12"`.
    fn version(&self) -> String;
}

#[cfg(test)]
mod api_tests {
    use super::*;

    #[test]
    fn locale_mapping() {
        assert_eq!(Language::from_locale("de-AT"), Language::De);
        assert_eq!(Language::from_locale("de"), Language::De);
        assert_eq!(Language::from_locale("DE_ch"), Language::De);
        assert_eq!(Language::from_locale("en_GB"), Language::En);
        assert_eq!(Language::from_locale("en-US"), Language::En);
        assert_eq!(Language::from_locale("fr-FR"), Language::Other);
        assert_eq!(Language::from_locale(""), Language::Other);
    }

    #[test]
    fn labels_serialize_lowercase() {
        assert_eq!(Language::De.as_str(), "de");
        assert_eq!(SentimentLabel::Negative.as_str(), "negative");
        let s = toml::to_string(&Sentiment {
            label: SentimentLabel::Positive,
            score: 0.5,
            confidence: 0.7,
        })
        .unwrap();
        assert!(s.contains("label = \"positive\""), "{s}");
    }

    #[test]
    fn classifier_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LexiconClassifier>();
        let c: Box<dyn Classifier> = Box::new(LexiconClassifier::default());
        assert_eq!(c.version(), "lexicon-2+taxonomy-2026.12");
    }
}

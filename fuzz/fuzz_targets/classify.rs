//! Arbitrary text (with an optional rating, NPS score and locale hint) through the
//! classifier the categorise service builds (`LexiconClassifier::new(Taxonomy::builtin())`).
//! It must never panic and its result must keep the documented invariants.
//!
//! Input layout: byte 0 the rating (0 = none, anything else is passed as is, so
//! out-of-range ratings are exercised too), byte 1 the NPS score (255 = none), byte 2 the
//! locale hint, the rest the text (invalid UTF-8 replaced, so every input is used).
#![no_main]

use std::sync::OnceLock;

use closeloop_classify::{Classifier, Input, LexiconClassifier, Taxonomy};
use libfuzzer_sys::fuzz_target;

const HINTS: [Option<&str>; 6] = [
    None,
    Some("de-DE"),
    Some("en-GB"),
    Some("de"),
    Some("fr"),
    Some(""),
];

fn classifier() -> &'static LexiconClassifier {
    // Building the lexicons and stem indexes takes far longer than one classification.
    static CLASSIFIER: OnceLock<LexiconClassifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| LexiconClassifier::new(Taxonomy::builtin()))
}

fuzz_target!(|data: &[u8]| {
    let [rating, nps, hint, text @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let input = Input {
        text: &text,
        language_hint: HINTS[usize::from(*hint) % HINTS.len()],
        rating: (*rating != 0).then_some(*rating),
        nps: (*nps != u8::MAX).then_some(*nps),
    };
    let classifier = classifier();
    let result = classifier.classify(&input);

    let sentiment = &result.sentiment;
    assert!(
        (-1.0..=1.0).contains(&sentiment.score),
        "sentiment score {} outside -1..=1",
        sentiment.score
    );
    assert!(
        (0.0..=1.0).contains(&sentiment.confidence),
        "sentiment confidence {} outside 0..=1",
        sentiment.confidence
    );
    assert!(
        (0.0..=1.0).contains(&result.language_confidence),
        "language confidence {} outside 0..=1",
        result.language_confidence
    );
    for theme in &result.themes {
        assert!(
            classifier.taxonomy().theme(&theme.id).is_some(),
            "theme {:?} is not in the taxonomy",
            theme.id
        );
        assert!(
            (0.0..=1.0).contains(&theme.score),
            "theme {} score {} outside 0..=1",
            theme.id,
            theme.score
        );
        assert!(
            !theme.matched_terms.is_empty(),
            "theme {} without matched terms",
            theme.id
        );
        assert!(
            theme
                .matched_terms
                .iter()
                .all(|term| !term.trim().is_empty()),
            "theme {} has an empty matched term: {:?}",
            theme.id,
            theme.matched_terms
        );
    }
    assert!(
        result
            .themes
            .windows(2)
            .all(|pair| pair[0].score >= pair[1].score),
        "themes not sorted by score: {:?}",
        result.themes
    );
});

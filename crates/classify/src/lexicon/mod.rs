//! Sentiment lexicons: word valences, phrases, intensifiers, negators,
//! contrast words and language-vote stopwords for English and German, plus
//! emoji and emoticons (language-independent).
//!
//! The word lists live in [`en`] and [`de`] as plain `const` tables so they
//! are easy to review and extend; [`Lexicons::new`] folds, stems and indexes
//! them once at start-up.

use rust_stemmers::{Algorithm, Stemmer};

use crate::hash::FxMap;
use crate::phrase::PhraseIndex;
use crate::text::fold;
use crate::Language;

mod de;
mod en;

/// Distinctive function word: counts as a vote for this language.
pub(crate) const STOP: u8 = 1;
/// Negates sentiment words up to three words later.
pub(crate) const NEGATOR: u8 = 2;
/// "but"-type word: starts a new clause; what follows weighs more.
pub(crate) const CONTRAST: u8 = 4;
/// German negator that can also follow the word it negates.
pub(crate) const POST_NEGATOR: u8 = 8;
/// Preposition or conjunction: negation does not reach across it
/// ("nicht über die Verspätung informiert", "stürzt ab und lädt nicht").
pub(crate) const BARRIER: u8 = 16;
/// From a third-party list rather than curated for feedback: used for the
/// text's own language only, never as the other language's fallback.
pub(crate) const EXTRA: u8 = 32;
/// Listed as carrying no sentiment: overrides third-party lists and the
/// stem fallback ("anders", "einfach", "lieber").
pub(crate) const NEUTRAL: u8 = 64;

/// Everything the lexicon knows about one folded word.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct WordInfo {
    /// Sentiment valence, -4..=4; 0 = none.
    pub valence: f32,
    /// Multiplier applied to the next sentiment word; 0 = not a booster.
    pub booster: f32,
    pub flags: u8,
}

impl WordInfo {
    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Negators, contrast words and boosters without a valence of their
    /// own: nothing to stem.
    #[inline]
    pub fn is_function_word(&self) -> bool {
        self.valence == 0.0 && (self.has(NEGATOR | CONTRAST) || self.booster != 0.0)
    }
}

/// One language's lexicon, folded and indexed.
pub(crate) struct LangLexicon {
    pub words: FxMap<Box<str>, WordInfo>,
    /// Stem -> valence, the fallback for inflections not listed verbatim.
    pub stems: FxMap<Box<str>, f32>,
    pub phrases: PhraseIndex<f32>,
    pub false_friends: FxMap<Box<str>, ()>,
    pub stemmer: Stemmer,
}

impl std::fmt::Debug for LangLexicon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LangLexicon")
            .field("words", &self.words.len())
            .field("stems", &self.stems.len())
            .field("phrases", &self.phrases.len())
            .finish()
    }
}

struct Source {
    words: &'static [(&'static str, f32)],
    /// A third-party word list as TSV (`word<TAB>value[<TAB>...]`, `#`
    /// comments), scaled by `extra_scale`. Curated entries win over it.
    extra: &'static str,
    extra_scale: f32,
    phrases: &'static [(&'static str, f32)],
    boosters: &'static [(&'static str, f32)],
    negators: &'static [&'static str],
    post_negators: &'static [&'static str],
    contrast: &'static [&'static str],
    barriers: &'static [&'static str],
    stopwords: &'static [&'static str],
    false_friends: &'static [&'static str],
    neutral: &'static [&'static str],
}

impl LangLexicon {
    fn build(src: &Source, algorithm: Algorithm) -> LangLexicon {
        let stemmer = Stemmer::create(algorithm);
        let mut words: FxMap<Box<str>, WordInfo> = FxMap::default();
        fn entry<'m>(words: &'m mut FxMap<Box<str>, WordInfo>, w: &str) -> &'m mut WordInfo {
            words.entry(fold(w).into()).or_default()
        }
        for &(w, v) in src.words {
            entry(&mut words, w).valence = v;
        }
        for &(w, b) in src.boosters {
            entry(&mut words, w).booster = b;
        }
        for &w in src.negators {
            entry(&mut words, w).flags |= NEGATOR;
        }
        for &w in src.post_negators {
            entry(&mut words, w).flags |= POST_NEGATOR;
        }
        for &w in src.contrast {
            entry(&mut words, w).flags |= CONTRAST;
        }
        for &w in src.stopwords {
            entry(&mut words, w).flags |= STOP;
        }
        for &w in src.barriers {
            entry(&mut words, w).flags |= BARRIER;
        }
        for &w in src.neutral {
            entry(&mut words, w).flags |= NEUTRAL;
        }
        let extra = parse_tsv(src.extra, src.extra_scale);
        for (w, v) in &extra {
            words.entry(w.as_str().into()).or_insert(WordInfo {
                valence: *v,
                booster: 0.0,
                flags: EXTRA,
            });
        }

        // Stem fallback: only unambiguous stems (all entries sharing a stem
        // agree in sign), at least three bytes long.
        let mut stems: FxMap<Box<str>, f32> = FxMap::default();
        let mut conflicted: Vec<Box<str>> = Vec::new();
        let curated = src.words.iter().map(|&(w, v)| (fold(w), v));
        for (folded, v) in curated.chain(extra) {
            let stem = stemmer.stem(&folded);
            if stem.len() < 3 {
                continue;
            }
            match stems.get(&*stem) {
                Some(&old) if old.signum() != v.signum() => conflicted.push(stem.as_ref().into()),
                Some(_) => {}
                None => {
                    stems.insert(stem.as_ref().into(), v);
                }
            }
        }
        for c in conflicted {
            stems.remove(&c);
        }

        let mut phrases = PhraseIndex::default();
        for &(p, v) in src.phrases {
            phrases.add(p, &stemmer, v);
        }
        let false_friends = src
            .false_friends
            .iter()
            .map(|w| (fold(w).into(), ()))
            .collect();
        LangLexicon {
            words,
            stems,
            phrases,
            false_friends,
            stemmer,
        }
    }
}

/// Parses a `word<TAB>value` list (more columns ignored, `#` comments),
/// folding words and scaling values. Malformed lines are skipped: the lists
/// are vendored files checked by a test, not user input.
fn parse_tsv(tsv: &str, scale: f32) -> Vec<(String, f32)> {
    tsv.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let word = cols.next()?.trim();
            let value: f32 = cols.next()?.trim().parse().ok()?;
            // Nouns mostly name what a text is about ("Krieg", "Verlust" in a
            // plot summary); adjectives and verbs carry the judgement.
            let pos_scale = if cols.next() == Some("NN") {
                NOUN_SCALE
            } else {
                1.0
            };
            (!word.is_empty() && value != 0.0)
                .then(|| (fold(word), (value * scale * pos_scale).clamp(-4.0, 4.0)))
        })
        .collect()
}

/// Every word that says nothing on its own in `lang` (folded): the language-vote stop
/// words, negators, contrast words, barriers, boosters and the other function words of
/// the lexicon ([`Language::Other`]: both languages'). An emerging phrase
/// (`crate::emerging`) may not start or end with one; the classifier itself reads the
/// same lists through [`Lexicons`].
pub(crate) fn function_words(lang: Language) -> impl Iterator<Item = String> {
    fn of(
        stop: &'static [&'static str],
        negators: &'static [&'static str],
        contrast: &'static [&'static str],
        barriers: &'static [&'static str],
        boosters: &'static [(&'static str, f32)],
        function: &'static [&'static str],
    ) -> impl Iterator<Item = &'static str> {
        stop.iter()
            .chain(negators)
            .chain(contrast)
            .chain(barriers)
            .chain(function)
            .copied()
            .chain(boosters.iter().map(|&(w, _)| w))
    }
    let en = of(
        en::STOPWORDS,
        en::NEGATORS,
        en::CONTRAST,
        en::BARRIERS,
        en::BOOSTERS,
        en::FUNCTION_WORDS,
    );
    let de = of(
        de::STOPWORDS,
        de::NEGATORS,
        de::CONTRAST,
        de::BARRIERS,
        de::BOOSTERS,
        de::FUNCTION_WORDS,
    )
    .chain(de::POST_NEGATORS.iter().copied());
    let (take_en, take_de) = match lang {
        Language::En => (true, false),
        Language::De => (false, true),
        Language::Other => (true, true),
    };
    en.filter(move |_| take_en)
        .chain(de.filter(move |_| take_de))
        .map(fold)
}

/// Contrast words ("but", "aber") of `lang` (both for [`Language::Other`]), folded: an
/// emerging phrase does not run across one.
pub(crate) fn contrast_words(lang: Language) -> impl Iterator<Item = String> {
    let en = en::CONTRAST.iter().filter(move |_| lang != Language::De);
    let de = de::CONTRAST.iter().filter(move |_| lang != Language::En);
    en.chain(de).map(|w| fold(w))
}

/// Weight of third-party noun entries relative to adjectives and verbs.
const NOUN_SCALE: f32 = 0.5;

/// VADER's lexicon (MIT): English words with mean human valence -4..+4.
const VADER_EN: &str = include_str!("../../lexicons/vader_en.tsv");
/// German Polarity Lexicon, University of Zurich (Apache-2.0): polarity -1..+1.
const ZURICH_DE: &str = include_str!("../../lexicons/zurich_de.tsv");
/// Zurich polarity 1.0 corresponds to about a clear "gut" (1.9) on our scale.
const ZURICH_SCALE: f32 = 1.8;

/// Both languages plus emoji, built once and shared (read-only).
#[derive(Debug)]
pub(crate) struct Lexicons {
    pub en: LangLexicon,
    pub de: LangLexicon,
    pub emoji: FxMap<Box<str>, f32>,
}

impl Lexicons {
    pub fn new() -> Lexicons {
        let en = LangLexicon::build(
            &Source {
                words: en::WORDS,
                extra: VADER_EN,
                extra_scale: 1.0,
                phrases: en::PHRASES,
                boosters: en::BOOSTERS,
                negators: en::NEGATORS,
                post_negators: &[],
                contrast: en::CONTRAST,
                barriers: en::BARRIERS,
                stopwords: en::STOPWORDS,
                false_friends: en::FALSE_FRIENDS,
                neutral: en::NEUTRAL,
            },
            Algorithm::English,
        );
        let de = LangLexicon::build(
            &Source {
                words: de::WORDS,
                extra: ZURICH_DE,
                extra_scale: ZURICH_SCALE,
                phrases: de::PHRASES,
                boosters: de::BOOSTERS,
                negators: de::NEGATORS,
                post_negators: de::POST_NEGATORS,
                contrast: de::CONTRAST,
                barriers: de::BARRIERS,
                stopwords: de::STOPWORDS,
                false_friends: de::FALSE_FRIENDS,
                neutral: de::NEUTRAL,
            },
            Algorithm::German,
        );
        let emoji = EMOJI.iter().map(|&(e, v)| (Box::from(e), v)).collect();
        Lexicons { en, de, emoji }
    }

    /// The lexicon used for a text in `lang` (English for `Other`).
    pub fn primary(&self, lang: Language) -> &LangLexicon {
        match lang {
            Language::De => &self.de,
            Language::En | Language::Other => &self.en,
        }
    }

    pub fn secondary(&self, lang: Language) -> &LangLexicon {
        match lang {
            Language::De => &self.en,
            Language::En | Language::Other => &self.de,
        }
    }
}

/// Emoji and emoticons (as the tokenizer emits them: lowercase, no skin tone
/// or variation selector).
const EMOJI: &[(&str, f32)] = &[
    ("😡", -3.0),
    ("😠", -2.6),
    ("🤬", -3.4),
    ("😤", -2.0),
    ("😞", -2.0),
    ("😢", -2.0),
    ("😭", -2.4),
    ("😩", -2.1),
    ("😫", -2.1),
    ("😒", -1.6),
    ("😕", -1.2),
    ("🙁", -1.5),
    ("☹", -1.8),
    ("😣", -1.8),
    ("😖", -1.9),
    ("😓", -1.4),
    ("😔", -1.6),
    ("😟", -1.5),
    ("😱", -1.5),
    ("🙄", -1.5),
    ("🤮", -3.0),
    ("🤢", -2.4),
    ("💩", -2.5),
    ("👎", -2.2),
    ("💔", -2.2),
    ("😐", -0.3),
    ("😑", -0.6),
    ("🤦", -1.8),
    ("😬", -0.8),
    ("⚠", -0.5),
    ("❌", -1.2),
    ("😀", 2.0),
    ("😃", 2.1),
    ("😄", 2.2),
    ("😁", 2.1),
    ("😊", 2.1),
    ("🙂", 1.3),
    ("😉", 1.2),
    ("😍", 3.0),
    ("🥰", 3.0),
    ("😘", 2.2),
    ("🤩", 3.0),
    ("😎", 1.8),
    ("🥳", 2.6),
    ("👍", 2.0),
    ("👌", 1.6),
    ("👏", 2.0),
    ("🙌", 2.2),
    ("🙏", 1.2),
    ("💪", 1.6),
    ("❤", 2.6),
    ("💕", 2.6),
    ("💖", 2.6),
    ("💯", 2.2),
    ("🎉", 2.2),
    ("⭐", 1.4),
    ("🌟", 2.0),
    ("✨", 1.4),
    ("✅", 1.2),
    ("🔥", 1.4),
    ("😂", 0.8),
    ("🤣", 0.8),
    ("😅", 0.3),
    ("😇", 1.8),
    ("☺", 1.8),
    ("💚", 2.4),
    ("💙", 2.4),
    ("🥲", -0.4),
    (":)", 1.6),
    (":-)", 1.6),
    (":))", 2.0),
    (":-))", 2.0),
    ("=)", 1.5),
    (":d", 2.1),
    (":-d", 2.1),
    (";)", 1.2),
    (";-)", 1.2),
    (":p", 0.8),
    (":-p", 0.8),
    ("<3", 2.4),
    ("^^", 1.2),
    (":(", -1.8),
    (":-(", -1.8),
    (":((", -2.2),
    (":'(", -2.2),
    (":'-(", -2.2),
    (":/", -1.0),
    (":-/", -1.0),
    (">:(", -2.6),
    (">:-(", -2.6),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn lexicons_are_sane() {
        for (name, list) in [("en", en::WORDS), ("de", de::WORDS)] {
            assert!(list.len() >= 250, "{name} lexicon has only {}", list.len());
            let mut seen = HashSet::new();
            for &(w, v) in list {
                assert!(v != 0.0 && (-4.0..=4.0).contains(&v), "{name}: {w} = {v}");
                assert!(seen.insert(fold(w)), "{name}: duplicate {w}");
                assert!(!w.contains(' '), "{name}: {w} belongs in PHRASES");
            }
        }
        for (w, _) in en::PHRASES.iter().chain(de::PHRASES) {
            assert!(w.contains(' '), "phrase {w} is a single word");
        }
    }

    #[test]
    fn stems_cover_inflections() {
        let lex = Lexicons::new();
        // "guten" is not listed; its stem is.
        let stem = lex.de.stemmer.stem("guten");
        assert_eq!(lex.de.stems.get(&*stem), Some(&1.9));
        assert!(lex
            .de
            .words
            .get("nicht")
            .unwrap()
            .has(NEGATOR | POST_NEGATOR));
        assert!(lex.en.words.get("but").unwrap().has(CONTRAST));
        assert_eq!(lex.emoji.get("😡"), Some(&-3.0));
    }
}

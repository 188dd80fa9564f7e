//! Phrases for emerging topics: the word n-grams of a feedback text that could name
//! something the taxonomy does not know yet ("Paketstation", "new carrier", "app
//! freezes at checkout"), keyed so that inflections, spellings and German compounds of
//! the same thing meet. Counting them over time and telling which ones surge is
//! `closeloop_trend::emerging`'s part; this module only reads one text.
//!
//! A text goes through the classifier's own pieces, so a phrase means what a theme cue
//! means: the tokenizer ([`crate::text`]: lowercased, `ä→ae`, `ß→ss`), the lexicons'
//! function words ([`crate::lexicon::function_words`]: stop words, negators, contrast
//! words, boosters …) and the Snowball stemmer of the text's language. A phrase is 1 to
//! [`MAX_WORDS`] consecutive words within one clause that neither starts nor ends with a
//! function word ("app not working" is one, "not working" is not). Numbers, emoji, words
//! of one letter or of more than 40 bytes and contrast words ("but", "aber") end a phrase.
//!
//! German compounds are split where the theme matcher finds a cue inside them
//! ([`ThemeMatcher::split_compound`]): "Hermesversand" is "hermes" + "versand" and
//! "Paketstation" is "paket" + "station", so "Paketstation", "Paket-Station" and
//! "Paket Station" are the same two-word phrase, shown as written.
//!
//! What the taxonomy already names is not new: a phrase whose every content word is a
//! theme cue ("delivery late", "Lieferung verspätet"), or that is a theme's multi-word
//! cue ("tracking number"), is left out.
//!
//! Each phrase appears once per text (the first time), so counting texts that contain
//! it counts customers, not repetitions.

use std::collections::HashSet;

use rust_stemmers::{Algorithm, Stemmer};

use crate::hash::FxMap;
use crate::lexicon;
use crate::taxonomy::Taxonomy;
use crate::text::{self, TokKind, Tokens};
use crate::themes::ThemeMatcher;
use crate::Language;

/// Longest phrase, in words (a compound's parts count one each).
pub const MAX_WORDS: usize = 3;
/// Shorter words are noise ("x", "a" in "E-Mail").
const MIN_WORD_BYTES: usize = 2;
/// Longer "words" are URLs, hashes or keyboard mashing, not topics.
const MAX_WORD_BYTES: usize = 40;
/// Words read per text: a ten-thousand-character complaint yields at most a few hundred
/// phrases, not thousands.
const MAX_UNITS: usize = 128;
/// Words this short are not stemmed (as in the classifier).
const MIN_STEM_BYTES: usize = 3;
/// Longest text kept between two words of a phrase as written ("-", "/", " & ").
const MAX_GAP_CHARS: usize = 8;

/// One phrase of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    /// The stemmed, folded words, space-separated ("paket station", "new carrier herm"):
    /// what phrases are counted by.
    pub key: String,
    /// The phrase as this text wrote it ("Paketstation", "new carrier Hermes"), control
    /// characters removed.
    pub text: String,
    /// How many words, 1 to [`MAX_WORDS`].
    pub words: u8,
}

/// What one language's phrases are cut with.
struct LangWords {
    function: FxMap<Box<str>, ()>,
    contrast: FxMap<Box<str>, ()>,
    stemmer: Stemmer,
}

impl LangWords {
    fn new(lang: Language, algorithm: Algorithm) -> LangWords {
        LangWords {
            function: lexicon::function_words(lang)
                .map(|w| (w.into_boxed_str(), ()))
                .collect(),
            contrast: lexicon::contrast_words(lang)
                .map(|w| (w.into_boxed_str(), ()))
                .collect(),
            stemmer: Stemmer::create(algorithm),
        }
    }
}

/// Which part of its token a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Whole,
    /// The first part of a split compound.
    Head,
    /// The last part of a split compound.
    Tail,
}

/// A word of the text as phrases are built from it.
#[derive(Debug)]
struct Unit {
    /// Index of the token it comes from.
    tok: usize,
    part: Part,
    /// Stem, or the folded word for function words.
    key: String,
    /// The folded compound part, for a part shown alone.
    piece: String,
    function: bool,
    cue: bool,
    /// Phrases never span two segments (clauses, or what a break word separates).
    segment: u32,
}

/// Cuts feedback texts into phrases. Built once from the taxonomy (whose cues are
/// left out and whose compounds it splits); cheap to share between threads.
pub struct PhraseExtractor {
    themes: ThemeMatcher,
    en: LangWords,
    de: LangWords,
    other: LangWords,
    /// Keys of the taxonomy's multi-word cues, in every language.
    cue_phrases: HashSet<String>,
}

impl std::fmt::Debug for PhraseExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhraseExtractor")
            .field("cue_phrases", &self.cue_phrases.len())
            .finish_non_exhaustive()
    }
}

impl PhraseExtractor {
    pub fn new(taxonomy: &Taxonomy) -> PhraseExtractor {
        let mut extractor = PhraseExtractor {
            themes: ThemeMatcher::new(taxonomy),
            en: LangWords::new(Language::En, Algorithm::English),
            de: LangWords::new(Language::De, Algorithm::German),
            // Read as the classifier reads it: English stems, both languages' words.
            other: LangWords::new(Language::Other, Algorithm::English),
            cue_phrases: HashSet::new(),
        };
        let mut toks = Tokens::default();
        let mut cue_phrases = HashSet::new();
        for theme in &taxonomy.themes {
            for (code, lang) in [("en", Language::En), ("de", Language::De)] {
                let cues = [&theme.phrases, &theme.keywords, &theme.weak]
                    .into_iter()
                    .filter_map(|by_lang| by_lang.get(code))
                    .flatten();
                for cue in cues.filter(|c| !c.contains('*')) {
                    text::tokenize(cue, &mut toks);
                    let units = extractor.units(&toks, lang);
                    if (2..=MAX_WORDS).contains(&units.len()) {
                        let keys: Vec<&str> = units.iter().map(|u| u.key.as_str()).collect();
                        cue_phrases.insert(keys.join(" "));
                    }
                }
            }
        }
        extractor.cue_phrases = cue_phrases;
        extractor
    }

    fn words(&self, lang: Language) -> &LangWords {
        match lang {
            Language::En => &self.en,
            Language::De => &self.de,
            Language::Other => &self.other,
        }
    }

    /// The phrases of `text`, written in `lang`, each once, in the order they first
    /// appear.
    pub fn phrases(&self, text: &str, lang: Language) -> Vec<Phrase> {
        let mut toks = Tokens::default();
        text::tokenize(text, &mut toks);
        let units = self.units(&toks, lang);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut key = String::new();
        for start in 0..units.len() {
            if units[start].function {
                continue;
            }
            key.clear();
            let mut all_cues = true;
            for end in start..(start + MAX_WORDS).min(units.len()) {
                let unit = &units[end];
                if unit.segment != units[start].segment {
                    break;
                }
                if end > start {
                    key.push(' ');
                }
                key.push_str(&unit.key);
                if unit.function {
                    continue;
                }
                all_cues &= unit.cue;
                if all_cues || self.cue_phrases.contains(&key) || seen.contains(&key) {
                    continue;
                }
                seen.insert(key.clone());
                out.push(Phrase {
                    key: key.clone(),
                    text: shown(text, &toks, &units[start..=end]),
                    words: (end - start + 1) as u8,
                });
            }
        }
        out
    }

    /// The text's words as phrase units: function words marked, content words stemmed,
    /// theme cues marked, German compounds split at their cue.
    fn units(&self, toks: &Tokens, lang: Language) -> Vec<Unit> {
        let words = self.words(lang);
        let mut units = Vec::new();
        let mut segment = 0u32;
        let mut clause = None;
        for i in 0..toks.len() {
            if units.len() >= MAX_UNITS {
                break;
            }
            let tok = &toks.toks[i];
            if clause != Some(tok.clause) {
                clause = Some(tok.clause);
                segment += 1;
            }
            let w = toks.word(i);
            let breaks = tok.kind != TokKind::Word
                || !(MIN_WORD_BYTES..=MAX_WORD_BYTES).contains(&w.len())
                || words.contrast.contains_key(w);
            if breaks {
                segment += 1;
                continue;
            }
            let unit = |part, key: String, piece: &str, function, cue| Unit {
                tok: i,
                part,
                key,
                piece: piece.to_owned(),
                function,
                cue,
                segment,
            };
            if words.function.contains_key(w) {
                units.push(unit(Part::Whole, w.to_owned(), w, true, false));
                continue;
            }
            let stemmed = stem(&words.stemmer, w);
            if self.themes.is_cue(lang, w, &stemmed) {
                units.push(unit(Part::Whole, stemmed, w, false, true));
                continue;
            }
            match self.themes.split_compound(lang, w, &stemmed) {
                Some((head, tail)) => {
                    for (part, piece) in [(Part::Head, head), (Part::Tail, tail)] {
                        let key = stem(&words.stemmer, piece);
                        let cue = self.themes.is_cue(lang, piece, &key)
                            || self.themes.is_cue(lang, piece, piece);
                        units.push(unit(part, key, piece, false, cue));
                    }
                }
                None => units.push(unit(Part::Whole, stemmed, w, false, false)),
            }
        }
        units
    }
}

fn stem(stemmer: &Stemmer, word: &str) -> String {
    if word.len() < MIN_STEM_BYTES {
        word.to_owned()
    } else {
        stemmer.stem(word).into_owned()
    }
}

/// `units` as the text wrote them: whole words from the input, what stood between them
/// (a space, a hyphen), and a compound part alone as its folded part.
fn shown(input: &str, toks: &Tokens, units: &[Unit]) -> String {
    let raw = |tok: usize| {
        let t = &toks.toks[tok];
        &input[t.raw_start as usize..t.raw_end as usize]
    };
    let mut out = String::new();
    let mut k = 0;
    let mut previous: Option<usize> = None;
    while k < units.len() {
        let unit = &units[k];
        if let Some(previous) = previous.filter(|&p| p != unit.tok) {
            let gap = &input
                [toks.toks[previous].raw_end as usize..toks.toks[unit.tok].raw_start as usize];
            let gap = closeloop_events::text::clean(gap);
            if gap.is_empty() || gap.chars().count() > MAX_GAP_CHARS {
                out.push(' ');
            } else {
                out.push_str(&gap);
            }
        }
        let whole_compound = unit.part == Part::Head
            && units
                .get(k + 1)
                .is_some_and(|next| next.tok == unit.tok && next.part == Part::Tail);
        match unit.part {
            Part::Whole => out.push_str(raw(unit.tok)),
            Part::Head if whole_compound => {
                out.push_str(raw(unit.tok));
                k += 1;
            }
            Part::Head | Part::Tail => out.push_str(&unit.piece),
        }
        previous = Some(unit.tok);
        k += 1;
    }
    closeloop_events::text::clean(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extractor() -> PhraseExtractor {
        PhraseExtractor::new(&Taxonomy::builtin())
    }

    /// (key, text) of every phrase.
    fn phrases(text: &str, lang: Language) -> Vec<(String, String)> {
        extractor()
            .phrases(text, lang)
            .into_iter()
            .map(|p| (p.key, p.text))
            .collect()
    }

    fn keys(text: &str, lang: Language) -> Vec<String> {
        phrases(text, lang).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn english_phrases_are_stemmed_n_grams_without_function_words_at_their_ends() {
        let found = phrases("The loyalty points vanished from my wallet!", Language::En);
        let found_keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            found_keys,
            [
                "loyalti",
                "loyalti point",
                "loyalti point vanish",
                "point",
                "point vanish",
                "vanish",
                "wallet"
            ],
            "{found:?}"
        );
        // "vanished from my wallet" is four words; "from my" may sit inside a phrase,
        // never at its end.
        assert_eq!(found[2].1, "loyalty points vanished", "shown as written");
        // Inflections meet: the same keys from other words.
        let other = keys("loyalty point vanishes", Language::En);
        assert!(
            other.contains(&"loyalti point vanish".to_owned()),
            "{other:?}"
        );
        // A function word may stand inside a phrase: it is part of what it says.
        let inside = keys("stamps not counted", Language::En);
        assert!(inside.contains(&"stamp not count".to_owned()), "{inside:?}");
        assert!(!inside.iter().any(|k| k.starts_with("not")), "{inside:?}");
    }

    #[test]
    fn function_words_numbers_and_short_words_make_no_phrase() {
        assert!(keys("it is what it is, and so on", Language::En).is_empty());
        assert!(keys("Das ist es, nicht mehr und nicht weniger.", Language::De).is_empty());
        // Numbers and one-letter words end a phrase rather than join two.
        let found = keys("voucher code 12345 expired x again", Language::En);
        assert!(found.contains(&"code".to_owned()), "{found:?}");
        assert!(!found.iter().any(|k| k.contains("12345")), "{found:?}");
        assert!(!found.iter().any(|k| k.contains("code expir")), "{found:?}");
        // Emoji and a contrast word end a phrase too; so does a clause.
        let found = keys(
            "screen flickers 😡 battery drains, camera freezes but sound okay",
            Language::En,
        );
        for joined in ["flicker batteri", "drain camera", "freez sound"] {
            assert!(
                !found.iter().any(|k| k.contains(joined)),
                "{joined}: {found:?}"
            );
        }
        assert!(found.contains(&"batteri drain".to_owned()), "{found:?}");
    }

    #[test]
    fn german_compounds_split_at_the_cue_the_classifier_knows() {
        // "Paket" is a delivery cue: "Paketstation" is paket + station, whichever way it
        // is written, and shown as written.
        for text in [
            "Die Paketstation am Bahnhof ist ständig voll",
            "Die Paket-Station am Bahnhof ist ständig voll",
        ] {
            let found = phrases(text, Language::De);
            let compound = found
                .iter()
                .find(|(k, _)| k == "paket station")
                .unwrap_or_else(|| panic!("{text}: {found:?}"));
            assert!(compound.1.starts_with("Paket"), "{compound:?}");
            assert!(found.iter().any(|(k, _)| k == "station"), "{found:?}");
            // "paket" alone is the delivery theme's word, not news.
            assert!(!found.iter().any(|(k, _)| k == "paket"), "{found:?}");
            assert!(found.iter().any(|(k, _)| k == "bahnhof"), "{found:?}");
        }
        let found = phrases("Die Paketstation am Bahnhof", Language::De);
        assert!(
            found.contains(&("paket station".into(), "Paketstation".into())),
            "{found:?}"
        );
        // A cue at the end: what comes before it is the new part.
        let found = phrases("Der Expressversand kam gar nicht", Language::De);
        assert!(
            found.iter().any(|(k, t)| k == "express" && t == "express"),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(k, t)| k == "express versand" && t == "Expressversand"),
            "{found:?}"
        );
        // Umlauts are folded in the key and kept in the text.
        let found = phrases(
            "Die grüne Kundenkarte wird an der Kasse nicht erkannt",
            Language::De,
        );
        assert!(
            found.iter().any(|(k, _)| k.starts_with("kundenkart")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|(_, t)| t == "grüne Kundenkarte"),
            "{found:?}"
        );
    }

    #[test]
    fn what_the_taxonomy_already_names_is_no_emerging_phrase() {
        let found = keys("Delivery late again, the parcel was delayed", Language::En);
        for cue in [
            "deliveri",
            "late",
            "deliveri late",
            "parcel",
            "delay",
            "parcel delay",
        ] {
            assert!(!found.contains(&cue.to_owned()), "{cue}: {found:?}");
        }
        // A theme's multi-word cue is no news either, but a new word beside cues is.
        let found = keys(
            "No tracking number from the new carrier Speedyparcel",
            Language::En,
        );
        assert!(!found.contains(&"track number".to_owned()), "{found:?}");
        assert!(
            found.contains(&"new carrier speedyparcel".to_owned()),
            "{found:?}"
        );
        let found = keys("Lieferung verspätet, Sendung verzögert", Language::De);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn each_phrase_once_per_text_and_hostile_text_stays_text() {
        let found = keys(
            "wallet vanished. Wallet vanished! WALLET VANISHED",
            Language::En,
        );
        assert_eq!(found, ["wallet", "wallet vanish", "vanish"]);
        let found = phrases("wallet\u{202E}\u{1b}[2J/vanished", Language::En);
        for (_, text) in &found {
            assert!(
                !text.chars().any(|c| c.is_control() || c == '\u{202E}'),
                "{text:?}"
            );
        }
        assert!(found.iter().any(|(k, _)| k == "vanish"), "{found:?}");
        let long = "wallet ".repeat(10_000);
        assert_eq!(
            keys(&long, Language::En).len(),
            3,
            "wallet, wallet wallet, …"
        );
        assert!(
            keys(&"abcdefghij".repeat(10), Language::En).is_empty(),
            "no word"
        );
        assert!(keys("", Language::Other).is_empty());
    }
}

//! [`LexiconClassifier`]: ties tokenizer, language detection, sentiment and
//! theme matching together.
//!
//! All indexes are built in [`LexiconClassifier::new`]; `classify` works on a
//! per-call [`Doc`] (tokens plus per-token lookups), touching only read-only
//! shared state, so one classifier can serve every thread.

use crate::explain::Line;
use crate::language::{LanguageDetector, Votes};
use crate::lexicon::{Lexicons, WordInfo, CONTRAST, EXTRA, NEGATOR, NEUTRAL, STOP};
use crate::phrase::TokenView;
use crate::sentiment;
use crate::taxonomy::Taxonomy;
use crate::text::{self, TokKind, Tokens};
use crate::themes::ThemeMatcher;
use crate::{Classification, Classifier, Input, Language, CLASSIFIER_VERSION};

/// Per-token analysis results, kept together so one allocation serves all.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// Lexicon entry (default when unknown).
    pub info: WordInfo,
    /// Sentiment valence: word, stem fallback or emoji; 0 = none.
    pub valence: f32,
    /// Clause id: punctuation clauses, split again at contrast words.
    pub clause: u16,
    /// Range into `Doc::stem_buf`; `NO_STEM` when not stemmed.
    stem: (u32, u32),
}

/// The per-call analysis of one text.
#[derive(Debug)]
pub(crate) struct Doc {
    pub tokens: Tokens,
    pub lang: Language,
    pub slots: Vec<Slot>,
    pub n_clauses: usize,
    /// Token indexes of contrast words ("but", "aber").
    pub contrasts: Vec<usize>,
    stem_buf: String,
    /// Per-token lookups in both lexicons (pass 1 scratch).
    both: Vec<(Option<WordInfo>, Option<WordInfo>)>,
}

impl Doc {
    fn new() -> Doc {
        Doc {
            tokens: Tokens::default(),
            lang: Language::Other,
            slots: Vec::new(),
            n_clauses: 0,
            contrasts: Vec::new(),
            stem_buf: String::new(),
            both: Vec::new(),
        }
    }
}

thread_local! {
    /// One reusable [`Doc`] per thread: its buffers grow to the longest text
    /// seen and are then reused, so classifying allocates little.
    static SCRATCH: std::cell::RefCell<Option<Doc>> = const { std::cell::RefCell::new(None) };
}

const NO_STEM: u32 = u32::MAX;

impl TokenView for Doc {
    fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    #[inline]
    fn stem(&self, i: usize) -> &str {
        match self.slots.get(i) {
            Some(&Slot { stem: (s, e), .. }) if s != NO_STEM => {
                &self.stem_buf[s as usize..e as usize]
            }
            _ => self.tokens.word(i),
        }
    }
}

/// The lexicon classifier: fast, deterministic and explainable.
#[derive(Debug)]
pub struct LexiconClassifier {
    taxonomy: Taxonomy,
    lexicons: Lexicons,
    themes: ThemeMatcher,
    detector: LanguageDetector,
    version: String,
}

impl Default for LexiconClassifier {
    /// Classifier over the built-in taxonomy.
    fn default() -> Self {
        LexiconClassifier::new(Taxonomy::builtin())
    }
}

impl LexiconClassifier {
    pub fn new(taxonomy: Taxonomy) -> Self {
        let version = format!("{CLASSIFIER_VERSION}+taxonomy-{}", taxonomy.version);
        LexiconClassifier {
            lexicons: Lexicons::new(),
            themes: ThemeMatcher::new(&taxonomy),
            detector: LanguageDetector::new(),
            taxonomy,
            version,
        }
    }

    pub fn taxonomy(&self) -> &Taxonomy {
        &self.taxonomy
    }

    /// Tokenizes, detects the language and resolves every token against the
    /// lexicons. Returns the doc and the language explanation.
    fn analyse(&self, input: &Input<'_>, doc: &mut Doc) -> (f32, String) {
        doc.lang = Language::Other;
        doc.slots.clear();
        doc.n_clauses = 0;
        doc.contrasts.clear();
        doc.stem_buf.clear();
        let mut both = std::mem::take(&mut doc.both);
        both.clear();
        text::tokenize(input.text, &mut doc.tokens);
        let n = doc.tokens.len();
        let (en, de) = (&self.lexicons.en, &self.lexicons.de);

        // Pass 1: look each word up in both lexicons; vote on the language.
        let mut votes = Votes::default();
        let mut n_words = 0;
        for i in 0..n {
            if doc.tokens.toks[i].kind != TokKind::Word {
                both.push((None, None));
                continue;
            }
            n_words += 1;
            let w = doc.tokens.word(i);
            let mut e = en.words.get(w).copied();
            let d = de.words.get(w).copied();
            if w.ends_with("n't") {
                let mut info = e.unwrap_or_default();
                info.flags |= NEGATOR | STOP;
                e = Some(info);
            }
            let e_stop = e.is_some_and(|x| x.has(STOP));
            let d_stop = d.is_some_and(|x| x.has(STOP));
            if e_stop && !d_stop {
                votes.en += 2;
            } else if d_stop && !e_stop {
                votes.de += 2;
            } else {
                // Third-party lists are big enough to know foreign words
                // ("retard"): only curated words vote.
                let curated = |x: Option<WordInfo>| x.is_some_and(|x| !x.has(EXTRA));
                match (curated(e), curated(d)) {
                    (true, false) => votes.en += 1,
                    (false, true) => votes.de += 1,
                    _ => {}
                }
            }
            both.push((e, d));
        }
        if doc.tokens.has_umlaut {
            votes.de += 2;
        }
        let detected = self
            .detector
            .detect(input.text, votes, n_words, input.language_hint);
        doc.lang = detected.language;
        let primary = self.lexicons.primary(doc.lang);

        // Pass 2: resolve entries, stem content words, find valences, and
        // assign clauses (split again at contrast words).
        doc.slots.reserve_exact(n);
        let mut clause = 0u16;
        for (i, &(e, d)) in both.iter().enumerate() {
            let tok = doc.tokens.toks[i];
            let w = doc.tokens.word(i);
            let (p, s) = if doc.lang == Language::De {
                (d, e)
            } else {
                (e, d)
            };
            let info = match p {
                Some(info) => info,
                None if !primary.false_friends.contains_key(w) => {
                    s.filter(|x| !x.has(EXTRA)).unwrap_or_default()
                }
                None => WordInfo::default(),
            };
            let mut stem = (NO_STEM, NO_STEM);
            let mut valence = info.valence;
            match tok.kind {
                TokKind::Word => {
                    let function = info.is_function_word() || (info.has(STOP) && w.len() <= 5);
                    // Stems serve the valence fallback and theme keywords; a
                    // word found verbatim in either needs none.
                    let direct = valence != 0.0 || self.themes.is_keyword(doc.lang, w);
                    if !function && !direct && w.len() >= 3 {
                        let st = primary.stemmer.stem(w);
                        if *st != *w {
                            let start = doc.stem_buf.len() as u32;
                            doc.stem_buf.push_str(&st);
                            stem = (start, doc.stem_buf.len() as u32);
                        }
                        if !info.has(NEUTRAL) {
                            valence = primary.stems.get(&*st).copied().unwrap_or(0.0);
                        }
                    }
                    if valence == 0.0 && tok.elongated && !function && !info.has(NEUTRAL) {
                        valence = elongated_valence(w, primary);
                    }
                }
                TokKind::Emoji | TokKind::Emoticon => {
                    valence = self.lexicons.emoji.get(w).copied().unwrap_or(0.0);
                }
                TokKind::Number => {}
            }
            if i > 0 && tok.clause != doc.tokens.toks[i - 1].clause {
                clause += 1;
            }
            if info.has(CONTRAST) && tok.kind == TokKind::Word {
                if i > 0 && tok.clause == doc.tokens.toks[i - 1].clause {
                    clause += 1;
                }
                doc.contrasts.push(i);
            }
            doc.slots.push(Slot {
                info,
                valence,
                clause,
                stem,
            });
        }
        doc.n_clauses = if n == 0 { 0 } else { clause as usize + 1 };
        doc.both = both;

        let reason = Line::new()
            .s("language: ")
            .s(doc.lang.as_str())
            .s(" ")
            .plain(detected.confidence)
            .s(" (")
            .s(&detected.reason)
            .s(")")
            .done();
        (detected.confidence, reason)
    }
}

/// "suuuper" was shortened to "suuper" by the tokenizer; try with every
/// doubled letter single.
fn elongated_valence(w: &str, lex: &crate::lexicon::LangLexicon) -> f32 {
    let mut single = String::with_capacity(w.len());
    let mut last = '\0';
    for c in w.chars() {
        if c != last {
            single.push(c);
        }
        last = c;
    }
    lex.words.get(single.as_str()).map_or(0.0, |i| i.valence)
}

impl Classifier for LexiconClassifier {
    fn classify(&self, input: &Input<'_>) -> Classification {
        let mut doc = SCRATCH
            .with(|s| s.borrow_mut().take())
            .unwrap_or_else(Doc::new);
        let result = self.classify_doc(input, &mut doc);
        SCRATCH.with(|s| *s.borrow_mut() = Some(doc));
        result
    }

    fn version(&self) -> String {
        self.version.clone()
    }
}

impl LexiconClassifier {
    fn classify_doc(&self, input: &Input<'_>, doc: &mut Doc) -> Classification {
        let (language_confidence, language_reason) = self.analyse(input, doc);
        let doc = &*doc;
        let mut explanation = Vec::with_capacity(8);
        explanation.push(language_reason);
        let text_score = sentiment::score(doc, &self.lexicons, &mut explanation);
        let sentiment = sentiment::fuse(&text_score, input.rating, input.nps, &mut explanation);
        let themes = self
            .themes
            .match_doc(doc, &text_score, sentiment.label, &mut explanation);
        explanation.push(
            Line::new()
                .s("sentiment: ")
                .s(sentiment.label.as_str())
                .s(" ")
                .signed(sentiment.score)
                .s(" (confidence ")
                .plain(sentiment.confidence)
                .s(")")
                .done(),
        );
        Classification {
            language: doc.lang,
            language_confidence,
            sentiment,
            themes,
            explanation,
        }
    }
}

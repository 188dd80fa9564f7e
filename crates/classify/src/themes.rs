//! Theme matching against the taxonomy.
//!
//! A token hits a theme when its folded surface form is a keyword, when its
//! Snowball stem is a keyword's stem ("deliveries" ~ "delivery"), or, for
//! German, when a keyword is a component of the compound it is part of
//! ("Paketzusteller" contains "Paket", "Versandkosten" starts with
//! "Versand" and ends with "Kosten"). Multi-word phrases match on the token
//! sequence. All of it is indexed once in [`ThemeMatcher::new`].
//!
//! A hit inherits the sentiment of its clause, or of its sentence when the
//! clause carries none, or the overall label as a last resort: in "Great
//! product, but the delivery took three weeks" the product is positive and
//! the delivery negative.

use rust_stemmers::{Algorithm, Stemmer};

use crate::classifier::Doc;
use crate::explain::Line;
use crate::hash::FxMap;
use crate::phrase::{PhraseIndex, TokenView};
use crate::sentiment::{TextScore, NEUTRAL_BAND};
use crate::taxonomy::Taxonomy;
use crate::text::{self, TokKind, Tokens};
use crate::{Language, SentimentLabel, ThemeHit};

const WEIGHT_PHRASE: f32 = 0.8;
const WEIGHT_KEYWORD: f32 = 0.6;
const WEIGHT_COMPOUND: f32 = 0.45;
/// Shortest compound component taken from a keyword's stem.
const MIN_COMPONENT: usize = 5;
/// Whole keywords of four letters may also be prefixes ("Info", "Post").
const MIN_PREFIX_KEYWORD: usize = 4;
/// Shortest token considered a compound.
const MIN_COMPOUND: usize = 7;
/// What must be left of a compound besides the matched component.
const MIN_REST: usize = 3;

/// A theme reference in the index: theme number and whether the cue is weak.
type Cue = (u16, bool);

#[derive(Debug, Default)]
struct LangIndex {
    words: FxMap<Box<str>, Vec<Cue>>,
    stems: FxMap<Box<str>, Vec<Cue>>,
    phrases: PhraseIndex<Cue>,
    prefixes: FxMap<Box<str>, Vec<Cue>>,
    suffixes: FxMap<Box<str>, Vec<Cue>>,
    max_component: usize,
    compounds: bool,
}

fn push_unique(map: &mut FxMap<Box<str>, Vec<Cue>>, key: &str, cue: Cue) {
    let v = map.entry(key.into()).or_default();
    if !v.iter().any(|c| c.0 == cue.0) {
        v.push(cue);
    }
}

impl LangIndex {
    fn build(taxonomy: &Taxonomy, lang: &str, algorithm: Algorithm, compounds: bool) -> LangIndex {
        let stemmer = Stemmer::create(algorithm);
        let mut idx = LangIndex {
            compounds,
            ..LangIndex::default()
        };
        let mut toks = Tokens::default();
        for (t, theme) in taxonomy.themes.iter().enumerate() {
            let t = t as u16;
            let strong = theme
                .keywords
                .get(lang)
                .into_iter()
                .flatten()
                .map(|k| (k, false));
            let weak = theme
                .weak
                .get(lang)
                .into_iter()
                .flatten()
                .map(|k| (k, true));
            for (kw, is_weak) in strong.chain(weak) {
                text::tokenize(kw, &mut toks);
                if toks.len() != 1 {
                    idx.phrases.add(kw, &stemmer, (t, is_weak));
                    continue;
                }
                let t = (t, is_weak);
                let surface = toks.word(0);
                let stem = stemmer.stem(surface);
                push_unique(&mut idx.words, surface, t);
                // Short stems collide with function words ("ware" -> "war").
                if stem.len() >= 4 {
                    push_unique(&mut idx.stems, &stem, t);
                }
                if compounds {
                    if surface.len() >= MIN_PREFIX_KEYWORD {
                        push_unique(&mut idx.prefixes, surface, t);
                    }
                    for c in [surface, &*stem] {
                        if c.len() >= MIN_COMPONENT {
                            push_unique(&mut idx.prefixes, c, t);
                            push_unique(&mut idx.suffixes, c, t);
                        }
                    }
                    idx.max_component = idx.max_component.max(surface.len());
                }
            }
            for p in theme.phrases.get(lang).into_iter().flatten() {
                idx.phrases.add(p, &stemmer, (t, false));
            }
        }
        idx
    }

    /// Longest keyword prefix of `surface` and longest keyword suffix of
    /// `stem` (else `surface`), each leaving at least [`MIN_REST`] bytes of the compound.
    fn compound_parts<'s>(
        &self,
        surface: &'s str,
        stem: &'s str,
    ) -> [Option<(&'s str, &[Cue])>; 2] {
        let mut out = [None, None];
        if !self.compounds || surface.len() < MIN_COMPOUND {
            return out;
        }
        let max = self.max_component.min(surface.len() - MIN_REST);
        for p in (MIN_PREFIX_KEYWORD..=max).rev() {
            if let Some(part) = surface.get(..p) {
                if let Some(ts) = self.prefixes.get(part) {
                    out[0] = Some((part, ts.as_slice()));
                    break;
                }
            }
        }
        'forms: for form in [stem, surface] {
            if form.len() < MIN_COMPONENT + MIN_REST {
                continue;
            }
            let max = self.max_component.min(form.len() - MIN_REST);
            for s in (MIN_COMPONENT..=max).rev() {
                if let Some(part) = form.get(form.len() - s..) {
                    if let Some(ts) = self.suffixes.get(part) {
                        out[1] = Some((part, ts.as_slice()));
                        break 'forms;
                    }
                }
            }
        }
        out
    }
}

/// Taxonomy keywords and phrases, indexed per language.
#[derive(Debug)]
pub(crate) struct ThemeMatcher {
    ids: Vec<String>,
    /// Parent theme number per theme.
    parents: Vec<Option<u16>>,
    en: LangIndex,
    de: LangIndex,
}

struct Acc {
    theme: u16,
    /// Found by at least one keyword or phrase (not only weak words).
    strong: bool,
    /// (clause, sentence) of the weak hits.
    weak_clauses: Vec<(u16, u16)>,
    miss: f32,
    sentiment: f32,
    terms: Vec<String>,
    notes: Vec<String>,
}

impl ThemeMatcher {
    pub fn new(taxonomy: &Taxonomy) -> ThemeMatcher {
        ThemeMatcher {
            ids: taxonomy.themes.iter().map(|t| t.id.clone()).collect(),
            parents: taxonomy
                .themes
                .iter()
                .map(|t| {
                    let parent = t.parent.as_ref()?;
                    taxonomy
                        .themes
                        .iter()
                        .position(|p| &p.id == parent)
                        .map(|p| p as u16)
                })
                .collect(),
            en: LangIndex::build(taxonomy, "en", Algorithm::English, false),
            de: LangIndex::build(taxonomy, "de", Algorithm::German, true),
        }
    }

    /// Whether `w` (folded) is a single-word keyword in the index used for
    /// `lang`.
    pub fn is_keyword(&self, lang: Language, w: &str) -> bool {
        match lang {
            Language::En => self.en.words.contains_key(w),
            Language::De => self.de.words.contains_key(w),
            Language::Other => self.en.words.contains_key(w) || self.de.words.contains_key(w),
        }
    }

    /// The language indexes a text in `lang` is matched against.
    fn indexes(&self, lang: Language) -> impl Iterator<Item = &LangIndex> {
        let (en, de) = match lang {
            Language::En => (Some(&self.en), None),
            Language::De => (None, Some(&self.de)),
            Language::Other => (Some(&self.en), Some(&self.de)),
        };
        en.into_iter().chain(de)
    }

    /// Whether a folded word is a single-word cue (keyword or weak word) of a theme in
    /// `lang`, by its surface form or its stem, as [`ThemeMatcher::match_doc`] finds them.
    pub fn is_cue(&self, lang: Language, surface: &str, stem: &str) -> bool {
        self.indexes(lang)
            .any(|idx| idx.words.contains_key(surface) || idx.stems.contains_key(stem))
    }

    /// A German compound split at the theme cue it contains, the way `match_doc` finds
    /// compounds: `(head, tail)`, one of them the cue ("hermesversand" → "hermes" +
    /// "versand", "paketstation" → "paket" + "station"). `None` for a word that is no
    /// such compound, and outside German.
    pub fn split_compound<'s>(
        &self,
        lang: Language,
        surface: &'s str,
        stem: &'s str,
    ) -> Option<(&'s str, &'s str)> {
        if lang != Language::De {
            return None;
        }
        let [prefix, suffix] = self.de.compound_parts(surface, stem);
        // A German compound's last part is its head ("Hermesversand" is a kind of
        // Versand), so a cue found there splits first: what comes before it is new.
        if let Some((part, _)) = suffix {
            let form = if stem.ends_with(part) { stem } else { surface };
            return Some((&form[..form.len() - part.len()], part));
        }
        let (part, _) = prefix?;
        Some((part, &surface[part.len()..]))
    }

    pub fn match_doc(
        &self,
        doc: &Doc,
        text: &TextScore,
        overall: SentimentLabel,
        explain: &mut Vec<String>,
    ) -> Vec<ThemeHit> {
        let indexes: &[&LangIndex] = match doc.lang {
            Language::En => &[&self.en],
            Language::De => &[&self.de],
            Language::Other => &[&self.en, &self.de],
        };
        let toks = &doc.tokens;
        let mut accs: Vec<Acc> = Vec::new();
        // (sentence, theme) of every keyword or phrase hit.
        // Child themes count here with weak hits too (they outrank their parent).
        let mut strong_clauses: Vec<((u16, u16), u16)> = Vec::new();
        let parents = &self.parents;

        // Sentiment a mention at token `i` inherits.
        let sentiment_at = |i: usize| -> f32 {
            let c = text.clause_sums[doc.slots[i].clause as usize];
            if c != 0.0 {
                c
            } else {
                text.sentence_sums[toks.toks[i].sentence as usize]
            }
        };
        let mut add =
            |(theme, weak): Cue, term: &str, note: Option<String>, weight: f32, i: usize| {
                let pos = match accs.iter().position(|a| a.theme == theme) {
                    Some(p) => p,
                    None => {
                        accs.push(Acc {
                            theme,
                            strong: false,
                            weak_clauses: Vec::new(),
                            miss: 1.0,
                            sentiment: 0.0,
                            terms: Vec::new(),
                            notes: Vec::new(),
                        });
                        accs.len() - 1
                    }
                };
                let acc = &mut accs[pos];
                acc.strong |= !weak;
                let at = (doc.slots[i].clause, toks.toks[i].sentence);
                if weak {
                    acc.weak_clauses.push(at);
                }
                // Child themes count even through weak words (they refine
                // their parent).
                let specific = !weak || parents[theme as usize].is_some();
                if specific && !strong_clauses.contains(&(at, theme)) {
                    strong_clauses.push((at, theme));
                }
                acc.sentiment += sentiment_at(i);
                if !acc.terms.iter().any(|t| t == term) {
                    acc.terms.push(term.to_string());
                    acc.miss *= 1.0 - weight;
                    if let Some(n) = note {
                        acc.notes.push(n);
                    }
                }
            };

        // Words inside a matched phrase belong to the phrase's theme: in
        // "fast delivery" (delivery time) "delivery" does not also count for
        // delivery & shipping.
        let mut covered_until = 0usize;
        let mut covering: Vec<u16> = Vec::new();
        for i in 0..toks.len() {
            if toks.toks[i].kind != TokKind::Word {
                continue;
            }
            if i >= covered_until {
                covering.clear();
            }
            let surface = toks.word(i);
            let stem = doc.stem(i);
            for idx in indexes {
                let mut seen_phrase: Option<&str> = None;
                idx.phrases.for_each_at(doc, i, |end, p| {
                    if seen_phrase != Some(&*p.text) {
                        add(p.value, &p.text, None, WEIGHT_PHRASE, i);
                    }
                    seen_phrase = Some(&p.text);
                    covered_until = covered_until.max(end);
                    if !covering.contains(&p.value.0) {
                        covering.push(p.value.0);
                    }
                });
                let free = |t: u16| i >= covered_until || covering.contains(&t);
                if let Some(ts) = idx.words.get(surface).or_else(|| idx.stems.get(stem)) {
                    for &t in ts.iter().filter(|c| free(c.0)) {
                        add(t, surface, None, WEIGHT_KEYWORD, i);
                    }
                    continue;
                }
                for (part, ts) in idx.compound_parts(surface, stem).into_iter().flatten() {
                    for &t in ts.iter().filter(|c| free(c.0)) {
                        let note = format!("{surface} (compound '{part}')");
                        add(t, surface, Some(note), WEIGHT_COMPOUND, i);
                    }
                }
            }
        }

        // A theme seen only through weak words gives way to a specific theme
        // in the same clause ("rude and unhelpful staff" is about staff, not
        // support; "still waiting for my refund" is about returns), and a
        // parent to its child theme in the same sentence.
        let strong_themes: Vec<u16> = accs.iter().filter(|a| a.strong).map(|a| a.theme).collect();
        accs.retain(|a| {
            let outranked = !a.strong
                && a.weak_clauses.iter().all(|&(clause, sentence)| {
                    strong_clauses.iter().any(|&((c, s), t)| {
                        t != a.theme
                            && ((c == clause && strong_themes.contains(&t))
                                || (s == sentence && self.parents[t as usize] == Some(a.theme)))
                    })
                });
            if outranked {
                explain.push(format!(
                    "theme {} dropped: only the weak cue {} beside a more specific theme",
                    self.ids[a.theme as usize],
                    a.terms.join(", ")
                ));
            }
            !outranked
        });

        accs.sort_by(|a, b| a.miss.total_cmp(&b.miss).then(a.theme.cmp(&b.theme)));
        accs.into_iter()
            .map(|a| {
                let sentiment = if a.sentiment >= NEUTRAL_BAND {
                    SentimentLabel::Positive
                } else if a.sentiment <= -NEUTRAL_BAND {
                    SentimentLabel::Negative
                } else {
                    overall
                };
                let id = self.ids[a.theme as usize].clone();
                let mut line = Line::new()
                    .s("theme ")
                    .s(&id)
                    .s(" (")
                    .s(sentiment.as_str())
                    .s("): ");
                for (k, t) in a.terms.iter().enumerate() {
                    line = line.s(if k > 0 { ", " } else { "" }).s(t);
                }
                for (k, n) in a.notes.iter().enumerate() {
                    line = line.s(if k > 0 { ", " } else { "; " }).s(n);
                }
                explain.push(line.done());
                ThemeHit {
                    id,
                    score: ((1.0 - a.miss) * 100.0).round() / 100.0,
                    sentiment,
                    matched_terms: a.terms,
                }
            })
            .collect()
    }
}

//! Multi-word phrase matching over a token sequence.
//!
//! Phrases are indexed by their first word (surface form and stem), so at
//! each position only the handful of phrases that can start there are
//! checked. A phrase word matches a token when the folded surface forms are
//! equal or their stems are; `*` matches any single word. Phrases never run
//! across a sentence boundary.

use rust_stemmers::Stemmer;

use crate::hash::FxMap;
use crate::text::{self, TokKind, Tokens};

#[derive(Debug, Clone)]
pub(crate) enum PhraseWord {
    Any,
    Word { surface: Box<str>, stem: Box<str> },
}

#[derive(Debug, Clone)]
pub(crate) struct Phrase<T> {
    pub words: Box<[PhraseWord]>,
    /// Folded phrase as written, for explanations ("took * weeks").
    pub text: Box<str>,
    pub value: T,
}

/// What the matcher needs to know about the text being matched.
pub(crate) trait TokenView {
    fn tokens(&self) -> &Tokens;
    /// Stem of token `i`, or its surface form when it was not stemmed.
    fn stem(&self, i: usize) -> &str;
}

#[derive(Debug, Clone)]
pub(crate) struct PhraseIndex<T> {
    phrases: Vec<Phrase<T>>,
    by_first: FxMap<Box<str>, Vec<u32>>,
}

impl<T> Default for PhraseIndex<T> {
    fn default() -> Self {
        Self {
            phrases: Vec::new(),
            by_first: FxMap::default(),
        }
    }
}

impl<T> PhraseIndex<T> {
    /// Adds a phrase; returns false (and adds nothing) when it has no words
    /// or starts with `*`.
    pub fn add(&mut self, raw: &str, stemmer: &Stemmer, value: T) -> bool {
        let mut words = Vec::new();
        let mut toks = Tokens::default();
        for piece in raw.split_whitespace() {
            if piece == "*" {
                words.push(PhraseWord::Any);
                continue;
            }
            text::tokenize(piece, &mut toks);
            for i in 0..toks.len() {
                let surface = toks.word(i);
                words.push(PhraseWord::Word {
                    surface: surface.into(),
                    stem: stemmer.stem(surface).into(),
                });
            }
        }
        let Some(PhraseWord::Word { surface, stem }) = words.first() else {
            return false;
        };
        let id = self.phrases.len() as u32;
        self.by_first.entry(surface.clone()).or_default().push(id);
        if stem != surface {
            self.by_first.entry(stem.clone()).or_default().push(id);
        }
        self.phrases.push(Phrase {
            words: words.into_boxed_slice(),
            text: text::fold(raw).into(),
            value,
        });
        true
    }

    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    /// Calls `f(end, phrase)` for every phrase matching at token `i`
    /// (`end` is exclusive). A phrase indexed under both its surface and its
    /// stem may be reported twice; callers dedupe by text if they care.
    pub fn for_each_at<'a, V: TokenView>(
        &'a self,
        view: &V,
        i: usize,
        mut f: impl FnMut(usize, &'a Phrase<T>),
    ) {
        let toks = view.tokens();
        let surface = toks.word(i);
        let stem = view.stem(i);
        let lists = [
            self.by_first.get(surface),
            if stem != surface {
                self.by_first.get(stem)
            } else {
                None
            },
        ];
        for list in lists.into_iter().flatten() {
            for &id in list {
                let p = &self.phrases[id as usize];
                if let Some(end) = matches_at(p, view, i) {
                    f(end, p);
                }
            }
        }
    }

    /// The longest phrase matching at token `i`, with its exclusive end.
    pub fn longest_at<V: TokenView>(&self, view: &V, i: usize) -> Option<(usize, &Phrase<T>)> {
        if self.by_first.is_empty() {
            return None;
        }
        let mut best: Option<(usize, &Phrase<T>)> = None;
        let toks = view.tokens();
        let surface = toks.word(i);
        let stem = view.stem(i);
        let lists = [
            self.by_first.get(surface),
            if stem != surface {
                self.by_first.get(stem)
            } else {
                None
            },
        ];
        for list in lists.into_iter().flatten() {
            for &id in list {
                let p = &self.phrases[id as usize];
                if let Some(end) = matches_at(p, view, i) {
                    match best {
                        Some((e, _)) if e >= end => {}
                        _ => best = Some((end, p)),
                    }
                }
            }
        }
        best
    }
}

fn matches_at<T, V: TokenView>(p: &Phrase<T>, view: &V, i: usize) -> Option<usize> {
    let toks = view.tokens();
    let end = i + p.words.len();
    if end > toks.len() {
        return None;
    }
    let sentence = toks.toks[i].sentence;
    for (k, w) in p.words.iter().enumerate() {
        let j = i + k;
        let t = &toks.toks[j];
        if t.sentence != sentence || !matches!(t.kind, TokKind::Word | TokKind::Number) {
            return None;
        }
        if let PhraseWord::Word { surface, stem } = w {
            if toks.word(j) != &**surface && view.stem(j) != &**stem {
                return None;
            }
        }
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_stemmers::Algorithm;

    struct View(Tokens);
    impl TokenView for View {
        fn tokens(&self) -> &Tokens {
            &self.0
        }
        fn stem(&self, i: usize) -> &str {
            self.0.word(i)
        }
    }

    fn view(s: &str) -> View {
        let mut t = Tokens::default();
        text::tokenize(s, &mut t);
        View(t)
    }

    #[test]
    fn longest_wins_and_wildcards_match_one_word() {
        let st = Stemmer::create(Algorithm::English);
        let mut idx = PhraseIndex::default();
        assert!(idx.add("took * weeks", &st, 1));
        assert!(idx.add("took weeks", &st, 2));
        assert!(idx.add("never again", &st, 3));
        assert!(!idx.add("* again", &st, 4));
        let v = view("It took three weeks. Never. Again");
        assert_eq!(
            idx.longest_at(&v, 1).map(|(e, p)| (e, p.value)),
            Some((4, 1))
        );
        // No match across the sentence boundary.
        assert!(idx.longest_at(&v, 4).is_none());
        let v = view("took weeks");
        assert_eq!(
            idx.longest_at(&v, 0).map(|(e, p)| (e, p.value)),
            Some((2, 2))
        );
    }

    #[test]
    fn phrases_fold_like_text() {
        let st = Stemmer::create(Algorithm::German);
        let mut idx = PhraseIndex::default();
        idx.add("zu spät", &st, 1);
        idx.add("E-Mail", &st, 2);
        let v = view("Viel ZU SPAET, keine e-mail");
        assert_eq!(idx.longest_at(&v, 1).map(|(e, _)| e), Some(3));
        assert_eq!(
            idx.longest_at(&v, 4).map(|(e, p)| (e, p.value)),
            Some((6, 2))
        );
    }
}

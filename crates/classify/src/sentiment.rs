//! Lexicon sentiment in the spirit of VADER (Hutto & Gilbert, 2014), with
//! our own word lists and a few rules for German.
//!
//! Each sentiment term (word, phrase, emoji) gets its valence, then:
//! - intensifiers/dampeners up to three words before multiply it
//!   ("sehr gut", "slightly slow");
//! - a negator up to three words before flips and damps it (× -0.74), and in
//!   German a trailing "nicht" does too ("gefällt mir nicht");
//! - a word in capitals in a mixed-case text is emphasised.
//!
//! Per sentence: terms before a contrast word ("but", "aber") count half,
//! terms after it 1.5×; exclamation marks push the sentence sum further in
//! its direction. The text score is `raw / sqrt(raw² + 15)`, in -1..1.
//! Clause and sentence sums are kept (unweighted) so themes can take the
//! sentiment of the clause that mentions them.
//!
//! Finally [`fuse`] blends in the star rating / NPS when present.

use crate::classifier::Doc;
use crate::explain::Line;
use crate::lexicon::{LangLexicon, Lexicons, BARRIER, CONTRAST, NEGATOR, POST_NEGATOR};
use crate::text::TokKind;
use crate::{Language, Sentiment, SentimentLabel};

const NEGATION: f32 = -0.74;
const CAPS_EMPHASIS: f32 = 0.733;
const EXCLAMATION: f32 = 0.292;
const NORMALIZE_ALPHA: f32 = 15.0;
const CONTRAST_BEFORE: f32 = 0.5;
const CONTRAST_AFTER: f32 = 1.5;
/// Texts with at least this many sentences weight opening and closing.
const LONG_TEXT_SENTENCES: usize = 4;
const OPENING_WEIGHT: f32 = 3.0;
const CLOSING_WEIGHT: f32 = 2.0;
/// Valence of a negated clause without sentiment words.
const COMPLAINT: f32 = -1.2;
/// |score| below this is neutral.
pub(crate) const NEUTRAL_BAND: f32 = 0.05;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Term {
    pub start: usize,
    pub value: f32,
    /// Contrast weight (1.0 unless a "but" is around).
    pub weight: f32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct TextScore {
    pub terms: Vec<Term>,
    /// Unweighted sums per clause id (`Doc::clause`).
    pub clause_sums: Vec<f32>,
    /// Unweighted sums per sentence.
    pub sentence_sums: Vec<f32>,
    /// Weighted total before normalisation.
    pub raw: f32,
    /// Normalised text score, -1..1.
    pub score: f32,
    pub pos: f32,
    pub neg: f32,
}

/// Formats a number with two decimals ("+1.41", "0.75") without going
/// through float formatting, which dominated explanation cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Num {
    value: f32,
    signed: bool,
}

/// `{:+.2}`
pub(crate) fn signed(value: f32) -> Num {
    Num {
        value,
        signed: true,
    }
}

/// `{:.2}`
pub(crate) fn plain(value: f32) -> Num {
    Num {
        value,
        signed: false,
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hundredths = (self.value * 100.0).round() as i64;
        let sign = if hundredths < 0 {
            "-"
        } else if self.signed {
            "+"
        } else {
            ""
        };
        let abs = hundredths.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

pub(crate) fn label_of(score: f32) -> SentimentLabel {
    if score >= NEUTRAL_BAND {
        SentimentLabel::Positive
    } else if score <= -NEUTRAL_BAND {
        SentimentLabel::Negative
    } else {
        SentimentLabel::Neutral
    }
}

fn normalize(raw: f32) -> f32 {
    (raw / (raw * raw + NORMALIZE_ALPHA).sqrt()).clamp(-1.0, 1.0)
}

/// Scores the text of `doc`, appending one explanation line per term and
/// per rule applied.
pub(crate) fn score(doc: &Doc, lex: &Lexicons, explain: &mut Vec<String>) -> TextScore {
    let toks = &doc.tokens;
    let n = toks.len();
    let primary = lex.primary(doc.lang);
    let secondary = (doc.lang == Language::Other).then(|| lex.secondary(doc.lang));
    let mut out = TextScore {
        clause_sums: vec![0.0; doc.n_clauses],
        sentence_sums: vec![0.0; toks.sentences()],
        ..TextScore::default()
    };

    // Tokens before this index belong to an earlier term (or were used as a
    // trailing negator) and must not modify later terms.
    let mut used_until = 0usize;
    let mut i = 0usize;
    while i < n {
        let tok = toks.toks[i];
        let mut phrase: Option<(usize, &str, f32)> = None;
        if matches!(tok.kind, TokKind::Word | TokKind::Number) {
            let mut best = primary.phrases.longest_at(doc, i);
            if let Some(b) = secondary.and_then(|sec| sec.phrases.longest_at(doc, i)) {
                match best {
                    Some((e, _)) if e >= b.0 => {}
                    _ => best = Some(b),
                }
            }
            phrase = best.map(|(end, p)| (end - 1, &*p.text, p.value));
        }
        let (end, base) = match phrase {
            Some((end, _, v)) => (end, v),
            None => {
                let v = doc.slots[i].valence;
                if v == 0.0 || is_booster_here(doc, i) {
                    i += 1;
                    continue;
                }
                (i, v)
            }
        };

        // Modifiers before the term.
        let clause = doc.slots[i].clause;
        let mut mult = 1.0f32;
        let mut negated = false;
        let mut first = i;
        for d in 1..=3usize {
            if i < d || i - d < used_until {
                break;
            }
            let j = i - d;
            if doc.slots[j].clause != clause {
                break;
            }
            let info = doc.slots[j].info;
            if info.has(BARRIER) {
                break;
            }
            if info.has(NEGATOR) {
                negated = true;
                first = j;
            } else if info.booster != 0.0 {
                let scale = [1.0, 0.95, 0.9][d - 1];
                mult *= 1.0 + (info.booster - 1.0) * scale;
                first = j;
            }
        }

        // German: a trailing negator ("gefällt mir nicht").
        let mut last = end;
        if !negated && doc.lang == Language::De && !doc.slots[end].info.has(CONTRAST) {
            if let Some(k) = trailing_negator(doc, end, primary) {
                negated = true;
                last = k;
            }
        }

        let mut v = base * mult;
        let caps = (i..=end).any(|k| toks.toks[k].caps) && !toks.all_caps;
        if caps {
            v += v.signum() * CAPS_EMPHASIS;
        }
        if negated {
            v *= NEGATION;
        }

        let mut rules: Vec<&str> = Vec::new();
        if negated {
            rules.push("negation");
        }
        if mult > 1.0 {
            rules.push("intensifier");
        } else if mult < 1.0 {
            rules.push("dampener");
        }
        if caps {
            rules.push("caps");
        }
        let kind = match (phrase.is_some(), tok.kind) {
            (true, _) => "phrase",
            (false, TokKind::Emoji | TokKind::Emoticon) => "emoji",
            _ => "term",
        };
        if rules.is_empty() {
            let line = Line::new().s(kind).s(": '").s(toks.span(i, end)).s("' ");
            explain.push(line.signed(v).done());
        } else {
            let mut line = Line::new();
            for (k, rule) in rules.iter().enumerate() {
                line = line.s(if k > 0 { "+" } else { "" }).s(rule);
            }
            let line = line.s(": '").s(toks.span(first.min(i), last)).s("' -> ");
            explain.push(line.signed(v).done());
        }

        out.terms.push(Term {
            start: i,
            value: v,
            weight: 1.0,
        });
        out.clause_sums[clause as usize] += v;
        out.sentence_sums[tok.sentence as usize] += v;
        used_until = last + 1;
        i = end + 1;
    }

    complaint_negations(doc, &mut out, explain);
    apply_contrast(doc, &mut out.terms, explain);

    // Weighted sentence sums, exclamation marks, total.
    let mut weighted = vec![0.0f32; out.sentence_sums.len()];
    let n_sentences = weighted.len();
    let positional = n_sentences >= LONG_TEXT_SENTENCES;
    if positional {
        explain.push(format!(
            "long text: first sentence x{OPENING_WEIGHT}, last x{CLOSING_WEIGHT}"
        ));
    }
    for t in &mut out.terms {
        let s = toks.toks[t.start].sentence as usize;
        if positional {
            // Long reviews open with their verdict (often the title) and close
            // with a conclusion; the middle retells what happened.
            if s == 0 {
                t.weight *= OPENING_WEIGHT;
            } else if s + 1 == n_sentences {
                t.weight *= CLOSING_WEIGHT;
            }
        }
        weighted[s] += t.value * t.weight;
        if t.value > 0.0 {
            out.pos += t.value * t.weight;
        } else {
            out.neg -= t.value * t.weight;
        }
    }
    for (s, sum) in weighted.iter_mut().enumerate() {
        let bangs = toks.exclaims.get(s).copied().unwrap_or(0).min(4);
        if bangs > 0 && *sum != 0.0 {
            let add = sum.signum() * EXCLAMATION * f32::from(bangs);
            *sum += add;
            let line = Line::new().s("exclamation x").int(u32::from(bangs)).s(": ");
            explain.push(line.signed(add).done());
        }
    }
    out.raw = weighted.iter().sum();
    out.score = normalize(out.raw);
    out
}

/// In feedback, a negated clause without any sentiment word is a complaint
/// about an expectation not met: "Customer service never answered my
/// emails", "Ich komme nicht in mein Konto". One mild negative term per
/// such clause.
fn complaint_negations(doc: &Doc, out: &mut TextScore, explain: &mut Vec<String>) {
    let toks = &doc.tokens;
    let mut has_term = vec![false; doc.n_clauses];
    for t in &out.terms {
        has_term[doc.slots[t.start].clause as usize] = true;
    }
    for i in 0..toks.len() {
        let clause = doc.slots[i].clause as usize;
        if has_term[clause] || toks.toks[i].kind != TokKind::Word || !doc.slots[i].info.has(NEGATOR)
        {
            continue;
        }
        has_term[clause] = true;
        out.terms.push(Term {
            start: i,
            value: COMPLAINT,
            weight: 1.0,
        });
        out.clause_sums[clause] += COMPLAINT;
        out.sentence_sums[toks.toks[i].sentence as usize] += COMPLAINT;
        explain.push(format!(
            "complaint: '{}' with nothing positive in its clause {}",
            toks.word(i),
            signed(COMPLAINT)
        ));
    }
}

/// A word that is both a booster and a sentiment word ("super", "terribly")
/// acts as a booster when a sentiment word follows right after it.
fn is_booster_here(doc: &Doc, i: usize) -> bool {
    if doc.slots[i].info.booster == 0.0 {
        return false;
    }
    (i + 1..(i + 3).min(doc.tokens.len()))
        .take_while(|&k| doc.slots[k].clause == doc.slots[i].clause)
        .any(|k| doc.slots[k].valence != 0.0)
}

/// Looks for "nicht"/"nie" up to four words after a German term, within the
/// clause, that does not itself belong to a following sentiment word.
fn trailing_negator(doc: &Doc, end: usize, lex: &LangLexicon) -> Option<usize> {
    let n = doc.tokens.len();
    let clause = doc.slots[end].clause;
    for k in end + 1..(end + 5).min(n) {
        if doc.slots[k].clause != clause
            || doc.slots[k].valence != 0.0
            || doc.slots[k].info.has(BARRIER)
        {
            return None;
        }
        // A phrase of its own in between ("... ab und lädt nicht").
        if !doc.slots[k].info.has(POST_NEGATOR) && lex.phrases.longest_at(doc, k).is_some() {
            return None;
        }
        if doc.slots[k].info.has(POST_NEGATOR) {
            let next = k + 1;
            let owned_by_next = next < n
                && doc.slots[next].clause == clause
                && (doc.slots[next].valence != 0.0
                    || doc.slots[next].info.booster != 0.0
                    || lex.phrases.longest_at(doc, k).is_some());
            return (!owned_by_next).then_some(k);
        }
    }
    None
}

/// "X but Y": terms before the last contrast word of a sentence count half,
/// terms after it 1.5×. A contrast word opening (or closing: "though") a
/// sentence contrasts it with the previous sentence.
fn apply_contrast(doc: &Doc, terms: &mut [Term], explain: &mut Vec<String>) {
    let toks = &doc.tokens;
    let mut last_per_sentence: Vec<(u16, usize)> = Vec::new();
    for &c in &doc.contrasts {
        let s = toks.toks[c].sentence;
        match last_per_sentence.last_mut() {
            Some((ls, lc)) if *ls == s => *lc = c,
            _ => last_per_sentence.push((s, c)),
        }
    }
    for (s, c) in last_per_sentence {
        let opens = c == 0 || toks.toks[c - 1].sentence != s;
        let closes = c + 1 >= toks.len() || toks.toks[c + 1].sentence != s;
        let mut changed = false;
        for t in terms.iter_mut() {
            let ts = toks.toks[t.start].sentence;
            let w = if opens || closes {
                if s > 0 && ts == s - 1 {
                    CONTRAST_BEFORE
                } else if ts == s && s > 0 {
                    CONTRAST_AFTER
                } else {
                    continue;
                }
            } else if ts != s {
                continue;
            } else if t.start < c {
                CONTRAST_BEFORE
            } else {
                CONTRAST_AFTER
            };
            t.weight *= w;
            changed = true;
        }
        if changed {
            explain.push(format!(
                "contrast: '{}' (before x{CONTRAST_BEFORE}, after x{CONTRAST_AFTER})",
                toks.word(c)
            ));
        }
    }
}

fn rating_score(rating: u8) -> Option<f32> {
    Some(match rating {
        1 => -0.9,
        2 => -0.55,
        3 => 0.0,
        4 => 0.55,
        5 => 0.9,
        _ => return None,
    })
}

fn nps_score(nps: u8) -> Option<f32> {
    Some(match nps {
        0..=6 => -0.9 + f32::from(nps) * 0.12,
        7 => 0.1,
        8 => 0.3,
        9 => 0.7,
        10 => 0.9,
        _ => return None,
    })
}

/// Blends the text score with the rating / NPS and derives label and
/// confidence.
pub(crate) fn fuse(
    text: &TextScore,
    rating: Option<u8>,
    nps: Option<u8>,
    explain: &mut Vec<String>,
) -> Sentiment {
    let n_terms = text.terms.len();
    let mixed = if text.pos > 0.0 && text.neg > 0.0 {
        text.pos.min(text.neg) / text.pos.max(text.neg)
    } else {
        0.0
    };
    let text_conf = if n_terms == 0 {
        0.3
    } else {
        ((0.5 + 0.4 * text.score.abs() + 0.03 * n_terms.min(5) as f32) * (1.0 - 0.5 * mixed))
            .min(0.95)
    };

    let mut signals: Vec<f32> = Vec::with_capacity(2);
    let mut names: Vec<String> = Vec::new();
    if let Some(r) = rating {
        match rating_score(r) {
            Some(s) => {
                signals.push(s);
                names.push(format!("rating {r}/5"));
            }
            None => explain.push(format!("rating {r} ignored (outside 1..=5)")),
        }
    }
    if let Some(p) = nps {
        match nps_score(p) {
            Some(s) => {
                signals.push(s);
                names.push(format!("nps {p}/10"));
            }
            None => explain.push(format!("nps {p} ignored (outside 0..=10)")),
        }
    }

    if signals.is_empty() {
        let score = text.score;
        return Sentiment {
            label: label_of(score),
            score,
            confidence: text_conf,
        };
    }

    let signal = signals.iter().sum::<f32>() / signals.len() as f32;
    let evidence = ((text.pos + text.neg) / 3.0).min(1.0);
    let w_text = 0.25 + 0.75 * evidence;
    let score = ((w_text * text.score + signal) / (w_text + 1.0)).clamp(-1.0, 1.0);
    explain.push(format!(
        "{} fused: text {} (weight {}) -> {}",
        names.join(" + "),
        signed(text.score),
        plain(w_text),
        signed(score)
    ));
    let agrees = text.score.abs() < NEUTRAL_BAND || text.score.signum() == signal.signum();
    let confidence = if agrees {
        (text_conf.max(0.7) + if n_terms > 0 { 0.1 } else { 0.0 }).min(0.98)
    } else {
        0.45
    };
    Sentiment {
        label: label_of(score),
        score,
        confidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_like_float_formatting() {
        assert_eq!(signed(1.414).to_string(), "+1.41");
        assert_eq!(signed(-0.005).to_string(), "-0.01");
        assert_eq!(signed(-0.004).to_string(), "+0.00");
        assert_eq!(signed(-2.0).to_string(), "-2.00");
        assert_eq!(plain(0.75).to_string(), "0.75");
    }

    #[test]
    fn normalisation_is_bounded_and_monotonic() {
        assert_eq!(normalize(0.0), 0.0);
        assert!(normalize(1.0) < normalize(2.0));
        assert!(normalize(1e6) <= 1.0 && normalize(-1e6) >= -1.0);
    }
}

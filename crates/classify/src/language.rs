//! Language detection tuned for short customer feedback.
//!
//! Trigram models (whatlang) are weak on five-word texts and relatively slow,
//! while distinctive function words ("the", "und", "nicht") decide most
//! feedback instantly. So: a stopword vote first; the locale hint for short or
//! undecided texts; whatlang restricted to English/German for the rest; and
//! an unrestricted whatlang run only when nothing English or German was seen,
//! to flag other languages as [`Language::Other`].

use whatlang::{Detector, Lang};

use crate::explain::Line;
use crate::Language;

/// Language votes in half points: a distinctive stopword counts 2, a
/// lexicon word only one language knows counts 1, umlauts count 2 for
/// German.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Votes {
    pub en: u32,
    pub de: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Detected {
    pub language: Language,
    pub confidence: f32,
    /// How it was decided, for the explanation.
    pub reason: String,
}

pub(crate) struct LanguageDetector {
    en_de: Detector,
}

impl std::fmt::Debug for LanguageDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LanguageDetector(en, de)")
    }
}

impl LanguageDetector {
    pub fn new() -> Self {
        Self {
            en_de: Detector::with_allowlist(vec![Lang::Eng, Lang::Deu]),
        }
    }

    pub fn detect(&self, text: &str, votes: Votes, n_words: usize, hint: Option<&str>) -> Detected {
        let hint_lang = hint.map(Language::from_locale);
        let (win, lose, vote_lang) = if votes.en >= votes.de {
            (votes.en, votes.de, Language::En)
        } else {
            (votes.de, votes.en, Language::De)
        };
        let vote_str = || {
            Line::new()
                .s("votes en ")
                .int(votes.en)
                .s(":")
                .int(votes.de)
                .s(" de")
                .done()
        };

        // No words at all (emoji only, empty): only the hint can tell.
        if n_words == 0 {
            return match hint_lang {
                Some(lang) => detected(
                    lang,
                    0.5,
                    format!("hint '{}', no words", hint.unwrap_or("")),
                ),
                None => detected(Language::Other, 0.0, "no words".into()),
            };
        }

        // 1. A clear stopword vote decides.
        if win >= 4 && win >= 3 * lose {
            let purity = win as f32 / (win + lose) as f32;
            let conf = ((0.5 + 0.06 * (win - lose) as f32) * purity).min(0.98);
            return detected(vote_lang, conf, vote_str());
        }

        // 1b. Only one side has any evidence: good enough for short texts,
        // where trigram models are unreliable anyway.
        if win >= 3 && lose == 0 && n_words <= 12 {
            return detected(vote_lang, 0.6 + 0.03 * win as f32, vote_str());
        }

        // 2. Short or undecided text: the locale hint wins.
        let short = n_words <= 3;
        if let Some(lang) = hint_lang {
            if short || win == lose {
                let agrees = win > lose && lang == vote_lang;
                let conf = if agrees { 0.75 } else { 0.6 };
                return detected(
                    lang,
                    conf,
                    format!("hint '{}', {}", hint.unwrap_or(""), vote_str()),
                );
            }
        }

        // 2b. One or two words and no hint: trigrams cannot tell either.
        if n_words <= 2 {
            return if win > lose {
                detected(vote_lang, 0.5, vote_str())
            } else {
                detected(Language::Other, 0.2, format!("too short, {}", vote_str()))
            };
        }

        // 3. Nothing English or German seen: maybe another language.
        if win == 0 && n_words >= 3 {
            if let Some(info) = whatlang::detect(text) {
                if !matches!(info.lang(), Lang::Eng | Lang::Deu) && info.confidence() >= 0.3 {
                    let conf = info.confidence() as f32;
                    return detected(
                        Language::Other,
                        conf.clamp(0.3, 0.95),
                        format!("whatlang {} {:.2}", info.lang().code(), conf),
                    );
                }
            }
        }

        // 4. whatlang restricted to EN/DE, combined with the weak vote.
        match self.en_de.detect(text) {
            Some(info) => {
                let wl_lang = if info.lang() == Lang::Deu {
                    Language::De
                } else {
                    Language::En
                };
                let wl_conf = info.confidence() as f32;
                let reason = format!(
                    "whatlang {} {:.2}, {}",
                    wl_lang.as_str(),
                    wl_conf,
                    vote_str()
                );
                if win == lose {
                    detected(wl_lang, wl_conf.clamp(0.3, 0.9), reason)
                } else if wl_lang == vote_lang {
                    detected(wl_lang, wl_conf.clamp(0.6, 0.95), reason)
                } else if text.len() > 80 && wl_conf > 0.5 {
                    detected(wl_lang, wl_conf * 0.8, reason)
                } else {
                    detected(vote_lang, 0.5, reason)
                }
            }
            // Letters of another script (whatlang knows no EN/DE there).
            None if win == 0 => match hint_lang {
                Some(lang) => detected(lang, 0.4, format!("hint '{}'", hint.unwrap_or(""))),
                None => detected(Language::Other, 0.8, "no latin-script en/de text".into()),
            },
            None => detected(vote_lang, 0.5, vote_str()),
        }
    }
}

fn detected(language: Language, confidence: f32, reason: String) -> Detected {
    Detected {
        language,
        confidence,
        reason,
    }
}

//! Tokenizer: lowercases, folds German spelling variants, splits on
//! non-alphanumerics and records sentence and clause boundaries.
//!
//! Folding maps `ä→ae, ö→oe, ü→ue, ß→ss` (and strips common Latin accents),
//! so "überhaupt"/"ueberhaupt" and "Straße"/"Strasse" become the same token.
//! Lexicons and taxonomy keywords go through the very same [`fold`], which is
//! what keeps both sides comparable.
//!
//! Emoji and ASCII emoticons (`:)`, `:-(`, `<3`) survive as tokens of their
//! own because they carry sentiment. All token text lives in one `String`
//! with byte ranges, so tokenizing costs two allocations, not one per word.

/// What a token is; decides which lookups apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    Word,
    Number,
    Emoji,
    Emoticon,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    pub start: u32,
    pub end: u32,
    pub kind: TokKind,
    /// Index of the sentence (split on `.`, `!`, `?`, newlines).
    pub sentence: u16,
    /// Running clause counter from punctuation (`,`, `;`, `:`, brackets,
    /// dashes and sentence ends). Contrast words add clauses later.
    pub clause: u16,
    /// Written in capitals ("NEVER"), at least two letters.
    pub caps: bool,
    /// Had a run of 3+ identical letters ("sooo"), already shortened to 2.
    pub elongated: bool,
    /// Byte range of the token in the input as written (case, umlauts and all), so a
    /// phrase can be shown the way customers wrote it.
    pub raw_start: u32,
    pub raw_end: u32,
}

/// A tokenized text. Reusable: [`tokenize`] clears it first.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tokens {
    /// Folded token text, tokens separated by single spaces.
    pub text: String,
    pub toks: Vec<Token>,
    /// Exclamation marks per sentence (index = sentence).
    pub exclaims: Vec<u8>,
    /// The raw text contained ä, ö, ü or ß (a hint for German).
    pub has_umlaut: bool,
    /// Every word token was in capitals (then caps carry no emphasis).
    pub all_caps: bool,
}

impl Tokens {
    #[inline]
    pub fn word(&self, i: usize) -> &str {
        let t = &self.toks[i];
        &self.text[t.start as usize..t.end as usize]
    }

    /// The folded text from token `from` to token `to` inclusive.
    pub fn span(&self, from: usize, to: usize) -> &str {
        &self.text[self.toks[from].start as usize..self.toks[to].end as usize]
    }

    pub fn len(&self) -> usize {
        self.toks.len()
    }

    pub fn sentences(&self) -> usize {
        self.toks.last().map_or(0, |t| t.sentence as usize + 1)
    }
}

/// ASCII emoticons, longest first so `:-)` wins over `:-`.
const EMOTICONS: [&str; 22] = [
    ">:-(", ":'-(", ":-))", ">:(", ":'(", ":-)", ":-(", ":-d", ":-p", ":-/", ";-)", ":))", ":((",
    ":)", ":(", ":d", ":p", ":/", ";)", "=)", "<3", "^^",
];

/// Folds one lowercase char into `out`.
#[inline]
fn push_folded(c: char, out: &mut String) {
    match c {
        'ä' => out.push_str("ae"),
        'ö' => out.push_str("oe"),
        'ü' => out.push_str("ue"),
        'ß' => out.push_str("ss"),
        'á' | 'à' | 'â' | 'ã' | 'å' => out.push('a'),
        'é' | 'è' | 'ê' | 'ë' => out.push('e'),
        'í' | 'ì' | 'î' | 'ï' => out.push('i'),
        'ó' | 'ò' | 'ô' | 'õ' => out.push('o'),
        'ú' | 'ù' | 'û' => out.push('u'),
        'ç' => out.push('c'),
        'ñ' => out.push('n'),
        _ => out.push(c),
    }
}

/// Lowercases and folds a word or phrase (used for lexicon and taxonomy
/// entries; the tokenizer does the same inline).
pub(crate) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            for l in c.to_lowercase() {
                push_folded(l, &mut out);
            }
        }
    }
    out
}

#[inline]
fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1F3FA | 0x1F400..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x2300..=0x23FF)
}

/// Invisible emoji modifiers: variation selector, zero-width joiner, skin tones.
#[inline]
fn is_emoji_modifier(c: char) -> bool {
    matches!(c as u32, 0xFE0E | 0xFE0F | 0x200D | 0x1F3FB..=0x1F3FF)
}

#[inline]
fn is_umlaut(c: char) -> bool {
    matches!(c, 'ä' | 'ö' | 'ü' | 'ß' | 'Ä' | 'Ö' | 'Ü' | 'ẞ')
}

/// Matches an emoticon at the start of `rest` (raw text, any case).
fn emoticon_at(rest: &str) -> Option<&'static str> {
    let b = rest.as_bytes();
    if !matches!(b.first(), Some(b':' | b';' | b'=' | b'<' | b'>' | b'^')) {
        return None;
    }
    EMOTICONS.into_iter().find(|e| {
        let n = e.len();
        b.len() >= n
            && b[..n].eq_ignore_ascii_case(e.as_bytes())
            // ":D" in "Hinweis:Das" or ":(" in "Tel.:(030)" is not an emoticon.
            && !b.get(n).is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

struct Builder<'o> {
    out: &'o mut Tokens,
    sentence: u16,
    clause: u16,
    pending_sentence: bool,
    pending_clause: bool,
    // current word
    in_word: bool,
    start: usize,
    raw_start: usize,
    numeric: bool,
    upper: u16,
    lower: u16,
    last: char,
    run: u8,
    elongated: bool,
    any_lower_word: bool,
}

impl Builder<'_> {
    fn begin(&mut self) {
        if self.pending_sentence && !self.out.toks.is_empty() {
            self.sentence = self.sentence.saturating_add(1);
            self.clause = self.clause.saturating_add(1);
            self.out.exclaims.push(0);
        } else if self.pending_clause && !self.out.toks.is_empty() {
            self.clause = self.clause.saturating_add(1);
        }
        self.pending_sentence = false;
        self.pending_clause = false;
        if !self.out.text.is_empty() {
            self.out.text.push(' ');
        }
    }

    fn push_token(
        &mut self,
        start: usize,
        kind: TokKind,
        caps: bool,
        elongated: bool,
        raw: (usize, usize),
    ) {
        self.out.toks.push(Token {
            start: start as u32,
            end: self.out.text.len() as u32,
            kind,
            sentence: self.sentence,
            clause: self.clause,
            caps,
            elongated,
            raw_start: raw.0 as u32,
            raw_end: raw.1 as u32,
        });
    }

    /// Adds `c`, found at byte `at` of the input, to the current word.
    fn word_char(&mut self, at: usize, c: char) {
        if !self.in_word {
            self.begin();
            self.in_word = true;
            self.start = self.out.text.len();
            self.raw_start = at;
            self.numeric = true;
            self.upper = 0;
            self.lower = 0;
            self.last = '\0';
            self.run = 0;
            self.elongated = false;
        }
        if c.is_uppercase() {
            self.upper += 1;
        } else if c.is_lowercase() {
            self.lower += 1;
        }
        if !c.is_numeric() {
            self.numeric = false;
        }
        // "sooo" -> "soo", "suuuper" -> "suuper": keep at most two in a row.
        if c == self.last && c.is_alphabetic() {
            self.run += 1;
            if self.run >= 2 {
                self.elongated = true;
                return;
            }
        } else {
            self.run = 0;
            self.last = c;
        }
        if c.is_ascii() {
            self.out.text.push(c.to_ascii_lowercase());
        } else {
            for l in c.to_lowercase() {
                push_folded(l, &mut self.out.text);
            }
        }
    }

    /// Ends the current word, if any, at byte `at` of the input.
    fn end_word(&mut self, at: usize) {
        if !self.in_word {
            return;
        }
        self.in_word = false;
        let kind = if self.numeric {
            TokKind::Number
        } else {
            TokKind::Word
        };
        let caps = self.upper >= 2 && self.lower == 0;
        if kind == TokKind::Word && !caps {
            self.any_lower_word = true;
        }
        let (start, elongated, raw_start) = (self.start, self.elongated, self.raw_start);
        self.push_token(start, kind, caps, elongated, (raw_start, at));
    }
}

/// Tokenizes `input` into `out` (cleared first).
pub(crate) fn tokenize(input: &str, out: &mut Tokens) {
    out.text.clear();
    out.toks.clear();
    out.exclaims.clear();
    out.exclaims.push(0);
    out.has_umlaut = false;
    out.all_caps = false;
    let mut b = Builder {
        out,
        sentence: 0,
        clause: 0,
        pending_sentence: false,
        pending_clause: false,
        in_word: false,
        start: 0,
        raw_start: 0,
        numeric: false,
        upper: 0,
        lower: 0,
        last: '\0',
        run: 0,
        elongated: false,
        any_lower_word: false,
    };

    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_alphanumeric() {
            if !c.is_ascii() && is_umlaut(c) {
                b.out.has_umlaut = true;
            }
            b.word_char(i, c);
            continue;
        }
        let next = chars.peek().map(|&(_, n)| n);
        // Apostrophes inside words: "don't", "gibt's".
        if (c == '\'' || c == '’') && b.in_word && next.is_some_and(char::is_alphabetic) {
            b.out.text.push('\'');
            continue;
        }
        // Decimal numbers: "4.5", "4,5".
        if (c == '.' || c == ',')
            && b.in_word
            && b.numeric
            && next.is_some_and(|n| n.is_ascii_digit())
        {
            b.out.text.push('.');
            continue;
        }
        b.end_word(i);
        if is_emoji_modifier(c) {
            continue;
        }
        if is_emoji(c) {
            b.begin();
            let start = b.out.text.len();
            b.out.text.push(c);
            b.push_token(start, TokKind::Emoji, false, false, (i, i + c.len_utf8()));
            continue;
        }
        if let Some(e) = emoticon_at(&input[i..]) {
            b.begin();
            let start = b.out.text.len();
            b.out.text.push_str(e);
            b.push_token(start, TokKind::Emoticon, false, false, (i, i + e.len()));
            for _ in 1..e.len() {
                chars.next();
            }
            continue;
        }
        match c {
            '!' => {
                let s = b.sentence as usize;
                if let Some(n) = b.out.exclaims.get_mut(s) {
                    *n = n.saturating_add(1);
                }
                b.pending_sentence = true;
            }
            '.' | '?' | '\n' | '…' | '¡' | '¿' => b.pending_sentence = true,
            ',' | ';' | ':' | '(' | ')' | '[' | ']' | '–' | '—' | '"' | '“' | '”' | '„' => {
                b.pending_clause = true
            }
            // A free-standing dash separates clauses: "ok - but slow".
            '-' if next.is_some_and(char::is_whitespace) => b.pending_clause = true,
            _ => {}
        }
    }
    b.end_word(input.len());
    let any_word = b.out.toks.iter().any(|t| t.kind == TokKind::Word);
    b.out.all_caps = any_word && !b.any_lower_word;
    let sentences = b.out.sentences().max(1);
    b.out.exclaims.truncate(sentences);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        let mut t = Tokens::default();
        tokenize(s, &mut t);
        (0..t.len()).map(|i| t.word(i).to_string()).collect()
    }

    #[test]
    fn folds_german_variants() {
        assert_eq!(words("Überhaupt nicht"), ["ueberhaupt", "nicht"]);
        assert_eq!(words("ueberhaupt"), ["ueberhaupt"]);
        assert_eq!(words("Straße STRASSE"), ["strasse", "strasse"]);
        assert_eq!(fold("Rücksendung"), "ruecksendung");
        assert_eq!(words("Café"), ["cafe"]);
    }

    #[test]
    fn keeps_emoji_and_emoticons() {
        assert_eq!(
            words("Toll :) aber 😡😡"),
            ["toll", ":)", "aber", "😡", "😡"]
        );
        assert_eq!(words("bad :-( really"), ["bad", ":-(", "really"]);
        assert_eq!(words("love it <3"), ["love", "it", "<3"]);
        assert_eq!(words("👍🏽 great"), ["👍", "great"]);
        assert_eq!(words("Hinweis:Das"), ["hinweis", "das"]);
        assert_eq!(words("12:30 Uhr"), ["12", "30", "uhr"]);
        assert_eq!(words("super :D"), ["super", ":d"]);
    }

    #[test]
    fn apostrophes_numbers_hyphens() {
        assert_eq!(words("don't DON’T"), ["don't", "don't"]);
        assert_eq!(words("E-Mail 4.5 Sterne"), ["e", "mail", "4.5", "sterne"]);
        assert_eq!(words("sooooo goooood"), ["soo", "good"]);
    }

    #[test]
    fn tokens_know_where_they_were_written() {
        let input = "Überhaupt NICHT, 4,5 :) Straße sooo don’t 👍🏽";
        let mut t = Tokens::default();
        tokenize(input, &mut t);
        let raw: Vec<&str> = t
            .toks
            .iter()
            .map(|t| &input[t.raw_start as usize..t.raw_end as usize])
            .collect();
        assert_eq!(
            raw,
            [
                "Überhaupt",
                "NICHT",
                "4,5",
                ":)",
                "Straße",
                "sooo",
                "don’t",
                "👍"
            ]
        );
    }

    #[test]
    fn sentences_clauses_and_exclamations() {
        let mut t = Tokens::default();
        tokenize("Great product, but slow!! Never again. ok", &mut t);
        let s: Vec<u16> = t.toks.iter().map(|t| t.sentence).collect();
        assert_eq!(s, [0, 0, 0, 0, 1, 1, 2]);
        let c: Vec<u16> = t.toks.iter().map(|t| t.clause).collect();
        assert_eq!(c, [0, 0, 1, 1, 2, 2, 3]);
        assert_eq!(t.exclaims, [2, 0, 0]);
        assert!(!t.has_umlaut && !t.all_caps);
        tokenize("NEVER AGAIN", &mut t);
        assert!(t.all_caps && t.toks[0].caps);
        tokenize("", &mut t);
        assert_eq!(t.len(), 0);
        assert_eq!(t.exclaims, [0]);
    }
}

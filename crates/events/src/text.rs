//! Customer text made safe to quote: one `clean` and one `excerpt` for every service
//! (categorise cuts the excerpt that travels with a theme mention, trends shows it as
//! evidence, notify quotes it back to the customer).

/// Bidirectional overrides and isolates: invisible, and able to make quoted text read
/// differently from what it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Removes control characters (and bidi overrides) and collapses runs of whitespace
/// (newlines included) to one space, so quoted text cannot break a message's layout or
/// smuggle terminal escapes into a receiver's logs.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if c.is_control() || is_bidi_control(c) {
            continue;
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// At most `max_chars` characters of the [`clean`]ed text, cut at a word when one ends
/// in the second half (never inside a character), with `…` when something was cut.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let cleaned = clean(text);
    let Some((cut, _)) = cleaned.char_indices().nth(max_chars) else {
        return cleaned;
    };
    let head = &cleaned[..cut];
    let head = match head.rfind(' ') {
        Some(space) if head[..space].chars().count() > max_chars / 2 => &head[..space],
        _ => head,
    };
    format!("{}…", head.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_controls_and_collapses_whitespace() {
        assert_eq!(clean("a\u{1b}[2Jb\u{202E}c\u{2066}d\u{0}"), "a[2Jbcd");
        assert_eq!(clean(" \t one\r\n two  "), "one two");
    }

    #[test]
    fn excerpts_cut_at_words_and_at_char_boundaries() {
        assert_eq!(excerpt("  short \n\n text ", 140), "short text");
        let cut = excerpt(&"word ".repeat(100), 30);
        assert!(cut.ends_with("word…") && cut.chars().count() <= 31, "{cut}");
        // Multi-byte characters right at the cut: byte slicing would panic here.
        let cut = excerpt(&"ä".repeat(200), 140);
        assert_eq!(cut.chars().count(), 141);
        assert!(cut.ends_with("ää…"));
        assert_eq!(
            excerpt(&"é".repeat(140), 140),
            "é".repeat(140),
            "exactly max: no cut"
        );
        assert_eq!(
            excerpt("abc def", 4),
            "abc…",
            "no space before the ellipsis"
        );
        // A long first word is cut inside rather than dropped.
        assert_eq!(excerpt("a verylongword", 8), "a verylo…");
    }
}

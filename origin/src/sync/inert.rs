//! Upstream text made safe to show and store: a provider's document is hostile input, and its
//! keys and values reach error messages, the `sync_runs` log, log lines, Sentry events and an
//! operator's terminal (`origin sync`). Each is at most [`MAX_CHARS`] characters (a 16 MiB string
//! once landed whole in all of them), and every control or bidirectional-formatting character is
//! written as an escape (`\u{1b}`), so terminal escape codes cannot clear a screen or print a
//! fake row, and no text can reorder what follows it.

/// The longest piece of upstream text kept, in characters.
pub const MAX_CHARS: usize = 160;

/// `raw`, bounded and inert.
pub fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_CHARS + 8));
    for (n, c) in raw.chars().enumerate() {
        if n == MAX_CHARS {
            out.push_str("… (cut)");
            break;
        }
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// The characters that change the direction of the text after them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_is_cut() {
        assert_eq!(text("ru"), "ru");
        assert_eq!(
            text("\u{1b}[2J\u{1b}[Happlied"),
            "\\u{1b}[2J\\u{1b}[Happlied"
        );
        assert_eq!(text("a\nb\rc\td"), "a\\u{a}b\\u{d}c\\u{9}d");
        assert_eq!(text("x\u{202e}y"), "x\\u{202e}y");
        let long = "é".repeat(10_000);
        let cut = text(&long);
        assert!(
            cut.chars().count() <= MAX_CHARS + 8,
            "{}",
            cut.chars().count()
        );
        assert!(cut.ends_with("(cut)"));
    }
}

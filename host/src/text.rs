//! Text that crosses a boundary: cut to a byte budget, and made safe to store.
//!
//! Two chores every boundary shares, each with one implementation. Four hand-written
//! truncations once meant four chances to panic inside a multi-byte character, and a NUL byte
//! in git's error text once made Postgres refuse a whole batch of attempt records.

/// Appended to text that was cut, so a reader knows there was more.
pub const ELLIPSIS: char = '…';

/// Cuts `text` to at most `max_bytes` bytes on a character boundary, marking the cut with
/// [`ELLIPSIS`] (which the budget includes). Text within the budget is left as it is.
pub fn truncate(text: &mut String, max_bytes: usize) {
    if text.len() <= max_bytes {
        return;
    }
    let budget = max_bytes.saturating_sub(ELLIPSIS.len_utf8());
    let end = floor_char_boundary(text, budget);
    text.truncate(end);
    if max_bytes >= ELLIPSIS.len_utf8() {
        text.push(ELLIPSIS);
    }
}

/// [`truncate`] for a borrowed string.
pub fn truncated(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    // Keep a character past the budget so `truncate` sees the cut and marks it.
    let mut owned = text[..floor_char_boundary(text, max_bytes + 4)].to_string();
    truncate(&mut owned, max_bytes);
    owned
}

/// The largest character boundary of `text` at or below `index`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    (0..=index).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0)
}

/// `text` as a database text column can hold it: NUL bytes (refused by Postgres) become
/// U+FFFD, and other control characters except tab and newline become spaces, so a stored
/// error renders on one screen line per line it had.
pub fn for_storage(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(needs_replacing) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| match c {
                '\0' => char::REPLACEMENT_CHARACTER,
                c if needs_replacing(c) => ' ',
                c => c,
            })
            .collect(),
    )
}

/// The most bytes clonekeeper stores in one text column (an error, a give-up reason): git
/// can print megabytes, and a row must stay small enough for any index or page.
pub const STORED_TEXT_MAX_BYTES: usize = 4096;

/// `text` ready for a database text column: [`for_storage`], then cut to
/// [`STORED_TEXT_MAX_BYTES`]. The one call the store adapters make on every text they write.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    match for_storage(text) {
        std::borrow::Cow::Borrowed(clean) if clean.len() <= STORED_TEXT_MAX_BYTES => std::borrow::Cow::Borrowed(clean),
        clean => std::borrow::Cow::Owned(truncated(&clean, STORED_TEXT_MAX_BYTES)),
    }
}

fn needs_replacing(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_on_a_char_boundary_within_the_budget() {
        let mut text = format!("x{}", "é".repeat(1500));
        truncate(&mut text, 1024);
        assert!(text.len() <= 1024, "{} bytes", text.len());
        assert!(text.ends_with(ELLIPSIS));
        assert!(text.starts_with("xé"));
    }

    #[test]
    fn truncate_leaves_short_text_alone() {
        let mut text = "héllo".to_string();
        truncate(&mut text, 6);
        assert_eq!(text, "héllo");
    }

    #[test]
    fn truncate_handles_every_budget_and_width() {
        for sample in ["a", "é", "€", "𝄞", "a€𝄞é"] {
            let source = sample.repeat(20);
            for max in 0..source.len() + 2 {
                let cut = truncated(&source, max);
                assert!(cut.len() <= max || cut == source, "{sample:?} at {max}: {} bytes", cut.len());
                if cut.len() < source.len() && max >= ELLIPSIS.len_utf8() {
                    assert!(cut.ends_with(ELLIPSIS));
                }
            }
        }
    }

    #[test]
    fn storable_cleans_and_cuts() {
        assert!(matches!(storable("plain"), std::borrow::Cow::Borrowed("plain")));
        let long = format!("bad\0{}", "é".repeat(STORED_TEXT_MAX_BYTES));
        let stored = storable(&long);
        assert!(stored.len() <= STORED_TEXT_MAX_BYTES, "{} bytes", stored.len());
        assert!(stored.starts_with("bad\u{FFFD}é") && stored.ends_with(ELLIPSIS));
    }

    #[test]
    fn for_storage_replaces_nul_and_control_characters() {
        assert_eq!(for_storage("fatal: bad\0ref\r\x1b[31m\nnext\tline"), "fatal: bad\u{FFFD}ref  [31m\nnext\tline");
        assert!(matches!(for_storage("plain text"), std::borrow::Cow::Borrowed(_)));
    }
}

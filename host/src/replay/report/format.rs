//! How the report writes a duration, a count, and text that came from outside (escaped for
//! markup, made harmless for a terminal).

use std::borrow::Cow;

/// What a milestone the replay's horizon ended before shows.
pub(super) const NOT_REACHED: &str = "not reached";

/// What a cell with nothing to say shows (a run without a top-N listing).
pub(super) const NOT_APPLICABLE: &str = "n/a";

/// A duration for a person: `12.5s` under a minute, `4m 10s` under an hour, `1h 02m` under a
/// day, `3d 04h` beyond. Units below the two shown are rounded away.
pub(super) fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return NOT_APPLICABLE.to_string();
    }
    let tenths = (secs * 10.0).round();
    if tenths < 600.0 {
        return format!("{:.1}s", tenths / 10.0);
    }
    // Saturating: a duration beyond u64 seconds is not a replay's.
    let whole = secs.round() as u64;
    if whole < 3_600 {
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else if whole < 86_400 {
        // Rounded to the minute, which can carry into the hour (`1h 59m 50s` is `2h 00m`).
        let minutes = (whole + 30) / 60;
        format!("{}h {:02}m", minutes / 60, minutes % 60)
    } else {
        let hours = (whole + 1_800) / 3_600;
        format!("{}d {:02}h", hours / 24, hours % 24)
    }
}

/// When a milestone was reached, or [`NOT_REACHED`].
pub(super) fn milestone(at_secs: Option<f64>) -> String {
    at_secs.map_or_else(|| NOT_REACHED.to_string(), duration)
}

/// A count with thousands separators: `1,234,567`.
pub(super) fn count(n: u64) -> String {
    let digits = n.to_string();
    // The first group holds 1 to 3 digits, every later one 3.
    let (head, tail) = digits.split_at(match digits.len() % 3 {
        0 => 3.min(digits.len()),
        short => short,
    });
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    out.push_str(head);
    for group in tail.as_bytes().chunks(3) {
        out.push(',');
        out.extend(group.iter().map(|b| char::from(*b)));
    }
    out
}

/// `text` safe inside XML or HTML, as element text or a quoted attribute: the five markup
/// characters become references, and characters XML 1.0 cannot hold at all (control
/// characters other than tab, newline and carriage return; U+FFFE, U+FFFF) become U+FFFD,
/// so a hostile label can neither inject markup nor make the document unparseable.
pub(super) fn escape(text: &str) -> Cow<'_, str> {
    let needs = |c: char| matches!(c, '&' | '<' | '>' | '"' | '\'') || !xml_char(c);
    if !text.contains(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if !xml_char(c) => out.push(char::REPLACEMENT_CHARACTER),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether XML 1.0 allows `c` in a document.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` safe on one terminal line: control characters (escape sequences, newlines) become
/// spaces, so a label cannot move the cursor, recolour the terminal or break a table row.
pub(super) fn terminal(text: &str) -> Cow<'_, str> {
    if !text.contains(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect())
}

/// `text` in at most `max_chars` characters (at least 3): a longer text keeps its start and its
/// end around an ellipsis, since policy labels often share a prefix and differ at the end
/// (`prioritize-by-stars-v1.wasm`, `prioritize-by-stars-v2.wasm`).
pub(super) fn shortened(text: &str, max_chars: usize) -> Cow<'_, str> {
    let max_chars = max_chars.max(3);
    let chars = text.chars().count();
    if chars <= max_chars {
        return Cow::Borrowed(text);
    }
    let tail = (max_chars - 1) / 2;
    let head = max_chars - 1 - tail;
    let mut out: String = text.chars().take(head).collect();
    out.push(crate::text::ELLIPSIS);
    out.extend(text.chars().skip(chars - tail));
    Cow::Owned(out)
}

/// How many columns `text` takes in a table: one per character (wide characters are rare in
/// labels and host names; a misaligned row is their only cost).
pub(super) fn width(text: &str) -> usize {
    text.chars().count()
}

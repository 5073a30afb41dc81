//! Rendering an error with its causes on one line, for status output and stored errors.

use std::error::Error;

/// `outer: cause: root cause`, skipping a cause whose text the previous one already holds.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

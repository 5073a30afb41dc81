//! The one host import, `log`: a module's log lines, bounded per call.
//!
//! A module chooses how often it logs and how long its text is, so every part of a line is
//! cut with [`crate::text`] and a call has a budget of lines and of bytes. The budgets are
//! checked before anything is formatted; once either is spent, the call's later lines are
//! dropped (the first drop is logged once).
//!
//! The arguments themselves are lifted out of the guest by wasmtime before the host function
//! runs, so the host holds a copy of them whatever their size. That copy is bounded by what
//! the guest could hold, which is the store's memory cap (`policy.memory_limit_mb`, summed
//! over all its memories: [`super::limits`]).

use super::bindings::{self, LogLevel};
use super::engine::{short_digest, StoreData};
use crate::text;

/// Log lines one call may write.
pub const LINES_PER_CALL: u32 = 100;
/// Bytes of text (message, keys and values) one call may write.
pub const BYTES_PER_CALL: usize = 32 << 10;
/// Longest message kept from a line.
pub const MESSAGE_MAX: usize = 1024;
/// Longest field key kept.
pub const KEY_MAX: usize = 64;
/// Longest field value kept.
pub const VALUE_MAX: usize = 512;
/// Fields kept from a line; the rest are dropped.
pub const FIELDS_MAX: usize = 16;

/// What one call may still log.
#[derive(Clone, Debug)]
pub struct LogBudget {
    lines: u32,
    bytes: usize,
    /// Whether a line was dropped (and said so) already.
    dropped: bool,
}

impl Default for LogBudget {
    fn default() -> LogBudget {
        LogBudget { lines: LINES_PER_CALL, bytes: BYTES_PER_CALL, dropped: false }
    }
}

/// A line as it is written: every part cut, keys made plain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub message: String,
    /// `key="value"` pairs, space-separated.
    pub fields: String,
}

/// Why a line was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The first line dropped in this call: say so once.
    First,
    /// Already said.
    Again,
}

impl LogBudget {
    /// The line to write, cut to fit, or why nothing is written. Checks the budgets before
    /// touching the arguments.
    pub fn admit(&mut self, message: String, fields: Vec<(String, String)>) -> Result<Line, Dropped> {
        if self.lines == 0 || self.bytes == 0 {
            let first = !std::mem::replace(&mut self.dropped, true);
            return Err(if first { Dropped::First } else { Dropped::Again });
        }
        self.lines -= 1;
        let mut message = plain_message(&message);
        text::truncate(&mut message, MESSAGE_MAX.min(self.bytes));
        self.bytes -= message.len();
        let mut written = String::new();
        for (key, value) in fields.iter().take(FIELDS_MAX) {
            if self.bytes == 0 {
                break;
            }
            let key = plain_key(&text::truncated(key, KEY_MAX));
            let value = text::truncated(value, VALUE_MAX);
            let mut field = format!("{}{key}={value:?}", if written.is_empty() { "" } else { " " });
            text::truncate(&mut field, self.bytes);
            self.bytes -= field.len();
            written.push_str(&field);
        }
        Ok(Line { message, fields: written })
    }
}

/// A message on one line: control characters (newlines included) become spaces, so a module
/// cannot forge log lines.
fn plain_message(message: &str) -> String {
    message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A key as a log field name: letters, digits, `_`, `-` and `.`; anything else becomes `_`.
fn plain_key(key: &str) -> String {
    let key: String =
        key.chars().map(|c| if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect();
    if key.is_empty() {
        "_".to_string()
    } else {
        key
    }
}

impl bindings::clonekeeper::policy::log::Host for StoreData {
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        let (module, digest) = (&*self.module, short_digest(&self.digest));
        let line = match self.log_budget.admit(message, fields) {
            Ok(line) => line,
            Err(Dropped::First) => {
                tracing::debug!(module, digest, "Policy log budget of this call spent; dropping its further lines.");
                return;
            }
            Err(Dropped::Again) => return,
        };
        let (message, fields) = (line.message, line.fields.as_str());
        let level = if self.demote_logs { LogLevel::Debug } else { level };
        match level {
            LogLevel::Debug => tracing::debug!(module, digest, fields, "Policy: {message}"),
            LogLevel::Info => tracing::info!(module, digest, fields, "Policy: {message}"),
            LogLevel::Warn => tracing::warn!(module, digest, fields, "Policy: {message}"),
            LogLevel::Error => tracing::error!(module, digest, fields, "Policy: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(key: &str, value: &str) -> (String, String) {
        (key.to_string(), value.to_string())
    }

    #[test]
    fn every_part_of_a_line_is_cut_on_a_char_boundary() {
        let mut budget = LogBudget::default();
        let long = "é".repeat(5000);
        let fields: Vec<(String, String)> = (0..100).map(|i| field(&format!("{long}{i}"), &long)).collect();
        let line = budget.admit(long.clone(), fields).expect("within budget");
        assert!(line.message.len() <= MESSAGE_MAX && line.message.ends_with(text::ELLIPSIS));
        let pairs: Vec<&str> = line.fields.split("\" ").collect();
        assert_eq!(pairs.len(), FIELDS_MAX, "fields are capped: {}", line.fields.len());
        for pair in pairs {
            let (key, value) = pair.split_once('=').expect("key=value");
            assert!(key.len() <= KEY_MAX, "key of {} bytes", key.len());
            assert!(value.len() <= VALUE_MAX + 16, "value of {} bytes", value.len());
        }
    }

    #[test]
    fn keys_and_messages_cannot_forge_lines() {
        let mut budget = LogBudget::default();
        let line = budget.admit("one\ntwo\r\x1b[31m".to_string(), vec![field("a b\n=c", "v\nw")]).expect("admitted");
        assert_eq!(line.message, "one two  [31m");
        assert_eq!(line.fields, r#"a_b__c="v\nw""#);
    }

    #[test]
    fn a_call_has_a_budget_of_bytes_as_well_as_lines() {
        let mut budget = LogBudget::default();
        let big = "x".repeat(MESSAGE_MAX);
        let fields: Vec<(String, String)> = (0..FIELDS_MAX).map(|i| field(&format!("k{i}"), &big)).collect();
        let mut written = 0;
        let mut lines = 0;
        while let Ok(line) = budget.admit(big.clone(), fields.clone()) {
            written += line.message.len() + line.fields.len();
            lines += 1;
        }
        assert!(lines < LINES_PER_CALL, "the bytes ran out first ({lines} lines)");
        assert!(written <= BYTES_PER_CALL, "{written} bytes written");
        assert_eq!(budget.admit("more".to_string(), Vec::new()), Err(Dropped::Again), "said once");

        let mut budget = LogBudget::default();
        for _ in 0..LINES_PER_CALL {
            budget.admit("short".to_string(), Vec::new()).expect("within budget");
        }
        assert_eq!(budget.admit("one too many".to_string(), Vec::new()), Err(Dropped::First));
    }
}

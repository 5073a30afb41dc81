//! Errors of gitserver calls, each naming the shard and the call.

use std::error::Error as _;

/// A failed call to one shard (or to repo-updater).
#[derive(Debug, Clone, thiserror::Error)]
#[error("gitserver {addr}: {call}: {kind}")]
pub struct GitserverError {
    pub addr: String,
    pub call: &'static str,
    pub kind: CallError,
}

impl GitserverError {
    pub fn new(addr: &str, call: &'static str, kind: CallError) -> GitserverError {
        GitserverError { addr: addr.to_string(), call, kind }
    }
}

/// What went wrong in a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The shard could not be reached at all.
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Transport(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("answer larger than {limit} bytes, refused")]
    TooLarge { limit: usize },
    #[error("answer is not the expected JSON: {0}")]
    Decode(String),
}

impl CallError {
    /// reqwest hides the useful part ("connection refused") in its source chain.
    pub fn transport(error: &reqwest::Error) -> CallError {
        let mut text = if error.is_timeout() { "timed out".to_string() } else { error.without_url_string() };
        let mut source = error.source();
        while let Some(inner) = source {
            let inner_text = inner.to_string();
            if !text.contains(&inner_text) {
                text = format!("{text}: {inner_text}");
            }
            source = inner.source();
        }
        if error.is_connect() {
            CallError::Connect(text)
        } else {
            CallError::Transport(text)
        }
    }

    /// Whether the failure says the shard itself is down (rather than this one call or repo
    /// failing): it could not be reached or answered with a server error.
    pub fn is_shard_down(&self) -> bool {
        match self {
            CallError::Connect(_) => true,
            CallError::Status { status, .. } => *status >= 500,
            CallError::Transport(_) | CallError::TooLarge { .. } | CallError::Decode(_) => false,
        }
    }
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut plain = String::new();
        if self.is_connect() {
            plain.push_str("connect failed");
        } else if self.is_body() || self.is_decode() {
            plain.push_str("reading the answer failed");
        } else {
            plain.push_str("request failed");
        }
        plain
    }
}

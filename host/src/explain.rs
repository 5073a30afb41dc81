//! Answers of the admin API's per-repo and queue calls: serialisable boundary types.

use serde::{Deserialize, Serialize};

/// "Why is this repo not cloned?" in one document (`GET /v1/repos/{name}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Explain {
    /// The name in gitserver's normal form.
    pub name: String,
    /// Whether the repo DB wants it (`deleted_at IS NULL`).
    pub desired: bool,
    pub repo_id: Option<i64>,
    /// The shard that owns it under the configured routing.
    pub shard: Option<String>,
    /// cloned, cloning, uncloned, failed or unknown (not desired: none).
    pub state: Option<String>,
    /// Shards whose last list holds it (more than the owner means misplaced copies).
    pub listed_on: Vec<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<String>,
    pub next_attempt_at: Option<String>,
    /// Waiting for `next_attempt_at`.
    pub backing_off: bool,
    /// Why the retry policy gave up, if it did.
    pub gave_up: Option<String>,
    pub in_flight: bool,
    /// Place in the dispatch queue (0 = next), if queued.
    pub queue_position: Option<u64>,
    /// The last prioritisation of this repo, if it was due in the last tick.
    pub last_decision: Option<Decision>,
    /// Whether dispatches to the owning shard are paused because it is failing, until when.
    pub shard_paused_until: Option<String>,
    /// The repo DB row's problem, if it has one (e.g. no clone URL).
    pub problem: Option<String>,
    /// The rate limit on its code host, when one is in force: a queued repo may wait on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<LimitNote>,
    /// What each module in shadow mode answered for it in its last evaluation (among the
    /// first 10,000 queued repos).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<ShadowDecision>,
}

/// A shadow module's answer for one repo, beside the serving decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowDecision {
    /// The module's name.
    pub module: String,
    /// sha256 of the module.
    pub digest: String,
    /// `score 12.5` or `not now`.
    pub decision: String,
    /// Its place in the shadow's order (0 = first), against `queue_position` in the serving one.
    pub position: u64,
}

/// A policy decision as recorded for explain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// `prioritize`.
    pub interface: String,
    /// `score 12.5` or `not now`.
    pub decision: String,
    /// sha256 of the module that decided, or `builtin`.
    pub module: String,
    /// Why, in a sentence: the module's own (contract 0.2.1 `explain`), or the built-in order's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

/// One line of `GET /v1/queue`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub position: u64,
    pub name: String,
    pub shard: String,
    pub state: String,
    pub attempts: u32,
    pub score: f64,
    pub module: String,
}

/// A rate limit in force on a repo's code host, and why.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitNote {
    /// `code host github.com`.
    pub key: String,
    /// `5000/h, burst 10`.
    pub limit: String,
    /// sha256 of the module that set it.
    pub module: String,
    /// The module's sentence (contract 0.2.1 `explain-limits`), when it can say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

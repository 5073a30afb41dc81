//! The status document: what `/v1/status` serves and `clonekeeper status` prints.
//!
//! This is a serialisable boundary type; the core's [`Counts`] is converted into it here, so
//! the core never derives `Serialize`.

use serde::{Deserialize, Serialize};

use crate::reconcile::Counts;

/// Counts of repos by state, for one shard or in total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    pub desired: u64,
    pub cloned: u64,
    pub cloning: u64,
    pub uncloned: u64,
    pub failed: u64,
    pub orphaned: u64,
    pub queued: u64,
    pub in_flight: u64,
    /// Not cloned and waiting for a backoff deadline (part of `uncloned` or `failed`).
    pub backing_off: u64,
    /// Owned by a shard that has never answered a list call.
    pub unknown: u64,
    /// Cloned on a shard that does not own them (after the address list changed).
    pub misplaced: u64,
    /// RFC 3339 `created_at` of the oldest desired repo that is not cloned.
    pub oldest_uncloned_created_at: Option<String>,
}

impl From<&Counts> for StateCounts {
    fn from(c: &Counts) -> StateCounts {
        StateCounts {
            desired: c.desired,
            cloned: c.cloned,
            cloning: c.cloning,
            uncloned: c.uncloned,
            failed: c.failed,
            orphaned: c.orphaned,
            queued: c.queued,
            in_flight: c.in_flight,
            backing_off: c.backing_off,
            unknown: c.unknown,
            misplaced: c.misplaced,
            oldest_uncloned_created_at: c.oldest_uncloned_created_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// One shard's line in the status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStatus {
    pub addr: String,
    /// Whether the last list call succeeded.
    pub reachable: bool,
    /// Why the last list call failed.
    pub error: Option<String>,
    /// When the shard's observation still running started, if a tick found it unfinished:
    /// the shard is late and its last answer is in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_since: Option<String>,
    #[serde(flatten)]
    pub counts: StateCounts,
}

/// Dispatch outcomes since this process started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchTotals {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Dispatches of a repo that had been dispatched before (retries, lost clones).
    pub redispatched: u64,
}

/// The whole status document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `single` (no `[ha]`), `leader` or `follower`; a follower's counts are empty.
    #[serde(default)]
    pub role: String,
    /// The leader epoch this replica leads as (`[ha]` leaders only).
    #[serde(default)]
    pub epoch: Option<i64>,
    #[serde(flatten)]
    pub totals: StateCounts,
    pub shards: Vec<ShardStatus>,
    /// Completed ticks since start; tests and tools wait on it.
    pub ticks: u64,
    pub last_tick_at: Option<String>,
    /// The repo DB's schema shape, once detected.
    pub repo_db_shape: Option<String>,
    /// Why the last read of the repo DB failed (the tick used the last good read).
    pub repo_db_error: Option<String>,
    /// Why the last write-back failed, if enabled.
    pub writeback_error: Option<String>,
    pub dispatches: DispatchTotals,
    /// A sample of problems found in the last tick (rows without clone URL, …).
    pub problems: Vec<String>,
    /// A sample of orphans: `shard addr: name`.
    pub orphans: Vec<String>,
    /// Policy modules: loaded ones by name, then rejected ones.
    #[serde(default)]
    pub policies: Vec<PolicyStatus>,
    /// Attempt records the state DB refused (set aside so the others were written).
    #[serde(default)]
    pub state_refused: RefusedRecords,
    /// Write-back rows the repo DB refused (set aside; retried by the next write-back).
    #[serde(default)]
    pub writeback_refused: RefusedRecords,
}

/// Records a database refused since this process started: how many, and the latest few.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRecords {
    pub total: u64,
    /// The most recent refusals, one per repo: `name: the database's message`.
    pub sample: Vec<String>,
}

/// One policy module's line in the status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// The file name without `.wasm`.
    pub name: String,
    /// The file's path.
    pub file: String,
    /// sha256 of the module, lower-case hex.
    pub digest: String,
    /// The interfaces it implements (`prioritize`, `rate-limits`, `reenqueue`, `lifecycle`).
    pub interfaces: Vec<String>,
    /// The `repo-batch` columns its `prioritize` reads (empty without `prioritize`).
    #[serde(default)]
    pub columns: Vec<String>,
    /// The decision interfaces it answers now (first by file name among those implementing it).
    #[serde(default)]
    pub serving: Vec<String>,
    /// RFC 3339; none for a rejected module.
    pub loaded_at: Option<String>,
    /// `active`, `standby` (loaded, not serving), `quarantined` or `rejected`.
    pub state: String,
    /// Why it was rejected, or its last failed call.
    pub last_error: Option<String>,
    /// RFC 3339, while quarantined.
    #[serde(default)]
    pub quarantined_until: Option<String>,
    /// Calls since it was loaded, and how many failed.
    #[serde(default)]
    pub calls: u64,
    #[serde(default)]
    pub failures: u64,
    /// For a module in shadow mode: how its order compared with the serving one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowFigures>,
}

/// A shadow module's agreement with the serving order, in the last tick it was evaluated on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowFigures {
    /// Ticks it was evaluated on since it was loaded.
    pub ticks: u64,
    /// RFC 3339: when the last evaluation finished.
    pub at: String,
    /// Queued repos it ordered (the head of the serving queue); 0 when it does not shadow
    /// prioritize.
    pub repos: u64,
    /// Spearman's rank correlation of the two orders: 1 the same order, 0 unrelated, −1
    /// reversed.
    pub rank_correlation: f64,
    /// The dispatch slots free in that tick: how many repos each order would send now.
    pub slots: u64,
    /// Share of the serving order's first `slots` repos that the shadow would also send.
    pub top_overlap: f64,
    /// Repos the shadow would have sent first that the serving order did not (at most 10).
    pub shadow_first: Vec<String>,
    /// Repos the shadow answered "not now" for.
    pub not_now: u64,
    /// Rate-limit keys compared in the last evaluation, and the limits that differ there
    /// (`github.com: shadow 3600/h, burst 10; serving none`, at most 10).
    #[serde(default)]
    pub limit_keys: u64,
    #[serde(default)]
    pub limits_differ: Vec<String>,
    /// Retry decisions compared since it was loaded, and how many differed; the latest that
    /// differed (`repo: shadow give up (…); serving retry in 30s`, at most 10).
    #[serde(default)]
    pub retries: u64,
    #[serde(default)]
    pub retries_differing: u64,
    #[serde(default)]
    pub retries_differ: Vec<String>,
    /// Wall-clock time the evaluation took, in milliseconds.
    pub took_ms: u64,
    /// Why the last evaluation failed, if it did (the figures are then the last good ones).
    pub error: Option<String>,
}

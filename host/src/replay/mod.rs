//! What-if replay: a snapshot of what a running sidecar knows ([`capture`]), replayed in
//! simulated time through the production machine with one policy after another
//! ([`engine`]), and what each policy did, side by side ([`report`]).
//!
//! The replay drives the same [`crate::machine::Machine`] the sidecar and the simulator run
//! (reconcile, scheduler, caps, rate limiters, retry handling, and the real policy host for
//! Wasm modules), so what it shows is what the module would do in production, under the
//! snapshot's caps, against a model of how long clones take.

pub mod report;

use std::collections::BTreeMap;

/// A replay of one snapshot with one or more policies: the input to [`report`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Replay {
    /// The snapshot file, as given.
    pub source: String,
    /// When the snapshot was taken (RFC 3339).
    pub taken_at: String,
    /// Desired repos in the snapshot.
    pub repos: u64,
    /// Desired repos not cloned when the snapshot was taken: what the replay clones.
    pub backlog: u64,
    /// Shard addresses, in routing order.
    pub shards: Vec<String>,
    /// How often the replayed sidecar ticks (re-reads, re-orders), in simulated seconds.
    pub tick_secs: f64,
    /// The clone-time model, in words (e.g. "observed: 1,200 clones, median 4.1 s").
    pub clone_time: String,
    /// The column and size of the top-N listing, e.g. "top 100 by stars".
    pub top: Option<String>,
    pub runs: Vec<PolicyRun>,
}

/// What one policy did in a replay.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicyRun {
    /// The policy's label: the module's file name, or `built-in`.
    pub label: String,
    /// Repos of the backlog cloned over simulated time: `(seconds since the start, cloned)` at
    /// every change, from `(0, 0)` to the last clone, non-decreasing in both.
    pub cloned: Vec<(f64, u64)>,
    /// Seconds from the start until 50, 90, 99 and 100% of the backlog was cloned; `None`
    /// when the replay's horizon ended first.
    pub milestones: [Milestone; 4],
    /// When the top-N repos (see [`Replay::top`]) were cloned.
    pub top: Option<TopCloned>,
    /// Dispatches started in each simulated minute, per code host (`github.com`): index
    /// `m` counts minute `m` from the start.
    pub per_minute_by_host: BTreeMap<String, Vec<u32>>,
    /// The same per shard address.
    pub per_minute_by_shard: BTreeMap<String, Vec<u32>>,
    /// Dispatches made (first attempts and retries).
    pub dispatches: u64,
    /// Dispatches that were a repo's second or later attempt.
    pub retries: u64,
    /// Repos the retry policy gave up on (still uncloned at the end).
    pub gave_up: u64,
    /// Ticks the replay made, and prioritizer batches answered by the built-in order instead
    /// of the module (a module that failed, timed out or answered badly).
    pub ticks: u64,
    pub fallbacks: u64,
    /// Wall-clock seconds the replay of this policy took.
    pub wall_secs: f64,
}

/// When a share of the backlog was cloned.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Milestone {
    /// 50, 90, 99 or 100.
    pub percent: u8,
    /// Simulated seconds since the start.
    pub at_secs: Option<f64>,
}

/// When the top-N repos of the backlog by the chosen column were cloned.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct TopCloned {
    /// How many repos of the backlog the top-N listing holds (N, or fewer when the backlog is
    /// smaller).
    pub n: u64,
    /// Simulated seconds until half of them, and all of them, were cloned.
    pub half_at_secs: Option<f64>,
    pub all_at_secs: Option<f64>,
}

impl PolicyRun {
    /// The largest count of dispatches in any one minute, per key, highest first.
    pub fn peaks(per_minute: &BTreeMap<String, Vec<u32>>) -> Vec<(&str, u32)> {
        let mut peaks: Vec<(&str, u32)> = per_minute
            .iter()
            .map(|(key, minutes)| (key.as_str(), minutes.iter().copied().max().unwrap_or(0)))
            .collect();
        peaks.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        peaks
    }
}

//! Prometheus metrics, all named `clonekeeper_…` and labelled by shard where that applies.
//!
//! Every number comes from the component that knows it: the per-state gauges are set from
//! the same counts `/v1/status` serves, so the two never disagree.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::Timestamp;
use crate::reconcile::Counts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    pub shard: String,
}

/// `result` label of dispatches: `succeeded` or `failed`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DispatchResult {
    succeeded,
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispatchLabels {
    pub shard: String,
    pub result: DispatchResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyEvalLabels {
    pub module: String,
    pub interface: String,
}

/// `result` label of policy loads: `loaded` or `rejected`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum LoadResult {
    loaded,
    rejected,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoadLabels {
    pub result: LoadResult,
}

/// `module` label of the shadow figures: the shadow module's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModuleLabel {
    pub module: String,
}

/// `kind` label of `clonekeeper_repo_db_reads_total`: `full` or `incremental`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabel {
    pub kind: &'static str,
}

/// `step` label of `clonekeeper_tick_step`: the tick loop's current step.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    pub step: &'static str,
}

type ShardGauge = Family<ShardLabel, Gauge>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric clonekeeper exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    desired: ShardGauge,
    cloned: ShardGauge,
    cloning: ShardGauge,
    uncloned: ShardGauge,
    unknown: ShardGauge,
    failed: ShardGauge,
    orphaned: ShardGauge,
    queued: ShardGauge,
    in_flight: ShardGauge,
    backing_off: ShardGauge,
    oldest_uncloned_age: Family<ShardLabel, Gauge<f64, AtomicU64>>,
    shard_up: ShardGauge,
    pub repo_db_up: Gauge,
    pub dispatches: Family<DispatchLabels, Counter>,
    pub clone_duration: Family<ShardLabel, Histogram>,
    pub tick_duration: Histogram,
    pub ticks: Counter,
    pub policy_eval: Family<PolicyEvalLabels, Histogram>,
    pub policy_loads: Family<LoadLabels, Counter>,
    pub policy_fallbacks: Counter,
    /// Set by [`crate::liveness::Liveness`].
    pub last_tick_completed: FloatGauge,
    pub last_repo_db_read: FloatGauge,
    pub stall_after_seconds: FloatGauge,
    pub tick_step: Family<StepLabel, Gauge>,
    /// 1 while this replica dispatches (the leader, or the only replica), 0 while it follows.
    pub leader: Gauge,
    pub state_records_refused: Counter,
    pub writeback_records_refused: Counter,
    /// Successful reads of the desired set, full or incremental.
    pub repo_db_reads: Family<ReadLabel, Counter>,
    /// How long each successful read took, from its first statement to the routed snapshot:
    /// the largest wait on the outside world in a full tick.
    pub repo_db_read_duration: Family<ReadLabel, Histogram>,
    /// Names asked about in `/repo-clone-progress` calls.
    pub progress_names: Counter,
    /// Per shadow module, its agreement with the serving order in its last evaluated tick.
    pub shadow_rank_correlation: Family<ModuleLabel, FloatGauge>,
    pub shadow_top_overlap: Family<ModuleLabel, FloatGauge>,
    /// Ticks each shadow evaluated (and failed to).
    pub shadow_ticks: Family<ModuleLabel, Counter>,
    pub shadow_failures: Family<ModuleLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("clonekeeper");
        let mut gauge = |name: &str, help: &str| {
            let family = ShardGauge::default();
            registry.register(name, help, family.clone());
            family
        };
        let desired = gauge("desired", "Desired repos (deleted_at IS NULL) owned by the shard");
        let cloned = gauge("cloned", "Desired repos listed as cloned by their owning shard");
        let cloning = gauge("cloning", "Desired repos being cloned (reported by the shard or dispatched)");
        let uncloned = gauge("uncloned", "Desired repos not cloned that never failed");
        let unknown = gauge("unknown", "Desired repos owned by a shard that has never answered a list call");
        let failed = gauge("failed", "Desired repos not cloned whose last dispatch failed");
        let orphaned = gauge("orphaned", "Repos cloned on the shard that are not desired");
        let queued = gauge("queued", "Repos due and waiting for a dispatch slot");
        let in_flight = gauge("in_flight", "Dispatches in flight");
        let backing_off = gauge("backing_off", "Repos waiting for a retry deadline");
        let shard_up = gauge("shard_up", "1 if the shard's last list call succeeded, else 0");
        let oldest_uncloned_age = Family::<ShardLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "oldest_uncloned_age_seconds",
            "Age (since repo.created_at) of the oldest desired repo the shard has not cloned; 0 when none",
            oldest_uncloned_age.clone(),
        );
        let repo_db_up = Gauge::default();
        registry.register("repo_db_up", "1 if the last read of the repo DB succeeded, else 0", repo_db_up.clone());
        let dispatches = Family::<DispatchLabels, Counter>::default();
        registry.register("dispatches", "Dispatches finished, by shard and result", dispatches.clone());
        let clone_duration =
            Family::<ShardLabel, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.1, 2.0, 16)));
        registry.register("clone_duration_seconds", "Duration of successful dispatches", clone_duration.clone());
        let tick_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "tick_duration_seconds",
            "Duration of one tick: its reads of the repo DB and the shards, and the decisions on them, up to the dispatches it starts",
            tick_duration.clone(),
        );
        let ticks = Counter::default();
        registry.register("ticks", "Ticks completed", ticks.clone());
        let policy_eval = Family::<PolicyEvalLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register("policy_eval_seconds", "Duration of one policy call", policy_eval.clone());
        let policy_loads = Family::<LoadLabels, Counter>::default();
        registry.register("policy_loads", "Policy modules loaded or rejected", policy_loads.clone());
        let policy_fallbacks = Counter::default();
        registry.register(
            "policy_fallbacks",
            "Policy calls answered by a fallback (last good module or built-in)",
            policy_fallbacks.clone(),
        );
        let shadow_rank_correlation = Family::<ModuleLabel, FloatGauge>::default();
        registry.register(
            "shadow_rank_correlation",
            "Spearman rank correlation of a shadow module's order with the serving order, last evaluated tick",
            shadow_rank_correlation.clone(),
        );
        let shadow_top_overlap = Family::<ModuleLabel, FloatGauge>::default();
        registry.register(
            "shadow_top_overlap",
            "Share of the repos the serving order would dispatch into the free slots that the shadow would too",
            shadow_top_overlap.clone(),
        );
        let shadow_ticks = Family::<ModuleLabel, Counter>::default();
        registry.register("shadow_ticks", "Ticks a shadow module was evaluated on", shadow_ticks.clone());
        let shadow_failures = Family::<ModuleLabel, Counter>::default();
        registry.register(
            "shadow_failures",
            "Ticks a shadow module's evaluation failed (a call failed, or its budget ran out)",
            shadow_failures.clone(),
        );
        let last_tick_completed = FloatGauge::default();
        registry.register(
            "last_tick_completed_timestamp_seconds",
            "Unix time the last tick completed; 0 before the first",
            last_tick_completed.clone(),
        );
        let last_repo_db_read = FloatGauge::default();
        registry.register(
            "last_repo_db_read_timestamp_seconds",
            "Unix time of the last successful read of the desired repos; 0 before the first",
            last_repo_db_read.clone(),
        );
        let stall_after_seconds = FloatGauge::default();
        registry.register(
            "stall_after_seconds",
            "[sync] stall_after: how long without a completed tick or repo DB read counts as a stall",
            stall_after_seconds.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica dispatches (the [ha] leader, or the only replica), 0 while it follows",
            leader.clone(),
        );
        let tick_step = Family::<StepLabel, Gauge>::default();
        registry.register("tick_step", "1 for the step the tick loop is in now, 0 for the others", tick_step.clone());
        let state_records_refused = Counter::default();
        registry.register(
            "state_records_refused",
            "Attempt records the state DB refused and that were set aside",
            state_records_refused.clone(),
        );
        let writeback_records_refused = Counter::default();
        registry.register(
            "writeback_records_refused",
            "Write-back rows the repo DB refused and that were set aside",
            writeback_records_refused.clone(),
        );
        let repo_db_reads = Family::<ReadLabel, Counter>::default();
        registry.register(
            "repo_db_reads",
            "Successful reads of the desired repos: full, or incremental (the rows changed since the last read)",
            repo_db_reads.clone(),
        );
        let repo_db_read_duration = Family::<ReadLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "repo_db_read_duration_seconds",
            "Duration of one successful read of the desired repos, from its first statement to the routed snapshot",
            repo_db_read_duration.clone(),
        );
        let progress_names = Counter::default();
        registry.register(
            "progress_names",
            "Repo names asked about in /repo-clone-progress calls (every missing repo in a sweep, else only those whose answer can change a decision)",
            progress_names.clone(),
        );
        Metrics {
            registry,
            repo_db_reads,
            repo_db_read_duration,
            progress_names,
            last_tick_completed,
            last_repo_db_read,
            stall_after_seconds,
            tick_step,
            leader,
            desired,
            cloned,
            cloning,
            uncloned,
            unknown,
            failed,
            orphaned,
            queued,
            in_flight,
            backing_off,
            oldest_uncloned_age,
            shard_up,
            repo_db_up,
            dispatches,
            clone_duration,
            tick_duration,
            ticks,
            policy_eval,
            policy_loads,
            policy_fallbacks,
            state_records_refused,
            writeback_records_refused,
            shadow_rank_correlation,
            shadow_top_overlap,
            shadow_ticks,
            shadow_failures,
        }
    }
}

impl Metrics {
    /// Sets the per-shard gauges from the counts the status document also serves.
    pub fn record_shard(&self, shard: &str, counts: &Counts, now: Timestamp) {
        let label = ShardLabel { shard: shard.to_string() };
        let set = |family: &ShardGauge, value: u64| {
            family.get_or_create(&label).set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set(&self.desired, counts.desired);
        set(&self.cloned, counts.cloned);
        set(&self.cloning, counts.cloning);
        set(&self.uncloned, counts.uncloned);
        set(&self.unknown, counts.unknown);
        set(&self.failed, counts.failed);
        set(&self.orphaned, counts.orphaned);
        set(&self.queued, counts.queued);
        set(&self.in_flight, counts.in_flight);
        set(&self.backing_off, counts.backing_off);
        set(&self.shard_up, u64::from(counts.reachable));
        let age = counts.oldest_uncloned_created_at.map_or(0.0, |created| now.since(created).as_secs_f64());
        self.oldest_uncloned_age.get_or_create(&label).set(age);
    }

    /// The OpenMetrics text format, which Prometheus asks for.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The classic Prometheus text format (0.0.4), for scrapers and tools that do not ask for
    /// OpenMetrics (`promtool check metrics`, older agents). The two differ only in metadata:
    /// classic names a counter's HELP/TYPE with its `_total` suffix and has no `# UNIT` or
    /// `# EOF` lines.
    pub fn encode_classic(&self) -> String {
        let open = self.encode();
        let counters: std::collections::HashSet<&str> =
            open.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
        let mut out = String::with_capacity(open.len());
        for line in open.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let meta = line
                .strip_prefix("# HELP ")
                .map(|r| ("# HELP ", r))
                .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
            match meta {
                Some((kind, rest)) => {
                    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    let name = if counters.contains(name) { format!("{name}_total") } else { name.to_string() };
                    out.push_str(&format!("{kind}{name} {tail}\n"));
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

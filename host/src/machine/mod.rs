//! The sidecar's decisions as a state machine, in the style of quinn-proto: observations,
//! dispatch outcomes and operator requests go in together with the time they happen; commands
//! come out (store an attempt record, forget one, make a dispatch). No I/O, no clock, no
//! runtime.
//!
//! `sidecar` is the production shell around it: it reads the clock, observes the repo DB and
//! the shards, performs the commands and publishes the status. The simulator (`sim/`) drives
//! this same code on simulated time, with simulated shards, repo DB, policies and crashes, so
//! what it checks is what runs in production.
//!
//! **Invariants.**
//! - A failed read keeps the last good state: a repo DB error reuses the last desired set, an
//!   unreachable or late shard its last list and its last cloning list (`shard_views.rs`).
//!   Nothing is ever treated as empty because it failed.
//! - A repo is dispatched only through [`Scheduler::poll_dispatch`], so never twice at once.
//! - Commands come out in the order the machine made them. The shell hands every record to one
//!   writer in that order, so an older record never overwrites a newer one; a dispatch carries
//!   its started record, which the shell stores before it makes the call.

mod decision_log;
mod dispatching;
mod explain;
mod input;
mod loads;
mod lost;
mod progress;
mod shard_views;
mod status;
mod tick;
mod writeback;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub use decision_log::LoggedDecision;
pub use explain::OwnedCandidate;
pub use input::{Observation, ShardAnswer, ShardObservation, Snapshot, PARALLEL_FROM};
pub use lost::LOST;
pub use progress::ProgressScope;

use crate::config::Config;
use crate::dispatch::Dispatch;
use crate::model::{AttemptRecord, DesiredRepo, RepoName, Timestamp};
use crate::reconcile::Plan;
use crate::routing::ShardMap;
use crate::schedule::{Backoff, Limits, Prioritizer, RateLimitPolicy, RetryPolicy, Scheduler};
use crate::status::DispatchTotals;
use shard_views::ShardViews;

/// Repos per prioritizer call.
const PRIORITIZE_BATCH: usize = 10_000;
/// Dispatch outcomes kept for snapshots: enough to learn how long clones take, bounded.
const RECENT_CLONES: usize = 10_000;
/// Retry decisions kept for shadow modules between two of their evaluations.
const RETRY_CASES: usize = 100;

/// What the machine needs of the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub shards: ShardMap,
    pub limits: Limits,
    /// The tick interval: a successful dispatch is confirmed by a list within two of them.
    pub interval: Duration,
    /// Used when the retry policy gives no answer for a failure.
    pub backoff: Backoff,
    /// How often every repo missing from a shard's list is asked about (a progress sweep).
    pub full_interval: Duration,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            shards: config.shards.clone(),
            limits: config.limits,
            interval: config.interval,
            backoff: config.backoff,
            full_interval: config.full_interval,
        }
    }
}

/// The three policy seams the machine asks: order, retries and rate limits.
#[derive(Clone)]
pub struct Policies {
    pub prioritizer: Arc<dyn Prioritizer>,
    pub retry: Arc<dyn RetryPolicy>,
    pub rate_limits: Arc<dyn RateLimitPolicy>,
}

/// Something the shell must do, in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Store this attempt record (the latest one for a repo wins).
    Save { name: RepoName, record: AttemptRecord },
    /// The repo is confirmed cloned: its record is no longer needed.
    Forget { name: RepoName },
    /// Store `record` (the started attempt), then make the call and report its
    /// [`Outcome`](crate::dispatch::Outcome) through [`Machine::handle_outcomes`].
    Dispatch { dispatch: Dispatch, record: AttemptRecord },
}

/// How one dispatch ended: what a snapshot tells a replay about how long clones take here
/// (`/repo-update` blocks while gitserver clones, so a successful dispatch's duration is the
/// clone's).
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedClone {
    pub name: RepoName,
    pub shard: crate::model::ShardIdx,
    pub finished_at: Timestamp,
    pub took: Duration,
    pub succeeded: bool,
}

/// What the rate-limit policy was asked in a tick, and what it answered.
#[derive(Clone, Debug)]
pub struct LimitsAsked {
    pub loads: Vec<crate::schedule::KeyLoad>,
    pub limits: Vec<(crate::schedule::LimitKey, crate::schedule::RateLimit)>,
    /// The digest of the module that answered, or `builtin`.
    pub decided_by: Arc<str>,
}

/// A failure the retry policy decided, with what it was told.
#[derive(Clone, Debug)]
pub struct RetryCase {
    pub name: RepoName,
    /// The record as the policy saw it (before its decision).
    pub record: AttemptRecord,
    pub repo: Option<DesiredRepo>,
    pub shard: crate::model::ShardIdx,
    /// `failed` (a dispatch failed) or `lost` (a confirmed clone never showed).
    pub state: crate::reconcile::RepoState,
    /// The `now` the policy was asked at.
    pub decided_at: Timestamp,
    pub decision: crate::schedule::RetryDecision,
}

/// The head of a tick's queue, as [`Machine::queued_head`] gives it.
pub struct QueuedHead {
    pub snapshot: Arc<Snapshot>,
    /// Desired index, state and attempt record, in serving order.
    pub repos: Vec<(u32, crate::reconcile::RepoState, Option<AttemptRecord>)>,
}

impl QueuedHead {
    /// The repos as a prioritizer's candidates.
    pub fn candidates(&self) -> Vec<crate::schedule::Candidate<'_>> {
        self.repos
            .iter()
            .filter_map(|(idx, state, record)| {
                let repo = self.snapshot.desired.repos.get(*idx as usize)?;
                let shard = *self.snapshot.routes.get(*idx as usize)?;
                Some(crate::schedule::Candidate { repo, shard, state: *state, record: record.as_ref() })
            })
            .collect()
    }
}

/// What one tick decided, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Repos queued for dispatch.
    pub due: usize,
    /// Repos the prioritizer answered "not now" for.
    pub deferred: u64,
    /// Prioritizer batches answered by the built-in order instead.
    pub fallbacks: u64,
}

/// The loop's state and decisions. See the module documentation.
pub struct Machine {
    settings: Settings,
    policies: Policies,
    scheduler: Scheduler,
    attempts: HashMap<RepoName, AttemptRecord>,
    snapshot: Arc<Snapshot>,
    /// Each shard's last answer, kept through failed and late reads.
    shards: ShardViews,
    plan: Plan,
    totals: DispatchTotals,
    ticks: u64,
    last_tick_at: Option<Timestamp>,
    /// When the last progress sweep was handed out (`progress.rs`).
    last_sweep_at: Option<Timestamp>,
    repo_db_error: Option<String>,
    /// Repos dispatched at least once by this process, to count re-dispatches.
    dispatched_before: HashSet<RepoName>,
    /// The row of each repo in flight, for the retry policy's view of it when it fails.
    in_flight_repos: HashMap<RepoName, DesiredRepo>,
    /// The last prioritisation of each queued repo (by desired index): score and module.
    decisions: hashbrown::HashMap<u32, (f64, Arc<str>)>,
    /// Retry and rate-limit decisions not yet taken by the shell's decision log.
    decision_log: decision_log::DecisionLog,
    /// The last [`RECENT_CLONES`] dispatch outcomes, oldest first.
    recent_clones: VecDeque<ObservedClone>,
    /// The last tick's queue, by desired index, in serving order (for shadow modules).
    last_order: Arc<[u32]>,
    /// The loads the last tick gave the rate-limit policy and the limits it answered.
    last_limits: Option<Arc<LimitsAsked>>,
    /// The last [`RETRY_CASES`] failures the retry policy decided, not yet taken by the shell.
    retry_cases: VecDeque<RetryCase>,
    commands: VecDeque<Command>,
}

impl Machine {
    /// Starts from the stored attempt records. A record still marked in flight was
    /// interrupted by a stop: the attempt counts, and the next observation decides whether
    /// gitserver finished it; the cleared record is the first command.
    pub fn new(settings: Settings, policies: Policies, mut attempts: HashMap<RepoName, AttemptRecord>) -> Machine {
        let mut commands = VecDeque::new();
        let mut interrupted: Vec<(&RepoName, &mut AttemptRecord)> =
            attempts.iter_mut().filter(|(_, r)| r.in_flight).collect();
        interrupted.sort_by(|a, b| a.0.cmp(b.0));
        for (name, record) in interrupted {
            record.in_flight = false;
            commands.push_back(Command::Save { name: name.clone(), record: record.clone() });
        }
        Machine {
            scheduler: Scheduler::new(settings.shards.len(), settings.limits),
            shards: ShardViews::new(settings.shards.len()),
            settings,
            policies,
            attempts,
            snapshot: Arc::new(Snapshot::default()),
            plan: Plan::default(),
            totals: DispatchTotals::default(),
            ticks: 0,
            last_tick_at: None,
            last_sweep_at: None,
            repo_db_error: None,
            dispatched_before: HashSet::new(),
            in_flight_repos: HashMap::new(),
            decisions: hashbrown::HashMap::new(),
            decision_log: decision_log::DecisionLog::default(),
            recent_clones: VecDeque::new(),
            last_order: Arc::from(Vec::new()),
            last_limits: None,
            retry_cases: VecDeque::new(),
            commands,
        }
    }

    /// The next command to perform: records first, in the order they were made, then as many
    /// dispatches as the caps, pauses and rate limits allow at `now`. Call until `None` after
    /// every input.
    pub fn poll_command(&mut self, now: Timestamp) -> Option<Command> {
        self.commands.pop_front().or_else(|| self.poll_dispatch(now))
    }

    /// When [`Machine::poll_command`] may have a dispatch without any other input: a backoff,
    /// a shard pause or a rate limit ends.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.scheduler.poll_timeout()
    }

    /// The desired set the last good repo DB read gave (empty before the first).
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The last tick's plan: every desired repo's state and the per-shard counts.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The attempt records as the machine knows them (the writer may lag behind).
    pub fn attempts(&self) -> &HashMap<RepoName, AttemptRecord> {
        &self.attempts
    }

    /// Repos with a dispatch made and no outcome yet.
    pub fn in_flight(&self) -> impl Iterator<Item = &RepoName> {
        self.scheduler.in_flight()
    }

    /// Ticks completed by this machine.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Why the last repo DB read failed, while the last good desired set is in use.
    pub fn repo_db_error(&self) -> Option<&str> {
        self.repo_db_error.as_deref()
    }

    /// The last tick's prioritisation of each queued repo: name, score and deciding module.
    pub fn decisions(&self) -> impl Iterator<Item = (&str, f64, &str)> {
        let repos = &self.snapshot.desired.repos;
        self.decisions
            .iter()
            .filter_map(|(&idx, (score, module))| Some((repos.get(idx as usize)?.name(), *score, &**module)))
    }

    /// The last dispatch outcomes (at most 10,000), oldest first.
    pub fn recent_clones(&self) -> &VecDeque<ObservedClone> {
        &self.recent_clones
    }

    /// The head of the last tick's queue (at most `max` repos) in serving order, as a
    /// prioritizer saw each: the input of shadow modules.
    pub fn queued_head(&self, max: usize) -> QueuedHead {
        let repos = self
            .last_order
            .iter()
            .take(max)
            .map(|&idx| {
                let state =
                    self.plan.states.get(idx as usize).copied().unwrap_or(crate::reconcile::RepoState::Uncloned);
                let record =
                    self.snapshot.desired.repos.get(idx as usize).and_then(|r| self.attempts.get(r.name())).cloned();
                (idx, state, record)
            })
            .collect();
        QueuedHead { snapshot: Arc::clone(&self.snapshot), repos }
    }

    /// The loads and limits of the last tick's rate-limit question, if it was asked.
    pub fn last_limits(&self) -> Option<Arc<LimitsAsked>> {
        self.last_limits.clone()
    }

    /// The retry decisions made since the last call (at most 100, the latest).
    pub fn take_retry_cases(&mut self) -> Vec<RetryCase> {
        self.retry_cases.drain(..).collect()
    }

    fn keep_retry_case(&mut self, case: RetryCase) {
        if self.retry_cases.len() == RETRY_CASES {
            self.retry_cases.pop_front();
        }
        self.retry_cases.push_back(case);
    }

    /// Dispatch slots free now under the per-shard and global caps, at least 1: how many
    /// repos an order sends next (when every slot is taken, the next one freed).
    pub fn free_slots(&self) -> usize {
        self.scheduler.free_slots().max(1)
    }

    /// The settings the machine runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn confirm_grace(&self) -> Duration {
        (self.settings.interval * 2).max(Duration::from_secs(1))
    }

    fn desired_index(&self, name: &str) -> Option<usize> {
        self.snapshot.desired.repos.binary_search(name).ok()
    }
}

#[cfg(test)]
mod tests;

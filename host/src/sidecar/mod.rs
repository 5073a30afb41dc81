//! The tick loop: observe → reconcile → order → dispatch, and the handling of outcomes.
//!
//! This is the only place that reads the clock and the only owner of the mutable state
//! (scheduler, attempt records, last good observations). The I/O half of a tick runs in
//! its own task ([`observe`]) so outcomes keep flowing while a big repo DB is read; the
//! decisions are made here, by the pure core.
//!
//! **Invariants.**
//! - A failed read keeps the last good state: a repo DB error reuses the last desired set, an
//!   unreachable shard its last list. Nothing is ever treated as empty because it failed.
//! - A repo is dispatched only by [`Scheduler::poll_dispatch`], so never twice at once.
//! - Every attempt is stored before its call is made; every outcome after. One writer
//!   ([`Persister`]) writes attempt records, in the order the loop made them.

mod control;
mod loads;
mod lost;
mod observe;
mod persist;
mod publish;
mod refused;
mod shard_views;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use control::ControlRequest;
pub use observe::{Observation, ShardObservation, Snapshot};
pub use persist::Persister;

use crate::config::{Config, DispatchTarget};
use crate::dispatch::{self, Dispatch, Outcome};
use crate::error_chain::error_chain;
use crate::liveness::{Liveness, Step};
use crate::metrics::{DispatchLabels, DispatchResult, ShardLabel};
use crate::model::{AttemptRecord, CloneStatus, DesiredRepo, RecordedState, RepoName, ShardIdx, Timestamp};
use crate::policy::{short_digest, PolicyHost};
use crate::reconcile::{self, Context, Plan, Problem, RepoState};
use crate::schedule::{
    self, Failure, KeyLoad, LimitKey, Prioritizer, RateLimitPolicy, RetryDecision, RetryPolicy, Scheduler,
};
use crate::sources::gitserver::GitserverClient;
use crate::sources::repo_db::{RepoDb, WriteBack};
use crate::state::StateStore;
use crate::status::{DispatchTotals, ShardStatus, StateCounts, Status};
use loads::HostLoad;
use shard_views::{ShardViews, Transition};

/// How many problems and orphans the status lists by name.
const STATUS_SAMPLE: usize = 20;
/// Repos per prioritizer call.
const PRIORITIZE_BATCH: usize = 10_000;

/// Everything the loop needs, built by `clonekeeper run` or the demo.
pub struct Parts {
    pub config: Config,
    pub repo_db: RepoDb,
    pub state: StateStore,
    pub client: GitserverClient,
    pub prioritizer: Arc<dyn Prioritizer>,
    pub retry: Arc<dyn RetryPolicy>,
    /// Rate limits per code host and per shard, asked once per tick.
    pub rate_limits: Arc<dyn RateLimitPolicy>,
    /// The policy engine behind the three seams, if one runs (for its status).
    pub policy: Option<Arc<PolicyHost>>,
}

/// The live status, swapped atomically after every change; readers never block the loop.
pub type StatusCell = Arc<ArcSwap<Status>>;

/// What the loop shares with the admin API: the status document, the metrics and the
/// loop's liveness.
#[derive(Clone, Debug)]
pub struct Shared {
    pub status: StatusCell,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub liveness: Arc<Liveness>,
}

impl Shared {
    /// `stall_after`: `[sync] stall_after`, when the loop counts as stalled.
    pub fn new(stall_after: Duration) -> Shared {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let liveness = Arc::new(Liveness::new(stall_after, Arc::clone(&metrics), Timestamp::now()));
        Shared { status: StatusCell::default(), metrics, liveness }
    }
}

impl Default for Shared {
    fn default() -> Shared {
        Shared::new(Duration::from_secs(60))
    }
}

/// Runs until `shutdown` resolves. Errors only if the attempt state cannot be loaded at start.
pub async fn run(
    parts: Parts,
    shared: Shared,
    mut control: mpsc::Receiver<ControlRequest>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), crate::state::StateError> {
    let Shared { status, metrics, liveness } = shared;
    // `/healthz` fails once this guard is dropped: the loop ended or panicked.
    let _running = liveness.loop_guard();
    let watchdog = AbortOnDrop(tokio::spawn(crate::liveness::watchdog(Arc::clone(&liveness))));
    liveness.enter(Step::StateLoad, Timestamp::now());
    let mut attempts = parts.state.load().await?;
    liveness.enter(Step::Idle, Timestamp::now());
    let (persister, writer) = Persister::start(parts.state.clone(), &metrics, Some(Arc::clone(&liveness)));
    // A record still marked in flight was interrupted by a stop; the next observation decides
    // whether gitserver finished it. The attempt itself still counts.
    for (name, record) in attempts.iter_mut().filter(|(_, r)| r.in_flight) {
        record.in_flight = false;
        persister.save(name.clone(), record.clone());
    }
    tracing::info!(records = attempts.len(), "Loaded attempt state.");

    let parts = Arc::new(parts);
    let mut sidecar = Sidecar {
        scheduler: Scheduler::new(parts.config.shards.len(), parts.config.limits),
        attempts,
        snapshot: Arc::new(Snapshot::default()),
        shards: ShardViews::new(parts.config.shards.len()),
        plan: Plan::default(),
        persister,
        status,
        totals: DispatchTotals::default(),
        ticks: 0,
        last_tick_at: None,
        repo_db_error: None,
        writeback_error: Arc::new(ArcSwap::from_pointee(None)),
        writeback: None,
        dispatched_before: HashSet::new(),
        in_flight_repos: HashMap::new(),
        decisions: HashMap::new(),
        metrics,
        liveness: Arc::clone(&liveness),
        parts: Arc::clone(&parts),
    };
    let sources = Arc::new(observe::Sources {
        repo_db: parts.repo_db.clone(),
        client: parts.client.clone(),
        shards: parts.config.shards.clone(),
        // Past the server's own statement timeout: a hung connection is abandoned too.
        repo_db_timeout: parts.config.repo_db_timeouts.statement + Duration::from_secs(5),
        late_after: observe::late_after(parts.config.interval),
        liveness: Arc::clone(&liveness),
    });
    let mut shard_tasks = Some(observe::ShardTasks::default());
    sidecar.publish();

    let (outcome_tx, mut outcome_rx) = mpsc::unbounded_channel::<Outcome>();
    let mut observing: Option<JoinHandle<(Observation, observe::ShardTasks)>> = None;
    let mut next_tick = tokio::time::Instant::now();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(request) = control.recv() => {
                if sidecar.handle_control(request, Timestamp::now()) && observing.is_none() {
                    next_tick = tokio::time::Instant::now();
                }
            }
            () = tokio::time::sleep_until(next_tick), if observing.is_none() => {
                let previous = Arc::clone(&sidecar.snapshot);
                let tasks = shard_tasks.take().unwrap_or_default();
                observing = Some(tokio::spawn(observe::observe(Arc::clone(&sources), previous, tasks)));
            }
            joined = async { observing.as_mut().expect("guarded by the branch condition").await }, if observing.is_some() => {
                observing = None;
                let mut took = Duration::ZERO;
                match joined {
                    Ok((observation, tasks)) => {
                        shard_tasks = Some(tasks);
                        took = observation.took;
                        sidecar.handle_observation(observation, Timestamp::now());
                    }
                    Err(error) => tracing::error!(%error, "The observation task failed; the next tick retries."),
                }
                liveness.enter(Step::Idle, Timestamp::now());
                // A tick that took longer than the interval (a stall that cleared, a slow
                // read) is followed at once, so what changed meanwhile is seen without delay.
                next_tick = tokio::time::Instant::now() + parts.config.interval.saturating_sub(took);
                sidecar.fill(&outcome_tx);
                sidecar.publish();
            }
            () = sleep_until_timestamp(sidecar.scheduler.poll_timeout()) => {
                sidecar.fill(&outcome_tx);
                sidecar.publish();
            }
            Some(outcome) = outcome_rx.recv() => {
                let mut outcomes = vec![outcome];
                while let Ok(outcome) = outcome_rx.try_recv() {
                    outcomes.push(outcome);
                }
                sidecar.handle_outcomes(outcomes);
                sidecar.fill(&outcome_tx);
                sidecar.publish();
            }
        }
    }
    tracing::info!("Stopping: no new dispatches; clones in flight continue on gitserver.");
    if let Some(task) = observing {
        task.abort();
    }
    if let Some(mut tasks) = shard_tasks {
        tasks.abort_all();
    }
    drop(sidecar);
    drop(watchdog);
    if tokio::time::timeout(Duration::from_secs(10), writer).await.is_err() {
        tracing::warn!("The state DB did not take the last attempt records within 10s.");
    }
    Ok(())
}

struct Sidecar {
    parts: Arc<Parts>,
    scheduler: Scheduler,
    attempts: HashMap<RepoName, AttemptRecord>,
    snapshot: Arc<Snapshot>,
    /// Each shard's last answer, kept through failed and late reads.
    shards: ShardViews,
    plan: Plan,
    persister: Persister,
    status: StatusCell,
    totals: DispatchTotals,
    ticks: u64,
    last_tick_at: Option<Timestamp>,
    repo_db_error: Option<String>,
    writeback_error: Arc<ArcSwap<Option<String>>>,
    writeback: Option<JoinHandle<()>>,
    /// Repos dispatched at least once by this process, to count re-dispatches.
    dispatched_before: HashSet<RepoName>,
    /// The row of each repo in flight, for the retry policy's view of it when it fails.
    in_flight_repos: HashMap<RepoName, DesiredRepo>,
    /// The last prioritisation of each queued repo (by desired index): score and module.
    decisions: HashMap<u32, (f64, Arc<str>)>,
    metrics: Arc<crate::metrics::Metrics>,
    liveness: Arc<Liveness>,
}

impl Sidecar {
    /// Applies one observation: keep what failed at its last good value, reconcile, order,
    /// and replace the queue.
    fn handle_observation(&mut self, observation: Observation, now: Timestamp) {
        let observation_took = observation.took;
        match observation.snapshot {
            Ok(snapshot) => {
                self.snapshot = snapshot;
                self.repo_db_error = None;
            }
            Err(error) => {
                tracing::warn!(%error, "Reading the repo DB failed; using the last good desired set.");
                self.repo_db_error = Some(error);
            }
        }
        for (idx, shard_observation) in observation.shards.into_iter().enumerate() {
            let addr = self.parts.config.shards.addr(idx as u16);
            match self.shards.handle(idx, shard_observation) {
                Transition::Answered { recovered } => {
                    self.scheduler.handle_shard_up(idx as u16);
                    if recovered {
                        tracing::info!(shard = %addr, "Shard reachable again.");
                    }
                }
                Transition::Failed { first } => {
                    self.scheduler.handle_shard_down(idx as u16, now);
                    if first {
                        let error = self.shards.error(idx).unwrap_or_default();
                        tracing::warn!(shard = %addr, %error, "Shard unreachable; keeping its last lists.");
                    }
                }
                Transition::Late { first } => {
                    if first {
                        tracing::warn!(
                            shard = %addr,
                            "Shard has not answered its list calls yet; keeping its last lists, the other shards go on."
                        );
                    }
                }
            }
        }
        let actual = self.shards.actual();

        let in_flight: HashSet<RepoName> = self.scheduler.in_flight().cloned().collect();
        let snapshot = Arc::clone(&self.snapshot);
        let desired = &snapshot.desired.repos;
        let ctx = Context { attempts: &self.attempts, in_flight: &in_flight, now };
        let mut plan = reconcile::reconcile(desired, &snapshot.routes, &actual, &ctx);
        drop(actual);
        self.reenqueue_lost(&snapshot, &mut plan, now);

        // Records of repos confirmed cloned are no longer needed.
        for (repo, state) in desired.iter().zip(&plan.states) {
            if *state == RepoState::Cloned && self.attempts.remove(&repo.name).is_some() {
                self.persister.forget(repo.name.clone());
            }
        }

        // Policy calls are bounded by their deadline but may take it; keep the runtime's
        // other tasks (dispatches, admin API) running meanwhile.
        self.liveness.enter(Step::Policy, now);
        self.parts.policy.as_ref().inspect(|policy| policy.start_tick());
        let ordered = off_runtime(|| {
            schedule::order(
                desired,
                &snapshot.routes,
                &plan,
                &self.attempts,
                self.parts.prioritizer.as_ref(),
                PRIORITIZE_BATCH,
                now,
            )
        });
        if ordered.fallbacks > 0 {
            tracing::warn!(
                batches = ordered.fallbacks,
                "The prioritizer gave unusable answers; used the built-in order for them."
            );
        }
        self.scheduler.handle_plan(&ordered.jobs);
        if self.parts.rate_limits.is_active() {
            let loads = self.key_loads(desired, &plan, &ordered.jobs);
            let limits = off_runtime(|| self.parts.rate_limits.limits(&loads, now));
            self.scheduler.handle_rate_limits(limits, now);
        } else if !self.scheduler.rate_limits().is_empty() {
            self.scheduler.handle_rate_limits(Vec::new(), now);
        }
        self.log_decisions(&ordered);
        self.decisions =
            ordered.jobs.iter().zip(ordered.decisions).map(|(job, decision)| (job.repo, decision)).collect();
        if ordered.fallbacks > 0 {
            self.metrics.policy_fallbacks.inc_by(ordered.fallbacks);
        }
        self.start_writeback(&plan);
        self.plan = plan;
        self.ticks += 1;
        self.last_tick_at = Some(now);
        self.liveness.tick_completed(Timestamp::now());
        self.metrics.ticks.inc();
        self.metrics.tick_duration.observe(observation_took.as_secs_f64());
        self.metrics.repo_db_up.set(i64::from(self.repo_db_error.is_none()));
        tracing::debug!(
            desired = self.plan.totals.desired,
            cloned = self.plan.totals.cloned,
            due = ordered.jobs.len(),
            deferred = ordered.deferred,
            "Tick done."
        );
    }

    /// Starts as many dispatches as the caps allow.
    fn fill(&mut self, outcome_tx: &mpsc::UnboundedSender<Outcome>) {
        let snapshot = Arc::clone(&self.snapshot);
        let repos = &snapshot.desired.repos;
        while let Some((job, name)) = self.scheduler.poll_dispatch(Timestamp::now(), |idx| &repos[idx as usize].name) {
            let repo = &repos[job.repo as usize];
            let Some(clone_url) = repo.clone_url.as_deref() else {
                // Reconcile never makes a repo without URL due; stay defensive.
                self.scheduler.handle_finished(&name);
                continue;
            };
            let now = Timestamp::now();
            self.in_flight_repos.insert(name.clone(), repo.clone());
            let record = self.attempts.entry(name.clone()).or_default();
            record.attempts += 1;
            record.last_attempt_at = Some(now);
            record.in_flight = true;
            let dispatch = Dispatch {
                name: name.clone(),
                clone_url: clone_url.to_string(),
                shard: job.shard,
                shard_addr: self.parts.config.shards.addr(job.shard).to_string(),
            };
            // Sent from the loop, so it is ordered before this attempt's outcome.
            let stored = self.persister.save_acked(name.clone(), record.clone());
            self.totals.started += 1;
            if !self.dispatched_before.insert(name.clone()) || record.attempts > 1 {
                self.totals.redispatched += 1;
            }
            tracing::debug!(repo = %name, shard = %dispatch.shard_addr, attempt = record.attempts, "Dispatching.");
            let parts = Arc::clone(&self.parts);
            let tx = outcome_tx.clone();
            tokio::spawn(async move {
                let outcome = dispatch::run(dispatch, &parts.config.target, &parts.client, stored.stored()).await;
                let _ = tx.send(outcome);
            });
        }
    }

    /// Records how a batch of dispatches ended; the failures go to the retry policy in one
    /// call.
    fn handle_outcomes(&mut self, outcomes: Vec<Outcome>) {
        let failed: Vec<PendingRetry> = outcomes.into_iter().filter_map(|o| self.handle_outcome(o)).collect();
        if !failed.is_empty() {
            self.decide_retries(failed);
        }
    }

    /// Records how a dispatch ended. A failure is returned for [`Sidecar::decide_retries`].
    fn handle_outcome(&mut self, outcome: Outcome) -> Option<PendingRetry> {
        self.scheduler.handle_finished(&outcome.name);
        let repo = self.in_flight_repos.remove(&outcome.name);
        let now = outcome.finished_at;
        let shard = self.parts.config.shards.addr(outcome.shard).to_string();
        let took = outcome.finished_at.since(outcome.started_at);
        let confirm_grace = self.confirm_grace();
        match &outcome.result {
            Err(failure) if failure.shard_down => self.scheduler.handle_shard_down(outcome.shard, now),
            _ => self.scheduler.handle_shard_up(outcome.shard),
        }
        let record = self.attempts.entry(outcome.name.clone()).or_default();
        record.in_flight = false;
        let result = if outcome.result.is_ok() { DispatchResult::succeeded } else { DispatchResult::failed };
        self.metrics.dispatches.get_or_create(&DispatchLabels { shard: shard.clone(), result }).inc();
        if outcome.result.is_ok() {
            self.metrics.clone_duration.get_or_create(&ShardLabel { shard: shard.clone() }).observe(took.as_secs_f64());
        }
        match outcome.result {
            Ok(()) => {
                self.totals.succeeded += 1;
                record.last_error = None;
                // Only the next list confirms a clone; until then do not dispatch it again.
                record.next_attempt_at = Some(now.saturating_add(confirm_grace));
                tracing::info!(repo = %outcome.name, %shard, took_ms = took.as_millis() as u64, "Dispatch succeeded.");
            }
            Err(failure) => {
                self.totals.failed += 1;
                record.last_error = Some(failure.message.clone());
                // Saved once the retry policy has decided.
                return Some(PendingRetry {
                    name: outcome.name,
                    repo,
                    shard: outcome.shard,
                    shard_addr: shard,
                    error: failure.message,
                    at: now,
                });
            }
        }
        self.persister.save(outcome.name, record.clone());
        None
    }

    /// Asks the retry policy about a batch of failures (one call) and stores each decision.
    fn decide_retries(&mut self, failed: Vec<PendingRetry>) {
        let now = failed.iter().map(|f| f.at).max().unwrap_or_else(Timestamp::now);
        let empty = AttemptRecord::default();
        let batch: Vec<Failure<'_>> = failed
            .iter()
            .map(|f| Failure {
                name: &f.name,
                record: self.attempts.get(&f.name).unwrap_or(&empty),
                repo: f.repo.as_ref(),
                shard: f.shard,
                state: RepoState::Failed,
            })
            .collect();
        let (decisions, decided_by) = off_runtime(|| self.parts.retry.on_failures_traced(&batch, now));
        drop(batch);
        let decided_by = short_digest(&decided_by).to_string();
        let mut decisions = decisions.into_iter();
        for pending in failed {
            let PendingRetry { name, shard_addr: shard, error, .. } = pending;
            let record = self.attempts.entry(name.clone()).or_default();
            match decisions.next() {
                Some(RetryDecision::GiveUp { reason }) => {
                    tracing::warn!(repo = %name, %shard, %error, %reason, policy = %decided_by, "Dispatch failed; giving up.");
                    record.gave_up = Some(reason);
                    record.next_attempt_at = None;
                }
                Some(RetryDecision::RetryAt(at)) => {
                    tracing::warn!(repo = %name, %shard, %error, retry_at = %at.to_rfc3339(), policy = %decided_by, "Dispatch failed; will retry.");
                    record.next_attempt_at = Some(at);
                }
                None => {
                    let at = now.saturating_add(self.parts.config.backoff.delay(record.attempts, &name));
                    tracing::warn!(repo = %name, %shard, %error, "Dispatch failed; the retry policy gave no answer, using built-in backoff.");
                    record.next_attempt_at = Some(at);
                }
            }
            self.persister.save(name, record.clone());
        }
    }

    /// The load on every code host and shard, for the rate-limit policy.
    fn key_loads(&self, desired: &[DesiredRepo], plan: &Plan, jobs: &[schedule::Job]) -> Vec<KeyLoad> {
        let mut hosts: HashMap<&str, HostLoad> = HashMap::new();
        for repo in desired {
            let host = hosts.entry(repo.code_host()).or_default();
            host.repos += 1;
            host.count_service_type(repo.service_type.as_ref());
        }
        let mut shard_queued = vec![0u32; self.parts.config.shards.len()];
        for job in jobs {
            if let Some(repo) = desired.get(job.repo as usize) {
                hosts.entry(repo.code_host()).or_default().queued += 1;
            }
            if let Some(count) = shard_queued.get_mut(usize::from(job.shard)) {
                *count += 1;
            }
        }
        for name in self.scheduler.in_flight() {
            if let Some(host) = hosts.get_mut(schedule::code_host_of(name.as_str())) {
                host.in_flight += 1;
            }
        }
        let in_flight = self.scheduler.in_flight_per_shard();
        let mut loads: Vec<KeyLoad> = hosts
            .into_iter()
            .map(|(host, load)| KeyLoad {
                key: LimitKey::CodeHost(host.into()),
                service_type: load.service_type(),
                repos: load.repos,
                queued: load.queued,
                in_flight: load.in_flight,
            })
            .collect();
        loads.sort_by(|a, b| a.key.cmp(&b.key));
        for (idx, queued) in shard_queued.into_iter().enumerate() {
            loads.push(KeyLoad {
                key: LimitKey::Shard(idx as ShardIdx),
                service_type: None,
                repos: plan.shards.get(idx).map_or(0, |c| u32::try_from(c.desired).unwrap_or(u32::MAX)),
                queued,
                in_flight: in_flight.get(idx).map_or(0, |&n| u32::try_from(n).unwrap_or(u32::MAX)),
            });
        }
        loads
    }

    fn confirm_grace(&self) -> Duration {
        (self.parts.config.interval * 2).max(Duration::from_secs(1))
    }
}

/// A failed dispatch waiting for the retry policy's decision.
struct PendingRetry {
    name: RepoName,
    /// The repo's row as dispatched (`None` after a restart lost it).
    repo: Option<DesiredRepo>,
    shard: ShardIdx,
    shard_addr: String,
    error: String,
    at: Timestamp,
}

/// Runs `call` (a policy decision, bounded by its deadline) without stalling the runtime's
/// other tasks: on a multi-threaded runtime this worker hands its tasks over meanwhile.
fn off_runtime<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

/// Aborts a background task when dropped, so it ends with its owner even on a panic.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleeps until a wall-clock deadline, forever for `None`.
async fn sleep_until_timestamp(deadline: Option<Timestamp>) {
    match deadline {
        Some(at) => tokio::time::sleep(at.since(Timestamp::now()) + Duration::from_millis(1)).await,
        None => std::future::pending().await,
    }
}

/// A dispatch target's name for logs.
pub fn describe_target(target: &DispatchTarget) -> String {
    match target {
        DispatchTarget::Gitserver => "gitserver /repo-update".to_string(),
        DispatchTarget::RepoUpdater(addr) => format!("repo-updater {addr} /enqueue-repo-update"),
    }
}

//! The production shell around [`Machine`]: reads the clock, observes the repo DB and the
//! shards, performs the machine's commands (attempt records to the one writer, dispatches as
//! tasks) and tells the outside (status, metrics, write-back, the decision log).
//!
//! The decisions are the machine's (`crate::machine`), which the simulator drives too; this
//! module only moves data between it and the world. The I/O half of a tick runs in its own
//! task (`observe.rs`) so outcomes keep flowing while a big repo DB is read.

mod control;
mod observe;
mod off_runtime;
mod persist;
mod publish;
mod read;
mod refused;
mod replica;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use control::ControlRequest;
pub use persist::Persister;

use crate::config::{Config, DispatchTarget};
use crate::dispatch::{self, Outcome};
use crate::liveness::{Liveness, Role, Step};
use crate::machine::{Command, Machine, Observation, Policies, Settings};
use crate::metrics::{DispatchLabels, DispatchResult, ShardLabel};
use crate::model::Timestamp;
use crate::policy::shadow::ShadowInput;
use crate::policy::PolicyHost;
use crate::schedule::{Prioritizer, RateLimitPolicy, RetryPolicy};
use crate::sources::gitserver::GitserverClient;
use crate::sources::repo_db::RepoDb;
use crate::state::StateStore;
use crate::status::Status;
use off_runtime::OffRuntime;

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

/// Runs until `shutdown` resolves: alone, or with `[ha]` as one of several replicas,
/// following until it takes the lease and leading until it loses it. Errors only if the
/// attempt state cannot be loaded when this replica starts to lead.
pub async fn run(
    parts: Parts,
    shared: Shared,
    mut control: mpsc::Receiver<ControlRequest>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), crate::state::StateError> {
    // `/healthz` fails once this guard is dropped: the loop ended or panicked.
    let _running = shared.liveness.loop_guard();
    let _watchdog = AbortOnDrop(tokio::spawn(crate::liveness::watchdog(Arc::clone(&shared.liveness))));
    let parts = Arc::new(parts);
    tokio::pin!(shutdown);
    let Some(ha) = parts.config.ha.clone() else {
        shared.liveness.set_role(Role::Single, Timestamp::now());
        lead(&parts, &shared, &mut control, shutdown.as_mut(), None).await?;
        return Ok(());
    };
    let holder = replica::holder();
    loop {
        shared.liveness.set_role(Role::Follower, Timestamp::now());
        tracing::info!(%holder, "Following: waiting for the leader lease.");
        let Some(keeper) = replica::follow(&parts, &shared, &ha, &holder, &mut control, shutdown.as_mut()).await else {
            return Ok(());
        };
        shared.liveness.set_role(Role::Leader, Timestamp::now());
        tracing::info!(epoch = keeper.epoch(), "Leading.");
        match lead(&parts, &shared, &mut control, shutdown.as_mut(), Some(&keeper)).await? {
            Ended::Shutdown => return Ok(()),
            Ended::Lost(reason) => {
                tracing::warn!(%reason, epoch = keeper.epoch(), "Lost the leadership: stopped dispatching; following again.");
            }
        }
    }
}

/// Why leading ended.
enum Ended {
    Shutdown,
    /// The lease was lost or the state DB fenced this replica's writes off.
    Lost(String),
}

/// Dispatches until `shutdown` resolves or, with a lease, until the lease is lost.
async fn lead<F: std::future::Future<Output = ()>>(
    parts: &Arc<Parts>,
    shared: &Shared,
    control: &mut mpsc::Receiver<ControlRequest>,
    mut shutdown: std::pin::Pin<&mut F>,
    lease: Option<&replica::LeaseKeeper>,
) -> Result<Ended, crate::state::StateError> {
    let liveness = &shared.liveness;
    let epoch = lease.map(replica::LeaseKeeper::epoch);
    let state = match epoch {
        Some(epoch) => parts.state.fenced(epoch),
        None => parts.state.clone(),
    };
    liveness.enter(Step::StateLoad, Timestamp::now());
    let attempts = state.load().await?;
    liveness.enter(Step::Idle, Timestamp::now());
    tracing::info!(records = attempts.len(), "Loaded attempt state.");
    let (persister, writer) = Persister::start(state, &shared.metrics, Some(Arc::clone(liveness)));
    // Policy calls are bounded by their deadline but may take it; the runtime's other tasks
    // (dispatches, admin API) keep running meanwhile.
    let policies = Policies {
        prioritizer: Arc::new(OffRuntime(Arc::clone(&parts.prioritizer))),
        retry: Arc::new(OffRuntime(Arc::clone(&parts.retry))),
        rate_limits: Arc::new(OffRuntime(Arc::clone(&parts.rate_limits))),
    };
    let machine = Machine::new(Settings::from_config(&parts.config), policies, attempts);

    let (outcome_tx, mut outcome_rx) = mpsc::unbounded_channel::<Outcome>();
    let mut sidecar = Sidecar {
        machine,
        persister,
        status: Arc::clone(&shared.status),
        writeback_error: Arc::new(ArcSwap::from_pointee(None)),
        writeback: None,
        metrics: Arc::clone(&shared.metrics),
        liveness: Arc::clone(liveness),
        parts: Arc::clone(parts),
        outcome_tx,
        epoch,
        dispatches: Vec::new(),
        shadows: None,
        explainer: None,
    };
    sidecar.perform();
    let sources = Arc::new(observe::Sources {
        repo_db: parts.repo_db.clone(),
        client: parts.client.clone(),
        shards: parts.config.shards.clone(),
        // Past the server's own statement timeout: a hung connection is abandoned too.
        repo_db_timeout: parts.config.repo_db_timeouts.statement + Duration::from_secs(5),
        late_after: observe::late_after(parts.config.interval),
        liveness: Arc::clone(liveness),
        policy: parts.policy.clone(),
        writeback: parts.config.writeback,
        full_interval: parts.config.full_interval,
        reads: std::sync::Mutex::default(),
        metrics: Arc::clone(&sidecar.metrics),
    });
    let mut shard_tasks = Some(observe::ShardTasks::default());
    sidecar.publish();

    let lost = async {
        match lease {
            Some(lease) => lease.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(lost);
    let fenced = sidecar.persister.clone();
    let fenced = fenced.fenced();
    tokio::pin!(fenced);
    let mut observing: Option<JoinHandle<(Observation, observe::ShardTasks)>> = None;
    let mut next_tick = tokio::time::Instant::now();
    // When the tick in progress started: the next starts `sync.interval` after it, however long
    // this one's observation and its handling take.
    let mut tick_started = next_tick;
    // Snapshot requests waiting for a read with stars.
    let mut waiting_snapshots = Vec::new();
    let ended = loop {
        tokio::select! {
            () = &mut shutdown => break Ended::Shutdown,
            reason = &mut lost => break Ended::Lost(reason),
            reason = &mut fenced => break Ended::Lost(reason),
            Some(request) = control.recv() => {
                let request = match request {
                    // A snapshot file needs stars, which are read only for policies that use
                    // them: it waits for the next read, a full one with stars.
                    ControlRequest::Snapshot { reply } if !sources.reads.lock().is_ok_and(|r| r.has_policy_columns()) => {
                        sources.reads.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).want_policy_columns_once();
                        waiting_snapshots.push(reply);
                        if observing.is_none() {
                            next_tick = tokio::time::Instant::now();
                        }
                        continue;
                    }
                    request => request,
                };
                if request.answer(&mut sidecar.machine, parts.policy.as_ref(), Timestamp::now()) && observing.is_none() {
                    next_tick = tokio::time::Instant::now();
                }
                sidecar.perform();
            }
            () = tokio::time::sleep_until(next_tick), if observing.is_none() => {
                tick_started = tokio::time::Instant::now();
                let previous = Arc::clone(sidecar.machine.snapshot());
                let scope = Arc::new(sidecar.machine.progress_scope(Timestamp::now()));
                let tasks = shard_tasks.take().unwrap_or_default();
                observing = Some(tokio::spawn(observe::observe(Arc::clone(&sources), previous, scope, tasks)));
            }
            joined = async { observing.as_mut().expect("guarded by the branch condition").await }, if observing.is_some() => {
                observing = None;
                match joined {
                    Ok((observation, tasks)) => {
                        shard_tasks = Some(tasks);
                        sidecar.handle_observation(observation, tick_started);
                        if !waiting_snapshots.is_empty() && sources.reads.lock().is_ok_and(|r| r.has_policy_columns()) {
                            for reply in waiting_snapshots.drain(..) {
                                ControlRequest::Snapshot { reply }.answer(&mut sidecar.machine, None, Timestamp::now());
                            }
                        }
                    }
                    Err(error) => tracing::error!(%error, "The observation task failed; the next tick retries."),
                }
                liveness.enter(Step::Idle, Timestamp::now());
                // Ticks start `sync.interval` apart, the handling of each observation included;
                // a tick that took longer than the interval (a stall that cleared, a slow read)
                // is followed at once, so what changed meanwhile is seen without delay.
                next_tick = tick_started + parts.config.interval;
                // The read that just failed or lacked stars started before the request: the
                // next one has them (a failing repo DB keeps its interval).
                if !waiting_snapshots.is_empty() && sidecar.machine.repo_db_error().is_none() {
                    next_tick = tokio::time::Instant::now();
                }
                sidecar.perform();
                sidecar.publish();
            }
            () = sleep_until_timestamp(sidecar.machine.poll_timeout()) => {
                sidecar.perform();
                sidecar.publish();
            }
            Some(outcome) = outcome_rx.recv() => {
                let mut outcomes = vec![outcome];
                while let Ok(outcome) = outcome_rx.try_recv() {
                    outcomes.push(outcome);
                }
                sidecar.handle_outcomes(outcomes);
                sidecar.perform();
                sidecar.publish();
            }
        }
    };
    if let Some(task) = observing {
        task.abort();
    }
    if let Some(mut tasks) = shard_tasks {
        tasks.abort_all();
    }
    match &ended {
        Ended::Shutdown => tracing::info!("Stopping: no new dispatches; clones in flight continue on gitserver."),
        // Another replica leads (or soon will): no call of this one may still be under way.
        Ended::Lost(_) => sidecar.abort_dispatches(),
    }
    drop(sidecar);
    if tokio::time::timeout(Duration::from_secs(10), writer).await.is_err() {
        tracing::warn!("The state DB did not take the last attempt records within 10s.");
    }
    Ok(ended)
}

/// The shell's own state: the machine, and the handles it performs commands with.
struct Sidecar {
    parts: Arc<Parts>,
    machine: Machine,
    persister: Persister,
    outcome_tx: mpsc::UnboundedSender<Outcome>,
    status: StatusCell,
    writeback_error: Arc<ArcSwap<Option<String>>>,
    writeback: Option<JoinHandle<()>>,
    metrics: Arc<crate::metrics::Metrics>,
    liveness: Arc<Liveness>,
    /// The leader epoch with `[ha]`.
    epoch: Option<i64>,
    /// The dispatch calls under way (pruned as they finish), aborted if the lease is lost.
    dispatches: Vec<tokio::task::AbortHandle>,
    /// The shadow modules' evaluation of the last queue, while it runs.
    shadows: Option<JoinHandle<()>>,
    /// The explanations of the last tick's sampled decisions, while they are asked for.
    explainer: Option<JoinHandle<()>>,
}

/// Queued repos the shadow modules order each tick: the head of the queue, where what is
/// dispatched next is decided.
const SHADOW_REPOS: usize = 100_000;

impl Sidecar {
    /// Stops every dispatch call still under way.
    fn abort_dispatches(&mut self) {
        for dispatch in self.dispatches.drain(..) {
            dispatch.abort();
        }
    }

    /// Hands one observation to the machine, then records the tick, which started at
    /// `tick_started` (its duration covers the reads and the decisions, up to the dispatches
    /// it starts).
    fn handle_observation(&mut self, observation: Observation, tick_started: tokio::time::Instant) {
        self.liveness.enter(Step::Policy, Timestamp::now());
        self.parts.policy.as_ref().inspect(|policy| policy.start_tick());
        let report = self.machine.handle_observation(observation, Timestamp::now());
        self.log_decisions();
        if report.fallbacks > 0 {
            self.metrics.policy_fallbacks.inc_by(report.fallbacks);
        }
        self.start_writeback();
        self.start_shadows();
        self.liveness.tick_completed(Timestamp::now());
        self.metrics.ticks.inc();
        self.metrics.tick_duration.observe(tick_started.elapsed().as_secs_f64());
        self.metrics.repo_db_up.set(i64::from(self.machine.repo_db_error().is_none()));
    }

    /// Hands the head of the new queue to the shadow modules, off the loop and the runtime's
    /// workers, unless the last tick's evaluation is still running (a slow shadow skips ticks;
    /// it never delays one).
    fn start_shadows(&mut self) {
        let Some(host) = self.parts.policy.as_ref().filter(|host| host.has_shadows()) else { return };
        if self.shadows.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let head = self.machine.queued_head(SHADOW_REPOS);
        let slots = self.machine.free_slots();
        let limits = self.machine.last_limits();
        let retries = self.machine.take_retry_cases();
        let host = Arc::clone(host);
        self.shadows = Some(tokio::task::spawn_blocking(move || {
            let queued = head.candidates();
            let input = ShadowInput { queued: &queued, slots, limits: limits.as_deref(), retries: &retries };
            host.evaluate_shadows(&input, Timestamp::now(), host.tick_budget());
        }));
    }

    /// Performs the machine's commands: records go to the one writer in order; a dispatch is
    /// a task that waits for its started record to be stored, makes the call and reports the
    /// outcome back to the loop.
    fn perform(&mut self) {
        while let Some(command) = self.machine.poll_command(Timestamp::now()) {
            match command {
                Command::Save { name, record } => self.persister.save(name, record),
                Command::Forget { name } => self.persister.forget(name),
                Command::Dispatch { dispatch, record } => {
                    let stored = self.persister.save_acked(dispatch.name.clone(), record);
                    let parts = Arc::clone(&self.parts);
                    let tx = self.outcome_tx.clone();
                    // With several replicas, only what is stored under this leader's epoch is
                    // dispatched: the store is the proof that it still leads.
                    let must_store = self.epoch.is_some();
                    let call = tokio::spawn(async move {
                        let client = &parts.client;
                        let outcome =
                            dispatch::run(dispatch, &parts.config.target, client, stored.stored(), must_store).await;
                        let _ = tx.send(outcome);
                    });
                    if self.dispatches.len() >= 1024 {
                        self.dispatches.retain(|d| !d.is_finished());
                    }
                    self.dispatches.push(call.abort_handle());
                }
            }
        }
    }

    /// Counts the outcomes, then hands them to the machine.
    fn handle_outcomes(&mut self, outcomes: Vec<Outcome>) {
        for outcome in &outcomes {
            let shard = self.parts.config.shards.addr(outcome.shard).to_string();
            let result = if outcome.result.is_ok() { DispatchResult::succeeded } else { DispatchResult::failed };
            if outcome.result.is_ok() {
                let took = outcome.finished_at.since(outcome.started_at);
                self.metrics
                    .clone_duration
                    .get_or_create(&ShardLabel { shard: shard.clone() })
                    .observe(took.as_secs_f64());
            }
            self.metrics.dispatches.get_or_create(&DispatchLabels { shard, result }).inc();
        }
        self.machine.handle_outcomes(outcomes);
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

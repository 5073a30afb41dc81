//! The I/O half of a tick: read the desired set and every shard's lists.
//!
//! Runs in its own task so that dispatch outcomes keep being handled while a large repo DB
//! is read. One query for the repo DB, one list call per shard, and progress calls batched,
//! only for the repos the machine's [`ProgressScope`] names (every missing one in a sweep).
//!
//! **Each shard on its own clock.** Every shard is observed by a task of its own that
//! outlives the tick if it must: a tick waits for the repo DB read and then at most
//! [`late_after`] for the shards; a shard still observing by then is reported
//! [`ShardObservation::Late`] (its last answer stays in use) and its task goes on, its answer
//! taken by a later tick. One shard that accepts connections and never answers therefore
//! slows no other shard's healing; its calls end at the client's timeout and it is then
//! reported unreachable.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::liveness::{Liveness, Step};
use crate::machine::{Observation, ProgressScope, ShardAnswer, ShardObservation, Snapshot};
use crate::model::{RepoName, ShardIdx, Timestamp};
use crate::routing::ShardMap;
use crate::sources::gitserver::GitserverClient;
use crate::sources::repo_db::RepoDb;

/// What observing needs; shared with the shard tasks.
pub struct Sources {
    pub repo_db: RepoDb,
    pub client: GitserverClient,
    pub shards: ShardMap,
    /// Bound of one repo DB read, past the server's own statement timeout.
    pub repo_db_timeout: Duration,
    /// How long a tick waits for the shards once the repo DB is read.
    pub late_after: Duration,
    pub liveness: Arc<Liveness>,
    /// The policy engine, asked before each read which repo columns its modules see.
    pub policy: Option<Arc<crate::policy::PolicyHost>>,
    /// Write-back is on: reads fill the repo DB's recorded clone state, which it corrects.
    pub writeback: bool,
    /// How often the repo DB is read in full (incremental reads between).
    pub full_interval: Duration,
    /// Where the reads stand (`read.rs`).
    pub reads: std::sync::Mutex<super::read::Reads>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// How long a tick waits for shard answers after the repo DB read: the interval, within
/// 1–5 s. A healthy shard answers well within it; a later one is reported late.
pub fn late_after(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// One shard's observation in progress: when it started, and its task.
type Running = (Timestamp, JoinHandle<Result<ShardAnswer, String>>);

/// The shard observations still running, carried from tick to tick by the tick loop.
#[derive(Debug, Default)]
pub struct ShardTasks {
    running: Vec<Option<Running>>,
}

impl ShardTasks {
    /// Stops every running observation (at shutdown).
    pub fn abort_all(&mut self) {
        for (_, task) in self.running.iter_mut().filter_map(Option::take) {
            task.abort();
        }
    }
}

/// Reads the repo DB and observes every shard. `previous` is the last good snapshot, used to
/// decide which names to ask about when the repo DB read fails; `scope` which of the names a
/// shard's list lacks are asked about. Returns the tasks of shards still observing, for the
/// next tick.
pub async fn observe(
    sources: Arc<Sources>,
    previous: Arc<Snapshot>,
    scope: Arc<ProgressScope>,
    mut tasks: ShardTasks,
) -> (Observation, ShardTasks) {
    let n_shards = sources.shards.len();
    tasks.running.resize_with(n_shards, || None);
    sources.liveness.enter(Step::RepoDbRead, Timestamp::now());

    // Answers of tasks that finished since the last tick, and a fresh task for every idle
    // shard. Each fresh task lists at once and asks for progress once the snapshot is known.
    let (snapshot_tx, snapshot_rx) = watch::channel::<Option<Arc<Snapshot>>>(None);
    let mut carried: Vec<Option<Result<ShardAnswer, String>>> = Vec::with_capacity(n_shards);
    for (idx, slot) in tasks.running.iter_mut().enumerate() {
        carried.push(match slot.take_if(|(_, task)| task.is_finished()) {
            Some((_, task)) => Some(joined(task.await)),
            None => None,
        });
        if slot.is_none() {
            let shard = ShardIdx::try_from(idx).expect("shard count fits ShardIdx");
            let task =
                tokio::spawn(observe_shard(Arc::clone(&sources), shard, snapshot_rx.clone(), Arc::clone(&scope)));
            *slot = Some((Timestamp::now(), task));
        }
    }

    let snapshot = super::read::read_desired(&sources, &previous).await;
    let current = snapshot.as_ref().map(Arc::clone).unwrap_or(previous);
    let _ = snapshot_tx.send(Some(current));

    sources.liveness.enter(Step::ShardLists, Timestamp::now());
    let deadline = tokio::time::Instant::now() + sources.late_after;
    let mut shards = Vec::with_capacity(n_shards);
    for (slot, carried) in tasks.running.iter_mut().zip(carried) {
        let observation = match slot.as_mut() {
            Some((since, task)) => match tokio::time::timeout_at(deadline, task).await {
                Ok(result) => {
                    *slot = None;
                    to_observation(joined(result))
                }
                Err(_) => carried.map_or(ShardObservation::Late { since: *since }, to_observation),
            },
            None => {
                carried.map_or_else(|| ShardObservation::Failed("no observation was started".into()), to_observation)
            }
        };
        shards.push(observation);
    }
    (Observation { snapshot, shards }, tasks)
}

/// Lists one shard, then asks about those of its desired repos the list lacks that `scope`
/// names (using the snapshot of the tick that started it).
async fn observe_shard(
    sources: Arc<Sources>,
    shard: ShardIdx,
    mut snapshot: watch::Receiver<Option<Arc<Snapshot>>>,
    scope: Arc<ProgressScope>,
) -> Result<ShardAnswer, String> {
    let addr = sources.shards.addr(shard);
    let cloned = sources.client.list_cloned(addr).await.map_err(|e| e.to_string())?;
    let current = match snapshot.wait_for(Option::is_some).await {
        Ok(current) => current.as_ref().map(Arc::clone).unwrap_or_default(),
        Err(_) => return Err(format!("shard {addr}: the tick that listed it ended before the repo DB was read")),
    };
    let missing = scope.missing(&current, shard, &cloned);
    sources.metrics.progress_names.inc_by(missing.len() as u64);
    let progress = sources.client.clone_progress(addr, &missing).await.map_err(|e| e.to_string())?;
    let cloned = cloned.extended(progress.cloned.iter().map(RepoName::as_str));
    Ok(ShardAnswer { cloned, cloning: progress.cloning })
}

fn joined(result: Result<Result<ShardAnswer, String>, tokio::task::JoinError>) -> Result<ShardAnswer, String> {
    result.unwrap_or_else(|error| Err(format!("the shard's observation task failed: {error}")))
}

fn to_observation(answer: Result<ShardAnswer, String>) -> ShardObservation {
    match answer {
        Ok(answer) => ShardObservation::Answered(answer),
        Err(error) => ShardObservation::Failed(error),
    }
}

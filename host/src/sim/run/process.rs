//! The simulated sidecar process: the shell around the production [`Machine`] that the real
//! `sidecar` module is in production. It (re)starts from the stored records, starts and
//! finishes observations (a hung repo DB read holds one until the client's bound), hands them
//! to the machine, performs its commands (records to a writer that keeps them in order while
//! the state DB is down; a dispatch waits for its started record, at most [`STORE_WAIT`], then
//! reaches the shard) and reports outcomes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rand::Rng;

use super::{push_trail, Sim, READ_BOUND};
use crate::dispatch::{DispatchError, Outcome, STORE_WAIT};
use crate::liveness::{Liveness, Step};
use crate::machine::{Command, Machine, Observation, Policies, ProgressScope, Settings, Snapshot};
use crate::metrics::Metrics;
use crate::model::{AttemptRecord, RepoName, ShardIdx, Timestamp};
use crate::routing::ShardMap;
use crate::sim::policies;
use crate::sim::repo_db::RepoDb;
use crate::sim::wasm::WasmKit;

/// A dispatch call made by the process.
#[derive(Debug)]
pub(crate) struct Call {
    pub(super) shard: ShardIdx,
    pub(super) started_at: Timestamp,
    /// When the request reaches the shard (after the started record is stored, or after
    /// [`STORE_WAIT`] when it cannot be).
    pub(super) arrive_at: Timestamp,
    pub(super) outcome_at: Timestamp,
    pub(super) result: Option<Result<(), DispatchError>>,
}

/// The sidecar process: the machine and what the shell around it holds.
pub(crate) struct Process {
    pub(crate) machine: Machine,
    pub(crate) liveness: Liveness,
    pub(crate) started_at: Timestamp,
    pub(super) next_tick: Timestamp,
    /// The observation running: when it started and when it ends (`hung`: its read hangs).
    pub(super) observing: Option<(Timestamp, Timestamp, bool)>,
    /// Which missing repos the running observation asks progress for (taken when it started).
    pub(super) scope: Arc<ProgressScope>,
    pub(crate) calls: BTreeMap<RepoName, Call>,
    /// Records handed to the writer and not yet in the state DB, oldest first.
    pub(super) unwritten: VecDeque<(Timestamp, Command)>,
    /// The last read's mark and the snapshot it gave: the next read between full ones is
    /// incremental, as in production (`sidecar/read.rs`).
    read_mark: Option<(u64, Weak<Snapshot>)>,
    full_read_at: Option<Timestamp>,
}

impl Sim<'_> {
    pub(super) fn restart(&mut self) -> Result<(), String> {
        self.restart_at = None;
        let settings = Settings {
            shards: self.shard_map.clone(),
            limits: self.limits,
            interval: self.interval,
            backoff: self.backoff,
            // Sweeps every sixth tick: most ticks take the scoped path.
            full_interval: self.interval * 6,
        };
        let policies = if self.wasm {
            let addrs = self.shard_map.addrs().to_vec();
            let host = WasmKit::host(self.kit, addrs, self.backoff, self.now)
                .map_err(|error| format!("the real policy host did not start: {error}"))?;
            Policies {
                prioritizer: Arc::clone(&host) as Arc<dyn crate::schedule::Prioritizer>,
                retry: host,
                rate_limits: Arc::new(crate::schedule::NoLimits),
            }
        } else {
            policies::policies(&self.mood, self.backoff, self.limits_active)
        };
        let attempts: HashMap<RepoName, AttemptRecord> = self.state_db.clone().into_iter().collect();
        let machine = Machine::new(settings, policies, attempts);
        let liveness = Liveness::new(self.stall_after, Arc::new(Metrics::default()), self.now);
        self.checks.restarted(self.shards.len());
        let kind = if self.wasm { "wasm policies" } else { "simulated policies" };
        self.note(format!("start: {} stored records, {} shards, {kind}", self.state_db.len(), self.shards.len()));
        self.process = Some(Process {
            machine,
            liveness,
            started_at: self.now,
            next_tick: self.now,
            observing: None,
            scope: Arc::default(),
            read_mark: None,
            full_read_at: None,
            calls: BTreeMap::new(),
            unwritten: VecDeque::new(),
        });
        Ok(())
    }

    /// The one writer: records reach the state DB in the order they were made, while it is up.
    pub(super) fn write_state(&mut self) -> Result<(), String> {
        let Some(process) = &mut self.process else { return Ok(()) };
        if self.now >= self.state_db_down_until {
            while let Some((_, command)) = process.unwritten.pop_front() {
                match command {
                    Command::Save { name, record }
                    | Command::Dispatch { record, dispatch: crate::dispatch::Dispatch { name, .. } } => {
                        self.checks.stored(&name, &record, self.state_db.get(&name))?;
                        self.state_db.insert(name, record);
                    }
                    Command::Forget { name } => {
                        self.state_db.remove(&name);
                    }
                }
            }
        }
        process.liveness.state_unwritten_since(process.unwritten.front().map(|(at, _)| *at));
        Ok(())
    }

    /// Calls reaching their shard, and outcomes reaching the process.
    pub(super) fn handle_calls(&mut self) {
        let Some(process) = &mut self.process else { return };
        let now = self.now;
        for (name, call) in process.calls.iter_mut().filter(|(_, c)| c.result.is_none() && c.arrive_at <= now) {
            let shard = &mut self.shards[usize::from(call.shard)];
            call.result = Some(shard.receive_dispatch(name, call.arrive_at, &mut self.rng));
        }
        let done: Vec<RepoName> = process
            .calls
            .iter()
            .filter(|(_, c)| c.result.is_some() && c.outcome_at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        if done.is_empty() {
            return;
        }
        let mut outcomes = Vec::with_capacity(done.len());
        for name in done {
            let Some(call) = process.calls.remove(&name) else { continue };
            let result = call.result.unwrap_or(Ok(()));
            outcomes.push(Outcome {
                name,
                shard: call.shard,
                started_at: call.started_at,
                finished_at: call.outcome_at,
                result,
            });
        }
        for outcome in &outcomes {
            let line = format!("outcome: {} on {}: {:?}", outcome.name, outcome.shard, outcome.result);
            line.hash(&mut self.digest);
            push_trail(&mut self.trail, &mut self.trace, self.options.full_trace, self.now, line);
        }
        process.machine.handle_outcomes(outcomes);
    }

    /// Starts a due observation, or finishes the running one and hands it to the machine.
    pub(super) fn tick(&mut self) -> Result<(), String> {
        let Some(process) = &mut self.process else { return Ok(()) };
        let now = self.now;
        match process.observing {
            None if process.next_tick <= now => {
                let hung = now < self.repo_db.hung_until;
                let ends =
                    if hung { now.saturating_add(READ_BOUND) } else { now.saturating_add(Duration::from_millis(40)) };
                process.observing = Some((now, ends, hung));
                process.scope = Arc::new(process.machine.progress_scope(now));
                process.liveness.enter(Step::RepoDbRead, now);
                Ok(())
            }
            Some((started, ends, hung)) if ends <= now => {
                process.observing = None;
                let snapshot = if hung {
                    Err(format!(
                        "repo DB: reading the desired repos took longer than {}s and was abandoned",
                        READ_BOUND.as_secs()
                    ))
                } else if now < self.repo_db.down_until {
                    Err("repo DB: connection refused".to_string())
                } else {
                    process.liveness.repo_db_read_succeeded(now);
                    Ok(read_desired(&self.repo_db, &self.shard_map, self.interval, process, now)?)
                };
                let progress_snapshot = match &snapshot {
                    Ok(snapshot) => Arc::clone(snapshot),
                    Err(_) => Arc::clone(process.machine.snapshot()),
                };
                process.liveness.enter(Step::ShardLists, now);
                let shards = (0..self.shards.len())
                    .map(|idx| self.shards[idx].observe(idx as ShardIdx, &progress_snapshot, &process.scope, now))
                    .collect::<Vec<_>>();
                self.checks.observed(&shards, snapshot.as_ref().ok().map(|_| self.repo_db.deleted_names()));
                let read = if snapshot.is_ok() { "read" } else { "failed read" };
                if snapshot.is_ok() {
                    if self.good_reads.len() == 4 {
                        self.good_reads.pop_front();
                    }
                    self.good_reads.push_back(now);
                }
                process.liveness.enter(Step::Policy, now);
                let report = process.machine.handle_observation(Observation { snapshot, shards }, now);
                process.liveness.tick_completed(now);
                process.liveness.enter(Step::Idle, now);
                let took = now.since(started);
                process.next_tick = now.saturating_add(self.interval.saturating_sub(took));
                self.stats.ticks += 1;
                let line = format!("tick ({read}): {} due, {} fallbacks", report.due, report.fallbacks);
                line.hash(&mut self.digest);
                push_trail(&mut self.trail, &mut self.trace, self.options.full_trace, self.now, line);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The operator asks for every repo a policy gave up on to be cloned (during the faults when
    /// the schedule says so, and after them at every step: a give-up is durable, and only the
    /// operator lifts it).
    pub(super) fn operator_enqueues_given_up(&mut self) {
        let Some(process) = &mut self.process else { return };
        if process.machine.ticks() == 0 {
            return;
        }
        let mut given_up: Vec<RepoName> =
            process.machine.attempts().iter().filter(|(_, r)| r.gave_up.is_some()).map(|(n, _)| n.clone()).collect();
        given_up.sort();
        for name in given_up {
            let answer = process.machine.enqueue(name.as_str(), self.now);
            let line = format!("operator: enqueue {name}: {}", if answer.is_ok() { "ok" } else { "not desired" });
            push_trail(&mut self.trail, &mut self.trace, self.options.full_trace, self.now, line);
        }
    }

    /// Performs the machine's commands, checking each dispatch.
    pub(super) fn perform(&mut self) -> Result<(), String> {
        let Some(process) = &mut self.process else { return Ok(()) };
        let now = self.now;
        while let Some(command) = process.machine.poll_command(now) {
            let Command::Dispatch { dispatch, .. } = &command else {
                process.unwritten.push_back((now, command));
                continue;
            };
            self.checks.dispatching(dispatch, process, &self.shard_map)?;
            self.stats.dispatches += 1;
            let line = format!("dispatch: {} to {}", dispatch.name, dispatch.shard_addr);
            line.hash(&mut self.digest);
            push_trail(&mut self.trail, &mut self.trace, self.options.full_trace, now, line);
            let state_db_up = now >= self.state_db_down_until;
            let latency = Duration::from_millis(self.rng.random_range(5..400));
            let arrive_at = now.saturating_add(if state_db_up { latency / 2 } else { STORE_WAIT + latency / 2 });
            let call = Call {
                shard: dispatch.shard,
                started_at: now,
                arrive_at,
                outcome_at: arrive_at.saturating_add(latency / 2),
                result: None,
            };
            process.calls.insert(dispatch.name.clone(), call);
            process.unwritten.push_back((now, command));
        }
        Ok(())
    }
}

/// One successful read: in full every sixth interval (the simulated `full_interval`), else
/// incremental on top of the machine's snapshot, which must then equal a full read (the
/// simulated table has no name clashes, the one case only a full read settles).
fn read_desired(
    repo_db: &RepoDb,
    shard_map: &ShardMap,
    interval: Duration,
    process: &mut Process,
    now: Timestamp,
) -> Result<Arc<Snapshot>, String> {
    let full = repo_db.read(shard_map);
    let previous = process.machine.snapshot();
    let incremental = match &process.read_mark {
        Some((mark, base))
            if Snapshot::may_read_incrementally(
                process.full_read_at.map(|at| now.since(at)),
                interval * 6,
                base,
                previous,
            ) =>
        {
            Some(
                Snapshot::after_changes(previous, repo_db.changes_since(*mark), shard_map)
                    .expect("a simulated set holds far less than 4 GiB of names"),
            )
        }
        _ => None,
    };
    let snapshot = match incremental {
        Some(snapshot) => {
            let rewrites_only = process.read_mark.as_ref().is_some_and(|(mark, _)| !repo_db.changed_since(*mark));
            if rewrites_only && !Arc::ptr_eq(&snapshot, previous) {
                return Err("a delta of rows rewritten as they were made a new desired set".to_owned());
            }
            if snapshot.desired != full.desired || snapshot.routes != full.routes {
                return Err(format!(
                    "an incremental read gave {} repos where a full read gives {}, or other rows or routes",
                    snapshot.desired.repos.len(),
                    full.desired.repos.len()
                ));
            }
            snapshot
        }
        None => {
            process.full_read_at = Some(now);
            full
        }
    };
    process.read_mark = Some((repo_db.mark(), Arc::downgrade(&snapshot)));
    Ok(snapshot)
}

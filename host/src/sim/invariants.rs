//! What must hold at every step of every run, checked against the world the simulator knows
//! (which the machine only learns through its observations).
//!
//! - never two dispatches of one repo in flight;
//! - a dispatch goes to the repo's owner, with the clone URL of the latest read;
//! - a repo whose deletion a read showed is never dispatched after that read;
//! - nothing is re-dispatched because a read failed: a repo a shard last said it was cloning
//!   is not dispatched while that shard's reads fail or are late;
//! - status counts add up to the desired set, per shard and in total;
//! - attempt counts never go backwards, in the machine or in the state DB (records are
//!   written in the order they were made), and once the writer has caught up the state DB
//!   holds exactly the machine's records;
//! - a stall is never silent: a repo DB unreadable for `stall_after` makes readiness fail;
//! - and, checked by the run itself, every desired repo is cloned on its owner within the
//!   settle bound once the faults stop, with the state DB then equal to the machine's records.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::dispatch::Dispatch;
use crate::machine::{Machine, ShardObservation};
use crate::model::{AttemptRecord, RepoName, Timestamp};
use crate::routing::ShardMap;

use super::repo_db::RepoDb;
use super::run::Process;

/// A broken invariant, with what led to it and how to replay it.
#[derive(Clone, Debug)]
pub struct Violation {
    pub seed: u64,
    /// Simulated time since the start.
    pub at: Duration,
    pub what: String,
    /// The last events before it.
    pub trail: Vec<String>,
}

impl Violation {
    /// The one line that replays this run with its whole trace.
    pub fn replay_command(&self) -> String {
        format!("cargo run -p clonekeeper-sim -- --seed {} --trace", self.seed)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} at {:.3}s: {}", self.seed, self.at.as_secs_f64(), self.what)?;
        writeln!(f, "last events:")?;
        for line in &self.trail {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: {}", self.replay_command())
    }
}

/// What the checks remember between steps, for the running process.
#[derive(Debug, Default)]
pub struct Checks {
    /// Per shard: the cloning list of its last answer, and whether a read failed or was late
    /// since.
    last_cloning: Vec<Option<(BTreeSet<RepoName>, bool)>>,
    /// Names whose deletion the last successful read showed.
    known_deleted: BTreeSet<RepoName>,
    /// The highest attempt count the machine has had for each repo it still holds.
    attempts_seen: BTreeMap<RepoName, u32>,
    /// Since when the repo DB has been unreadable, without a break.
    repo_db_bad_since: Option<Timestamp>,
}

impl Checks {
    /// A new process knows nothing yet.
    pub fn restarted(&mut self, n_shards: usize) {
        self.last_cloning = vec![None; n_shards];
        self.known_deleted.clear();
        self.attempts_seen.clear();
    }

    /// The shards' observations of a tick, and the deleted names if its read succeeded.
    pub fn observed(&mut self, shards: &[ShardObservation], deleted: Option<Vec<RepoName>>) {
        for (slot, observation) in self.last_cloning.iter_mut().zip(shards) {
            match observation {
                ShardObservation::Answered(answer) => {
                    *slot = Some((answer.cloning.iter().cloned().collect(), false));
                }
                ShardObservation::Failed(_) | ShardObservation::Late { .. } => {
                    if let Some((_, stale)) = slot {
                        *stale = true;
                    }
                }
            }
        }
        if let Some(deleted) = deleted {
            self.known_deleted = deleted.into_iter().collect();
        }
    }

    /// A dispatch the machine asks for.
    pub fn dispatching(&self, dispatch: &Dispatch, process: &Process, shards: &ShardMap) -> Result<(), String> {
        let name = &dispatch.name;
        if process.calls.contains_key(name) {
            return Err(format!("{name} dispatched while its previous dispatch is still in flight"));
        }
        let owner = shards.shard_for(name);
        if owner != dispatch.shard {
            return Err(format!("{name} dispatched to shard {} but its owner is shard {owner}", dispatch.shard));
        }
        let snapshot = process.machine.snapshot();
        let Some(repo) = snapshot.desired.repos.find(name.as_str()) else {
            return Err(format!("{name} dispatched but not in the machine's desired set"));
        };
        let url = repo.clone_url();
        if url.as_deref() != Some(dispatch.clone_url.as_str()) {
            return Err(format!("{name} dispatched with {:?}, the latest read says {url:?}", dispatch.clone_url));
        }
        if self.known_deleted.contains(name) {
            return Err(format!("{name} dispatched after a read showed it deleted"));
        }
        if let Some(Some((cloning, true))) = self.last_cloning.get(usize::from(dispatch.shard)) {
            if cloning.contains(name) {
                return Err(format!(
                    "{name} re-dispatched while its shard's reads fail: the last answer said it was cloning"
                ));
            }
        }
        Ok(())
    }

    /// A record reaching the state DB over `previous`.
    pub fn stored(
        &self,
        name: &RepoName,
        record: &AttemptRecord,
        previous: Option<&AttemptRecord>,
    ) -> Result<(), String> {
        match previous {
            Some(previous) if previous.attempts > record.attempts => Err(format!(
                "{name}: the state DB's attempt count went back from {} to {} (a record written out of order)",
                previous.attempts, record.attempts
            )),
            _ => Ok(()),
        }
    }

    /// Once the writer has nothing left to write, the state DB holds exactly the machine's
    /// records: every change the machine made went out as a command, in order.
    pub fn written(&self, machine: &Machine, state_db: &BTreeMap<RepoName, AttemptRecord>) -> Result<(), String> {
        let attempts = machine.attempts();
        if attempts.len() == state_db.len() && state_db.iter().all(|(name, stored)| attempts.get(name) == Some(stored))
        {
            return Ok(());
        }
        let differ: Vec<String> = state_db
            .iter()
            .filter(|(name, stored)| attempts.get(*name) != Some(*stored))
            .map(|(name, stored)| format!("{name}: stored {stored:?}, machine {:?}", attempts.get(name)))
            .chain(
                attempts
                    .iter()
                    .filter(|(name, _)| !state_db.contains_key(*name))
                    .map(|(name, r)| format!("{name}: not stored, machine {r:?}")),
            )
            .take(5)
            .collect();
        Err(format!(
            "the state DB differs from the machine's records with nothing left to write: {}",
            differ.join("; ")
        ))
    }

    /// The checks of the process's state after each step.
    pub fn after_step(
        &mut self,
        process: &Process,
        repo_db: &RepoDb,
        now: Timestamp,
        stall_after: Duration,
    ) -> Result<(), String> {
        let machine = &process.machine;
        let plan = machine.plan();
        if machine.ticks() > 0 {
            let desired = machine.snapshot().desired.repos.len() as u64;
            if plan.states.len() as u64 != desired || plan.totals.desired != desired {
                return Err(format!(
                    "status counts {} desired and {} states, the desired set has {desired}",
                    plan.totals.desired,
                    plan.states.len()
                ));
            }
            let counts = machine.shard_counts();
            for (idx, c) in counts.iter().enumerate() {
                if c.cloned + c.cloning + c.uncloned + c.failed + c.unknown != c.desired {
                    return Err(format!("shard {idx}: states do not add up to its desired repos: {c:?}"));
                }
            }
            let sum: u64 = counts.iter().map(|c| c.desired).sum();
            if sum != desired {
                return Err(format!("per-shard desired counts add up to {sum}, the desired set has {desired}"));
            }
        }

        let attempts = machine.attempts();
        self.attempts_seen.retain(|name, _| attempts.contains_key(name));
        for (name, record) in attempts {
            let seen = self.attempts_seen.entry(name.clone()).or_insert(record.attempts);
            if record.attempts < *seen {
                return Err(format!(
                    "{name}: the machine's attempt count went back from {seen} to {}",
                    record.attempts
                ));
            }
            *seen = record.attempts;
        }

        let bad = now < repo_db.down_until || now < repo_db.hung_until;
        self.repo_db_bad_since = if bad { Some(self.repo_db_bad_since.unwrap_or(now)) } else { None };
        if let Some(since) = self.repo_db_bad_since {
            let from = since.max(process.started_at);
            if now >= from.saturating_add(stall_after + Duration::from_secs(1))
                && process.liveness.report().problems(now).is_empty()
            {
                return Err(format!(
                    "silent stall: the repo DB has been unreadable for {}s and readiness reports nothing",
                    now.since(from).as_secs()
                ));
            }
        }
        Ok(())
    }
}

//! Which repos missing from a shard's list are worth a `/repo-clone-progress` call.
//!
//! Asking about every missing repo each tick costs one call per 5,000 names per shard: with
//! 100,000 repos uncloned that is 20 calls per shard per tick, and the answers change no
//! decision for most of them (a repo in backoff, given up, or far down the queue is not
//! dispatched this tick whatever the shard says). So between full sweeps a tick asks only
//! about the repos whose answer can change what the loop does next:
//!
//! - every repo a shard said it was cloning, until it says otherwise (the clone may end or
//!   vanish with a restart);
//! - every repo with a dispatch in flight or a successful dispatch awaiting its confirmation
//!   (the answer decides whether it is lost);
//! - the head of each shard's queue: the repos that may be dispatched before the next tick,
//!   so one another client is already cloning is not sent again.
//!
//! A sweep every `[sync] full_interval` (and at the first tick, when the machine knows nothing
//! of what a previous process dispatched) asks about every missing repo, so a clone another
//! client started is seen within that period.

use std::collections::HashSet;

use super::{Machine, Snapshot};
use crate::model::{NameList, RepoName, ShardIdx, Timestamp};

/// How many repos of each shard's queue head are asked about, at least.
const HEAD_MIN: usize = 16;

/// The names a shard observation asks progress for, besides its list.
#[derive(Debug, Default)]
pub struct ProgressScope {
    /// A sweep: every missing repo is asked about.
    all: bool,
    names: HashSet<RepoName>,
}

impl ProgressScope {
    /// A sweep: every repo a shard's list lacks.
    pub fn everything() -> ProgressScope {
        ProgressScope { all: true, names: HashSet::new() }
    }

    /// Whether a repo missing from its shard's list is asked about.
    pub fn wants(&self, name: &RepoName) -> bool {
        self.all || self.names.contains(name)
    }

    /// Whether this is a sweep.
    pub fn is_sweep(&self) -> bool {
        self.all
    }

    /// The names asked about besides a sweep (none for a sweep).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.names.is_empty()
    }

    /// The repos to ask `shard` about: those of `snapshot` it owns that its list `listed` lacks
    /// and this scope names, in desired order.
    ///
    /// A sweep indexes the list once; between sweeps the scope's few hundred names are checked
    /// against one pass over the list, so no index of a shard's whole list is built.
    pub fn missing<'s>(&self, snapshot: &'s Snapshot, shard: ShardIdx, listed: &NameList) -> Vec<&'s str> {
        let repos = &snapshot.desired.repos;
        let owned = |idx: usize| snapshot.routes.get(idx) == Some(&shard);
        if self.all {
            // hashbrown's default hasher: a sweep hashes every listed name, and SipHash would
            // cost as much as the rest of it.
            let mut index = hashbrown::HashSet::with_capacity(listed.len());
            index.extend(listed.iter());
            let listed = index;
            // The routes are a small array: only the names of the repos this shard owns are
            // looked at, not a million names for each of the shards.
            return snapshot
                .routes
                .iter()
                .enumerate()
                .filter(|&(_, &route)| route == shard)
                .map(|(idx, _)| repos.name(idx))
                .filter(|name| !listed.contains(name))
                .collect();
        }
        let mut wanted: HashSet<usize> = self
            .names
            .iter()
            .filter_map(|name| repos.binary_search(name.as_str()).ok())
            .filter(|&idx| owned(idx))
            .collect();
        if !wanted.is_empty() {
            let by_name: std::collections::HashMap<&str, usize> =
                wanted.iter().map(|&idx| (repos.name(idx), idx)).collect();
            for name in listed.iter() {
                if let Some(idx) = by_name.get(name) {
                    wanted.remove(idx);
                }
            }
        }
        let mut missing: Vec<usize> = wanted.into_iter().collect();
        missing.sort_unstable();
        missing.into_iter().map(|idx| repos.name(idx)).collect()
    }
}

impl Machine {
    /// The scope of the progress calls of an observation starting at `now` (see the module
    /// documentation). A sweep is due at the first call and `full_interval` after the last.
    pub fn progress_scope(&mut self, now: Timestamp) -> ProgressScope {
        let sweep_due = self.last_sweep_at.is_none_or(|at| now.since(at) >= self.settings.full_interval);
        if sweep_due {
            self.last_sweep_at = Some(now);
            return ProgressScope::everything();
        }
        let mut names: HashSet<RepoName> = HashSet::new();
        names.extend(self.shards.cloning().cloned());
        names.extend(self.scheduler.in_flight().cloned());
        let awaiting = self.attempts.iter().filter(|(_, record)| {
            record.in_flight
                || (record.attempts > 0
                    && record.last_error.is_none()
                    && record.gave_up.is_none()
                    && record.next_attempt_at.is_some())
        });
        names.extend(awaiting.map(|(name, _)| name.clone()));
        let head = (self.settings.limits.max_in_flight_per_shard as usize * 4).max(HEAD_MIN);
        let repos = &self.snapshot.desired.repos;
        names.extend(self.scheduler.heads(head).filter_map(|job| repos.get(job.repo as usize)).map(|r| r.repo_name()));
        ProgressScope { all: false, names }
    }
}

//! Reconcile: desired (repo DB) against actual (the shards' lists) → the state of every
//! repo, per-shard counts, and the repos due for a dispatch now.
//!
//! **Architecture invariant:** this module does no I/O, reads no clock, spawns nothing and
//! never fails. Time is the `now` parameter; a bad row is a [`Problem`], not an error. A
//! tidy test fails if this directory mentions an I/O crate. A large set's per-shard lookups
//! borrow rayon's thread pool, and give what one shard after another would.
//!
//! **Invariant:** a shard that has never been listed is unknown, never empty: an empty list
//! would make every repo it owns look uncloned and re-dispatch all of them.

mod counts;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use counts::Counts;

use crate::model::{AttemptRecord, DesiredRepos, NameList, RepoName, ShardIdx, Timestamp, PARALLEL_FROM};

/// What one shard reported this tick (or last reported, if it is unreachable now). The lists
/// are shared with the tick loop's view of the shard: a million names are not copied per tick.
#[derive(Clone, Debug, Default)]
pub struct ShardActual {
    /// Whether this tick's list call succeeded.
    pub reachable: bool,
    /// `GET /list?cloned`: the last successful list, `None` if the shard has never answered.
    pub cloned: Option<Arc<NameList>>,
    /// Names the shard reports as cloning (`CloneInProgress`).
    pub cloning: Arc<[RepoName]>,
}

/// The actual state of every shard, in configured address order.
#[derive(Clone, Debug, Default)]
pub struct Actual {
    pub shards: Vec<ShardActual>,
}

/// The state of one desired repo, as an operator would name it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RepoState {
    /// Listed by the shard that owns it.
    Cloned,
    /// The owning shard reports a clone in progress, or clonekeeper has a dispatch in flight.
    Cloning,
    /// Not cloned, never failed.
    Uncloned,
    /// Not cloned and the last dispatch failed, the retry policy gave up, or the row has no
    /// clone URL.
    Failed,
    /// The owning shard has never answered a list call: nothing is known, nothing dispatched.
    Unknown,
    /// A dispatch succeeded, yet after the confirmation grace the owning shard neither lists
    /// nor clones it: the shard lost it (e.g. a restart wiped an unfinished clone). The retry
    /// policy decides what happens next. Counted as uncloned.
    Lost,
}

impl RepoState {
    pub fn as_str(self) -> &'static str {
        match self {
            RepoState::Cloned => "cloned",
            RepoState::Cloning => "cloning",
            RepoState::Uncloned => "uncloned",
            RepoState::Failed => "failed",
            RepoState::Unknown => "unknown",
            RepoState::Lost => "lost",
        }
    }
}

/// A finding that does not stop the tick but that an operator should see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The row has no usable clone URL, so it cannot be dispatched.
    NoCloneUrl { name: RepoName },
}

/// A repo cloned on some shard that the repo DB does not (or no longer) want. Reported, never
/// deleted: deleting is a decision for a human.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    pub shard: ShardIdx,
    pub name: RepoName,
}

/// How many orphans the plan keeps by name; the rest are only counted.
pub const ORPHAN_SAMPLE: usize = 100;

/// The outcome of one reconcile.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The state of each desired repo, index-aligned with the `desired` slice.
    pub states: Vec<RepoState>,
    /// Indices into `desired` of the repos to dispatch now, in `desired` order (the scheduler
    /// orders them).
    pub due: Vec<u32>,
    /// Counts per shard, in address order.
    pub shards: Vec<Counts>,
    /// The sum over all shards.
    pub totals: Counts,
    /// Up to [`ORPHAN_SAMPLE`] orphans by name.
    pub orphans: Vec<Orphan>,
    pub problems: Vec<Problem>,
    /// The earliest future backoff deadline: when a repo becomes due without anything else
    /// changing.
    pub next_due_at: Option<Timestamp>,
}

/// Inputs to [`reconcile`] besides the two sets.
pub struct Context<'a> {
    /// Durable dispatch history by repo.
    pub attempts: &'a HashMap<RepoName, AttemptRecord>,
    /// Repos with a dispatch in flight from this process.
    pub in_flight: &'a HashSet<RepoName>,
    pub now: Timestamp,
}

/// Compares desired with actual. `routes[i]` is the owning shard of `desired[i]`.
///
/// A name listed on a shard counts as cloned only on the shard that owns it: a clone left on
/// another shard after the address list changed is *misplaced* (counted on the shard that
/// holds it) and its repo still needs cloning on its owner, as gitserver's Go client decided.
pub fn reconcile(desired: &DesiredRepos, routes: &[ShardIdx], actual: &Actual, ctx: &Context<'_>) -> Plan {
    debug_assert_eq!(desired.len(), routes.len());
    debug_assert!(desired.names().is_sorted(), "the desired set is sorted by name");
    let n_shards = actual.shards.len();
    let mut plan = Plan {
        states: Vec::with_capacity(desired.len()),
        shards: vec![Counts::default(); n_shards],
        ..Plan::default()
    };

    let cloned: Vec<AtomicBool> = (0..desired.len()).map(|_| AtomicBool::new(false)).collect();
    let mut cloning = vec![false; desired.len()];
    let owned = Owned::new(routes, n_shards);
    // Each listed shard's lookups are independent (and mark only the repos it owns): on every
    // core for a large set.
    let match_shard = |(shard_idx, listing): (usize, &ShardActual)| {
        let list = listing.cloned.as_ref()?;
        let shard = ShardIdx::try_from(shard_idx).expect("shard count fits ShardIdx");
        let matched = mark_owned(desired, owned.by(shard_idx), list, &cloned);
        let mut counts = Counts::default();
        let mut orphans = Vec::new();
        count_unmatched(desired, routes, shard, list, &matched, &mut counts, &mut orphans);
        Some((counts, orphans))
    };
    let matches: Vec<_> = if desired.len() >= PARALLEL_FROM {
        use rayon::prelude::*;
        actual.shards.par_iter().enumerate().map(match_shard).collect()
    } else {
        actual.shards.iter().enumerate().map(match_shard).collect()
    };
    drop(owned);
    let cloned: Vec<bool> = cloned.into_iter().map(AtomicBool::into_inner).collect();
    for (shard_idx, found) in matches.into_iter().enumerate() {
        let Some((counts, orphans)) = found else { continue };
        plan.shards[shard_idx] = counts;
        let room = ORPHAN_SAMPLE.saturating_sub(plan.orphans.len());
        plan.orphans.extend(orphans.into_iter().take(room));
    }
    for (shard_idx, listing) in actual.shards.iter().enumerate() {
        let shard = ShardIdx::try_from(shard_idx).expect("shard count fits ShardIdx");
        for name in listing.cloning.iter() {
            if let Ok(idx) = desired.binary_search(name.as_str()) {
                if routes[idx] == shard {
                    cloning[idx] = true;
                }
            }
        }
    }
    // Dispatches in flight count as cloning, wherever they went. Records and dispatches are
    // few beside the desired set: each is looked up once here, not every repo in them.
    for name in ctx.in_flight {
        if let Ok(idx) = desired.binary_search(name.as_str()) {
            cloning[idx] = true;
        }
    }
    let mut records: Vec<(usize, &AttemptRecord)> = ctx
        .attempts
        .iter()
        .filter_map(|(name, record)| Some((desired.binary_search(name.as_str()).ok()?, record)))
        .collect();
    records.sort_unstable_by_key(|&(idx, _)| idx);
    let mut records = records.into_iter().peekable();

    for (idx, repo) in desired.iter().enumerate() {
        let shard = usize::from(routes[idx]);
        let url_missing = repo.url_missing();
        let record = records.next_if(|&(at, _)| at == idx).map(|(_, record)| record);
        let listed = actual.shards.get(shard).is_some_and(|s| s.cloned.is_some());
        let state = if cloned[idx] {
            RepoState::Cloned
        } else if !listed {
            RepoState::Unknown
        } else if cloning[idx] {
            RepoState::Cloning
        } else if url_missing {
            plan.problems.push(Problem::NoCloneUrl { name: repo.repo_name() });
            RepoState::Failed
        } else if record.is_some_and(|r| r.gave_up.is_some() || r.last_error.is_some()) {
            RepoState::Failed
        } else if record.is_some_and(|r| r.attempts > 0 && r.next_attempt_at.is_some_and(|at| at <= ctx.now)) {
            // Only a successful dispatch leaves attempts without an error and a deadline set
            // (the confirmation grace); that deadline has passed without a clone.
            RepoState::Lost
        } else {
            RepoState::Uncloned
        };

        let counts = &mut plan.shards[shard];
        counts.desired += 1;
        match state {
            RepoState::Cloned => counts.cloned += 1,
            RepoState::Cloning => counts.cloning += 1,
            RepoState::Uncloned | RepoState::Lost => counts.uncloned += 1,
            RepoState::Failed => counts.failed += 1,
            RepoState::Unknown => counts.unknown += 1,
        }
        if matches!(state, RepoState::Uncloned | RepoState::Failed | RepoState::Unknown | RepoState::Lost) {
            if let Some(created) = repo.created_at() {
                counts.oldest_uncloned_created_at =
                    Some(counts.oldest_uncloned_created_at.map_or(created, |t| t.min(created)));
            }
        }

        let dispatchable = !url_missing
            && matches!(state, RepoState::Uncloned | RepoState::Failed | RepoState::Lost)
            && record.is_none_or(|r| r.gave_up.is_none());
        if dispatchable {
            match record.and_then(|r| r.next_attempt_at) {
                Some(at) if at > ctx.now => {
                    counts.backing_off += 1;
                    plan.next_due_at = Some(plan.next_due_at.map_or(at, |t| t.min(at)));
                }
                _ => plan.due.push(u32::try_from(idx).expect("checked above")),
            }
        }
        plan.states.push(state);
    }

    for (counts, shard) in plan.shards.iter_mut().zip(&actual.shards) {
        counts.reachable = shard.reachable;
    }
    plan.totals = Counts::sum(&plan.shards);
    plan
}

/// The set's indices grouped by owning shard, each group in name order (a counting sort of
/// the routes), so each shard's repos are visited once: scanning every route for each shard
/// grows with repos × shards, a billion steps at 10M repos on 100 shards.
struct Owned {
    /// Where each shard's group starts in `indices`, and one past the last group's end.
    starts: Vec<usize>,
    indices: Vec<u32>,
}

impl Owned {
    fn new(routes: &[ShardIdx], n_shards: usize) -> Owned {
        let mut starts = vec![0usize; n_shards + 1];
        // A route past the shards (none the machine makes) owns nothing here.
        let in_range = |route: ShardIdx| Some(usize::from(route)).filter(|&shard| shard < n_shards);
        for shard in routes.iter().filter_map(|&route| in_range(route)) {
            starts[shard + 1] += 1;
        }
        for shard in 1..starts.len() {
            starts[shard] += starts[shard - 1];
        }
        let mut next = starts.clone();
        let mut indices = vec![0u32; starts[n_shards]];
        for (idx, shard) in routes.iter().enumerate().filter_map(|(idx, &route)| Some((idx, in_range(route)?))) {
            indices[next[shard]] = u32::try_from(idx).expect("fewer than 4 billion desired repos");
            next[shard] += 1;
        }
        Owned { starts, indices }
    }

    /// The indices of the repos `shard` owns, in name order.
    fn by(&self, shard: usize) -> &[u32] {
        &self.indices[self.starts[shard]..self.starts[shard + 1]]
    }
}

/// Marks the repos a shard owns (`owned`, in name order) that its `list` holds as cloned,
/// and returns which of the list's names matched one. Shards own disjoint repos, so shards
/// can mark at once.
///
/// The list is indexed, not the desired set: a shard's list is a fraction of the set, so its
/// table and names stay in cache while the owned repos' names are read in order. Looking each
/// listed name up in a table of the whole set cost about three cache misses a name, a quarter
/// of a second per tick at a million repos.
fn mark_owned(desired: &DesiredRepos, owned: &[u32], list: &NameList, cloned: &[AtomicBool]) -> Vec<bool> {
    let hasher = hashbrown::DefaultHashBuilder::default();
    let listed = |pos: &u32| list.get(*pos as usize);
    let mut table = hashbrown::HashTable::<u32>::with_capacity(list.len());
    for (pos, name) in list.iter().enumerate() {
        let pos = u32::try_from(pos).expect("a list's names are fewer than 4 billion (its ends are u32)");
        let hash = hasher.hash_one(name);
        if table.find(hash, |other| listed(other) == name).is_none() {
            table.insert_unique(hash, pos, |other| hasher.hash_one(listed(other)));
        }
    }
    let mut matched = vec![false; list.len()];
    for &idx in owned {
        let name = desired.name(idx as usize);
        if let Some(&pos) = table.find(hasher.hash_one(name), |other| listed(other) == name) {
            cloned[idx as usize].store(true, Ordering::Relaxed);
            matched[pos as usize] = true;
        }
    }
    matched
}

/// Counts the names of `shard`'s list that no repo it owns matched: misplaced (desired, but
/// owned by another shard) or orphaned (not desired, the first [`ORPHAN_SAMPLE`] kept by
/// name). They are few, so each is found in the sorted set by binary search.
fn count_unmatched(
    desired: &DesiredRepos,
    routes: &[ShardIdx],
    shard: ShardIdx,
    list: &NameList,
    matched: &[bool],
    counts: &mut Counts,
    orphans: &mut Vec<Orphan>,
) {
    for (name, _) in list.iter().zip(matched).filter(|&(_, &matched)| !matched) {
        match desired.binary_search(name) {
            // Listed twice: the first is the one matched.
            Ok(idx) if routes[idx] == shard => {}
            Ok(_) => counts.misplaced += 1,
            Err(_) => {
                counts.orphaned += 1;
                if orphans.len() < ORPHAN_SAMPLE {
                    orphans.push(Orphan { shard, name: RepoName::from_normalized(name) });
                }
            }
        }
    }
}

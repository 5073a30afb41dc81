//! What the machine is told of the outside world: one observation per tick. Plain data, made by
//! the sidecar's observation tasks in production and by the simulator's shards in `sim/`.

use std::sync::Arc;

use crate::model::{ListTooLarge, NameList, RepoName, ShardIdx, Timestamp};
use crate::routing::ShardMap;
use crate::sources::repo_db::{DesiredChanges, DesiredSet};

pub use crate::model::PARALLEL_FROM;

/// The desired set with each repo's owning shard, shared read-only between the tick loop,
/// the dispatcher and the admin API.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub desired: DesiredSet,
    /// `routes[i]` owns `desired.repos[i]`.
    pub routes: Vec<ShardIdx>,
}

impl Snapshot {
    /// A full read's snapshot: every repo routed.
    pub fn routed(desired: DesiredSet, shards: &ShardMap) -> Snapshot {
        use rayon::prelude::*;
        let route = |idx: usize| shards.shard_for(desired.repos.name(idx));
        // An md5 per repo: on every core for a large set (the order of the routes is kept).
        let routes = if desired.repos.len() >= PARALLEL_FROM {
            (0..desired.repos.len()).into_par_iter().map(route).collect()
        } else {
            (0..desired.repos.len()).map(route).collect()
        };
        Snapshot { desired, routes }
    }

    /// A full read's snapshot from the routes the reader computed as the rows arrived
    /// (`RepoDb::load_desired_routed`), one per repo in the set's order; the set is routed
    /// here if they are not that.
    pub fn with_routes(desired: DesiredSet, routes: Vec<ShardIdx>, shards: &ShardMap) -> Snapshot {
        if routes.len() == desired.repos.len() {
            Snapshot { desired, routes }
        } else {
            Snapshot::routed(desired, shards)
        }
    }

    /// Whether the next read may be incremental: the last full read is younger than
    /// `full_interval`, and `at_hand` is the snapshot the last read gave (`base`), since a delta
    /// applies only on top of it. The sidecar and the simulator decide alike through this.
    pub fn may_read_incrementally(
        since_full: Option<std::time::Duration>,
        full_interval: std::time::Duration,
        base: &std::sync::Weak<Snapshot>,
        at_hand: &Arc<Snapshot>,
    ) -> bool {
        since_full.is_some_and(|age| age < full_interval) && base.upgrade().is_some_and(|b| Arc::ptr_eq(&b, at_hand))
    }

    /// The snapshot after an incremental read's `changes`: `previous` itself (no copy) when the
    /// delta holds nothing `previous` lacks, which is the common case between full reads (see
    /// `DesiredChanges::without_rows_held_by`). The sidecar and the simulator apply deltas alike
    /// through this. Fails only when the names would pass what one set holds (4 GiB).
    pub fn after_changes(
        previous: &Arc<Snapshot>,
        changes: DesiredChanges,
        shards: &ShardMap,
    ) -> Result<Arc<Snapshot>, ListTooLarge> {
        let changes = changes.without_rows_held_by(&previous.desired);
        if changes.ids.is_empty() {
            return Ok(Arc::clone(previous));
        }
        Ok(Arc::new(previous.with_changes(changes, shards)?))
    }

    /// The snapshot after an incremental read's `changes` (see `DesiredSet::apply`): repos
    /// carried over keep their route, only changed ones are routed again.
    pub fn with_changes(&self, changes: DesiredChanges, shards: &ShardMap) -> Result<Snapshot, ListTooLarge> {
        let (desired, origins) = self.desired.apply(changes)?;
        let routes = desired
            .repos
            .names()
            .zip(origins)
            .map(|(name, origin)| match origin.and_then(|idx| self.routes.get(idx as usize)) {
                Some(&route) => route,
                None => shards.shard_for(name),
            })
            .collect();
        Ok(Snapshot { desired, routes })
    }
}

/// What one shard answered.
#[derive(Debug, Default)]
pub struct ShardAnswer {
    /// `/list?cloned` and the names progress calls found cloned since.
    pub cloned: NameList,
    pub cloning: Vec<RepoName>,
}

/// What a tick learned of one shard.
#[derive(Debug)]
pub enum ShardObservation {
    /// The shard's list and progress calls answered (possibly for an earlier tick, if it was
    /// late then).
    Answered(ShardAnswer),
    /// A call failed; the message names the shard and the call.
    Failed(String),
    /// The shard's observation, started at `since`, has not finished yet.
    Late { since: Timestamp },
}

/// The result of one observation; failures are kept per source so the rest still counts.
#[derive(Debug)]
pub struct Observation {
    /// A fresh snapshot, or why the repo DB could not be read.
    pub snapshot: Result<Arc<Snapshot>, String>,
    /// One per configured shard, in address order.
    pub shards: Vec<ShardObservation>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DesiredRepo, RepoName};
    use crate::routing::Routing;

    #[test]
    fn a_large_set_is_routed_on_every_core_in_its_own_order() {
        let shards = ShardMap::new((0..8).map(|i| format!("gs-{i}")).collect(), Routing::Md5).expect("eight shards");
        let repos: Vec<DesiredRepo> = (0..PARALLEL_FROM as i64 + 1_000)
            .map(|i| DesiredRepo::new(i, RepoName::from_normalized(format!("github.com/o/r-{i}")), ""))
            .collect();
        let snapshot = Snapshot::routed(DesiredSet { repos: repos.into(), ..DesiredSet::default() }, &shards);
        let expected: Vec<ShardIdx> = snapshot.desired.repos.names().map(|name| shards.shard_for(name)).collect();
        assert_eq!(snapshot.routes.len(), PARALLEL_FROM + 1_000);
        assert_eq!(snapshot.routes, expected, "the routes of the parallel pass are those of one pass in order");
    }
}

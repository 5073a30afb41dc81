//! Per-shard counts: the numbers the status API and the metrics report.

use crate::model::Timestamp;

/// How many repos are in each state on one shard (or in total).
///
/// `queued` and `in_flight` belong to the scheduler; reconcile leaves them zero and the tick
/// fills them in, so every number comes from the component that knows it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Desired repos this shard owns.
    pub desired: u64,
    pub cloned: u64,
    pub cloning: u64,
    pub uncloned: u64,
    pub failed: u64,
    /// Owned repos whose shard has never answered a list call.
    pub unknown: u64,
    /// Cloned here but not desired anywhere.
    pub orphaned: u64,
    /// Cloned here but owned by another shard.
    pub misplaced: u64,
    /// Not cloned and waiting for a backoff deadline.
    pub backing_off: u64,
    pub queued: u64,
    pub in_flight: u64,
    /// `created_at` of the oldest desired repo that is not cloned.
    pub oldest_uncloned_created_at: Option<Timestamp>,
    /// Whether this tick's list call succeeded (for totals: all shards reachable).
    pub reachable: bool,
}

impl Counts {
    /// Adds up per-shard counts; the total is reachable only if every shard is.
    pub fn sum(shards: &[Counts]) -> Counts {
        let mut total = Counts { reachable: true, ..Counts::default() };
        for c in shards {
            total.desired += c.desired;
            total.cloned += c.cloned;
            total.cloning += c.cloning;
            total.uncloned += c.uncloned;
            total.failed += c.failed;
            total.unknown += c.unknown;
            total.orphaned += c.orphaned;
            total.misplaced += c.misplaced;
            total.backing_off += c.backing_off;
            total.queued += c.queued;
            total.in_flight += c.in_flight;
            total.reachable &= c.reachable;
            total.oldest_uncloned_created_at = match (total.oldest_uncloned_created_at, c.oldest_uncloned_created_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        total
    }
}

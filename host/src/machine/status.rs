//! The machine's part of the status document: counts per shard and in total, shard
//! reachability, problems and orphans. The shell adds what only it knows (policies, refused
//! records, write-back, the repo DB's schema shape).

use super::Machine;
use crate::model::Timestamp;
use crate::reconcile::{self, Counts, Problem};
use crate::status::{ShardStatus, StateCounts, Status};

/// How many problems and orphans the status lists by name.
const STATUS_SAMPLE: usize = 20;

impl Machine {
    /// Per-shard counts of the last plan with the scheduler's queued and in-flight counts, in
    /// address order (one entry per configured shard, even before the first tick).
    pub fn shard_counts(&self) -> Vec<Counts> {
        let queued = self.scheduler.queued_per_shard();
        let in_flight = self.scheduler.in_flight_per_shard();
        let mut shard_counts = self.plan.shards.clone();
        shard_counts.resize(self.settings.shards.len(), Counts::default());
        for (idx, counts) in shard_counts.iter_mut().enumerate() {
            counts.queued = queued.get(idx).copied().unwrap_or(0);
            counts.in_flight = in_flight.get(idx).copied().unwrap_or(0);
        }
        shard_counts
    }

    /// The status document as far as the machine knows it.
    pub fn status(&self, shard_counts: &[Counts]) -> Status {
        let totals = reconcile::Counts::sum(shard_counts);
        let shards = shard_counts
            .iter()
            .enumerate()
            .map(|(idx, counts)| ShardStatus {
                addr: self.settings.shards.addr(idx as u16).to_string(),
                reachable: self.shards.reachable(idx),
                error: self.shards.error(idx).map(str::to_string),
                late_since: self.shards.late_since(idx).map(Timestamp::to_rfc3339),
                counts: StateCounts::from(counts),
            })
            .collect();
        let mut problems: Vec<String> =
            self.snapshot.desired.problems.iter().take(STATUS_SAMPLE).map(|p| p.to_string()).collect();
        problems.extend(self.plan.problems.iter().take(STATUS_SAMPLE).map(|p| match p {
            Problem::NoCloneUrl { name } => format!("{name}: no clone URL in the repo DB"),
        }));
        problems.truncate(STATUS_SAMPLE);
        Status {
            totals: StateCounts::from(&totals),
            shards,
            ticks: self.ticks,
            last_tick_at: self.last_tick_at.map(Timestamp::to_rfc3339),
            repo_db_error: self.repo_db_error.clone(),
            dispatches: self.totals.clone(),
            problems,
            orphans: self
                .plan
                .orphans
                .iter()
                .take(STATUS_SAMPLE)
                .map(|o| format!("{}: {}", self.settings.shards.addr(o.shard), o.name))
                .collect(),
            ..Status::default()
        }
    }
}

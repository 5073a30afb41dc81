//! Schedule: what to dispatch next, under the in-flight caps, and when to retry.
//!
//! **Architecture invariant:** pure, like `reconcile/`: no I/O, no clock, no spawning.
//! The dispatcher feeds it (`handle_*`) and drains it (`poll_*`).
//!
//! **Invariant:** a repo is never in flight twice: [`Scheduler::poll_dispatch`] skips a
//! repo that is in flight, and only [`Scheduler::handle_finished`] clears it.

mod backoff;
mod limits;
mod priority;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

pub use backoff::{Backoff, BuiltinRetry, Failure, RetryDecision, RetryPolicy};
pub use limits::{code_host_of, KeyLoad, LimitKey, NoLimits, RateLimit, RateLimitPolicy, RateLimiters, Refusal};
pub use priority::{order, BuiltinOrder, Candidate, Ordered, Prioritizer, Priority, BUILTIN};

use std::time::Duration;

use crate::model::{RepoName, ShardIdx, Timestamp};

/// First pause of a shard that failed; doubles per consecutive failure up to [`SHARD_PAUSE_MAX`].
pub const SHARD_PAUSE_BASE: Duration = Duration::from_secs(1);
/// Longest pause of a failing shard: how often a dead shard is probed.
pub const SHARD_PAUSE_MAX: Duration = Duration::from_secs(60);
/// How far into a shard's queue [`Scheduler::poll_dispatch`] looks for a repo whose code host
/// is not rate-limited, so a limited host at the head cannot hold up the others.
pub const RATE_SCAN_WINDOW: usize = 1024;

/// Concurrency caps, from `[dispatch]` in config.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Dispatches in flight to one shard at once: each is a running `git clone` there.
    pub max_in_flight_per_shard: u32,
    /// Dispatches in flight in total.
    pub max_in_flight: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_in_flight_per_shard: 5, max_in_flight: 40 }
    }
}

/// A dispatch to make: the repo (an index into the desired snapshot the queue was built
/// from) and its owning shard.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub repo: u32,
    pub shard: ShardIdx,
}

#[derive(Copy, Clone, Debug)]
struct Queued {
    repo: u32,
    /// Position in this tick's global order; lower goes first.
    rank: u32,
}

/// The priority queue and the in-flight bookkeeping.
#[derive(Debug)]
pub struct Scheduler {
    limits: Limits,
    /// Per shard, best first.
    queues: Vec<VecDeque<Queued>>,
    in_flight: HashMap<RepoName, ShardIdx>,
    in_flight_per_shard: Vec<u32>,
    /// Consecutive failures of each shard (list calls or dispatches that did not reach it).
    shard_failures: Vec<u32>,
    /// No dispatch to the shard before this time: a dead shard is probed, not hammered.
    paused_until: Vec<Option<Timestamp>>,
    /// Rate limits per code host and per shard (empty: none).
    rates: RateLimiters,
}

impl Scheduler {
    pub fn new(n_shards: usize, limits: Limits) -> Scheduler {
        Scheduler {
            limits,
            queues: vec![VecDeque::new(); n_shards],
            in_flight: HashMap::new(),
            in_flight_per_shard: vec![0; n_shards],
            shard_failures: vec![0; n_shards],
            paused_until: vec![None; n_shards],
            rates: RateLimiters::default(),
        }
    }

    /// Replaces the rate limits (a rate-limit policy's answer); keys whose limit did not change
    /// keep their budget.
    pub fn handle_rate_limits(&mut self, limits: Vec<(LimitKey, RateLimit)>, now: Timestamp) {
        self.rates.handle_limits(limits, now);
    }

    /// The rate limits in force.
    pub fn rate_limits(&self) -> &RateLimiters {
        &self.rates
    }

    /// Replaces the queue with this tick's jobs, best first. Level-triggered: whatever the
    /// previous tick queued and did not dispatch is forgotten, because this tick's plan
    /// supersedes it.
    pub fn handle_plan(&mut self, ordered: &[Job]) {
        for queue in &mut self.queues {
            queue.clear();
        }
        for (rank, job) in ordered.iter().enumerate() {
            if let Some(queue) = self.queues.get_mut(usize::from(job.shard)) {
                let rank = u32::try_from(rank).unwrap_or(u32::MAX);
                queue.push_back(Queued { repo: job.repo, rank });
            }
        }
    }

    /// Records that a shard could not be reached (a failed list call or a dispatch that did not
    /// get through): dispatches to it pause, for longer after each consecutive failure.
    pub fn handle_shard_down(&mut self, shard: ShardIdx, now: Timestamp) {
        let idx = usize::from(shard);
        self.shard_failures[idx] = self.shard_failures[idx].saturating_add(1);
        let exponent = (self.shard_failures[idx] - 1).min(16);
        let pause = SHARD_PAUSE_BASE.saturating_mul(1 << exponent).min(SHARD_PAUSE_MAX);
        self.paused_until[idx] = Some(now.saturating_add(pause));
    }

    /// Records that a shard answered: dispatches to it resume.
    pub fn handle_shard_up(&mut self, shard: ShardIdx) {
        let idx = usize::from(shard);
        self.shard_failures[idx] = 0;
        self.paused_until[idx] = None;
    }

    /// Until when dispatches to `shard` are paused, if they are.
    pub fn paused_until(&self, shard: ShardIdx) -> Option<Timestamp> {
        self.paused_until[usize::from(shard)]
    }

    /// When [`Scheduler::poll_dispatch`] may return a job without any other input: the end of
    /// the earliest pause of a shard that has queued work.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let pause = self
            .paused_until
            .iter()
            .zip(&self.queues)
            .filter(|(_, queue)| !queue.is_empty())
            .filter_map(|(until, _)| *until)
            .min();
        let queued = self.queues.iter().any(|queue| !queue.is_empty());
        let rate = if queued { self.rates.next_unblock() } else { None };
        match (pause, rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next job allowed by the caps and shard pauses at `now`, marked in flight; `None`
    /// when nothing may go now. `name_of` resolves a queued index to its name.
    pub fn poll_dispatch<'a>(&mut self, now: Timestamp, name_of: impl Fn(u32) -> &'a str) -> Option<(Job, RepoName)> {
        if !self.rates.is_empty() {
            self.rates.expire(now);
        }
        loop {
            if self.in_flight.len() >= self.limits.max_in_flight as usize {
                return None;
            }
            // Per eligible shard, the first queued repo the rate limits let through (always the
            // head when no limits are set); the best-ranked of those goes.
            let rates = &self.rates;
            let (shard, pos) = self
                .queues
                .iter()
                .enumerate()
                .filter(|(idx, queue)| {
                    !queue.is_empty()
                        && self.in_flight_per_shard[*idx] < self.limits.max_in_flight_per_shard
                        && self.paused_until[*idx].is_none_or(|until| until <= now)
                        && !rates.shard_refuses(*idx as ShardIdx, now)
                })
                .filter_map(|(idx, queue)| {
                    let pos = if rates.is_empty() {
                        0
                    } else {
                        queue
                            .iter()
                            .take(RATE_SCAN_WINDOW)
                            .position(|q| !rates.host_refuses(code_host_of(name_of(q.repo)), now))?
                    };
                    Some((queue[pos].rank, idx, pos))
                })
                .min_by_key(|(rank, _, _)| *rank)
                .map(|(_, idx, pos)| (idx, pos))?;
            let name = name_of(self.queues[shard][pos].repo);
            if self.in_flight.contains_key(name) {
                self.queues[shard].remove(pos);
                continue;
            }
            let shard_idx = ShardIdx::try_from(shard).expect("shard count fits ShardIdx");
            if !self.rates.is_empty() && self.rates.try_acquire(shard_idx, code_host_of(name), now).is_err() {
                // The refusing key is now marked blocked; look again.
                continue;
            }
            let queued = self.queues[shard].remove(pos).expect("position found above");
            let shard = shard_idx;
            let name = RepoName::from_normalized(name);
            self.in_flight.insert(name.clone(), shard);
            self.in_flight_per_shard[usize::from(shard)] += 1;
            return Some((Job { repo: queued.repo, shard }, name));
        }
    }

    /// Records that the dispatch of `name` ended (whatever its outcome), freeing its slot.
    pub fn handle_finished(&mut self, name: &RepoName) {
        if let Some(shard) = self.in_flight.remove(name) {
            let slot = &mut self.in_flight_per_shard[usize::from(shard)];
            *slot = slot.saturating_sub(1);
            self.rates.release(shard, code_host_of(name.as_str()));
        }
    }

    pub fn is_in_flight(&self, name: &RepoName) -> bool {
        self.in_flight.contains_key(name)
    }

    /// Names in flight now, for reconcile's next tick.
    /// Dispatch slots free now: each shard's free slots under its cap, at most the global
    /// cap's free slots.
    pub fn free_slots(&self) -> usize {
        let per_shard: u32 =
            self.in_flight_per_shard.iter().map(|&n| self.limits.max_in_flight_per_shard.saturating_sub(n)).sum();
        let global = self.limits.max_in_flight.saturating_sub(self.in_flight_per_shard.iter().sum());
        per_shard.min(global) as usize
    }

    pub fn in_flight(&self) -> impl Iterator<Item = &RepoName> {
        self.in_flight.keys()
    }

    /// The first `per_shard` queued jobs of every shard: what may be dispatched before the next
    /// tick's plan replaces the queue.
    pub fn heads(&self, per_shard: usize) -> impl Iterator<Item = Job> + '_ {
        self.queues.iter().enumerate().flat_map(move |(shard, queue)| {
            let shard = ShardIdx::try_from(shard).expect("shard count fits ShardIdx");
            queue.iter().take(per_shard).map(move |q| Job { repo: q.repo, shard })
        })
    }

    pub fn queued_per_shard(&self) -> Vec<u64> {
        self.queues.iter().map(|q| q.len() as u64).collect()
    }

    pub fn in_flight_per_shard(&self) -> Vec<u64> {
        self.in_flight_per_shard.iter().map(|&n| u64::from(n)).collect()
    }

    /// Place of a repo in the queue (0 = next), across all shards, or `None` if not queued.
    pub fn queue_position(&self, repo: u32) -> Option<u64> {
        let rank = self.queues.iter().flatten().find(|q| q.repo == repo)?.rank;
        Some(self.queues.iter().flatten().filter(|q| q.rank < rank).count() as u64)
    }

    /// The first `limit` queued jobs in global order.
    pub fn peek(&self, limit: usize) -> Vec<Job> {
        let mut all: Vec<(u32, Job)> = self
            .queues
            .iter()
            .enumerate()
            .flat_map(|(shard, queue)| {
                let shard = ShardIdx::try_from(shard).expect("shard count fits ShardIdx");
                queue.iter().map(move |q| (q.rank, Job { repo: q.repo, shard }))
            })
            .collect();
        all.sort_unstable_by_key(|(rank, _)| *rank);
        all.into_iter().take(limit).map(|(_, job)| job).collect()
    }
}

//! One tick: take the observation, keep what failed at its last good value, reconcile, ask the
//! retry policy about lost clones, order the due repos and replace the scheduler's queue.

use std::collections::HashSet;
use std::sync::Arc;

use super::shard_views::Transition;
use super::{Command, Machine, Observation, TickReport, PRIORITIZE_BATCH};
use crate::model::{RepoName, ShardIdx, Timestamp};
use crate::reconcile::{self, Context, RepoState};
use crate::schedule;

impl Machine {
    /// Applies one observation made at `now`.
    pub fn handle_observation(&mut self, observation: Observation, now: Timestamp) -> TickReport {
        match observation.snapshot {
            Ok(snapshot) => {
                self.snapshot = snapshot;
                self.repo_db_error = None;
            }
            Err(error) => {
                tracing::warn!(%error, "Reading the repo DB failed; using the last good desired set.");
                self.repo_db_error = Some(error);
            }
        }
        for (idx, shard_observation) in observation.shards.into_iter().enumerate() {
            self.handle_shard_observation(idx, shard_observation, now);
        }
        let actual = self.shards.actual();

        let in_flight: HashSet<RepoName> = self.scheduler.in_flight().cloned().collect();
        let snapshot = Arc::clone(&self.snapshot);
        let desired = &snapshot.desired.repos;
        let ctx = Context { attempts: &self.attempts, in_flight: &in_flight, now };
        let mut plan = reconcile::reconcile(desired, &snapshot.routes, &actual, &ctx);
        drop(actual);
        self.reenqueue_lost(&snapshot, &mut plan, now);

        // Records of repos confirmed cloned are no longer needed. Records are few beside the
        // set: each is looked up, in name order (the commands' order is part of the run).
        let mut confirmed: Vec<usize> = self
            .attempts
            .keys()
            .filter_map(|name| desired.binary_search(name.as_str()).ok())
            .filter(|&idx| plan.states[idx] == RepoState::Cloned)
            .collect();
        confirmed.sort_unstable();
        for idx in confirmed {
            let name = desired.at(idx).repo_name();
            self.attempts.remove(name.as_str());
            self.commands.push_back(Command::Forget { name });
        }

        let ordered = schedule::order(
            desired,
            &snapshot.routes,
            &plan,
            &self.attempts,
            self.policies.prioritizer.as_ref(),
            PRIORITIZE_BATCH,
            now,
        );
        if ordered.fallbacks > 0 {
            tracing::warn!(
                batches = ordered.fallbacks,
                "The prioritizer gave unusable answers; used the built-in order for them."
            );
        }
        self.scheduler.handle_plan(&ordered.jobs);
        self.last_order = ordered.jobs.iter().map(|job| job.repo).collect();
        if self.policies.rate_limits.is_active() {
            let loads = self.key_loads(desired, &plan, &ordered.jobs);
            let (limits, decided_by) = self.policies.rate_limits.limits_traced(&loads, now);
            self.log_changed_limits(&loads, &limits, &decided_by);
            let decided_by = Arc::clone(&decided_by);
            self.last_limits = Some(Arc::new(super::LimitsAsked { loads, limits: limits.clone(), decided_by }));
            self.scheduler.handle_rate_limits(limits, now);
        } else {
            self.last_limits = None;
            if !self.scheduler.rate_limits().is_empty() {
                self.scheduler.handle_rate_limits(Vec::new(), now);
            }
        }
        let report = TickReport { due: ordered.jobs.len(), deferred: ordered.deferred, fallbacks: ordered.fallbacks };
        self.decisions =
            ordered.jobs.iter().zip(ordered.decisions).map(|(job, decision)| (job.repo, decision)).collect();
        self.plan = plan;
        self.ticks += 1;
        self.last_tick_at = Some(now);
        tracing::debug!(
            desired = self.plan.totals.desired,
            cloned = self.plan.totals.cloned,
            due = report.due,
            deferred = report.deferred,
            "Tick done."
        );
        report
    }

    fn handle_shard_observation(&mut self, idx: usize, observation: super::ShardObservation, now: Timestamp) {
        let Ok(shard) = ShardIdx::try_from(idx) else { return };
        if idx >= self.settings.shards.len() {
            return;
        }
        let addr = self.settings.shards.addr(shard);
        match self.shards.handle(idx, observation) {
            Transition::Answered { recovered } => {
                self.scheduler.handle_shard_up(shard);
                if recovered {
                    tracing::info!(shard = %addr, "Shard reachable again.");
                }
            }
            Transition::Failed { first } => {
                self.scheduler.handle_shard_down(shard, now);
                if first {
                    let error = self.shards.error(idx).unwrap_or_default();
                    tracing::warn!(shard = %addr, %error, "Shard unreachable; keeping its last lists.");
                }
            }
            Transition::Late { first } => {
                if first {
                    tracing::warn!(
                        shard = %addr,
                        "Shard has not answered its list calls yet; keeping its last lists, the other shards go on."
                    );
                }
            }
        }
    }

    /// Logs the limits that differ from those in force, with the load each key was given.
    fn log_changed_limits(
        &mut self,
        loads: &[schedule::KeyLoad],
        limits: &[(schedule::LimitKey, schedule::RateLimit)],
        decided_by: &str,
    ) {
        let module = crate::policy::short_digest(decided_by).to_string();
        for (key, limit) in limits {
            if self.scheduler.rate_limits().limit(key) == Some(*limit) {
                continue;
            }
            let load = loads.iter().find(|load| &load.key == key);
            let reason = load.map_or_else(String::new, |load| {
                format!("{} repos, {} queued, {} in flight", load.repos, load.queued, load.in_flight)
            });
            let in_flight = limit.max_in_flight.map_or(String::new(), |n| format!(", at most {n} in flight"));
            self.decision_log.push(super::decision_log::LoggedDecision {
                subject: key.to_string(),
                interface: "rate-limits",
                decision: format!("{}/h, burst {}{in_flight}", limit.per_hour, limit.burst),
                module: module.clone(),
                reason,
            });
        }
    }
}

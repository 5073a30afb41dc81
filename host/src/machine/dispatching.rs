//! Dispatches out, outcomes in: the started attempt, how a dispatch ended, and the retry
//! policy's decision about each failure (one call per batch of failures).

use std::sync::Arc;

use super::decision_log::LoggedDecision;
use super::{Command, Machine};
use crate::dispatch::{Dispatch, Outcome};
use crate::model::{AttemptRecord, DesiredRepo, RepoName, ShardIdx, Timestamp};
use crate::policy::short_digest;
use crate::reconcile::RepoState;
use crate::schedule::{Failure, RetryDecision};

/// A failed dispatch waiting for the retry policy's decision.
struct PendingRetry {
    name: RepoName,
    /// The repo's row as dispatched (`None` after a restart lost it).
    repo: Option<DesiredRepo>,
    shard: ShardIdx,
    error: String,
    at: Timestamp,
}

impl Machine {
    /// The next dispatch the scheduler allows at `now`, with its started attempt record.
    pub(super) fn poll_dispatch(&mut self, now: Timestamp) -> Option<Command> {
        let snapshot = Arc::clone(&self.snapshot);
        let repos = &snapshot.desired.repos;
        while let Some((job, name)) = self.scheduler.poll_dispatch(now, |idx| repos.name(idx as usize)) {
            let repo = repos.at(job.repo as usize);
            let Some(clone_url) = repo.clone_url().map(|url| url.into_owned()) else {
                // Reconcile never makes a repo without URL due; stay defensive.
                self.scheduler.handle_finished(&name);
                continue;
            };
            self.in_flight_repos.insert(name.clone(), repo.to_record());
            let record = self.attempts.entry(name.clone()).or_default();
            record.attempts += 1;
            record.last_attempt_at = Some(now);
            record.in_flight = true;
            self.totals.started += 1;
            if !self.dispatched_before.insert(name.clone()) || record.attempts > 1 {
                self.totals.redispatched += 1;
            }
            let dispatch = Dispatch {
                name,
                clone_url,
                shard: job.shard,
                shard_addr: self.settings.shards.addr(job.shard).to_string(),
            };
            tracing::debug!(repo = %dispatch.name, shard = %dispatch.shard_addr, attempt = record.attempts, "Dispatching.");
            return Some(Command::Dispatch { dispatch, record: record.clone() });
        }
        None
    }

    /// Records how a batch of dispatches ended; the failures go to the retry policy in one
    /// call. An outcome for a repo this machine did not dispatch (one made before a restart)
    /// is still recorded.
    pub fn handle_outcomes(&mut self, outcomes: Vec<Outcome>) {
        let failed: Vec<PendingRetry> = outcomes.into_iter().filter_map(|o| self.handle_outcome(o)).collect();
        if !failed.is_empty() {
            self.decide_retries(failed);
        }
    }

    /// Records how a dispatch ended. A failure is returned for [`Machine::decide_retries`].
    fn handle_outcome(&mut self, outcome: Outcome) -> Option<PendingRetry> {
        self.scheduler.handle_finished(&outcome.name);
        let repo = self.in_flight_repos.remove(&outcome.name);
        let now = outcome.finished_at;
        let shard = self.settings.shards.addr(outcome.shard).to_string();
        let took = outcome.finished_at.since(outcome.started_at);
        let confirm_grace = self.confirm_grace();
        if self.recent_clones.len() == super::RECENT_CLONES {
            self.recent_clones.pop_front();
        }
        self.recent_clones.push_back(super::ObservedClone {
            name: outcome.name.clone(),
            shard: outcome.shard,
            finished_at: now,
            took,
            succeeded: outcome.result.is_ok(),
        });
        match &outcome.result {
            Err(failure) if failure.shard_down => self.scheduler.handle_shard_down(outcome.shard, now),
            _ => self.scheduler.handle_shard_up(outcome.shard),
        }
        let record = self.attempts.entry(outcome.name.clone()).or_default();
        record.in_flight = false;
        match outcome.result {
            Ok(()) => {
                self.totals.succeeded += 1;
                record.last_error = None;
                // Only the next list confirms a clone; until then do not dispatch it again.
                record.next_attempt_at = Some(now.saturating_add(confirm_grace));
                tracing::info!(repo = %outcome.name, %shard, took_ms = took.as_millis() as u64, "Dispatch succeeded.");
            }
            Err(failure) => {
                self.totals.failed += 1;
                record.last_error = Some(failure.message.clone());
                // Saved once the retry policy has decided.
                return Some(PendingRetry {
                    name: outcome.name,
                    repo,
                    shard: outcome.shard,
                    error: failure.message,
                    at: now,
                });
            }
        }
        let record = record.clone();
        self.commands.push_back(Command::Save { name: outcome.name, record });
        None
    }

    /// Asks the retry policy about a batch of failures (one call) and stores each decision.
    fn decide_retries(&mut self, failed: Vec<PendingRetry>) {
        let Some(now) = failed.iter().map(|f| f.at).max() else { return };
        let empty = AttemptRecord::default();
        let batch: Vec<Failure<'_>> = failed
            .iter()
            .map(|f| Failure {
                name: &f.name,
                record: self.attempts.get(&f.name).unwrap_or(&empty),
                repo: f.repo.as_ref(),
                shard: f.shard,
                state: RepoState::Failed,
            })
            .collect();
        let (decisions, decided_by) = self.policies.retry.on_failures_traced(&batch, now);
        let asked: Vec<AttemptRecord> = batch.iter().map(|f| f.record.clone()).collect();
        drop(batch);
        for ((pending, record), decision) in failed.iter().zip(asked).zip(&decisions) {
            self.keep_retry_case(super::RetryCase {
                name: pending.name.clone(),
                record,
                repo: pending.repo.clone(),
                shard: pending.shard,
                state: RepoState::Failed,
                decided_at: now,
                decision: decision.clone(),
            });
        }
        let decided_by = short_digest(&decided_by).to_string();
        let mut decisions = decisions.into_iter();
        for PendingRetry { name, shard, error, .. } in failed {
            let shard = self.settings.shards.addr(shard);
            let record = self.attempts.entry(name.clone()).or_default();
            let (decision, module) = match decisions.next() {
                Some(RetryDecision::GiveUp { reason }) => {
                    tracing::warn!(repo = %name, %shard, %error, %reason, policy = %decided_by, "Dispatch failed; giving up.");
                    let decision = format!("give up: {reason}");
                    record.gave_up = Some(reason);
                    record.next_attempt_at = None;
                    (decision, decided_by.as_str())
                }
                Some(RetryDecision::RetryAt(at)) => {
                    tracing::warn!(repo = %name, %shard, %error, retry_at = %at.to_rfc3339(), policy = %decided_by, "Dispatch failed; will retry.");
                    record.next_attempt_at = Some(at);
                    (format!("retry at {}", at.to_rfc3339()), decided_by.as_str())
                }
                None => {
                    let at = now.saturating_add(self.settings.backoff.delay(record.attempts, &name));
                    tracing::warn!(repo = %name, %shard, %error, "Dispatch failed; the retry policy gave no answer, using built-in backoff.");
                    record.next_attempt_at = Some(at);
                    (format!("retry at {} (no answer: built-in backoff)", at.to_rfc3339()), crate::schedule::BUILTIN)
                }
            };
            let reason = format!("dispatch {} to {shard} failed: {error}", record.attempts);
            let record = record.clone();
            self.decision_log.push(LoggedDecision {
                subject: name.to_string(),
                interface: "reenqueue",
                decision,
                module: module.to_string(),
                reason,
            });
            self.commands.push_back(Command::Save { name, record });
        }
    }
}

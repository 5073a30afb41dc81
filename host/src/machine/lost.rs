//! Lost clones: dispatched successfully, never listed. The retry policy (`reenqueue`) decides,
//! in one call per tick, whether they go again now, later, or never.

use std::sync::Arc;

use super::{Command, Machine, Snapshot};
use crate::model::Timestamp;
use crate::policy::short_digest;
use crate::reconcile::{Plan, RepoState};
use crate::schedule::{Failure, RetryDecision};

/// Stored as the repo's last error once its clone is found lost, so later ticks treat it as a
/// failed repo on its retry deadline rather than ask the policy again.
pub const LOST: &str = "clone lost: the dispatch succeeded but the owning shard never listed the clone";

impl Machine {
    /// Asks the retry policy about this tick's lost repos and applies its answers to the plan:
    /// a later retry or a give-up takes the repo out of this tick's due list.
    pub(super) fn reenqueue_lost(&mut self, snapshot: &Arc<Snapshot>, plan: &mut Plan, now: Timestamp) {
        let lost: Vec<u32> = plan.due.iter().copied().filter(|&i| plan.states[i as usize] == RepoState::Lost).collect();
        if lost.is_empty() {
            return;
        }
        let repos = &snapshot.desired.repos;
        let empty = Default::default();
        // Records of the lost repos (a few), which the retry policy sees and the cases keep.
        let lost_repos: Vec<crate::model::DesiredRepo> =
            lost.iter().map(|&i| repos.at(i as usize).to_record()).collect();
        let batch: Vec<Failure<'_>> = lost
            .iter()
            .zip(&lost_repos)
            .map(|(&i, repo)| Failure {
                name: &repo.name,
                record: self.attempts.get(&repo.name).unwrap_or(&empty),
                repo: Some(repo),
                shard: snapshot.routes[i as usize],
                state: RepoState::Lost,
            })
            .collect();
        let (decisions, decided_by) = self.policies.retry.on_failures_traced(&batch, now);
        let cases: Vec<super::RetryCase> = batch
            .iter()
            .zip(&decisions)
            .map(|(f, decision)| super::RetryCase {
                name: f.name.clone(),
                record: f.record.clone(),
                repo: f.repo.cloned(),
                shard: f.shard,
                state: RepoState::Lost,
                decided_at: now,
                decision: decision.clone(),
            })
            .collect();
        drop(batch);
        for case in cases {
            self.keep_retry_case(case);
        }
        let decided_by = short_digest(&decided_by).to_string();
        let mut not_now = Vec::new();
        let decisions = decisions.into_iter().map(Some).chain(std::iter::repeat(None));
        for ((&idx, repo), decision) in lost.iter().zip(&lost_repos).zip(decisions) {
            let shard = self.settings.shards.addr(snapshot.routes[idx as usize]).to_string();
            let record = self.attempts.entry(repo.name.clone()).or_default();
            record.last_error = Some(LOST.to_string());
            let decision = match decision {
                Some(RetryDecision::GiveUp { reason }) => {
                    tracing::warn!(repo = %repo.name, %shard, %reason, policy = %decided_by, "Clone lost; giving up.");
                    let decision = format!("give up: {reason}");
                    record.gave_up = Some(reason);
                    record.next_attempt_at = None;
                    plan.states[idx as usize] = RepoState::Failed;
                    not_now.push(idx);
                    decision
                }
                Some(RetryDecision::RetryAt(at)) if at > now => {
                    tracing::warn!(repo = %repo.name, %shard, retry_at = %at.to_rfc3339(), policy = %decided_by, "Clone lost; will retry.");
                    record.next_attempt_at = Some(at);
                    not_now.push(idx);
                    format!("retry at {}", at.to_rfc3339())
                }
                _ => {
                    tracing::warn!(repo = %repo.name, %shard, policy = %decided_by, "Clone lost; dispatching again.");
                    record.next_attempt_at = None;
                    "dispatch again now".to_string()
                }
            };
            let reason = format!(
                "clone lost: dispatched {} time(s) to {shard}, not listed after the confirmation grace",
                record.attempts
            );
            self.decision_log.push(super::decision_log::LoggedDecision {
                subject: repo.name.to_string(),
                interface: "reenqueue",
                decision,
                module: decided_by.clone(),
                reason,
            });
            let record = record.clone();
            self.commands.push_back(Command::Save { name: repo.name.clone(), record });
        }
        plan.due.retain(|idx| !not_now.contains(idx));
    }
}

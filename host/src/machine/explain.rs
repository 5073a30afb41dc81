//! The operator's questions (explain a repo, show the queue) and command (clone a repo now),
//! answered from the machine's own state: nothing is copied per tick for them.

use std::sync::Arc;

use super::{Command, Machine};
use crate::explain::{Decision, Explain, QueueEntry};
use crate::model::{RepoName, Timestamp};
use crate::reconcile::RepoState;

impl Machine {
    /// Clears the repo's backoff and give-up so the next tick queues it; answers what
    /// [`Machine::explain`] says of it then.
    pub fn enqueue(&mut self, name: &str, now: Timestamp) -> Result<Explain, String> {
        let Some(repo) = RepoName::normalize(name) else {
            return Err(format!("{name:?} is not a repository name"));
        };
        if self.desired_index(repo.as_str()).is_none() {
            return Err(format!("{repo} is not desired (not in the repo DB, or deleted)"));
        }
        if let Some(record) = self.attempts.get_mut(&repo) {
            record.next_attempt_at = None;
            record.gave_up = None;
            let record = record.clone();
            self.commands.push_back(Command::Save { name: repo.clone(), record });
        }
        tracing::info!(repo = %repo, "Clone requested through the admin API; next tick dispatches it.");
        self.explain(repo.as_str(), now)
    }

    /// Everything the machine knows of one repo, for `clonekeeper explain`.
    pub fn explain(&self, name: &str, now: Timestamp) -> Result<Explain, String> {
        let Some(name) = RepoName::normalize(name) else {
            return Err(format!("{name:?} is not a repository name"));
        };
        let shards = &self.settings.shards;
        let listed_on = (0..shards.len())
            .filter(|&idx| self.shards.lists(idx, &name))
            .map(|idx| shards.addr(idx as u16).to_string())
            .collect();
        let record = self.attempts.get(&name);
        let mut explain = Explain {
            name: name.to_string(),
            listed_on,
            attempts: record.map_or(0, |r| r.attempts),
            last_error: record.and_then(|r| r.last_error.clone()),
            last_attempt_at: record.and_then(|r| r.last_attempt_at).map(Timestamp::to_rfc3339),
            next_attempt_at: record.and_then(|r| r.next_attempt_at).map(Timestamp::to_rfc3339),
            backing_off: record.and_then(|r| r.next_attempt_at).is_some_and(|at| at > now),
            gave_up: record.and_then(|r| r.gave_up.clone()),
            in_flight: self.scheduler.is_in_flight(&name),
            ..Explain::default()
        };
        let Some(idx) = self.desired_index(name.as_str()) else {
            return Ok(explain);
        };
        let repo = self.snapshot.desired.repos.at(idx);
        let shard = self.snapshot.routes[idx];
        explain.desired = true;
        explain.repo_id = Some(repo.id());
        explain.shard = Some(shards.addr(shard).to_string());
        explain.state = self.plan.states.get(idx).map(|s| s.as_str().to_string());
        explain.shard_paused_until = self.scheduler.paused_until(shard).map(Timestamp::to_rfc3339);
        let idx = u32::try_from(idx).ok();
        explain.queue_position = idx.and_then(|i| self.scheduler.queue_position(i));
        let builtin = crate::schedule::BUILTIN;
        let candidate = crate::schedule::Candidate {
            repo,
            shard,
            state: self.plan.states.get(idx.unwrap_or(u32::MAX) as usize).copied().unwrap_or(RepoState::Uncloned),
            record,
        };
        explain.last_decision = idx.and_then(|i| self.decisions.get(&i)).map(|(score, module)| Decision {
            interface: "prioritize".to_string(),
            decision: format!("score {score}"),
            module: module.to_string(),
            explanation: (&**module == builtin).then(|| crate::schedule::BuiltinOrder::explain(&candidate)),
        });
        explain.rate_limit = self.limit_note(repo);
        explain.problem = if repo.url_missing() {
            Some("the repo DB row has no clone URL".to_string())
        } else {
            self.snapshot.desired.problems.iter().find(|p| p.repo_id == repo.id()).map(|p| p.to_string())
        };
        Ok(explain)
    }

    /// The rate limit in force on `repo`'s code host, with who set it.
    fn limit_note(&self, repo: crate::model::DesiredRow<'_>) -> Option<crate::explain::LimitNote> {
        let key = crate::schedule::LimitKey::CodeHost(repo.code_host().into());
        let limit = self.scheduler.rate_limits().limit(&key)?;
        let in_flight = limit.max_in_flight.map_or(String::new(), |n| format!(", at most {n} in flight"));
        Some(crate::explain::LimitNote {
            key: key.to_string(),
            limit: format!("{}/h, burst {}{in_flight}", limit.per_hour, limit.burst),
            module: self
                .last_limits
                .as_ref()
                .map_or_else(|| crate::schedule::BUILTIN.to_string(), |l| l.decided_by.to_string()),
            explanation: None,
        })
    }

    /// The code host's service type and limit as the rate-limit policy was told and answered
    /// in the last tick: the arguments of a module's `explain-limit`.
    pub fn limit_question(&self, code_host: &str) -> Option<(String, String, (u32, u32))> {
        let asked = self.last_limits.as_ref()?;
        let key = crate::schedule::LimitKey::CodeHost(code_host.into());
        let (_, limit) = asked.limits.iter().find(|(k, _)| *k == key)?;
        let service_type =
            asked.loads.iter().find(|l| l.key == key).and_then(|l| l.service_type.as_deref()).unwrap_or_default();
        Some((key.to_string(), service_type.to_string(), (limit.per_hour.get(), limit.burst.get())))
    }

    /// What a prioritizer was shown of a desired repo: its row, state, owner and record (for
    /// a module's `explain`, asked off the loop).
    pub fn candidate_of(&self, name: &str) -> Option<OwnedCandidate> {
        let name = RepoName::normalize(name)?;
        let idx = self.desired_index(name.as_str())?;
        Some(OwnedCandidate {
            repo: self.snapshot.desired.repos.at(idx).to_record(),
            shard: self.snapshot.routes[idx],
            state: self.plan.states.get(idx).copied().unwrap_or(RepoState::Uncloned),
            record: self.attempts.get(&name).cloned(),
        })
    }

    /// The first `limit` queued repos in dispatch order.
    pub fn queue(&self, limit: usize) -> Vec<QueueEntry> {
        let repos = &self.snapshot.desired.repos;
        self.scheduler
            .peek(limit)
            .into_iter()
            .enumerate()
            .filter_map(|(position, job)| {
                let repo = repos.get(job.repo as usize)?;
                let (score, module) =
                    self.decisions.get(&job.repo).cloned().unwrap_or((0.0, Arc::from(crate::schedule::BUILTIN)));
                Some(QueueEntry {
                    position: position as u64,
                    name: repo.name().to_string(),
                    shard: self.settings.shards.addr(job.shard).to_string(),
                    state: self.plan.states.get(job.repo as usize).map_or("unknown", |s| s.as_str()).to_string(),
                    attempts: self.attempts.get(repo.name()).map_or(0, |r| r.attempts),
                    score,
                    module: module.to_string(),
                })
            })
            .collect()
    }
}

/// A prioritizer's candidate, owned: [`Machine::candidate_of`].
#[derive(Clone, Debug)]
pub struct OwnedCandidate {
    pub repo: crate::model::DesiredRepo,
    pub shard: crate::model::ShardIdx,
    pub state: RepoState,
    pub record: Option<crate::model::AttemptRecord>,
}

//! Requests from the admin API to the tick loop: explain a repo, show the queue, clone a
//! repo now. The loop owns the state, so it answers; nothing is copied per tick for this.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::Sidecar;
use crate::explain::{Decision, Explain, QueueEntry};
use crate::model::{RepoName, Timestamp};

/// A question or command for the tick loop.
#[derive(Debug)]
pub enum ControlRequest {
    Explain {
        name: String,
        reply: oneshot::Sender<Result<Explain, String>>,
    },
    Queue {
        limit: usize,
        reply: oneshot::Sender<Vec<QueueEntry>>,
    },
    /// Clear the repo's backoff and give-up and queue it at the front of the next tick.
    Enqueue {
        name: String,
        reply: oneshot::Sender<Result<Explain, String>>,
    },
}

impl Sidecar {
    pub(super) fn handle_control(&mut self, request: ControlRequest, now: Timestamp) -> bool {
        match request {
            ControlRequest::Explain { name, reply } => {
                let _ = reply.send(self.explain(&name, now));
                false
            }
            ControlRequest::Queue { limit, reply } => {
                let _ = reply.send(self.queue(limit));
                false
            }
            ControlRequest::Enqueue { name, reply } => {
                let Some(repo) = RepoName::normalize(&name) else {
                    let _ = reply.send(Err(format!("{name:?} is not a repository name")));
                    return false;
                };
                if self.desired_index(&repo).is_none() {
                    let _ = reply.send(Err(format!("{repo} is not desired (not in the repo DB, or deleted)")));
                    return false;
                }
                if let Some(record) = self.attempts.get_mut(&repo) {
                    record.next_attempt_at = None;
                    record.gave_up = None;
                    self.persister.save(repo.clone(), record.clone());
                }
                tracing::info!(repo = %repo, "Clone requested through the admin API; next tick dispatches it.");
                let _ = reply.send(self.explain(repo.as_str(), now));
                true
            }
        }
    }

    fn desired_index(&self, name: &RepoName) -> Option<usize> {
        self.snapshot.desired.repos.binary_search_by(|r| r.name.cmp(name)).ok()
    }

    fn explain(&self, name: &str, now: Timestamp) -> Result<Explain, String> {
        let Some(name) = RepoName::normalize(name) else {
            return Err(format!("{name:?} is not a repository name"));
        };
        let shards = &self.parts.config.shards;
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
        let Some(idx) = self.desired_index(&name) else {
            return Ok(explain);
        };
        let repo = &self.snapshot.desired.repos[idx];
        let shard = self.snapshot.routes[idx];
        explain.desired = true;
        explain.repo_id = Some(repo.id);
        explain.shard = Some(shards.addr(shard).to_string());
        explain.state = self.plan.states.get(idx).map(|s| s.as_str().to_string());
        explain.shard_paused_until = self.scheduler.paused_until(shard).map(Timestamp::to_rfc3339);
        let idx = u32::try_from(idx).ok();
        explain.queue_position = idx.and_then(|i| self.scheduler.queue_position(i));
        explain.last_decision = idx.and_then(|i| self.decisions.get(&i)).map(|(score, module)| Decision {
            interface: "prioritize".to_string(),
            decision: format!("score {score}"),
            module: module.to_string(),
        });
        explain.problem = if repo.clone_url.is_none() {
            Some("the repo DB row has no clone URL".to_string())
        } else {
            self.snapshot.desired.problems.iter().find(|p| p.repo_id == repo.id).map(|p| p.to_string())
        };
        Ok(explain)
    }

    fn queue(&self, limit: usize) -> Vec<QueueEntry> {
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
                    name: repo.name.to_string(),
                    shard: self.parts.config.shards.addr(job.shard).to_string(),
                    state: self.plan.states.get(job.repo as usize).map_or("unknown", |s| s.as_str()).to_string(),
                    attempts: self.attempts.get(&repo.name).map_or(0, |r| r.attempts),
                    score,
                    module: module.to_string(),
                })
            })
            .collect()
    }
}

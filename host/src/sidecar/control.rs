//! Requests from the admin API to the tick loop: explain a repo, show the queue, clone a
//! repo now, hand over what a snapshot holds. The loop owns the state, so it answers; nothing
//! is copied per tick for this.

use tokio::sync::oneshot;

use crate::explain::{Explain, QueueEntry};
use crate::machine::Machine;
use crate::model::Timestamp;
use crate::policy::{PolicyHost, RepoView};
use crate::replay::capture;
use std::sync::Arc;

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
    /// What a snapshot file holds: the desired set is shared, the rest copied once.
    Snapshot {
        reply: oneshot::Sender<Result<Box<capture::Parts>, String>>,
    },
}

impl ControlRequest {
    /// Answers that this replica cannot, and why (a follower).
    pub(super) fn refuse(self, reason: &str) {
        match self {
            ControlRequest::Explain { reply, .. } | ControlRequest::Enqueue { reply, .. } => {
                let _ = reply.send(Err(reason.to_string()));
            }
            ControlRequest::Queue { reply, .. } => {
                let _ = reply.send(Vec::new());
            }
            ControlRequest::Snapshot { reply } => {
                let _ = reply.send(Err(reason.to_string()));
            }
        }
    }

    /// Answers the request from the machine (and, for explain, the shadow modules' last
    /// answers); true if it asks for a tick now.
    pub(super) fn answer(self, machine: &mut Machine, policy: Option<&Arc<PolicyHost>>, now: Timestamp) -> bool {
        match self {
            ControlRequest::Explain { name, reply } => {
                let mut answer = machine.explain(&name, now);
                let Some(policy) = policy else {
                    let _ = reply.send(answer);
                    return false;
                };
                if let Ok(explain) = &mut answer {
                    if let Some(name) = crate::model::RepoName::normalize(&explain.name) {
                        explain.shadow = policy.shadow_decisions(&name);
                    }
                }
                // A module's own sentences are calls into it: made off the loop, then answered.
                let Ok(explain) = &answer else {
                    let _ = reply.send(answer);
                    return false;
                };
                let builtin = crate::schedule::BUILTIN;
                let order = explain.last_decision.as_ref().map(|d| d.module.clone()).filter(|m| m != builtin);
                let order = order.zip(machine.candidate_of(&name)).map(|(module, candidate)| {
                    let addr = machine.settings().shards.addr(candidate.shard).to_string();
                    (module, candidate, addr)
                });
                let limit = explain.rate_limit.as_ref().filter(|l| l.module != builtin).and_then(|note| {
                    let host = crate::schedule::code_host_of(&explain.name).to_string();
                    Some((note.module.clone(), machine.limit_question(&host)?))
                });
                if order.is_none() && limit.is_none() {
                    let _ = reply.send(answer);
                    return false;
                }
                let policy = Arc::clone(policy);
                tokio::task::spawn_blocking(move || {
                    let Ok(explain) = &mut answer else { return };
                    if let (Some((module, c, addr)), Some(decision)) = (order, explain.last_decision.as_mut()) {
                        let view = RepoView::from_repo(&c.repo, c.state, c.shard, &addr, c.record.as_ref());
                        decision.explanation = policy.explain_priority(&module, &view, now);
                    }
                    if let (Some((module, question)), Some(note)) = (limit, explain.rate_limit.as_mut()) {
                        note.explanation = policy.explain_limit(&module, &question, now);
                    }
                    let _ = reply.send(answer);
                });
                false
            }
            ControlRequest::Queue { limit, reply } => {
                let _ = reply.send(machine.queue(limit));
                false
            }
            ControlRequest::Enqueue { name, reply } => {
                let answer = machine.enqueue(&name, now);
                let tick = answer.is_ok();
                let _ = reply.send(answer);
                tick
            }
            ControlRequest::Snapshot { reply } => {
                let answer = if machine.ticks() == 0 {
                    Err("no tick has completed yet: nothing to snapshot".to_string())
                } else {
                    Ok(Box::new(capture::Parts {
                        settings: machine.settings().clone(),
                        snapshot: std::sync::Arc::clone(machine.snapshot()),
                        states: machine.plan().states.clone(),
                        attempts: machine.attempts().clone(),
                        clones: machine.recent_clones().iter().cloned().collect(),
                        taken_at: now,
                    }))
                };
                let _ = reply.send(answer);
                false
            }
        }
    }
}

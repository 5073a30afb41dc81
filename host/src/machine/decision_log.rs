//! What the decision log (target `clonekeeper::decision`) says of each decision besides the
//! order: retries and give-ups (of failed dispatches and of lost clones) and rate limits, each
//! with who decided and the real reason; and why a queued repo is due. The machine keeps the
//! entries until the shell takes them (a bounded buffer: a shell that never takes them costs
//! at most [`KEPT`] entries).

use std::collections::VecDeque;

use super::Machine;
use crate::reconcile::RepoState;

/// Entries kept between two takes; older ones are dropped first.
pub const KEPT: usize = 1_000;

/// One decision, as the log writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedDecision {
    /// The repo, or the rate-limit key.
    pub subject: String,
    /// `reenqueue` or `rate-limits`.
    pub interface: &'static str,
    /// What was decided, e.g. `retry at 2026-…` or `give up: …` or `3600/h, burst 10`.
    pub decision: String,
    /// The module's digest, or `builtin`.
    pub module: String,
    /// Why it was asked: the failure's message, "clone lost", the key's load.
    pub reason: String,
}

/// The entries not yet taken.
#[derive(Debug, Default)]
pub(super) struct DecisionLog {
    entries: VecDeque<LoggedDecision>,
}

impl DecisionLog {
    pub(super) fn push(&mut self, entry: LoggedDecision) {
        if self.entries.len() == KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }
}

impl Machine {
    /// The retry and rate-limit decisions made since the last call, oldest first.
    pub fn take_decision_log(&mut self) -> Vec<LoggedDecision> {
        self.decision_log.entries.drain(..).collect()
    }

    /// Why a repo is queued, from the last tick's plan and its attempt record: the reason the
    /// decision log gives for its place in the order.
    pub fn due_reason(&self, name: &str) -> String {
        let state = self.desired_index(name).and_then(|idx| self.plan.states.get(idx).copied());
        let record = self.attempts.get(name);
        match (state, record) {
            (Some(RepoState::Lost), Some(record)) => {
                format!("lost: dispatched {} time(s), never listed by its shard", record.attempts)
            }
            (_, Some(record)) if record.attempts > 0 => match &record.last_error {
                Some(error) => format!("failed {} time(s), retry due; last error: {error}", record.attempts),
                None => format!("dispatched {} time(s), not cloned", record.attempts),
            },
            (Some(state), _) => format!("{}, never dispatched", state.as_str()),
            (None, _) => "not desired any more".to_string(),
        }
    }
}

//! What clones first: the [`Prioritizer`] trait (the policy engine's `prioritize` plugs in
//! here) and the built-in order.

use std::collections::HashMap;
use std::sync::Arc;

use super::Job;
use crate::model::{AttemptRecord, DesiredRepo, DesiredRepos, DesiredRow, RepoName, ShardIdx, Timestamp};
use crate::reconcile::{Plan, RepoState};

/// One due repo as a prioritizer sees it.
#[derive(Copy, Clone, Debug)]
pub struct Candidate<'a> {
    pub repo: DesiredRow<'a>,
    pub shard: ShardIdx,
    pub state: RepoState,
    pub record: Option<&'a AttemptRecord>,
}

impl Candidate<'_> {
    /// `f` of the candidate made of an owned record (an explanation, a snapshot file's row):
    /// the record is a one-row set for the time of the call.
    pub fn of_record<R>(
        repo: &DesiredRepo,
        shard: ShardIdx,
        state: RepoState,
        record: Option<&AttemptRecord>,
        f: impl FnOnce(&Candidate<'_>) -> R,
    ) -> R {
        let row = DesiredRepos::from_records(vec![repo.clone()]);
        f(&Candidate { repo: row.at(0), shard, state, record })
    }
}

/// A prioritizer's answer for one candidate.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Priority {
    /// Higher goes first.
    Score(f64),
    /// Leave it for a later tick.
    NotNow,
}

/// Orders due repos. Answers must be one per candidate, in order; [`order`] falls back to the
/// built-in order for a batch whose answer has the wrong length or a non-finite score.
pub trait Prioritizer: Send + Sync {
    fn prioritize(&self, batch: &[Candidate<'_>], now: Timestamp) -> Vec<Priority>;

    /// Like [`Prioritizer::prioritize`], also naming who answered (a module digest, or
    /// `builtin`), so every decision can be traced to the module that made it.
    fn prioritize_traced(&self, batch: &[Candidate<'_>], now: Timestamp) -> (Vec<Priority>, Arc<str>) {
        (self.prioritize(batch, now), Arc::from(BUILTIN))
    }
}

/// The name of the built-in behaviour wherever a module digest would stand.
pub const BUILTIN: &str = "builtin";

/// The built-in order: never-attempted repos before failed ones; among never-attempted the
/// oldest repo first, among failed the one that failed longest ago first.
#[derive(Copy, Clone, Debug, Default)]
pub struct BuiltinOrder;

/// Scores of never-attempted repos sit above this; failed ones below.
const BAND: f64 = 1e15;

impl Prioritizer for BuiltinOrder {
    fn prioritize(&self, batch: &[Candidate<'_>], _now: Timestamp) -> Vec<Priority> {
        batch
            .iter()
            .map(|c| {
                let attempted = c.record.is_some_and(|r| r.attempts > 0);
                let score = if attempted {
                    let last = c.record.and_then(|r| r.last_attempt_at).map_or(0, |t| t.as_millis());
                    -(last as f64)
                } else {
                    let created = c.repo.created_at().map_or(0, |t| t.as_millis());
                    2.0 * BAND - created as f64
                };
                Priority::Score(score)
            })
            .collect()
    }
}

impl BuiltinOrder {
    /// Why the built-in order places `c` where it does, in a sentence.
    pub fn explain(c: &Candidate<'_>) -> String {
        let day = |t: Timestamp| t.to_rfc3339().chars().take(10).collect::<String>();
        match c.record.filter(|r| r.attempts > 0) {
            Some(record) => format!(
                "failed {} time{} (last {}): failed repos go after never-attempted ones, the one that failed longest ago first",
                record.attempts,
                if record.attempts == 1 { "" } else { "s" },
                record.last_attempt_at.map_or_else(|| "at an unknown time".to_string(), day)
            ),
            None => format!(
                "never attempted, created {}: never-attempted repos go first, the oldest first",
                c.repo.created_at().map_or_else(|| "at an unknown time".to_string(), day)
            ),
        }
    }
}

/// Due repos in dispatch order, plus what the prioritizers said.
#[derive(Clone, Debug, Default)]
pub struct Ordered {
    pub jobs: Vec<Job>,
    /// Per job: the score it got and who gave it.
    pub decisions: Vec<(f64, Arc<str>)>,
    /// Repos a prioritizer answered "not now" for.
    pub deferred: u64,
    /// Batches whose answer was unusable and fell back to the built-in order.
    pub fallbacks: u64,
}

/// Asks `prioritizer` about the plan's due repos in batches of `batch_size` and sorts them,
/// best first; ties go to the lower repo id so the order is deterministic.
pub fn order(
    desired: &DesiredRepos,
    routes: &[ShardIdx],
    plan: &Plan,
    attempts: &HashMap<RepoName, AttemptRecord>,
    prioritizer: &dyn Prioritizer,
    batch_size: usize,
    now: Timestamp,
) -> Ordered {
    let mut scored: Vec<(f64, i64, Job, Arc<str>)> = Vec::with_capacity(plan.due.len());
    let mut out = Ordered::default();
    let mut batch = Vec::with_capacity(batch_size.min(plan.due.len()));
    for chunk in plan.due.chunks(batch_size.max(1)) {
        batch.clear();
        batch.extend(chunk.iter().map(|&idx| {
            let repo = desired.at(idx as usize);
            Candidate {
                repo,
                shard: routes[idx as usize],
                state: plan.states[idx as usize],
                record: attempts.get(repo.name()),
            }
        }));
        let (mut answers, mut source) = prioritizer.prioritize_traced(&batch, now);
        let usable = answers.len() == batch.len()
            && answers
                .iter()
                .all(|p| matches!(p, Priority::NotNow) || matches!(p, Priority::Score(s) if s.is_finite()));
        if !usable {
            out.fallbacks += 1;
            answers = BuiltinOrder.prioritize(&batch, now);
            source = Arc::from(BUILTIN);
        }
        for ((&idx, candidate), answer) in chunk.iter().zip(&batch).zip(answers) {
            match answer {
                Priority::Score(score) => scored.push((
                    score,
                    candidate.repo.id(),
                    Job { repo: idx, shard: candidate.shard },
                    Arc::clone(&source),
                )),
                Priority::NotNow => out.deferred += 1,
            }
        }
    }
    scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    out.jobs = scored.iter().map(|(_, _, job, _)| *job).collect();
    out.decisions = scored.into_iter().map(|(score, _, _, source)| (score, source)).collect();
    out
}

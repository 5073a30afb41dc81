//! Shadow modules on live traffic: each tick, the shell hands the head of the serving queue to
//! [`PolicyHost::evaluate_shadows`] off the tick loop; every module in shadow mode orders the
//! same repos, in the same batches, under its own time budget, and how its order agrees with
//! the serving one is kept for `/v1/policies`, `/metrics` and `clonekeeper explain`. Nothing
//! here can delay or change a dispatch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::agreement::{agreement, shadow_order};
use super::mode::Mode;
use super::{Module, PolicyHost};
use crate::explain::ShadowDecision;
use crate::metrics::ModuleLabel;
use crate::model::{RepoName, Timestamp};
use crate::schedule::{Candidate, Priority};
use crate::status::ShadowFigures;

/// Repos per shadow call, as the serving module gets them.
const BATCH: usize = 10_000;
/// Queued repos whose shadow answers `explain` can show.
pub const EXPLAINED: usize = 10_000;

/// What the host keeps of the shadows' last evaluations.
#[derive(Default)]
pub struct ShadowState {
    /// By module digest + config: a reloaded module starts afresh.
    figures: Mutex<HashMap<(Arc<str>, String), ShadowFigures>>,
    /// The answers for the first [`EXPLAINED`] queued repos, by name.
    decisions: Mutex<Arc<HashMap<RepoName, Vec<ShadowDecision>>>>,
}

impl PolicyHost {
    /// Whether any loaded module is in shadow mode.
    pub fn has_shadows(&self) -> bool {
        self.current().shadows().next().is_some()
    }

    /// Asks every shadow module to order `queued` (the serving order's head, in that order)
    /// for `slots` free dispatch slots, each within `budget` of wall-clock time. Blocking:
    /// call it off the runtime and off the tick loop.
    pub fn evaluate_shadows(&self, queued: &[Candidate<'_>], slots: usize, now: Timestamp, budget: Duration) {
        let set = self.current();
        let mut decisions: HashMap<RepoName, Vec<ShadowDecision>> = HashMap::new();
        for module in set.shadows() {
            let started = Instant::now();
            let (answers, error) = self.shadow_answers(module, queued, now, budget, started);
            let took = started.elapsed();
            let key = (Arc::clone(&module.digest), module.config.clone());
            let label = ModuleLabel { module: module.name.to_string() };
            let mut figures = self.shadow.figures.lock().unwrap_or_else(|p| p.into_inner());
            let entry = figures.entry(key).or_default();
            entry.ticks += 1;
            entry.at = Timestamp::now().to_rfc3339();
            entry.took_ms = took.as_millis() as u64;
            entry.error = error.clone();
            if let Some(metrics) = self.metrics.get() {
                metrics.shadow_ticks.get_or_create(&label).inc();
                if error.is_some() {
                    metrics.shadow_failures.get_or_create(&label).inc();
                }
            }
            if answers.is_empty() {
                continue;
            }
            let a = agreement(&answers, slots);
            entry.repos = a.repos as u64;
            entry.rank_correlation = a.rank_correlation;
            entry.slots = a.slots as u64;
            entry.top_overlap = a.top_overlap;
            entry.not_now = a.not_now as u64;
            entry.shadow_first = a.shadow_first.iter().map(|&i| queued[i].repo.name.to_string()).collect();
            if let Some(metrics) = self.metrics.get() {
                metrics.shadow_rank_correlation.get_or_create(&label).set(a.rank_correlation);
                metrics.shadow_top_overlap.get_or_create(&label).set(a.top_overlap);
            }
            let order = shadow_order(&answers);
            let mut rank = vec![0usize; answers.len()];
            for (position, &serving) in order.iter().enumerate() {
                rank[serving] = position;
            }
            for (serving, answer) in answers.iter().enumerate().take(EXPLAINED) {
                let decision = match answer {
                    Priority::Score(score) => format!("score {score}"),
                    Priority::NotNow => "not now".to_string(),
                };
                decisions.entry(queued[serving].repo.name.clone()).or_default().push(ShadowDecision {
                    module: module.name.to_string(),
                    digest: module.digest.to_string(),
                    decision,
                    position: rank[serving] as u64,
                });
            }
        }
        *self.shadow.decisions.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(decisions);
    }

    /// One module's answers for `queued` in batches, up to the first failure or the end of the
    /// budget; the error says which, and the answers cover the batches before it.
    fn shadow_answers(
        &self,
        module: &Module,
        queued: &[Candidate<'_>],
        now: Timestamp,
        budget: Duration,
        started: Instant,
    ) -> (Vec<Priority>, Option<String>) {
        let mut answers = Vec::with_capacity(queued.len());
        for batch in queued.chunks(BATCH) {
            if started.elapsed() >= budget {
                let error = format!(
                    "its budget of {} ran out after {} of {} repos; the figures cover those",
                    humantime::format_duration(budget),
                    answers.len(),
                    queued.len()
                );
                return (answers, Some(error));
            }
            match module.prioritize_candidates(batch, &self.config.shard_addrs, now) {
                Ok(batch_answers) if batch_answers.len() == batch.len() => answers.extend(batch_answers),
                Ok(batch_answers) => {
                    let error = format!("answered {} priorities for {} repos", batch_answers.len(), batch.len());
                    return (answers, Some(error));
                }
                Err(failure) => return (answers, Some(format!("prioritize {failure}"))),
            }
        }
        (answers, None)
    }

    /// The last figures of a shadow module, if it was evaluated since it was loaded.
    pub(super) fn shadow_figures(&self, module: &Module) -> Option<ShadowFigures> {
        debug_assert_eq!(module.mode, Mode::Shadow);
        let figures = self.shadow.figures.lock().unwrap_or_else(|p| p.into_inner());
        figures.get(&(Arc::clone(&module.digest), module.config.clone())).cloned()
    }

    /// What the shadows answered for `name` in their last evaluation (if it was among the
    /// first [`EXPLAINED`] queued repos).
    pub fn shadow_decisions(&self, name: &RepoName) -> Vec<ShadowDecision> {
        let decisions = Arc::clone(&self.shadow.decisions.lock().unwrap_or_else(|p| p.into_inner()));
        decisions.get(name).cloned().unwrap_or_default()
    }
}

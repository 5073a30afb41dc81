//! Shadow modules on live traffic: after each tick the shell hands [`PolicyHost::evaluate_shadows`]
//! what the serving policies were asked and answered (the head of the queue, the code host
//! loads and limits, the failures the retry policy decided since the last evaluation), off the
//! tick loop; every module in shadow mode answers the same questions under its own time
//! budget, and how its answers differ is kept for `/v1/policies`, `/metrics` and
//! `clonekeeper explain`. Nothing here can delay or change a dispatch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::agreement::{agreement, shadow_order};
use super::mode::Mode;
use super::seams::retry_decision;
use super::{Interface, Module, PolicyHost};
use crate::explain::ShadowDecision;
use crate::machine::{LimitsAsked, RetryCase};
use crate::metrics::ModuleLabel;
use crate::model::{RepoName, Timestamp};
use crate::schedule::{Candidate, Failure, LimitKey, Priority, RateLimit, RetryDecision};
use crate::status::ShadowFigures;

/// Repos per shadow call, as the serving module gets them.
const BATCH: usize = 10_000;
/// Queued repos whose shadow answers `explain` can show.
pub const EXPLAINED: usize = 10_000;
/// Differing limits and retry decisions named in the figures.
const NAMED: usize = 10;

/// What the serving policies were asked and answered, for the shadows to answer too.
pub struct ShadowInput<'a> {
    /// The head of the queue, in serving order.
    pub queued: &'a [Candidate<'a>],
    /// Dispatch slots free at the tick.
    pub slots: usize,
    pub limits: Option<&'a LimitsAsked>,
    pub retries: &'a [RetryCase],
}

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

    /// Asks every shadow module what the serving policies were asked, each within `budget`
    /// of wall-clock time. Blocking: call it off the runtime and off the tick loop.
    pub fn evaluate_shadows(&self, input: &ShadowInput<'_>, now: Timestamp, budget: Duration) {
        let set = self.current();
        let mut decisions: HashMap<RepoName, Vec<ShadowDecision>> = HashMap::new();
        for module in set.shadows() {
            let started = Instant::now();
            let label = ModuleLabel { module: module.name.to_string() };
            let mut errors = Vec::new();
            let mut figures = self.shadow_figures(module).unwrap_or_default();
            if module.shadowed.contains(&Interface::Prioritize) && !input.queued.is_empty() {
                let (answers, error) = self.shadow_answers(module, input.queued, now, budget, started);
                errors.extend(error);
                if !answers.is_empty() {
                    self.compare_orders(module, input, &answers, &mut figures, &mut decisions);
                }
            }
            if let (true, Some(asked)) = (module.shadowed.contains(&Interface::RateLimits), input.limits) {
                match self.compare_limits(module, asked, now) {
                    Ok((keys, differ)) => (figures.limit_keys, figures.limits_differ) = (keys, differ),
                    Err(error) => errors.push(error),
                }
            }
            if module.shadowed.contains(&Interface::Reenqueue) && !input.retries.is_empty() {
                if let Err(error) = self.compare_retries(module, input.retries, &mut figures) {
                    errors.push(error);
                }
            }
            figures.ticks += 1;
            figures.at = Timestamp::now().to_rfc3339();
            figures.took_ms = started.elapsed().as_millis() as u64;
            figures.error = (!errors.is_empty()).then(|| errors.join("; "));
            if let Some(metrics) = self.metrics.get() {
                metrics.shadow_ticks.get_or_create(&label).inc();
                if figures.error.is_some() {
                    metrics.shadow_failures.get_or_create(&label).inc();
                }
                if figures.repos > 0 {
                    metrics.shadow_rank_correlation.get_or_create(&label).set(figures.rank_correlation);
                    metrics.shadow_top_overlap.get_or_create(&label).set(figures.top_overlap);
                }
            }
            let key = (Arc::clone(&module.digest), module.config.clone());
            self.shadow.figures.lock().unwrap_or_else(|p| p.into_inner()).insert(key, figures);
        }
        *self.shadow.decisions.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(decisions);
    }

    /// The agreement of the shadow's order with the serving one, and its answers for explain.
    fn compare_orders(
        &self,
        module: &Module,
        input: &ShadowInput<'_>,
        answers: &[Priority],
        figures: &mut ShadowFigures,
        decisions: &mut HashMap<RepoName, Vec<ShadowDecision>>,
    ) {
        let a = agreement(answers, input.slots);
        figures.repos = a.repos as u64;
        figures.rank_correlation = a.rank_correlation;
        figures.slots = a.slots as u64;
        figures.top_overlap = a.top_overlap;
        figures.not_now = a.not_now as u64;
        figures.shadow_first = a.shadow_first.iter().map(|&i| input.queued[i].repo.name().to_string()).collect();
        let order = shadow_order(answers);
        let mut rank = vec![0usize; answers.len()];
        for (position, &serving) in order.iter().enumerate() {
            rank[serving] = position;
        }
        for (serving, answer) in answers.iter().enumerate().take(EXPLAINED) {
            let decision = match answer {
                Priority::Score(score) => format!("score {score}"),
                Priority::NotNow => "not now".to_string(),
            };
            decisions.entry(input.queued[serving].repo.repo_name()).or_default().push(ShadowDecision {
                module: module.name.to_string(),
                digest: module.digest.to_string(),
                decision,
                position: rank[serving] as u64,
            });
        }
    }

    /// The shadow's limits for the loads the serving policy was given: how many keys, and
    /// those whose limit differs.
    fn compare_limits(
        &self,
        module: &Module,
        asked: &LimitsAsked,
        now: Timestamp,
    ) -> Result<(u64, Vec<String>), String> {
        let views = self.load_views(&asked.loads);
        let answers = module.rate_limits(&views, now).map_err(|e| format!("rate-limits {e}"))?;
        let shadow: BTreeMap<LimitKey, RateLimit> = self.limits_from(&asked.loads, answers).into_iter().collect();
        let serving: BTreeMap<&LimitKey, &RateLimit> = asked.limits.iter().map(|(k, l)| (k, l)).collect();
        let mut differ = Vec::new();
        for load in &asked.loads {
            let (theirs, ours) = (shadow.get(&load.key), serving.get(&load.key).copied());
            if theirs != ours && differ.len() < NAMED {
                differ.push(format!("{}: shadow {}; serving {}", load.key, limit_text(theirs), limit_text(ours)));
            }
        }
        Ok((asked.loads.len() as u64, differ))
    }

    /// The shadow's decisions for the failures the serving retry policy decided, asked at the
    /// same `now` each was.
    fn compare_retries(&self, module: &Module, cases: &[RetryCase], figures: &mut ShadowFigures) -> Result<(), String> {
        let mut by_time: BTreeMap<Timestamp, Vec<&RetryCase>> = BTreeMap::new();
        for case in cases {
            by_time.entry(case.decided_at).or_default().push(case);
        }
        for (at, cases) in by_time {
            let failures: Vec<_> = cases
                .iter()
                .map(|c| {
                    self.retry_failure(&Failure {
                        name: &c.name,
                        record: &c.record,
                        repo: c.repo.as_ref(),
                        shard: c.shard,
                        state: c.state,
                    })
                })
                .collect();
            let answers = module.reenqueue(&failures, at).map_err(|e| format!("reenqueue {e}"))?;
            for (case, answer) in cases.iter().zip(answers) {
                let theirs = retry_decision(answer, at);
                figures.retries += 1;
                if theirs != case.decision {
                    figures.retries_differing += 1;
                    if figures.retries_differ.len() == NAMED {
                        figures.retries_differ.remove(0);
                    }
                    figures.retries_differ.push(format!(
                        "{}: shadow {}; serving {}",
                        case.name,
                        retry_text(&theirs, at),
                        retry_text(&case.decision, at)
                    ));
                }
            }
        }
        Ok(())
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

fn limit_text(limit: Option<&RateLimit>) -> String {
    match limit {
        None => "none".to_string(),
        Some(limit) => {
            let in_flight = limit.max_in_flight.map_or(String::new(), |n| format!(", at most {n} in flight"));
            format!("{}/h, burst {}{in_flight}", limit.per_hour, limit.burst)
        }
    }
}

fn retry_text(decision: &RetryDecision, at: Timestamp) -> String {
    match decision {
        RetryDecision::RetryAt(when) => format!("retry in {}", humantime::format_duration(when.since(at))),
        RetryDecision::GiveUp { reason } => format!("give up ({reason})"),
    }
}

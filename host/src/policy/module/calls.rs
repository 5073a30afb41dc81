//! The calls a loaded [`Module`] answers: one per decision interface, each on a fresh,
//! initialised instance, each answer checked against the contract before the host uses it
//! (`answers`). Loading and validation live in the parent module.

use super::{CallFailure, Module, Prioritizer, MAX_EXPLANATION_BYTES};
use crate::model::Timestamp;
use crate::policy::answers;
use crate::policy::batch::{self, CandidateRow, Row};
use crate::policy::bindings::{rate_limits, reenqueue};
use crate::policy::view::{KeyLimit, KeyLoad, RepoView, Retry, RetryFailure};
use crate::schedule::{Candidate, Priority};

impl Module {
    /// `prioritize` on a batch, answers checked: one per repo, scores finite.
    pub fn prioritize(&self, repos: &[RepoView], now: Timestamp) -> Result<Vec<Priority>, CallFailure> {
        self.prioritize_rows(repos, now)
    }

    /// `prioritize` on the scheduler's candidates (`shard_addrs` indexed by their shards).
    pub fn prioritize_candidates(
        &self,
        batch: &[Candidate<'_>],
        shard_addrs: &[String],
        now: Timestamp,
    ) -> Result<Vec<Priority>, CallFailure> {
        let rows: Vec<CandidateRow<'_>> =
            batch.iter().map(|candidate| CandidateRow { candidate, shard_addrs }).collect();
        self.prioritize_rows(&rows, now)
    }

    /// [`Module::prioritize_candidates`], also returning the most linear memory the call held
    /// (all its memories together), for `clonekeeper policy bench`.
    pub fn prioritize_candidates_measured(
        &self,
        batch: &[Candidate<'_>],
        shard_addrs: &[String],
        now: Timestamp,
    ) -> Result<(Vec<Priority>, usize), CallFailure> {
        let rows: Vec<CandidateRow<'_>> =
            batch.iter().map(|candidate| CandidateRow { candidate, shard_addrs }).collect();
        self.prioritize_rows_measured(&rows, now)
    }

    /// `prioritize` on any rows: the batch carries only the columns this module reads.
    pub(super) fn prioritize_rows<R: Row>(&self, rows: &[R], now: Timestamp) -> Result<Vec<Priority>, CallFailure> {
        self.prioritize_rows_measured(rows, now).map(|(answers, _)| answers)
    }

    fn prioritize_rows_measured<R: Row>(
        &self,
        rows: &[R],
        now: Timestamp,
    ) -> Result<(Vec<Priority>, usize), CallFailure> {
        let Some(prioritizer) = &self.exports.prioritize else {
            return Err(CallFailure::BadAnswer("does not implement rank".to_string()));
        };
        let repos = batch::build(rows, self.columns);
        let (mut store, instance) = self.ready()?;
        let name_of = |i: usize| rows[i].name();
        let answers = match prioritizer {
            Prioritizer::Rank(indices) => {
                let guest = indices.load(&mut store, &instance).map_err(|e| self.failure(e))?;
                let ranking = guest.call_rank(&mut store, now.as_millis(), &repos).map_err(|e| self.failure(e))?;
                answers::ranking(ranking, rows.len(), name_of)?
            }
            Prioritizer::Variants(indices) => {
                let guest = indices.load(&mut store, &instance).map_err(|e| self.failure(e))?;
                let answers =
                    guest.call_prioritize(&mut store, now.as_millis(), &repos).map_err(|e| self.failure(e))?;
                answers::priorities(answers, rows.len(), name_of)?
            }
        };
        Ok((answers, store.data().memory_peak()))
    }

    /// `reenqueue` on a batch, answers checked: one per failure, delays at most 30 days.
    pub fn reenqueue(&self, failures: &[RetryFailure], now: Timestamp) -> Result<Vec<Retry>, CallFailure> {
        let Some(indices) = &self.exports.reenqueue else {
            return Err(CallFailure::BadAnswer("does not implement reenqueue".to_string()));
        };
        let wit: Vec<reenqueue::Failure> =
            failures.iter().map(|f| reenqueue::Failure { repo: f.repo.to_wit(), error: f.error.clone() }).collect();
        let (mut store, instance) = self.ready()?;
        let guest = indices.load(&mut store, &instance).map_err(|e| self.failure(e))?;
        let answers = guest.call_reenqueue(&mut store, now.as_millis(), &wit).map_err(|e| self.failure(e))?;
        answers::retries(answers, failures.iter().map(|f| f.repo.name.as_str()))
    }

    /// `explain-priority` for one repo (contract 0.2.1): the module's sentence, stripped of
    /// control characters and cut to [`MAX_EXPLANATION_BYTES`].
    pub fn explain_priority(&self, repo: &RepoView, now: Timestamp) -> Result<String, CallFailure> {
        let Some(indices) = &self.exports.explain else {
            return Err(CallFailure::BadAnswer("does not implement explain (contract 0.2.1)".to_string()));
        };
        let (mut store, instance) = self.ready()?;
        let guest = indices.load(&mut store, &instance).map_err(|e| self.failure(e))?;
        let text =
            guest.call_explain_priority(&mut store, now.as_millis(), &repo.to_wit()).map_err(|e| self.failure(e))?;
        Ok(sentence(&text))
    }

    /// `explain-limit` for one key's limit, `(per hour, burst)` (contract 0.2.1), cleaned and
    /// cut as [`Module::explain_priority`]'s sentence.
    pub fn explain_limit(
        &self,
        key: &str,
        service_type: &str,
        limit: (u32, u32),
        now: Timestamp,
    ) -> Result<String, CallFailure> {
        let Some(indices) = &self.exports.explain_limits else {
            return Err(CallFailure::BadAnswer("does not implement explain-limits (contract 0.2.1)".to_string()));
        };
        let (mut store, instance) = self.ready()?;
        let guest = indices.load(&mut store, &instance).map_err(|e| self.failure(e))?;
        let text = guest
            .call_explain_limit(&mut store, now.as_millis(), key, service_type, limit.0, limit.1)
            .map_err(|e| self.failure(e))?;
        Ok(sentence(&text))
    }

    /// `limits` on the keys seen, answers checked: keys among those seen, one limit per key,
    /// rates above zero, burst and in-flight caps at least 1.
    pub fn rate_limits(&self, seen: &[KeyLoad], now: Timestamp) -> Result<Vec<KeyLimit>, CallFailure> {
        let Some(indices) = &self.exports.rate_limits else {
            return Err(CallFailure::BadAnswer("does not implement rate-limits".to_string()));
        };
        let wit: Vec<rate_limits::KeyLoad> = seen
            .iter()
            .map(|load| rate_limits::KeyLoad {
                key: load.key.to_wit(),
                service_type: load.service_type.clone(),
                repos: load.repos,
                queued: load.queued,
                in_flight: load.in_flight,
            })
            .collect();
        let (mut store, instance) = self.ready()?;
        let guest = indices.load(&mut store, &instance).map_err(|e| self.failure(e))?;
        let answers = guest.call_limits(&mut store, now.as_millis(), &wit).map_err(|e| self.failure(e))?;
        answers::limits(answers, seen)
    }
}

/// A module's sentence as the host keeps it: control characters made spaces, trimmed, cut.
fn sentence(text: &str) -> String {
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    crate::text::truncated(text.trim(), MAX_EXPLANATION_BYTES)
}

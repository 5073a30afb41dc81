//! What the tick loop tells the outside: write-back into the repo DB, the decision log, and
//! the status document with its metrics.

use std::sync::Arc;

use super::Sidecar;
use crate::error_chain::error_chain;
use crate::model::Timestamp;

impl Sidecar {
    /// Writes observed clone state back into the repo DB, if enabled, off the loop; skipped
    /// while the previous write is still running.
    pub(super) fn start_writeback(&mut self) {
        if !self.parts.config.writeback || self.writeback.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        let changes = self.machine.writeback_changes();
        if changes.is_empty() {
            return;
        }
        let parts = Arc::clone(&self.parts);
        let error_cell = Arc::clone(&self.writeback_error);
        let refusals = Arc::clone(self.persister.refusals());
        self.writeback = Some(tokio::spawn(async move {
            match parts.repo_db.write_back(&changes).await {
                Ok(written) => {
                    tracing::info!(
                        rows = written.rows,
                        refused = written.refused.len(),
                        "Wrote clone state back to the repo DB."
                    );
                    // A refused row is set aside; the next write-back tries it again.
                    refusals.repo_db.record(&written.refused);
                    error_cell.store(Arc::new(None));
                }
                Err(error) => {
                    let error = error_chain(&error);
                    tracing::warn!(%error, "Writing clone state back failed; the next tick retries.");
                    error_cell.store(Arc::new(Some(error)));
                }
            }
        }));
    }

    /// Writes a sample of this tick's decisions to the decision log (target
    /// `clonekeeper::decision`), one JSON line each when logs are JSON: the order (with why each
    /// repo is due), and the retry and rate-limit decisions made since the last tick (with the
    /// failure or the load that was decided on).
    pub(super) fn log_decisions(&mut self) {
        let logged = self.machine.take_decision_log();
        let sample = self.parts.config.decision_log_sample;
        if sample <= 0.0 {
            return;
        }
        let sampled = || sample >= 1.0 || rand::random::<f64>() < sample;
        // The first few sampled decisions of a tick carry their explanation; a module's is a
        // call into it, made off the loop (skipped while the last tick's calls still run).
        let explainer_free = self.explainer.as_ref().is_none_or(|task| task.is_finished());
        let mut to_explain = Vec::new();
        for (repo, score, module) in self.machine.decisions() {
            if !sampled() {
                continue;
            }
            let reason = self.machine.due_reason(repo);
            let decision = format!("score {score}");
            if to_explain.len() < EXPLAINED_PER_TICK && (module == crate::schedule::BUILTIN || explainer_free) {
                if let Some(candidate) = self.machine.candidate_of(repo) {
                    to_explain.push((module.to_string(), decision, reason, candidate));
                    continue;
                }
            }
            log_decision(repo, &decision, module, &reason, None);
        }
        let (builtin, modules): (Vec<_>, Vec<_>) =
            to_explain.into_iter().partition(|(module, ..)| module == crate::schedule::BUILTIN);
        for (module, decision, reason, c) in builtin {
            let why = crate::schedule::Candidate::of_record(
                &c.repo,
                c.shard,
                c.state,
                c.record.as_ref(),
                crate::schedule::BuiltinOrder::explain,
            );
            log_decision(c.repo.name.as_str(), &decision, &module, &reason, Some(&why));
        }
        if let (Some(policy), false) = (self.parts.policy.as_ref(), modules.is_empty()) {
            let policy = Arc::clone(policy);
            let shards = self.parts.config.shards.clone();
            self.explainer = Some(tokio::task::spawn_blocking(move || {
                let now = Timestamp::now();
                for (module, decision, reason, c) in modules {
                    let addr = shards.addr(c.shard);
                    let view = crate::policy::RepoView::from_repo(&c.repo, c.state, c.shard, addr, c.record.as_ref());
                    let why = policy.explain_priority(&module, &view, now);
                    log_decision(c.repo.name.as_str(), &decision, &module, &reason, why.as_deref());
                }
            }));
        }
        for entry in logged.into_iter().filter(|_| sampled()) {
            tracing::info!(
                target: "clonekeeper::decision",
                repo = %entry.subject,
                interface = entry.interface,
                decision = %entry.decision,
                module = %entry.module,
                reason = %entry.reason,
                "Policy decision."
            );
        }
    }

    /// Swaps in a fresh status document.
    pub(super) fn publish(&self) {
        let shard_counts = self.machine.shard_counts();
        let now = Timestamp::now();
        for (idx, counts) in shard_counts.iter().enumerate() {
            self.metrics.record_shard(self.parts.config.shards.addr(idx as u16), counts, now);
        }
        let mut status = self.machine.status(&shard_counts);
        status.role = self.liveness.role().as_str().to_string();
        status.epoch = self.epoch;
        status.repo_db_shape = Some(self.parts.repo_db.shape().to_string());
        status.writeback_error = (**self.writeback_error.load()).clone();
        status.policies = self.parts.policy.as_ref().map(|p| p.status(now)).unwrap_or_default();
        status.state_refused = self.persister.refusals().state.snapshot();
        status.writeback_refused = self.persister.refusals().repo_db.snapshot();
        self.status.store(Arc::new(status));
    }
}

/// Sampled decisions of a tick that carry an explanation.
const EXPLAINED_PER_TICK: usize = 20;

/// One line of the decision log for an ordering decision.
fn log_decision(repo: &str, decision: &str, module: &str, reason: &str, explanation: Option<&str>) {
    tracing::info!(
        target: "clonekeeper::decision",
        repo = %repo,
        interface = "prioritize",
        decision = %decision,
        module = %module,
        reason = %reason,
        explanation = explanation.unwrap_or_default(),
        "Policy decision."
    );
}

//! What the tick loop tells the outside: write-back into the repo DB, the decision log, and
//! the status document with its metrics.

use std::sync::Arc;

use super::*;

impl Sidecar {
    /// Writes observed clone state back into the repo DB, if enabled, off the loop; skipped
    /// while the previous write is still running.
    pub(super) fn start_writeback(&mut self, plan: &Plan) {
        if !self.parts.config.writeback || self.writeback.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        let snapshot = Arc::clone(&self.snapshot);
        // The configured shard each recorded `shard_id` names. An address clonekeeper does not
        // know (gitserver may spell its own differently) is left alone, so the two never take
        // turns rewriting a row; one naming another configured shard is corrected (a reshard).
        let addrs = self.parts.config.shards.addrs();
        let recorded_shards: Vec<Option<ShardIdx>> = snapshot
            .desired
            .recorded_shards
            .iter()
            .map(|id| addrs.iter().position(|addr| addr == &**id).and_then(|idx| ShardIdx::try_from(idx).ok()))
            .collect();
        let mut changes = Vec::new();
        for ((repo, state), shard) in snapshot.desired.repos.iter().zip(&plan.states).zip(&snapshot.routes) {
            let status = match state {
                RepoState::Cloned => CloneStatus::Cloned,
                RepoState::Cloning => CloneStatus::Cloning,
                RepoState::Uncloned | RepoState::Failed | RepoState::Lost => CloneStatus::NotCloned,
                RepoState::Unknown => continue,
            };
            let stale = match repo.recorded {
                RecordedState::NotTracked => false,
                RecordedState::ClonedFlag(cloned) => cloned != (status == CloneStatus::Cloned),
                RecordedState::Status { status: recorded, shard: recorded_shard } => {
                    let elsewhere = recorded_shard
                        .and_then(|idx| recorded_shards.get(usize::from(idx)).copied().flatten())
                        .is_some_and(|recorded| recorded != *shard);
                    recorded != Some(status) || *state == RepoState::Failed || elsewhere
                }
            };
            if stale {
                changes.push(WriteBack {
                    repo_id: repo.id,
                    status,
                    shard: self.parts.config.shards.addr(*shard).to_string(),
                    last_error: self.attempts.get(&repo.name).and_then(|r| r.last_error.clone()),
                    name: repo.name.clone(),
                });
            }
        }
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
    /// `clonekeeper::decision`), one JSON line each when logs are JSON.
    pub(super) fn log_decisions(&self, ordered: &schedule::Ordered) {
        let sample = self.parts.config.decision_log_sample;
        if sample <= 0.0 {
            return;
        }
        let repos = &self.snapshot.desired.repos;
        for (job, (score, module)) in ordered.jobs.iter().zip(&ordered.decisions) {
            if sample < 1.0 && rand::random::<f64>() >= sample {
                continue;
            }
            if let Some(repo) = repos.get(job.repo as usize) {
                tracing::info!(
                    target: "clonekeeper::decision",
                    repo = %repo.name,
                    interface = "prioritize",
                    decision = %format!("score {score}"),
                    module = %module,
                    reason = "due this tick",
                    "Policy decision."
                );
            }
        }
    }

    /// Swaps in a fresh status document.
    pub(super) fn publish(&self) {
        let queued = self.scheduler.queued_per_shard();
        let in_flight = self.scheduler.in_flight_per_shard();
        let mut shard_counts = self.plan.shards.clone();
        shard_counts.resize(self.parts.config.shards.len(), Default::default());
        for (idx, counts) in shard_counts.iter_mut().enumerate() {
            counts.queued = queued[idx];
            counts.in_flight = in_flight[idx];
        }
        let totals = reconcile::Counts::sum(&shard_counts);
        let now = Timestamp::now();
        for (idx, counts) in shard_counts.iter().enumerate() {
            self.metrics.record_shard(self.parts.config.shards.addr(idx as u16), counts, now);
        }
        let shards = shard_counts
            .iter()
            .enumerate()
            .map(|(idx, counts)| ShardStatus {
                addr: self.parts.config.shards.addr(idx as u16).to_string(),
                reachable: self.shards.reachable(idx),
                error: self.shards.error(idx).map(str::to_string),
                late_since: self.shards.late_since(idx).map(Timestamp::to_rfc3339),
                counts: StateCounts::from(counts),
            })
            .collect();
        let mut problems: Vec<String> =
            self.snapshot.desired.problems.iter().take(STATUS_SAMPLE).map(|p| p.to_string()).collect();
        problems.extend(self.plan.problems.iter().take(STATUS_SAMPLE).map(|p| match p {
            Problem::NoCloneUrl { name } => format!("{name}: no clone URL in the repo DB"),
        }));
        problems.truncate(STATUS_SAMPLE);
        let status = Status {
            totals: StateCounts::from(&totals),
            shards,
            ticks: self.ticks,
            last_tick_at: self.last_tick_at.map(Timestamp::to_rfc3339),
            repo_db_shape: Some(self.parts.repo_db.shape().to_string()),
            repo_db_error: self.repo_db_error.clone(),
            writeback_error: (**self.writeback_error.load()).clone(),
            dispatches: self.totals.clone(),
            problems,
            orphans: self
                .plan
                .orphans
                .iter()
                .take(STATUS_SAMPLE)
                .map(|o| format!("{}: {}", self.parts.config.shards.addr(o.shard), o.name))
                .collect(),
            policies: self.parts.policy.as_ref().map(|p| p.status(Timestamp::now())).unwrap_or_default(),
            state_refused: self.persister.refusals().state.snapshot(),
            writeback_refused: self.persister.refusals().repo_db.snapshot(),
        };
        self.status.store(Arc::new(status));
    }
}

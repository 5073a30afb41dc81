//! Which repo DB rows disagree with what the last tick observed, for the write-back.

use super::Machine;
use crate::model::{CloneStatus, RecordedState, ShardIdx};
use crate::reconcile::RepoState;
use crate::sources::repo_db::WriteBack;

impl Machine {
    /// The rows whose recorded clone state (or shard) the last plan contradicts.
    ///
    /// The configured shard each recorded `shard_id` names: an address clonekeeper does not
    /// know (gitserver may spell its own differently) is left alone, so the two never take
    /// turns rewriting a row; one naming another configured shard is corrected (a reshard).
    pub fn writeback_changes(&self) -> Vec<WriteBack> {
        let snapshot = &self.snapshot;
        let addrs = self.settings.shards.addrs();
        let recorded_shards: Vec<Option<ShardIdx>> = snapshot
            .desired
            .recorded_shards
            .iter()
            .map(|id| addrs.iter().position(|addr| addr == &**id).and_then(|idx| ShardIdx::try_from(idx).ok()))
            .collect();
        let mut changes = Vec::new();
        for ((repo, state), shard) in snapshot.desired.repos.iter().zip(&self.plan.states).zip(&snapshot.routes) {
            let status = match state {
                RepoState::Cloned => CloneStatus::Cloned,
                RepoState::Cloning => CloneStatus::Cloning,
                RepoState::Uncloned | RepoState::Failed | RepoState::Lost => CloneStatus::NotCloned,
                RepoState::Unknown => continue,
            };
            let stale = match repo.recorded() {
                RecordedState::NotTracked => false,
                RecordedState::ClonedFlag(cloned) => cloned != (status == CloneStatus::Cloned),
                RecordedState::Status { status: recorded, shard: recorded_shard } => {
                    let elsewhere = recorded_shard
                        .and_then(|idx| recorded_shards.get(idx.index()).copied().flatten())
                        .is_some_and(|recorded| recorded != *shard);
                    recorded != Some(status) || *state == RepoState::Failed || elsewhere
                }
            };
            if stale {
                changes.push(WriteBack {
                    repo_id: repo.id(),
                    status,
                    shard: self.settings.shards.addr(*shard).to_string(),
                    last_error: self.attempts.get(repo.name()).and_then(|r| r.last_error.clone()),
                    name: repo.repo_name(),
                });
            }
        }
        changes
    }
}

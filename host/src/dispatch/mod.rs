//! Turning a scheduled job into a gitserver (or repo-updater) call, and its answer into an
//! [`Outcome`].
//!
//! The tick loop decides *whether* to dispatch (caps, order, backoff); this module only makes
//! the call. Before the call it stores the started attempt, so that a process killed
//! mid-dispatch still has the attempt on record after a restart.

use crate::config::DispatchTarget;
use crate::model::{AttemptRecord, RepoName, ShardIdx, Timestamp};
use crate::sources::gitserver::GitserverClient;
use crate::state::StateStore;

/// One dispatch to make.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub name: RepoName,
    pub clone_url: String,
    pub shard: ShardIdx,
    pub shard_addr: String,
    /// The attempt record as it stands with this attempt started.
    pub record: AttemptRecord,
}

/// How a dispatch ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub name: RepoName,
    pub shard: ShardIdx,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub result: Result<(), DispatchError>,
}

/// Why a dispatch failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchError {
    /// git's message or the transport error, naming the shard.
    pub message: String,
    /// The call did not reach a working shard (so the shard, not the repo, is at fault).
    pub shard_down: bool,
}

/// Stores the started attempt, then makes the call. Never fails: every failure is an
/// [`Outcome`] with an error.
pub async fn run(dispatch: Dispatch, target: &DispatchTarget, client: &GitserverClient, state: &StateStore) -> Outcome {
    let started_at = Timestamp::now();
    if let Err(error) = state.save(&[(dispatch.name.clone(), dispatch.record.clone())]).await {
        // Cloning must not stop because the state DB is down; the outcome is stored later.
        tracing::warn!(repo = %dispatch.name, error = %crate::error_chain::error_chain(&error), "Storing a started attempt failed; dispatching anyway.");
    }
    let result = match target {
        DispatchTarget::Gitserver => {
            match client.repo_update(&dispatch.shard_addr, &dispatch.name, &dispatch.clone_url).await {
                Ok(answer) if answer.error.trim().is_empty() => Ok(()),
                Ok(answer) => Err(DispatchError {
                    message: format!("gitserver {}: {}", dispatch.shard_addr, answer.error.trim()),
                    shard_down: false,
                }),
                Err(error) => Err(DispatchError { shard_down: error.kind.is_shard_down(), message: error.to_string() }),
            }
        }
        DispatchTarget::RepoUpdater(addr) => client
            .enqueue_repo_update(addr, &dispatch.name, &dispatch.clone_url)
            .await
            .map(|_| ())
            .map_err(|error| DispatchError { shard_down: false, message: error.to_string() }),
    };
    Outcome { name: dispatch.name, shard: dispatch.shard, started_at, finished_at: Timestamp::now(), result }
}

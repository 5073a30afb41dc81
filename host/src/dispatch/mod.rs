//! Turning a scheduled job into a gitserver (or repo-updater) call, and its answer into an
//! [`Outcome`].
//!
//! The tick loop decides *whether* to dispatch (caps, order, backoff); this module only makes
//! the call. Before the call it waits (at most [`STORE_WAIT`]) until the tick loop's
//! attempt-state writer has stored the started attempt, so that a process killed
//! mid-dispatch still has the attempt on record after a restart. The writer is the only one
//! that writes attempt records; this module never touches the state DB.

use std::future::Future;
use std::time::Duration;

use crate::config::DispatchTarget;
use crate::model::{RepoName, ShardIdx, Timestamp};
use crate::sources::gitserver::GitserverClient;

/// How long a dispatch waits for its started attempt to be stored. Past it, or when the
/// state DB is down, the call is made anyway: cloning must not stop because the state DB is
/// slow or down (the record is still written when it comes back).
pub const STORE_WAIT: Duration = Duration::from_secs(5);

/// One dispatch to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub name: RepoName,
    pub clone_url: String,
    pub shard: ShardIdx,
    pub shard_addr: String,
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

/// Waits until `stored` says the started attempt is stored (at most [`STORE_WAIT`]), then
/// makes the call. Never fails: every failure is an [`Outcome`] with an error.
///
/// `must_store` (several replicas): a dispatch whose started attempt was not stored is not
/// made, since the store is what proves this replica still leads (its writes are fenced).
pub async fn run(
    dispatch: Dispatch,
    target: &DispatchTarget,
    client: &GitserverClient,
    stored: impl Future<Output = Result<(), String>>,
    must_store: bool,
) -> Outcome {
    let unstored = match tokio::time::timeout(STORE_WAIT, stored).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error),
        Err(_) => Some(format!("not stored within {}s", STORE_WAIT.as_secs())),
    };
    if let Some(error) = unstored {
        if must_store {
            tracing::warn!(repo = %dispatch.name, %error, "The started attempt was not stored; not dispatching.");
            let now = Timestamp::now();
            let message = format!("not dispatched: the started attempt was not stored ({error})");
            let result = Err(DispatchError { message, shard_down: false });
            return Outcome { name: dispatch.name, shard: dispatch.shard, started_at: now, finished_at: now, result };
        }
        tracing::warn!(repo = %dispatch.name, %error, "The started attempt was not stored; dispatching anyway.");
    }
    let started_at = Timestamp::now();
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

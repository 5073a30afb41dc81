//! The I/O half of a tick: read the desired set and every shard's lists.
//!
//! Runs in its own task so that dispatch outcomes keep being handled while a large repo DB
//! is read. One query for the repo DB, one list call per shard, and progress calls batched.

use std::sync::Arc;

use futures::future::join_all;

use crate::error_chain::error_chain;
use crate::model::{RepoName, ShardIdx};
use crate::routing::ShardMap;
use crate::sources::gitserver::GitserverClient;
use crate::sources::repo_db::{DesiredSet, RepoDb};

/// The desired set with each repo's owning shard, shared read-only between the tick loop,
/// the dispatcher and the admin API.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub desired: DesiredSet,
    /// `routes[i]` owns `desired.repos[i]`.
    pub routes: Vec<ShardIdx>,
}

/// What one shard answered.
#[derive(Debug, Default)]
pub struct ShardAnswer {
    pub cloned: Vec<RepoName>,
    pub cloning: Vec<RepoName>,
}

/// The result of one observation; failures are kept per source so the rest still counts.
#[derive(Debug)]
pub struct Observation {
    /// A fresh snapshot, or why the repo DB could not be read.
    pub snapshot: Result<Arc<Snapshot>, String>,
    pub shards: Vec<Result<ShardAnswer, String>>,
    /// How long the observation took.
    pub took: std::time::Duration,
}

/// Reads the repo DB and lists every shard concurrently. `previous` is the last good snapshot,
/// used to decide which names to ask about when the repo DB read fails.
pub async fn observe(
    repo_db: &RepoDb,
    client: &GitserverClient,
    shards: &ShardMap,
    previous: Arc<Snapshot>,
) -> Observation {
    let started = std::time::Instant::now();
    let lists = join_all(shards.addrs().iter().map(|addr| client.list_cloned(addr)));
    let (desired, lists) = futures::join!(repo_db.load_desired(), lists);

    let snapshot = match desired {
        Ok(desired) => {
            let shards = shards.clone();
            let routed = tokio::task::spawn_blocking(move || {
                let routes = desired.repos.iter().map(|r| shards.shard_for(&r.name)).collect();
                Snapshot { desired, routes }
            })
            .await;
            routed.map(Arc::new).map_err(|e| format!("routing the desired set failed: {e}"))
        }
        Err(error) => Err(error_chain(&error)),
    };
    let current = snapshot.as_ref().map(Arc::clone).unwrap_or(previous);

    let answers = lists.into_iter().enumerate().map(|(shard_idx, list)| {
        let current = Arc::clone(&current);
        async move {
            let cloned = list.map_err(|e| e.to_string())?;
            let shard = ShardIdx::try_from(shard_idx).expect("shard count fits ShardIdx");
            let listed: std::collections::HashSet<&str> = cloned.iter().map(RepoName::as_str).collect();
            let missing: Vec<&RepoName> = current
                .desired
                .repos
                .iter()
                .zip(&current.routes)
                .filter(|(repo, &owner)| owner == shard && !listed.contains(repo.name.as_str()))
                .map(|(repo, _)| &repo.name)
                .collect();
            let addr = shards.addr(shard);
            let progress = client.clone_progress(addr, &missing).await.map_err(|e| e.to_string())?;
            drop(listed);
            let mut cloned = cloned;
            cloned.extend(progress.cloned);
            Ok(ShardAnswer { cloned, cloning: progress.cloning })
        }
    });
    let shards = join_all(answers).await;
    Observation { snapshot, shards, took: started.elapsed() }
}

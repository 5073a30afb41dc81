//! One bounded read of the desired set: a full read every `[sync] full_interval`, and between
//! them an incremental one (the rows changed since the last read, applied to the snapshot it
//! gave) where the repo DB can say what changed (Postgres). ARCHITECTURE.md argues which
//! changes an incremental read sees; whatever it could miss, the next full read brings.

use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::error_chain::error_chain;
use crate::machine::Snapshot;
use crate::model::{RepoColumns, Router, ShardIdx, Timestamp};
use crate::sources::repo_db::{DesiredChanges, DesiredSet, ReadMark, RepoDbError};

use super::observe::Sources;

/// Where the reads stand: the mark of the last read and the snapshot it gave, when the last
/// full read was, and which columns it read.
#[derive(Debug, Default)]
pub struct Reads {
    mark: Option<ReadMark>,
    /// The snapshot the mark belongs to: an incremental read applies only on top of it.
    base: Weak<Snapshot>,
    full_at: Option<Instant>,
    /// The columns of the last full read; incremental reads read the same.
    columns: RepoColumns,
    /// The columns every read since the last full one filled: the snapshot has them for
    /// every repo.
    columns_throughout: RepoColumns,
    /// A snapshot file was asked for without every policy column at hand: the next read is a
    /// full one with them, whatever the policies need.
    policy_columns_once: bool,
}

impl Reads {
    /// Whether the last good snapshot carries every column a policy can read (stars, details)
    /// for every repo that has them.
    pub fn has_policy_columns(&self) -> bool {
        self.columns_throughout.covers(RepoColumns::POLICY)
    }

    /// Makes the next read a full one with every column a policy can read (for a snapshot
    /// file).
    pub fn want_policy_columns_once(&mut self) {
        self.policy_columns_once = true;
    }
}

/// What kind of read a tick made, for logs and metrics.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum ReadKind {
    Full,
    Incremental,
}

impl ReadKind {
    fn as_str(self) -> &'static str {
        match self {
            ReadKind::Full => "full",
            ReadKind::Incremental => "incremental",
        }
    }
}

/// Reads the desired set, bounded by `sources.repo_db_timeout`; `previous` is the last good
/// snapshot, on top of which an incremental read applies.
pub async fn read_desired(sources: &Sources, previous: &Arc<Snapshot>) -> Result<Arc<Snapshot>, String> {
    // Columns are read only while something uses them: at a million rows each costs the repo
    // DB and the reader time, and stars in `repo.metadata` more than all others together.
    let policy_columns = sources.policy.as_ref().map(|policy| policy.current().columns_read()).unwrap_or_default();
    let wanted = policy_columns.union(RepoColumns { recorded: sources.writeback, ..RepoColumns::default() });
    let (columns, incremental_from) = {
        let reads = sources.reads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let columns = if reads.policy_columns_once { wanted.union(RepoColumns::POLICY) } else { wanted };
        let since_full = reads.full_at.map(|at| at.elapsed());
        let incremental = reads.columns == columns
            && !reads.policy_columns_once
            && Snapshot::may_read_incrementally(since_full, sources.full_interval, &reads.base, previous);
        (columns, reads.mark.filter(|_| incremental))
    };
    let started = Instant::now();
    let read = async {
        let mark = sources.repo_db.read_mark().await?;
        let changes = match incremental_from {
            Some(since) => sources.repo_db.load_changes(since, columns, &previous.desired.recorded_shards).await?,
            None => None,
        };
        let read = match changes {
            Some(changes) => Read::Changes(changes),
            None => {
                let shards = sources.shards.clone();
                let router: Router = Box::new(move |name| shards.shard_for(name));
                Read::Full(Box::new(sources.repo_db.load_desired_routed(columns, Some(router)).await?))
            }
        };
        Ok::<_, RepoDbError>((mark, read))
    };
    let (mark, read) = match tokio::time::timeout(sources.repo_db_timeout, read).await {
        Ok(Ok(read)) => read,
        Ok(Err(error)) => return Err(error_chain(&error)),
        Err(_) => {
            return Err(format!(
                "{}: reading the desired repos took longer than {} and was abandoned",
                sources.repo_db.database().describe(),
                humantime::format_duration(sources.repo_db_timeout)
            ))
        }
    };
    sources.liveness.repo_db_read_succeeded(Timestamp::now());
    let kind = match read {
        Read::Full(_) => ReadKind::Full,
        Read::Changes(_) => ReadKind::Incremental,
    };
    let shards = sources.shards.clone();
    let previous = Arc::clone(previous);
    let snapshot = tokio::task::spawn_blocking(move || match read {
        Read::Full(read) => {
            let (desired, routes) = *read;
            Ok(Arc::new(Snapshot::with_routes(desired, routes, &shards)))
        }
        Read::Changes(changes) => {
            let rows = changes.ids.len();
            let snapshot = Snapshot::after_changes(&previous, changes, &shards)?;
            if !Arc::ptr_eq(&snapshot, &previous) {
                tracing::debug!(rows, repos = snapshot.desired.repos.len(), "Applied an incremental read.");
            }
            Ok(snapshot)
        }
    })
    .await
    .map_err(|e| format!("routing the desired set failed: {e}"))?
    .map_err(|_: crate::model::ListTooLarge| {
        format!(
            "{}: the desired repos' names after an incremental read pass 4 GiB, more than one set holds",
            sources.repo_db.database().describe()
        )
    })?;

    let mut reads = sources.reads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    reads.mark = mark;
    reads.base = Arc::downgrade(&snapshot);
    if kind == ReadKind::Full {
        reads.full_at = Some(started);
        reads.columns = columns;
        reads.columns_throughout = columns;
        reads.policy_columns_once = false;
    } else {
        reads.columns_throughout = reads.columns_throughout.intersection(columns);
    }
    drop(reads);
    let label = crate::metrics::ReadLabel { kind: kind.as_str() };
    sources.metrics.repo_db_read_duration.get_or_create(&label).observe(started.elapsed().as_secs_f64());
    sources.metrics.repo_db_reads.get_or_create(&label).inc();
    Ok(snapshot)
}

enum Read {
    /// The set and each repo's route (computed as the rows arrived). Boxed: a set of columns
    /// is a few hundred bytes of handles.
    Full(Box<(DesiredSet, Vec<ShardIdx>)>),
    Changes(DesiredChanges),
}

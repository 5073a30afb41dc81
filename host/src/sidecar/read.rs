//! One bounded read of the desired set: a full read every `[sync] full_interval`, and between
//! them an incremental one (the rows changed since the last read, applied to the snapshot it
//! gave) where the repo DB can say what changed (Postgres). ARCHITECTURE.md argues which
//! changes an incremental read sees; whatever it could miss, the next full read brings.

use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::error_chain::error_chain;
use crate::machine::Snapshot;
use crate::model::Timestamp;
use crate::sources::repo_db::{DesiredChanges, DesiredSet, ReadMark, RepoDbError};

use super::observe::Sources;

/// Where the reads stand: the mark of the last read and the snapshot it gave, when the last
/// full read was, and whether it read stars.
#[derive(Debug, Default)]
pub struct Reads {
    mark: Option<ReadMark>,
    /// The snapshot the mark belongs to: an incremental read applies only on top of it.
    base: Weak<Snapshot>,
    full_at: Option<Instant>,
    stars: bool,
    /// Every read since the last full one read stars: the snapshot has them for every repo.
    stars_throughout: bool,
    /// A snapshot file was asked for without stars at hand: the next read is a full one with
    /// stars, whatever the policies need.
    stars_once: bool,
}

impl Reads {
    /// Whether the last good snapshot carries stars for every repo that has them.
    pub fn has_stars(&self) -> bool {
        self.stars_throughout
    }

    /// Makes the next read a full one with stars (for a snapshot file).
    pub fn want_stars_once(&mut self) {
        self.stars_once = true;
    }
}

/// What kind of read a tick made, for logs and metrics.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReadKind {
    Full,
    Incremental,
}

impl ReadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadKind::Full => "full",
            ReadKind::Incremental => "incremental",
        }
    }
}

/// Reads the desired set, bounded by `sources.repo_db_timeout`; `previous` is the last good
/// snapshot, on top of which an incremental read applies.
pub async fn read_desired(sources: &Sources, previous: &Arc<Snapshot>) -> Result<(Arc<Snapshot>, ReadKind), String> {
    // Stars are read only for a module that uses them: in `repo.metadata` they cost more than
    // every other column together.
    let policies_read_stars = sources.policy.as_ref().is_some_and(|policy| policy.current().reads_stars());
    let (stars, incremental_from) = {
        let reads = sources.reads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let stars = policies_read_stars || reads.stars_once;
        let since_full = reads.full_at.map(|at| at.elapsed());
        let incremental = reads.stars == stars
            && !reads.stars_once
            && Snapshot::may_read_incrementally(since_full, sources.full_interval, &reads.base, previous);
        (stars, reads.mark.filter(|_| incremental))
    };
    let started = Instant::now();
    let read = async {
        let mark = sources.repo_db.read_mark().await?;
        let changes = match incremental_from {
            Some(since) => sources.repo_db.load_changes(since, stars, &previous.desired.recorded_shards).await?,
            None => None,
        };
        let read = match changes {
            Some(changes) => Read::Changes(changes),
            None => Read::Full(sources.repo_db.load_desired_reading(stars).await?),
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
        Read::Full(desired) => Arc::new(Snapshot::routed(desired, &shards)),
        // Nothing changed (the common case between full reads): the snapshot stays as it is.
        Read::Changes(changes) if changes.ids.is_empty() => previous,
        Read::Changes(changes) => {
            let changed = changes.ids.len();
            let snapshot = previous.with_changes(changes, &shards);
            tracing::debug!(changed, repos = snapshot.desired.repos.len(), "Applied an incremental read.");
            Arc::new(snapshot)
        }
    })
    .await
    .map_err(|e| format!("routing the desired set failed: {e}"))?;

    let mut reads = sources.reads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    reads.mark = mark;
    reads.base = Arc::downgrade(&snapshot);
    if kind == ReadKind::Full {
        reads.full_at = Some(started);
        reads.stars = stars;
        reads.stars_throughout = stars;
        reads.stars_once = false;
    } else {
        reads.stars_throughout &= stars;
    }
    Ok((snapshot, kind))
}

enum Read {
    Full(DesiredSet),
    Changes(DesiredChanges),
}

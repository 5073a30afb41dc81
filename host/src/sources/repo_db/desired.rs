//! Turns rows of the desired-repos query into [`DesiredRepo`]s as they stream in, collecting a
//! [`RowProblem`] for every value that cannot be used as it is.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::model::{
    CloneStatus, CloneUrl, DesiredRepo, RecordedShard, RecordedState, RepoColumns, RepoName, ServiceType, Timestamp,
};

use super::{DesiredChanges, DesiredSet, RowProblem, SchemaShape};

// Column indices of the desired-repos query (see the `query` module).
const ID: usize = 0;
const NAME: usize = 1;
const CLONE_URL: usize = 2;
const SERVICE_TYPE: usize = 3;
const CREATED_AT: usize = 4;
const UPDATED_AT: usize = 5;
const FORK: usize = 6;
const ARCHIVED: usize = 7;
const PRIVATE: usize = 8;
const STARS: usize = 9;
const RECORDED: usize = 10;
const RECORDED_SHARD: usize = 11;
/// Only in incremental reads: whether the row is soft-deleted.
const DELETED: usize = 12;

/// Typed access to one row of the desired-repos query, whatever the backend. Values borrow
/// from the row, so decoding allocates only what a [`DesiredRepo`] keeps.
pub(super) trait DesiredRow {
    fn int(&self, index: usize) -> Result<Option<i64>, sqlx::Error>;
    fn flag(&self, index: usize) -> Result<Option<bool>, sqlx::Error>;
    fn text(&self, index: usize) -> Result<Option<&str>, sqlx::Error>;
    /// A timestamp as milliseconds since the Unix epoch.
    fn millis(&self, index: usize) -> Result<Option<i64>, sqlx::Error>;
}

impl DesiredRow for PgRow {
    fn int(&self, index: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(index)
    }

    fn flag(&self, index: usize) -> Result<Option<bool>, sqlx::Error> {
        self.try_get(index)
    }

    fn text(&self, index: usize) -> Result<Option<&str>, sqlx::Error> {
        self.try_get(index)
    }

    fn millis(&self, index: usize) -> Result<Option<i64>, sqlx::Error> {
        let time: Option<DateTime<Utc>> = self.try_get(index)?;
        Ok(time.map(|time| time.timestamp_millis()))
    }
}

impl DesiredRow for SqliteRow {
    fn int(&self, index: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(index)
    }

    fn flag(&self, index: usize) -> Result<Option<bool>, sqlx::Error> {
        self.try_get(index)
    }

    fn text(&self, index: usize) -> Result<Option<&str>, sqlx::Error> {
        self.try_get(index)
    }

    fn millis(&self, index: usize) -> Result<Option<i64>, sqlx::Error> {
        // The query converts every representation to integer milliseconds.
        self.try_get(index)
    }
}

/// Accumulates one load.
pub(super) struct Builder {
    shape: SchemaShape,
    /// The optional columns the query fills; the others are left unknown.
    columns: RepoColumns,
    repos: Vec<DesiredRepo>,
    problems: Vec<RowProblem>,
    /// Interned `external_service_type` values: a handful per load, shared by every repo.
    service_types: HashSet<ServiceType>,
    /// The distinct `gitserver_repos.shard_id` values, in first-seen order, and their indices.
    recorded_shards: Vec<Arc<str>>,
    recorded_shard_index: HashMap<Arc<str>, RecordedShard>,
    /// An incremental read: rows carry `deleted`, and every id read is kept.
    changes: Option<Vec<i64>>,
}

impl Builder {
    pub(super) fn new(shape: SchemaShape, columns: RepoColumns) -> Builder {
        Builder {
            shape,
            columns,
            repos: Vec::new(),
            problems: Vec::new(),
            service_types: HashSet::new(),
            recorded_shards: Vec::new(),
            recorded_shard_index: HashMap::new(),
            changes: None,
        }
    }

    /// A builder for an incremental read on top of a set whose recorded shards are
    /// `recorded_shards`: the indices of those stay as they are.
    pub(super) fn for_changes(shape: SchemaShape, columns: RepoColumns, recorded_shards: &[Arc<str>]) -> Builder {
        let mut builder = Builder::new(shape, columns);
        for shard in recorded_shards {
            builder.recorded_shard(shard);
        }
        builder.changes = Some(Vec::new());
        builder
    }

    /// Room for about `rows` repos.
    pub(super) fn reserve(&mut self, rows: usize) {
        self.repos.reserve(rows);
    }

    /// Adds one row. Fails only when the row has no readable id, which means the query and
    /// the schema disagree (a bug, not bad data); every other bad value becomes a problem.
    pub(super) fn accept(&mut self, row: &impl DesiredRow) -> Result<(), sqlx::Error> {
        let id = row.int(ID)?.ok_or_else(|| sqlx::Error::Decode("repo.id is NULL".into()))?;
        if let Some(ids) = &mut self.changes {
            ids.push(id);
            // Soft-deleted: the row replaces its repo by nothing.
            if row.flag(DELETED)?.unwrap_or(true) {
                return Ok(());
            }
        }
        let raw_name = match row.text(NAME) {
            Ok(Some(name)) => name,
            Ok(None) => {
                self.problem(id, "", "name is NULL; skipped".to_owned());
                return Ok(());
            }
            Err(error) => {
                self.problem(id, "", format!("name is unreadable ({error}); skipped"));
                return Ok(());
            }
        };
        let Some(name) = RepoName::normalize(raw_name) else {
            self.problem(id, raw_name, "name normalises to nothing, so no shard could hold it; skipped".to_owned());
            return Ok(());
        };

        let url = match self.field(id, raw_name, "clone URL", row.text(CLONE_URL)) {
            Some(url) if !url.trim().is_empty() => CloneUrl::for_repo(url, &name),
            Some(_) => {
                self.problem(id, raw_name, "clone URL is empty".to_owned());
                CloneUrl::Missing
            }
            None => {
                self.problem(id, raw_name, "no clone URL".to_owned());
                CloneUrl::Missing
            }
        };
        let service_type =
            self.field(id, raw_name, "external_service_type", row.text(SERVICE_TYPE)).map(|kind| self.intern(kind));
        let created_at = self.field(id, raw_name, "created_at", row.millis(CREATED_AT)).map(Timestamp::from_millis);
        let updated_at = self.field(id, raw_name, "updated_at", row.millis(UPDATED_AT)).map(Timestamp::from_millis);
        let fork = self.field(id, raw_name, "fork", row.flag(FORK));
        let archived = self.field(id, raw_name, "archived", row.flag(ARCHIVED));
        let private = self.field(id, raw_name, "private", row.flag(PRIVATE));
        let stars = match self.field(id, raw_name, "stars", row.int(STARS)) {
            Some(stars) => match u32::try_from(stars) {
                Ok(stars) => Some(stars),
                Err(_) => {
                    self.problem(id, raw_name, format!("stars {stars} out of range; ignored"));
                    None
                }
            },
            None => None,
        };
        let recorded = self.recorded(id, raw_name, row);

        self.repos.push(DesiredRepo {
            id,
            name,
            url,
            service_type,
            created_at,
            updated_at,
            stars,
            fork: fork.unwrap_or(false),
            archived: archived.unwrap_or(false),
            private: private.unwrap_or(false),
            recorded,
        });
        Ok(())
    }

    /// The changes of an incremental read.
    pub(super) fn finish_changes(mut self) -> DesiredChanges {
        let ids = self.changes.take().unwrap_or_default();
        let DesiredSet { repos, problems, recorded_shards } = self.finish();
        DesiredChanges { ids, repos, problems, recorded_shards }
    }

    /// Sorts by name and keeps the lowest id of each name, reporting the others.
    pub(super) fn finish(self) -> DesiredSet {
        let Builder { mut repos, mut problems, recorded_shards, .. } = self;
        sort_by_name_then_id(&mut repos);
        repos.dedup_by(|later, kept| {
            if later.name != kept.name {
                return false;
            }
            problems.push(RowProblem {
                repo_id: later.id,
                name: later.name.to_string(),
                message: format!(
                    "name normalises to the same name as repo row {}; skipped in favour of the \
                     lower id",
                    kept.id
                ),
            });
            true
        });
        repos.shrink_to_fit();
        problems.sort_by_key(|problem| problem.repo_id);
        DesiredSet { repos, problems, recorded_shards }
    }

    fn recorded(&mut self, id: i64, raw_name: &str, row: &impl DesiredRow) -> RecordedState {
        match self.shape {
            _ if !self.columns.recorded => RecordedState::NotTracked,
            SchemaShape::Sources2020_06 => RecordedState::NotTracked,
            SchemaShape::ClonedFlag2020_10 => {
                RecordedState::ClonedFlag(self.field(id, raw_name, "cloned", row.flag(RECORDED)).unwrap_or(false))
            }
            SchemaShape::GitserverRepos2021 => {
                let status = match self.field(id, raw_name, "clone_status", row.text(RECORDED)) {
                    None => None,
                    Some("not_cloned") => Some(CloneStatus::NotCloned),
                    Some("cloning") => Some(CloneStatus::Cloning),
                    Some("cloned") => Some(CloneStatus::Cloned),
                    Some(other) => {
                        self.problem(id, raw_name, format!("gitserver_repos.clone_status `{other}` unknown; ignored"));
                        None
                    }
                };
                let shard = match self.field(id, raw_name, "shard_id", row.text(RECORDED_SHARD)) {
                    Some(shard) if !shard.is_empty() => self.recorded_shard(shard),
                    _ => None,
                };
                RecordedState::Status { status, shard }
            }
        }
    }

    /// The value of a column, or `None` with a problem recorded when it cannot be decoded.
    fn field<T>(&mut self, id: i64, raw_name: &str, what: &str, value: Result<Option<T>, sqlx::Error>) -> Option<T> {
        value.unwrap_or_else(|error| {
            self.problem(id, raw_name, format!("{what} is unreadable ({error}); ignored"));
            None
        })
    }

    fn problem(&mut self, repo_id: i64, name: &str, message: String) {
        self.problems.push(RowProblem { repo_id, name: name.to_owned(), message });
    }

    /// The index of a `shard_id` value; `None` past 65,535 distinct values (never, with real
    /// shard counts: such a value is then treated as unknown, and left alone).
    fn recorded_shard(&mut self, shard: &str) -> Option<RecordedShard> {
        if let Some(&idx) = self.recorded_shard_index.get(shard) {
            return Some(idx);
        }
        let idx = RecordedShard::new(self.recorded_shards.len())?;
        let shard: Arc<str> = Arc::from(shard);
        self.recorded_shards.push(Arc::clone(&shard));
        self.recorded_shard_index.insert(shard, idx);
        Some(idx)
    }

    fn intern(&mut self, kind: &str) -> ServiceType {
        if let Some(interned) = self.service_types.get(kind) {
            return interned.clone();
        }
        let interned = ServiceType::new(kind);
        self.service_types.insert(interned.clone());
        interned
    }
}

/// Sorts by name, then id. A million records: on every core for a large set (a total order, so
/// the result is the same either way).
fn sort_by_name_then_id(repos: &mut [DesiredRepo]) {
    let by_name_then_id = |a: &DesiredRepo, b: &DesiredRepo| a.name.cmp(&b.name).then(a.id.cmp(&b.id));
    if repos.len() >= crate::machine::PARALLEL_FROM {
        rayon::slice::ParallelSliceMut::par_sort_unstable_by(repos, by_name_then_id);
    } else {
        repos.sort_unstable_by(by_name_then_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_set_sorts_on_every_core_into_the_same_order() {
        // Ids and names in a scrambled order, with names repeated under other ids.
        let n = crate::machine::PARALLEL_FROM as i64 + 10_000;
        let repo = |i: i64| {
            let id = (i * 7_919) % n;
            DesiredRepo::new(id, RepoName::from_normalized(format!("github.com/o/r-{}", id % 40_000)), "")
        };
        let mut large: Vec<DesiredRepo> = (0..n).map(repo).collect();
        sort_by_name_then_id(&mut large);
        assert!(large.windows(2).all(|w| (&w[0].name, w[0].id) < (&w[1].name, w[1].id)), "sorted, no ties");
        let mut one_core: Vec<DesiredRepo> = (0..n).map(repo).collect();
        one_core.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        assert_eq!(large, one_core);
    }
}

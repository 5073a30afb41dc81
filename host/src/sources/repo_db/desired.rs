//! Turns rows of the desired-repos query into [`DesiredRepo`]s as they stream in, collecting a
//! [`RowProblem`] for every value that cannot be used as it is.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use gitserver_api::{canonical_repo_name, is_canonical_repo_name};

use crate::model::{
    CloneStatus, CloneUrl, DesiredRepo, DesiredReposBuilder, DesiredValues, RecordedShard, RecordedState, RepoColumns,
    RepoName, Router, ServiceType, ShardIdx, Timestamp,
};

use super::query::{Layout, CLONE_URL, CREATED_AT, ID, NAME};
use super::{DesiredChanges, DesiredSet, RowProblem, SchemaShape};

/// Typed access to one row of the desired-repos query, whatever the backend. Values borrow
/// from the row, so decoding allocates only what a [`DesiredRepo`] keeps.
pub(super) trait QueryRow {
    fn int(&self, index: usize) -> Result<Option<i64>, sqlx::Error>;
    fn flag(&self, index: usize) -> Result<Option<bool>, sqlx::Error>;
    fn text(&self, index: usize) -> Result<Option<&str>, sqlx::Error>;
    /// A timestamp as milliseconds since the Unix epoch.
    fn millis(&self, index: usize) -> Result<Option<i64>, sqlx::Error>;
}

impl QueryRow for PgRow {
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

impl QueryRow for SqliteRow {
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
    /// Where the optional columns the query fills sit in its rows; the others are left
    /// unknown.
    layout: Layout,
    /// A full read's rows, column by column.
    repos: DesiredReposBuilder,
    /// An incremental read's rows: a few, as records.
    changed_repos: Vec<DesiredRepo>,
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
        Builder::with_layout(shape, Layout::new(shape, columns, false))
    }

    fn with_layout(shape: SchemaShape, layout: Layout) -> Builder {
        Builder {
            shape,
            layout,
            repos: DesiredReposBuilder::default(),
            changed_repos: Vec::new(),
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
        let mut builder = Builder::with_layout(shape, Layout::new(shape, columns, true));
        for shard in recorded_shards {
            builder.recorded_shard(shard);
        }
        builder.changes = Some(Vec::new());
        builder
    }

    /// Room for about `rows` repos.
    pub(super) fn reserve(&mut self, rows: usize) {
        // Names average ~32 bytes; the buffer grows if they are longer.
        self.repos.reserve(rows, rows.saturating_mul(32));
    }

    /// Adds one row. Fails only when the row has no readable id, which means the query and
    /// the schema disagree (a bug, not bad data); every other bad value becomes a problem.
    pub(super) fn accept(&mut self, row: &impl QueryRow) -> Result<(), sqlx::Error> {
        let id = row.int(ID)?.ok_or_else(|| sqlx::Error::Decode("repo.id is NULL".into()))?;
        if let Some(ids) = &mut self.changes {
            ids.push(id);
            // Soft-deleted: the row replaces its repo by nothing.
            let deleted = self.layout.deleted.map_or(Ok(Some(true)), |at| row.flag(at))?;
            if deleted.unwrap_or(true) {
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
        // Nearly every name is in normal form already: taken as it is, without a copy.
        let name: Cow<'_, str> = if is_canonical_repo_name(raw_name) {
            Cow::Borrowed(raw_name)
        } else {
            match canonical_repo_name(raw_name) {
                normal if normal.is_empty() => {
                    self.problem(
                        id,
                        raw_name,
                        "name normalises to nothing, so no shard could hold it; skipped".to_owned(),
                    );
                    return Ok(());
                }
                normal => Cow::Owned(normal),
            }
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
        let created_at = self.field(id, raw_name, "created_at", row.millis(CREATED_AT)).map(Timestamp::from_millis);
        // Columns the statement did not select are not there to decode (a million rows).
        let (mut service_type, mut updated_at, mut fork, mut archived, mut private) = (None, None, None, None, None);
        if let Some(at) = self.layout.details {
            service_type =
                self.field(id, raw_name, "external_service_type", row.text(at)).map(|kind| self.intern(kind));
            updated_at = self.field(id, raw_name, "updated_at", row.millis(at + 1)).map(Timestamp::from_millis);
            fork = self.field(id, raw_name, "fork", row.flag(at + 2));
            archived = self.field(id, raw_name, "archived", row.flag(at + 3));
            private = self.field(id, raw_name, "private", row.flag(at + 4));
        }
        let stars = match self.layout.stars.and_then(|at| self.field(id, raw_name, "stars", row.int(at))) {
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

        let values = DesiredValues {
            id,
            name: &name,
            url: &url,
            service_type: service_type.as_ref(),
            created_at,
            updated_at,
            stars,
            fork: fork.unwrap_or(false),
            archived: archived.unwrap_or(false),
            private: private.unwrap_or(false),
            recorded,
        };
        if self.changes.is_some() {
            let repo = DesiredRepo {
                id,
                name: RepoName::from_normalized(&*name),
                url: url.clone(),
                service_type: service_type.clone(),
                created_at,
                updated_at,
                stars,
                fork: values.fork,
                archived: values.archived,
                private: values.private,
                recorded,
            };
            self.changed_repos.push(repo);
        } else {
            self.repos.push_values(values).map_err(|_| {
                sqlx::Error::Protocol("the desired repos' names pass 4 GiB, more than one set can hold".into())
            })?;
        }
        Ok(())
    }

    /// The changes of an incremental read: its rows sorted by name, the lowest id of each name
    /// kept and the others reported.
    pub(super) fn finish_changes(self) -> DesiredChanges {
        let Builder { mut changed_repos, mut problems, recorded_shards, changes, .. } = self;
        sort_by_name_then_id(&mut changed_repos);
        changed_repos.dedup_by(|later, kept| {
            if later.name != kept.name {
                return false;
            }
            problems.push(clash_problem(later.id, later.name.as_str(), kept.id));
            true
        });
        problems.sort_by_key(|problem| problem.repo_id);
        DesiredChanges { ids: changes.unwrap_or_default(), repos: changed_repos, problems, recorded_shards }
    }

    /// Routes each row of a full read as it arrives (see [`DesiredReposBuilder::route_with`]).
    pub(super) fn route_with(&mut self, router: Router) {
        self.repos.route_with(router);
    }

    /// A full read's set: sorted by name, the lowest id of each name kept and the others
    /// reported; with each repo's route, in the set's order, when the rows were routed.
    pub(super) fn finish(self) -> (DesiredSet, Vec<ShardIdx>) {
        let Builder { repos, mut problems, recorded_shards, .. } = self;
        let sorted = repos.finish_sorted(crate::machine::PARALLEL_FROM);
        problems.extend(sorted.clashes.iter().map(|clash| clash_problem(clash.id, clash.name.as_str(), clash.kept_id)));
        problems.sort_by_key(|problem| problem.repo_id);
        (DesiredSet { repos: sorted.repos, problems, recorded_shards }, sorted.routes)
    }

    fn recorded(&mut self, id: i64, raw_name: &str, row: &impl QueryRow) -> RecordedState {
        let Some(at) = self.layout.recorded else {
            return RecordedState::NotTracked;
        };
        match self.shape {
            SchemaShape::Sources2020_06 => RecordedState::NotTracked,
            SchemaShape::ClonedFlag2020_10 => {
                RecordedState::ClonedFlag(self.field(id, raw_name, "cloned", row.flag(at)).unwrap_or(false))
            }
            SchemaShape::GitserverRepos2021 => {
                let status = match self.field(id, raw_name, "clone_status", row.text(at)) {
                    None => None,
                    Some("not_cloned") => Some(CloneStatus::NotCloned),
                    Some("cloning") => Some(CloneStatus::Cloning),
                    Some("cloned") => Some(CloneStatus::Cloned),
                    Some(other) => {
                        self.problem(id, raw_name, format!("gitserver_repos.clone_status `{other}` unknown; ignored"));
                        None
                    }
                };
                let shard_id = self.layout.recorded_shard.map_or(Ok(None), |at| row.text(at));
                let shard = match self.field(id, raw_name, "shard_id", shard_id) {
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

/// The problem of a row whose name another row with a lower id holds too.
pub(super) fn clash_problem(id: i64, name: &str, kept_id: i64) -> RowProblem {
    RowProblem {
        repo_id: id,
        name: name.to_owned(),
        message: format!("name normalises to the same name as repo row {kept_id}; skipped in favour of the lower id"),
    }
}

/// Sorts by name, then id.
fn sort_by_name_then_id(repos: &mut [DesiredRepo]) {
    repos.sort_unstable_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
}

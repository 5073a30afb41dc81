//! The repo DB adapter: reads the desired repos (`repo` rows with `deleted_at IS NULL`) from a
//! Sourcegraph frontend database, Postgres or SQLite, and optionally writes the clone state
//! clonekeeper observed back into it.
//!
//! Three schema shapes are in the field (see [`SchemaShape`]); [`RepoDb::open`] detects which
//! one a database has from its catalog, so one binary serves every deployment.
//!
//! **Invariants.**
//! - One load is one streaming query: no per-repo round trip, no intermediate `Vec` of rows.
//! - A bad row never fails a load: it becomes a [`RowProblem`] and the rest is still read.
//! - Only this module knows the repo DB's SQL; the rest of clonekeeper sees [`DesiredRepos`].

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use futures::TryStreamExt;

use crate::db::refusal::Refused;
use crate::db::Database;
use crate::model::{CloneStatus, DesiredRepos, RepoColumns, RepoName, Router, ShardIdx};

mod changes;
mod desired;
mod query;
mod schema;
mod write_back;

#[cfg(test)]
mod tests;

pub use changes::{DesiredChanges, ReadMark};
pub use schema::{
    POSTGRES_SCHEMA_2020_06, POSTGRES_SCHEMA_2020_10, POSTGRES_SCHEMA_2021, SQLITE_SCHEMA_2020_06,
    SQLITE_SCHEMA_2020_10, SQLITE_SCHEMA_2021,
};

/// Why the repo DB could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RepoDbError {
    #[error("repo DB {db}: reading the catalog to detect the schema failed")]
    Catalog {
        db: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("repo DB {db}: {what}")]
    UnknownSchema { db: String, what: String },
    #[error("repo DB {db}: reading the desired repos ({shape} schema) failed")]
    Load {
        db: String,
        shape: SchemaShape,
        #[source]
        source: sqlx::Error,
    },
    #[error("repo DB {db}: writing clone state back ({shape} schema) failed")]
    WriteBack {
        db: String,
        shape: SchemaShape,
        #[source]
        source: sqlx::Error,
    },
    #[error("repo DB {db}: ping failed")]
    Ping {
        db: String,
        #[source]
        source: sqlx::Error,
    },
}

/// The shape of the repo DB, which decides where clone URLs and clone state live.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SchemaShape {
    /// Mid-2020: clone URLs in the `repo.sources` JSON, no clone state.
    Sources2020_06,
    /// Late 2020: clone URLs in `external_service_repos`, clone state in `repo.cloned`.
    ClonedFlag2020_10,
    /// 2021 on: clone URLs in `external_service_repos`, clone state in `gitserver_repos`.
    GitserverRepos2021,
}

impl fmt::Display for SchemaShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchemaShape::Sources2020_06 => "2020-06 (repo.sources)",
            SchemaShape::ClonedFlag2020_10 => "2020-10 (repo.cloned)",
            SchemaShape::GitserverRepos2021 => "2021 (gitserver_repos)",
        })
    }
}

/// The desired repos of one load, and the rows that could not be used as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredSet {
    /// Sorted by name, names unique (the lowest `repo.id` wins a clash), so callers can
    /// binary-search and diff against sorted shard lists without another sort.
    pub repos: DesiredRepos,
    /// Sorted by `repo_id`. A row here may still be in `repos` (e.g. without a clone URL).
    pub problems: Vec<RowProblem>,
    /// The distinct `gitserver_repos.shard_id` values, which `RecordedState::Status` indexes.
    pub recorded_shards: Vec<Arc<str>>,
}

/// A `repo` row that could not be used as it is. Reported, never fatal: operators fix the row,
/// clonekeeper carries on with the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    /// `repo.id`.
    pub repo_id: i64,
    /// The name as the row has it (normalised where the raw spelling is no longer at hand).
    pub name: String,
    pub message: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "repo row {} ({}): {}", self.repo_id, self.name, self.message)
    }
}

/// A clone state to record in the repo DB for one repo, so that other Sourcegraph components
/// (and operators querying the DB) see what clonekeeper observed on the shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteBack {
    /// `repo.id`.
    pub repo_id: i64,
    pub status: CloneStatus,
    /// The shard's address as gitserver names it (`gitserver_repos.shard_id`).
    pub shard: String,
    pub last_error: Option<String>,
    /// The repo's name, for reporting a row the database refuses.
    pub name: RepoName,
}

/// What a write-back did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WrittenBack {
    /// Rows actually changed.
    pub rows: usize,
    /// Repos whose row the database refused; the others were written.
    pub refused: Vec<Refused>,
}

/// Largest number of repos written by one statement (Postgres) or one transaction (SQLite):
/// bounds statement size and lock time on a write-back of a million repos.
const WRITE_BATCH: usize = 10_000;

/// A repo DB whose schema shape has been detected. Cloning is cheap and shares the pool.
#[derive(Clone, Debug)]
pub struct RepoDb {
    db: Database,
    shape: SchemaShape,
    /// Where this schema keeps stars.
    stars: query::Stars,
}

impl RepoDb {
    /// Detects the schema shape of `db`.
    ///
    /// Fails when `db` has no `repo` table, no shape clonekeeper knows, or lacks a column the
    /// shape needs: better to refuse at startup than to report every repo as a problem.
    pub async fn open(db: Database) -> Result<RepoDb, RepoDbError> {
        let detected = schema::detect(&db).await?;
        let stars = if detected.stars_column { query::Stars::Column } else { query::Stars::Metadata };
        tracing::info!(
            db = %db,
            shape = %detected.shape,
            "Detected the repo DB schema."
        );
        Ok(RepoDb { db, shape: detected.shape, stars })
    }

    /// The detected shape; decides what write-back can record.
    pub fn shape(&self) -> SchemaShape {
        self.shape
    }

    /// The text of the load statement filling `columns`, e.g. for the benchmark's `COPY`
    /// baseline and query plans.
    pub fn desired_sql(&self, columns: RepoColumns) -> String {
        query::desired(&self.db, self.shape, self.stars, columns)
    }

    /// The database this reader uses, e.g. to share its pool with the state store.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Reads every desired repo, every column, with one streaming query.
    pub async fn load_desired(&self) -> Result<DesiredSet, RepoDbError> {
        self.load_desired_reading(RepoColumns::ALL).await
    }

    /// Reads every desired repo with one streaming query, filling only `columns` (the rest
    /// are unknown in every repo): at a million rows every column costs the repo DB and the
    /// reader time, and stars in `repo.metadata` cost more than all the others together.
    ///
    /// Rows are decoded as they arrive into the set's columns ([`DesiredRepos`]), so a million
    /// repos cost their names and ~23 B each. Names are normalised; rows that cannot be
    /// used as they are become [`RowProblem`]s instead of failing the load.
    pub async fn load_desired_reading(&self, columns: RepoColumns) -> Result<DesiredSet, RepoDbError> {
        Ok(self.load_desired_routed(columns, None).await?.0)
    }

    /// [`RepoDb::load_desired_reading`], routing each row with `router` as it arrives: the
    /// routes come back one per repo, in the set's order (none without a router). At a million
    /// rows the md5 of each name then costs the time the reader spends waiting on the repo DB
    /// rather than time after the last row.
    pub async fn load_desired_routed(
        &self,
        columns: RepoColumns,
        router: Option<Router>,
    ) -> Result<(DesiredSet, Vec<ShardIdx>), RepoDbError> {
        let sql = self.desired_sql(columns);
        let started = Instant::now();
        let mut builder = desired::Builder::new(self.shape, columns);
        if let Some(router) = router {
            builder.route_with(router);
        }
        let load_error = |source| RepoDbError::Load { db: self.db.describe(), shape: self.shape, source };
        match &self.db {
            Database::Postgres(pool) => {
                // Sized from the planner's estimate, so a million rows are not copied while the
                // set grows (and do not briefly take half as much again).
                let estimate: Option<f32> =
                    sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = 'repo'::regclass")
                        .fetch_optional(pool)
                        .await
                        .map_err(load_error)?;
                builder.reserve(estimate.map_or(0, |rows| rows.clamp(0.0, 20_000_000.0) as usize));
                let mut rows = sqlx::query(&sql).fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(load_error)? {
                    builder.accept(&row).map_err(load_error)?;
                }
            }
            Database::Sqlite(pool) => {
                let mut rows = sqlx::query(&sql).fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(load_error)? {
                    builder.accept(&row).map_err(load_error)?;
                }
            }
        }
        let (set, routes) = builder.finish();
        tracing::debug!(
            repos = set.repos.len(),
            problems = set.problems.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Loaded the desired repos."
        );
        Ok((set, routes))
    }

    /// A mark for an incremental read after the read that follows this call: taken before
    /// that read, so every change the read cannot see is at or past the mark. `None` where
    /// incremental reads are not possible (SQLite): every read is then a full one.
    pub async fn read_mark(&self) -> Result<Option<ReadMark>, RepoDbError> {
        let Database::Postgres(pool) = &self.db else { return Ok(None) };
        let xmin: i64 = sqlx::query_scalar("SELECT txid_snapshot_xmin(txid_current_snapshot())::bigint")
            .fetch_one(pool)
            .await
            .map_err(|source| RepoDbError::Load { db: self.db.describe(), shape: self.shape, source })?;
        Ok(u64::try_from(xmin).ok().map(ReadMark))
    }

    /// Every `repo` row changed since `mark` (see [`ReadMark`] and ARCHITECTURE.md for what
    /// that covers), as it is now, filling `columns` as [`RepoDb::load_desired_reading`] does;
    /// apply them with [`DesiredSet::apply`] to a set read with the same columns.
    /// `recorded_shards` are the set's, so the rows index the same table. `None` on SQLite.
    pub async fn load_changes(
        &self,
        mark: ReadMark,
        columns: RepoColumns,
        recorded_shards: &[Arc<str>],
    ) -> Result<Option<DesiredChanges>, RepoDbError> {
        let (Some(sql), Database::Postgres(pool)) =
            (query::changed_since(&self.db, self.shape, self.stars, columns), &self.db)
        else {
            return Ok(None);
        };
        let mut builder = desired::Builder::for_changes(self.shape, columns, recorded_shards);
        let load_error = |source| RepoDbError::Load { db: self.db.describe(), shape: self.shape, source };
        let mut rows = sqlx::query(&sql).bind(mark.xid()).fetch(pool);
        while let Some(row) = rows.try_next().await.map_err(load_error)? {
            builder.accept(&row).map_err(load_error)?;
        }
        Ok(Some(builder.finish_changes()))
    }

    /// Records `changes` in the repo DB and returns how many rows actually changed (rows
    /// already holding the given state are left alone).
    ///
    /// Opt-in: the caller decides whether clonekeeper may write to the repo DB at all.
    /// 2020-10 records `repo.cloned` (`Cloning` counts as not cloned); 2021 upserts
    /// `gitserver_repos`; 2020-06 has nowhere to record anything and returns `Ok(0)`.
    /// Repos that no longer exist are skipped. When one repo appears more than once, its last
    /// entry wins.
    ///
    /// Texts are made storable ([`crate::text::storable`]) on the way in. A row the database
    /// refuses is set aside in [`WrittenBack::refused`] and the others are written; an error
    /// means the database could not be used.
    pub async fn write_back(&self, changes: &[WriteBack]) -> Result<WrittenBack, RepoDbError> {
        write_back::write(&self.db, self.shape, changes).await.map_err(|source| RepoDbError::WriteBack {
            db: self.db.describe(),
            shape: self.shape,
            source,
        })
    }

    /// Checks that the repo DB answers, for readiness.
    pub async fn ping(&self) -> Result<(), RepoDbError> {
        let result = match &self.db {
            Database::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Database::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        };
        result.map_err(|source| RepoDbError::Ping { db: self.db.describe(), source })
    }
}

//! Durable attempt state: what clonekeeper did to each repo that cannot be re-derived from the
//! repo DB and the shards (attempt counts, backoff deadlines, last errors, dispatches in
//! flight), kept in the state DB so that a restart, or a new leader, carries on where the last
//! process stopped.
//!
//! The state DB defaults to the repo DB, so every table is prefixed `clonekeeper_`. Times are
//! stored as Unix milliseconds (`BIGINT`) on both backends. Writes are batched: one statement
//! per [`BATCH`] records on Postgres (`UNNEST` arrays), one transaction per [`BATCH`] on
//! SQLite.
//!
//! **Invariants.**
//! - Every text this store writes goes through [`text::storable`] here, so no caller can
//!   store a NUL byte (which Postgres refuses) or an unbounded error.
//! - A record the database refuses is set aside and reported in [`Written::refused`]; it never
//!   fails the records written with it. An error is returned only when the database could not
//!   be used at all, and then the caller retries everything.
//! - With several replicas ([`lease`]), a store is *fenced* with its leader's epoch: each
//!   write runs in a transaction that holds a share lock on the leader row and checks the
//!   epoch first, so once a new leader has bumped the epoch no write of an older one lands
//!   ([`StateError::Fenced`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::db::refusal::{refusal_message, write_isolating, Refused};
use crate::db::Database;
use crate::model::{AttemptRecord, RepoName, Timestamp};
use crate::text;

pub mod lease;
#[cfg(test)]
mod tests;

/// Largest number of records in one statement (Postgres) or one transaction (SQLite).
pub const BATCH: usize = 10_000;

/// Key of the transaction-scoped advisory lock that serialises migrations between processes
/// starting at once ("ck_migra" in ASCII). The leader lease must use a different key.
const MIGRATION_LOCK_KEY: i64 = 0x636b_5f6d_6967_7261;

/// One step of the state schema. Append only: a released step never changes, and every step
/// is idempotent on its own, so a half-recorded run is harmless.
struct Migration {
    version: i64,
    sql: &'static str,
}

/// The state schema, in order. Plain SQL both backends accept.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: "CREATE TABLE IF NOT EXISTS clonekeeper_attempts (\
                  repo_name TEXT PRIMARY KEY, \
                  attempts INTEGER NOT NULL, \
                  last_error TEXT, \
                  last_attempt_at BIGINT, \
                  next_attempt_at BIGINT, \
                  in_flight BOOLEAN NOT NULL, \
                  gave_up TEXT, \
                  updated_at BIGINT NOT NULL)",
    },
    // The leader of several replicas: one row, its epoch bumped by every new leader.
    Migration {
        version: 2,
        sql: "CREATE TABLE IF NOT EXISTS clonekeeper_leader (\
                  id INTEGER PRIMARY KEY, \
                  epoch BIGINT NOT NULL, \
                  holder TEXT NOT NULL, \
                  since BIGINT NOT NULL)",
    },
];

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS clonekeeper_schema_version (\
        version INTEGER PRIMARY KEY, \
        applied_at BIGINT NOT NULL)";

const CURRENT_VERSION: &str = "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM clonekeeper_schema_version";

const LOAD: &str = "SELECT repo_name, CAST(attempts AS BIGINT), last_error, last_attempt_at, \
                           next_attempt_at, in_flight, gave_up \
                      FROM clonekeeper_attempts";

const PG_SAVE: &str = "\
    INSERT INTO clonekeeper_attempts (repo_name, attempts, last_error, last_attempt_at, \
                                      next_attempt_at, in_flight, gave_up, updated_at) \
    SELECT u.*, $8::bigint \
      FROM UNNEST($1::text[], $2::integer[], $3::text[], $4::bigint[], $5::bigint[], \
                  $6::boolean[], $7::text[]) AS u \
    ON CONFLICT (repo_name) DO UPDATE \
       SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, \
           last_attempt_at = EXCLUDED.last_attempt_at, next_attempt_at = EXCLUDED.next_attempt_at, \
           in_flight = EXCLUDED.in_flight, gave_up = EXCLUDED.gave_up, \
           updated_at = EXCLUDED.updated_at";

const SQLITE_SAVE: &str = "\
    INSERT INTO clonekeeper_attempts (repo_name, attempts, last_error, last_attempt_at, \
                                      next_attempt_at, in_flight, gave_up, updated_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
    ON CONFLICT (repo_name) DO UPDATE \
       SET attempts = excluded.attempts, last_error = excluded.last_error, \
           last_attempt_at = excluded.last_attempt_at, next_attempt_at = excluded.next_attempt_at, \
           in_flight = excluded.in_flight, gave_up = excluded.gave_up, \
           updated_at = excluded.updated_at";

const PG_FORGET: &str = "DELETE FROM clonekeeper_attempts WHERE repo_name = ANY($1)";
const SQLITE_FORGET: &str = "DELETE FROM clonekeeper_attempts WHERE repo_name = ?1";

/// Why the state DB could not be migrated, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state DB {db}: migrating the clonekeeper_ tables failed")]
    Migrate {
        db: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("state DB {db}: loading attempt records failed")]
    Load {
        db: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("state DB {db}: saving {count} attempt records failed")]
    Save {
        db: String,
        count: usize,
        #[source]
        source: sqlx::Error,
    },
    #[error("state DB {db}: forgetting {count} attempt records failed")]
    Forget {
        db: String,
        count: usize,
        #[source]
        source: sqlx::Error,
    },
    /// Another replica leads now: this one's writes are refused.
    #[error("state DB {db}: {fenced}")]
    Fenced { db: String, fenced: Fenced },
}

impl StateError {
    /// Whether the write was refused because another replica leads.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StateError::Fenced { .. })
    }
}

/// A write under an epoch that is no longer the leader's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fenced: this replica led as epoch {ours}, the leader is now epoch {current:?}; its writes are refused")]
pub struct Fenced {
    pub ours: i64,
    /// `None`: no leader row (the table was emptied by hand).
    pub current: Option<i64>,
}

/// What a save or forget did: how many rows it wrote or deleted, and the records the database
/// refused, which were set aside.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    pub refused: Vec<Refused>,
}

/// The durable store of [`AttemptRecord`]s, keyed by normalised repo name.
///
/// Cloning is cheap and shares the pool, so the tick loop and a background writer can each
/// hold one.
#[derive(Clone, Debug)]
pub struct StateStore {
    db: Database,
    /// The leader epoch every write must still be current under (several replicas only).
    fence: Option<i64>,
}

impl StateStore {
    /// Opens the store, creating or upgrading its tables first.
    ///
    /// Safe to call from several processes at once: on Postgres the migration runs in one
    /// transaction under an advisory lock, on SQLite in one `BEGIN IMMEDIATE` transaction.
    pub async fn open(db: Database) -> Result<StateStore, StateError> {
        let applied = migrate(&db).await.map_err(|source| StateError::Migrate { db: db.describe(), source })?;
        if applied > 0 {
            tracing::info!(db = %db, applied, "Migrated the state DB.");
        }
        Ok(StateStore { db, fence: None })
    }

    /// The same store, whose writes land only while `epoch` is the leader's (Postgres).
    pub fn fenced(&self, epoch: i64) -> StateStore {
        StateStore { db: self.db.clone(), fence: Some(epoch) }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Reads every attempt record with one query.
    ///
    /// A row with invalid values (a negative attempt count, a name that normalises to
    /// nothing, a value of the wrong type) is skipped and logged with its name: one bad row
    /// must not stop clonekeeper from starting.
    pub async fn load(&self) -> Result<HashMap<RepoName, AttemptRecord>, StateError> {
        let mut records = HashMap::new();
        let load_error = |source| StateError::Load { db: self.db.describe(), source };
        match &self.db {
            Database::Postgres(pool) => {
                let mut rows = sqlx::query(LOAD).fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(load_error)? {
                    insert_row(&mut records, &row);
                }
            }
            Database::Sqlite(pool) => {
                let mut rows = sqlx::query(LOAD).fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(load_error)? {
                    insert_row(&mut records, &row);
                }
            }
        }
        Ok(records)
    }

    /// Inserts or overwrites the records of the given repos. When a name appears more than
    /// once, its last record wins. Attempt counts above `i32::MAX` are stored as `i32::MAX`;
    /// texts are made storable ([`text::storable`]). Records the database refuses are set
    /// aside in [`Written::refused`]; an error means the database could not be used.
    pub async fn save(&self, records: &[(RepoName, AttemptRecord)]) -> Result<Written, StateError> {
        let records = last_per_name(records, |(name, _)| name);
        let updated_at = Timestamp::now().as_millis();
        let done =
            write_isolating(&records, BATCH, |part| save(&self.db, self.fence, part, updated_at)).await.map_err(
                |source| self.fenced_or(source, |db, source| StateError::Save { db, count: records.len(), source }),
            )?;
        Ok(Written { rows: done.rows, refused: refused(done.refused, |(name, _)| name) })
    }

    /// Deletes the records of `names` (e.g. once a repo is confirmed cloned); `rows` is how
    /// many existed.
    pub async fn forget(&self, names: &[RepoName]) -> Result<Written, StateError> {
        let done =
            write_isolating(names, BATCH, |part| forget(&self.db, self.fence, part)).await.map_err(|source| {
                self.fenced_or(source, |db, source| StateError::Forget { db, count: names.len(), source })
            })?;
        Ok(Written { rows: done.rows, refused: refused(done.refused, |name| name) })
    }
}

impl StateStore {
    /// A fenced write as [`StateError::Fenced`], any other failure through `other`.
    fn fenced_or(&self, source: sqlx::Error, other: impl FnOnce(String, sqlx::Error) -> StateError) -> StateError {
        if let sqlx::Error::Configuration(inner) = &source {
            if let Some(fenced) = inner.downcast_ref::<Fenced>() {
                return StateError::Fenced { db: self.db.describe(), fenced: fenced.clone() };
            }
        }
        other(self.db.describe(), source)
    }
}

/// Takes a share lock on the leader row and checks it still names `epoch`. Held to the end of
/// the transaction: a new leader's epoch bump waits for this write, and a write after the bump
/// sees the new epoch.
async fn check_fence(transaction: &mut sqlx::PgConnection, epoch: i64) -> Result<(), sqlx::Error> {
    let current: Option<i64> = sqlx::query_scalar("SELECT epoch FROM clonekeeper_leader WHERE id = 1 FOR SHARE")
        .fetch_optional(transaction)
        .await?;
    if current == Some(epoch) {
        return Ok(());
    }
    // Carried as a configuration error: it is neither a refusal of the data nor an outage,
    // so the batch writer returns it at once, and the store turns it into `Fenced`.
    Err(sqlx::Error::Configuration(Box::new(Fenced { ours: epoch, current })))
}

/// The refused records with the database's message, logged here once with their names.
fn refused<T>(refused: Vec<(&T, sqlx::Error)>, name: impl Fn(&T) -> &RepoName) -> Vec<Refused> {
    refused
        .into_iter()
        .map(|(item, error)| Refused { name: name(item).clone(), message: refusal_message(&error) })
        .collect()
}

/// Applies the migrations the database lacks; returns how many.
async fn migrate(db: &Database) -> Result<usize, sqlx::Error> {
    let now = Timestamp::now().as_millis();
    let mut applied = 0;
    match db {
        Database::Postgres(pool) => {
            let mut transaction = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK_KEY).execute(&mut *transaction).await?;
            sqlx::query(CREATE_VERSION_TABLE).execute(&mut *transaction).await?;
            let current: i64 = sqlx::query_scalar(CURRENT_VERSION).fetch_one(&mut *transaction).await?;
            warn_if_newer(current);
            for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
                sqlx::query(migration.sql).execute(&mut *transaction).await?;
                sqlx::query(
                    "INSERT INTO clonekeeper_schema_version (version, applied_at) \
                     VALUES ($1, $2)",
                )
                .bind(migration.version)
                .bind(now)
                .execute(&mut *transaction)
                .await?;
                applied += 1;
            }
            transaction.commit().await?;
        }
        Database::Sqlite(pool) => {
            let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query(CREATE_VERSION_TABLE).execute(&mut *transaction).await?;
            let current: i64 = sqlx::query_scalar(CURRENT_VERSION).fetch_one(&mut *transaction).await?;
            warn_if_newer(current);
            for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
                sqlx::query(migration.sql).execute(&mut *transaction).await?;
                sqlx::query(
                    "INSERT INTO clonekeeper_schema_version (version, applied_at) \
                     VALUES (?1, ?2)",
                )
                .bind(migration.version)
                .bind(now)
                .execute(&mut *transaction)
                .await?;
                applied += 1;
            }
            transaction.commit().await?;
        }
    }
    Ok(applied)
}

/// A newer build migrated this database. Steps only ever add, so carry on, but say so.
fn warn_if_newer(current: i64) {
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > known {
        tracing::warn!(
            current,
            known,
            "The state DB schema is newer than this build knows; carrying on, as migrations only add."
        );
    }
}

/// Decodes one stored row into `records`, or logs why it is skipped.
fn insert_row<'r, R>(records: &mut HashMap<RepoName, AttemptRecord>, row: &'r R)
where
    R: Row,
    usize: ColumnIndex<R>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let raw_name: &str = match row.try_get(0) {
        Ok(name) => name,
        Err(error) => {
            tracing::warn!(%error, "Skipped a stored attempt record whose name is unreadable.");
            return;
        }
    };
    let Some(name) = RepoName::normalize(raw_name) else {
        tracing::warn!(repo = raw_name, "Skipped a stored attempt record whose name normalises to nothing.");
        return;
    };
    match decode_record(row) {
        Ok(record) => {
            records.insert(name, record);
        }
        Err(problem) => {
            tracing::warn!(
                repo = %name,
                %problem,
                "Skipped a stored attempt record with invalid values."
            );
        }
    }
}

fn decode_record<'r, R>(row: &'r R) -> Result<AttemptRecord, String>
where
    R: Row,
    usize: ColumnIndex<R>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let column = |error: sqlx::Error| error.to_string();
    let attempts: i64 = row.try_get(1).map_err(column)?;
    let attempts = u32::try_from(attempts).map_err(|_| format!("attempts {attempts} is out of range"))?;
    let last_error: Option<&str> = row.try_get(2).map_err(column)?;
    let last_attempt_at: Option<i64> = row.try_get(3).map_err(column)?;
    let next_attempt_at: Option<i64> = row.try_get(4).map_err(column)?;
    let in_flight: bool = row.try_get(5).map_err(column)?;
    let gave_up: Option<&str> = row.try_get(6).map_err(column)?;
    Ok(AttemptRecord {
        attempts,
        last_error: last_error.map(str::to_owned),
        last_attempt_at: last_attempt_at.map(Timestamp::from_millis),
        next_attempt_at: next_attempt_at.map(Timestamp::from_millis),
        in_flight,
        gave_up: gave_up.map(str::to_owned),
    })
}

/// Upserts one batch: one statement on Postgres, one transaction on SQLite.
async fn save(
    db: &Database,
    fence: Option<i64>,
    batch: &[&(RepoName, AttemptRecord)],
    updated_at: i64,
) -> Result<u64, sqlx::Error> {
    let stored_attempts = |record: &AttemptRecord| i32::try_from(record.attempts).unwrap_or(i32::MAX);
    match db {
        Database::Postgres(pool) => {
            let names: Vec<&str> = batch.iter().map(|(name, _)| name.as_str()).collect();
            let attempts: Vec<i32> = batch.iter().map(|(_, r)| stored_attempts(r)).collect();
            let last_errors: Vec<Option<Cow<'_, str>>> =
                batch.iter().map(|(_, r)| stored_text(&r.last_error)).collect();
            let last_attempts: Vec<Option<i64>> =
                batch.iter().map(|(_, r)| r.last_attempt_at.map(Timestamp::as_millis)).collect();
            let next_attempts: Vec<Option<i64>> =
                batch.iter().map(|(_, r)| r.next_attempt_at.map(Timestamp::as_millis)).collect();
            let in_flight: Vec<bool> = batch.iter().map(|(_, r)| r.in_flight).collect();
            let gave_up: Vec<Option<Cow<'_, str>>> = batch.iter().map(|(_, r)| stored_text(&r.gave_up)).collect();
            let last_errors: Vec<Option<&str>> = last_errors.iter().map(|text| text.as_deref()).collect();
            let gave_up: Vec<Option<&str>> = gave_up.iter().map(|text| text.as_deref()).collect();
            let mut transaction = pool.begin().await?;
            if let Some(epoch) = fence {
                check_fence(&mut transaction, epoch).await?;
            }
            sqlx::query(PG_SAVE)
                .bind(names)
                .bind(attempts)
                .bind(last_errors)
                .bind(last_attempts)
                .bind(next_attempts)
                .bind(in_flight)
                .bind(gave_up)
                .bind(updated_at)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
        }
        Database::Sqlite(pool) => {
            let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
            for (name, record) in batch.iter().copied() {
                sqlx::query(SQLITE_SAVE)
                    .bind(name.as_str())
                    .bind(stored_attempts(record))
                    .bind(stored_text(&record.last_error))
                    .bind(record.last_attempt_at.map(Timestamp::as_millis))
                    .bind(record.next_attempt_at.map(Timestamp::as_millis))
                    .bind(record.in_flight)
                    .bind(stored_text(&record.gave_up))
                    .bind(updated_at)
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await?;
        }
    }
    Ok(batch.len() as u64)
}

/// A record's optional text as stored.
fn stored_text(value: &Option<String>) -> Option<Cow<'_, str>> {
    value.as_deref().map(text::storable)
}

/// Deletes one batch of records; returns how many existed.
async fn forget(db: &Database, fence: Option<i64>, batch: &[RepoName]) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    match db {
        Database::Postgres(pool) => {
            let batch: Vec<&str> = batch.iter().map(RepoName::as_str).collect();
            let mut transaction = pool.begin().await?;
            if let Some(epoch) = fence {
                check_fence(&mut transaction, epoch).await?;
            }
            deleted += sqlx::query(PG_FORGET).bind(batch).execute(&mut *transaction).await?.rows_affected();
            transaction.commit().await?;
        }
        Database::Sqlite(pool) => {
            let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
            for name in batch {
                deleted +=
                    sqlx::query(SQLITE_FORGET).bind(name.as_str()).execute(&mut *transaction).await?.rows_affected();
            }
            transaction.commit().await?;
        }
    }
    Ok(deleted)
}

/// The last item for each name, in input order: one Postgres statement may not upsert a row
/// twice, and the last word is the freshest.
fn last_per_name<T>(items: &[T], name: impl Fn(&T) -> &RepoName) -> Vec<&T> {
    let mut seen = HashSet::with_capacity(items.len());
    let mut kept: Vec<&T> = items.iter().rev().filter(|item| seen.insert(name(*item))).collect();
    kept.reverse();
    kept
}

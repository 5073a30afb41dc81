//! The repo DB schema shapes: their DDL (for tests, the demo and end-to-end setups) and their
//! detection from a live database's catalog.

use std::collections::HashSet;

use crate::db::Database;

use super::{RepoDbError, SchemaShape};

/// Postgres DDL of the mid-2020 repo DB (`repo.sources`), as deployments had it.
pub const POSTGRES_SCHEMA_2020_06: &str = include_str!("fixtures/sourcegraph-2020-06.sql");
/// Postgres DDL of the late-2020 repo DB (`repo.cloned`, `external_service_repos`).
pub const POSTGRES_SCHEMA_2020_10: &str = include_str!("fixtures/sourcegraph-2020-10.sql");
/// Postgres DDL of the 2021 repo DB (`gitserver_repos`).
pub const POSTGRES_SCHEMA_2021: &str = include_str!("fixtures/sourcegraph-2021-gitserver-repos.sql");

/// SQLite equivalent of [`POSTGRES_SCHEMA_2020_06`].
///
/// Type mapping of every SQLite schema here: citext → `TEXT COLLATE NOCASE`, jsonb → `TEXT`
/// holding JSON, boolean → `INTEGER` 0/1, timestamptz → `INTEGER` milliseconds since the Unix
/// epoch (UTC; the reader also accepts ISO-8601 text). Statements are `IF NOT EXISTS`, so the
/// schema can be run on every start.
pub const SQLITE_SCHEMA_2020_06: &str = include_str!("fixtures/sqlite-2020-06.sql");
/// SQLite equivalent of [`POSTGRES_SCHEMA_2020_10`]: the demo's embedded repo DB. See
/// [`SQLITE_SCHEMA_2020_06`] for the type mapping.
pub const SQLITE_SCHEMA_2020_10: &str = include_str!("fixtures/sqlite-2020-10.sql");
/// SQLite equivalent of [`POSTGRES_SCHEMA_2021`]. See [`SQLITE_SCHEMA_2020_06`] for the type
/// mapping.
pub const SQLITE_SCHEMA_2021: &str = include_str!("fixtures/sqlite-2021-gitserver-repos.sql");

/// `repo` columns every shape reads.
const REPO_COLUMNS: &[&str] =
    &["id", "name", "deleted_at", "external_service_type", "created_at", "updated_at", "fork", "archived", "private"];
const EXTERNAL_SERVICE_REPOS_COLUMNS: &[&str] = &["external_service_id", "repo_id", "clone_url"];
const GITSERVER_REPOS_COLUMNS: &[&str] = &["repo_id", "clone_status", "shard_id", "last_error", "updated_at"];

/// What detection found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct Detected {
    pub(super) shape: SchemaShape,
    /// `repo.stars` exists; otherwise stars come from `repo.metadata`.
    pub(super) stars_column: bool,
}

/// Detects the shape from the catalog: `repo.sources` means 2020-06, a `gitserver_repos`
/// table means 2021, `repo.cloned` means 2020-10. Then checks every column that shape reads,
/// naming all missing ones at once.
pub(super) async fn detect(db: &Database) -> Result<Detected, RepoDbError> {
    let catalog_error = |source| RepoDbError::Catalog { db: db.describe(), source };
    let unknown = |what: String| RepoDbError::UnknownSchema { db: db.describe(), what };
    let repo = columns(db, "repo").await.map_err(catalog_error)?;
    if repo.is_empty() {
        return Err(unknown("no `repo` table; is this the Sourcegraph frontend database?".to_owned()));
    }
    let gitserver_repos = columns(db, "gitserver_repos").await.map_err(catalog_error)?;
    let shape = if repo.contains("sources") {
        SchemaShape::Sources2020_06
    } else if !gitserver_repos.is_empty() {
        SchemaShape::GitserverRepos2021
    } else if repo.contains("cloned") {
        SchemaShape::ClonedFlag2020_10
    } else {
        return Err(unknown(
            "table `repo` has neither a `sources` nor a `cloned` column and there is no \
             `gitserver_repos` table, so this is no repo DB shape clonekeeper knows"
                .to_owned(),
        ));
    };
    let stars_column = repo.contains("stars");

    let mut missing = Vec::new();
    let mut require = |table: &str, have: &HashSet<String>, wanted: &[&str]| {
        missing
            .extend(wanted.iter().filter(|column| !have.contains(**column)).map(|column| format!("{table}.{column}")));
    };
    require("repo", &repo, REPO_COLUMNS);
    if !stars_column {
        require("repo", &repo, &["metadata"]);
    }
    if shape != SchemaShape::Sources2020_06 {
        let external_service_repos = columns(db, "external_service_repos").await.map_err(catalog_error)?;
        require("external_service_repos", &external_service_repos, EXTERNAL_SERVICE_REPOS_COLUMNS);
    }
    if shape == SchemaShape::GitserverRepos2021 {
        require("gitserver_repos", &gitserver_repos, GITSERVER_REPOS_COLUMNS);
    }
    if !missing.is_empty() {
        return Err(unknown(format!("looks like the {shape} schema but lacks {}", missing.join(", "))));
    }
    Ok(Detected { shape, stars_column })
}

/// The column names of `table` (found through the search path on Postgres); empty when the
/// table does not exist, since a table always has at least one column.
async fn columns(db: &Database, table: &str) -> Result<HashSet<String>, sqlx::Error> {
    let names: Vec<String> = match db {
        Database::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT attname::text FROM pg_catalog.pg_attribute \
                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            )
            .bind(table)
            .fetch_all(pool)
            .await?
        }
        Database::Sqlite(pool) => {
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)").bind(table).fetch_all(pool).await?
        }
    };
    Ok(names.into_iter().collect())
}

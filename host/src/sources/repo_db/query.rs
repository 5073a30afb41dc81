//! The text of the desired-repos query for each backend and schema shape.
//!
//! Every variant selects only the columns its read fills, at the positions [`Layout`] gives,
//! with the backend's values already reduced to what the reader decodes: clone URLs and stars
//! are extracted from JSON server-side, SQLite timestamps become milliseconds.

use crate::db::Database;
use crate::model::RepoColumns;

use super::SchemaShape;

/// Where the schema keeps stars.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Stars {
    /// `repo.stars` (2021 schemas).
    Column,
    /// `repo.metadata ->> 'stargazerCount'`: parsing every row's JSON, the costliest column.
    Metadata,
}

/// Position of the repo id in every read's rows.
pub(super) const ID: usize = 0;
/// Position of the repo name.
pub(super) const NAME: usize = 1;
/// Position of the clone URL.
pub(super) const CLONE_URL: usize = 2;
/// Position of `created_at`.
pub(super) const CREATED_AT: usize = 3;

/// Where the optional columns sit in a read's rows, after the four every read has. A statement
/// selects only what its read fills: at a million rows, the `NULL` placeholders an unread
/// column once took cost the repo DB about a tenth of the read (BENCHMARKS.md).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    /// The first of the five details: service type, `updated_at`, fork, archived, private.
    pub details: Option<usize>,
    pub stars: Option<usize>,
    /// `repo.cloned` (2020-10) or `gitserver_repos.clone_status` (2021).
    pub recorded: Option<usize>,
    /// `gitserver_repos.shard_id` (2021).
    pub recorded_shard: Option<usize>,
    /// Whether the row is soft-deleted: incremental reads only.
    pub deleted: Option<usize>,
}

impl Layout {
    pub(super) fn new(shape: SchemaShape, columns: RepoColumns, incremental: bool) -> Layout {
        let mut next = CREATED_AT + 1;
        let mut place = |selected: bool, width: usize| {
            selected.then(|| {
                let at = next;
                next += width;
                at
            })
        };
        let details = place(columns.details, 5);
        let stars = place(columns.stars, 1);
        let recorded = place(columns.recorded && shape != SchemaShape::Sources2020_06, 1);
        let recorded_shard = place(columns.recorded && shape == SchemaShape::GitserverRepos2021, 1);
        let deleted = place(incremental, 1);
        Layout { details, stars, recorded, recorded_shard, deleted }
    }
}

/// The one statement of a load for this backend and shape, selecting `columns` as [`Layout`]
/// places them (the recorded clone state of the 2021 shape, not read, drops its join).
///
/// Postgres picks one clone URL per repo (the lowest `external_service_id`) with a
/// `DISTINCT ON` subquery joined by merge or hash rather than a correlated subquery: the
/// `(external_service_id, repo_id)` unique index cannot serve lookups by `repo_id`, so a
/// correlated subquery would scan once per repo. (A plain hash join returning every clone URL,
/// the reader keeping the lowest, measured no faster at 1M repos: BENCHMARKS.md.)
pub(super) fn desired(db: &Database, shape: SchemaShape, stars: Stars, columns: RepoColumns) -> String {
    match db {
        Database::Postgres(_) => postgres(shape, stars, columns),
        Database::Sqlite(_) => sqlite(shape, stars, columns),
    }
}

/// The statement of an incremental read (Postgres only; `None` on SQLite, which has no row
/// versions to ask): every `repo` row whose version, or whose clone URL's or recorded clone
/// state's, was written by a transaction at or past `$1` (a 32-bit transaction id as text),
/// soft-deleted or not, with the columns of [`desired`] and a thirteenth, `deleted`.
///
/// `age(xmin) <= age($1)` compares transaction ids modulo 2³², as Postgres does: it holds for
/// row versions written at or after `$1`, within the 2³¹ transactions a mark stays valid (a
/// full read renews the mark every `[sync] full_interval`).
pub(super) fn changed_since(db: &Database, shape: SchemaShape, stars: Stars, columns: RepoColumns) -> Option<String> {
    match db {
        Database::Postgres(_) => Some(postgres_changed(shape, stars, columns)),
        Database::Sqlite(_) => None,
    }
}

fn postgres_changed(shape: SchemaShape, stars: Stars, columns: RepoColumns) -> String {
    let mut changed = String::from("SELECT id FROM repo WHERE age(xmin) <= age($1::text::xid)");
    if shape != SchemaShape::Sources2020_06 {
        changed.push_str(" UNION SELECT repo_id FROM external_service_repos WHERE age(xmin) <= age($1::text::xid)");
    }
    if shape == SchemaShape::GitserverRepos2021 && columns.recorded {
        changed.push_str(" UNION SELECT repo_id FROM gitserver_repos WHERE age(xmin) <= age($1::text::xid)");
    }
    let select = postgres_select(shape, stars, columns);
    format!(
        "WITH changed AS MATERIALIZED ({changed}) \
         {select}, repo.deleted_at IS NOT NULL AS deleted \
         FROM repo{joins} \
         WHERE repo.id IN (SELECT id FROM changed)",
        joins = postgres_joins(shape, columns, "WHERE repo_id IN (SELECT id FROM changed)"),
    )
}

fn postgres(shape: SchemaShape, stars: Stars, columns: RepoColumns) -> String {
    let select = postgres_select(shape, stars, columns);
    let joins = postgres_joins(shape, columns, "");
    format!("{select} FROM repo{joins} WHERE repo.deleted_at IS NULL")
}

/// The column list shared by full and incremental reads, in [`Layout`]'s order.
fn postgres_select(shape: SchemaShape, stars: Stars, columns: RepoColumns) -> String {
    let clone_url = match shape {
        SchemaShape::Sources2020_06 => {
            "(SELECT s.value ->> 'CloneURL' \
               FROM jsonb_each(CASE WHEN jsonb_typeof(repo.sources) = 'object' \
                                    THEN repo.sources END) AS s \
               ORDER BY s.key LIMIT 1)"
        }
        SchemaShape::ClonedFlag2020_10 | SchemaShape::GitserverRepos2021 => "esr.clone_url",
    };
    let mut select = format!("SELECT repo.id::bigint, repo.name::text, {clone_url}, repo.created_at");
    if columns.details {
        select.push_str(", repo.external_service_type, repo.updated_at, repo.fork, repo.archived, repo.private");
    }
    if columns.stars {
        // Only non-negative JSON integers of at most ten digits count as stars; the cast sits
        // behind the CASE so an odd value never fails the query.
        select.push_str(match stars {
            Stars::Column => ", repo.stars::bigint",
            Stars::Metadata => {
                ", CASE WHEN jsonb_typeof(repo.metadata -> 'stargazerCount') = 'number' \
                        AND repo.metadata ->> 'stargazerCount' ~ '^[0-9]{1,10}$' \
                       THEN (repo.metadata ->> 'stargazerCount')::bigint END"
            }
        });
    }
    select.push_str(recorded_columns(shape, columns));
    select
}

/// The joins of clone URLs and recorded state; `esr_filter` narrows the clone URLs read (an
/// incremental read needs only those of the changed repos, not a sort of the whole table).
fn postgres_joins(shape: SchemaShape, columns: RepoColumns, esr_filter: &str) -> String {
    let mut joins = String::new();
    if shape != SchemaShape::Sources2020_06 {
        joins.push_str(&format!(
            " LEFT JOIN (SELECT DISTINCT ON (repo_id) repo_id, clone_url \
                           FROM external_service_repos {esr_filter} \
                           ORDER BY repo_id, external_service_id) AS esr \
                     ON esr.repo_id = repo.id"
        ));
    }
    if shape == SchemaShape::GitserverRepos2021 && columns.recorded {
        joins.push_str(" LEFT JOIN gitserver_repos AS gr ON gr.repo_id = repo.id");
    }
    joins
}

fn sqlite(shape: SchemaShape, stars: Stars, columns: RepoColumns) -> String {
    // Malformed JSON would make SQLite's JSON functions fail the whole query, so each use is
    // guarded by json_valid inside a CASE (which SQLite evaluates lazily).
    let clone_url = match shape {
        SchemaShape::Sources2020_06 => {
            "(SELECT CASE WHEN s.type = 'object' THEN s.value ->> '$.CloneURL' END \
               FROM json_each(CASE WHEN json_valid(repo.sources) \
                                   THEN CASE WHEN json_type(repo.sources) = 'object' \
                                             THEN repo.sources END END) AS s \
               ORDER BY s.key LIMIT 1)"
        }
        SchemaShape::ClonedFlag2020_10 | SchemaShape::GitserverRepos2021 => "esr.clone_url",
    };
    let mut select =
        format!("SELECT repo.id, repo.name, {clone_url}, {created_at}", created_at = sqlite_millis("repo.created_at"));
    if columns.details {
        select.push_str(&format!(
            ", repo.external_service_type, {}, repo.fork, repo.archived, repo.private",
            sqlite_millis("repo.updated_at")
        ));
    }
    if columns.stars {
        select.push_str(match stars {
            Stars::Column => ", repo.stars",
            Stars::Metadata => {
                ", CASE WHEN json_valid(repo.metadata) \
                        THEN CASE WHEN json_type(repo.metadata, '$.stargazerCount') = 'integer' \
                                   AND json_extract(repo.metadata, '$.stargazerCount') >= 0 \
                                  THEN json_extract(repo.metadata, '$.stargazerCount') END END"
            }
        });
    }
    select.push_str(recorded_columns(shape, columns));
    let mut joins = String::new();
    if shape != SchemaShape::Sources2020_06 {
        // SQLite takes the bare column `clone_url` from the row holding the min().
        joins.push_str(
            " LEFT JOIN (SELECT repo_id, clone_url, min(external_service_id) \
                           FROM external_service_repos GROUP BY repo_id) AS esr \
                     ON esr.repo_id = repo.id",
        );
    }
    if shape == SchemaShape::GitserverRepos2021 && columns.recorded {
        joins.push_str(" LEFT JOIN gitserver_repos AS gr ON gr.repo_id = repo.id");
    }
    format!("{select} FROM repo{joins} WHERE repo.deleted_at IS NULL")
}

/// The recorded clone state's columns, the same on both backends: none where the shape has no
/// such state or write-back is off.
fn recorded_columns(shape: SchemaShape, columns: RepoColumns) -> &'static str {
    match shape {
        _ if !columns.recorded => "",
        SchemaShape::Sources2020_06 => "",
        SchemaShape::ClonedFlag2020_10 => ", repo.cloned",
        SchemaShape::GitserverRepos2021 => ", gr.clone_status, gr.shard_id",
    }
}

/// A SQLite timestamp column as milliseconds since the epoch: integers are milliseconds
/// already, text is parsed as ISO-8601 (NULL when unparsable).
fn sqlite_millis(column: &str) -> String {
    format!(
        "CASE typeof({column}) \
           WHEN 'integer' THEN {column} \
           WHEN 'real' THEN CAST({column} AS INTEGER) \
           WHEN 'text' THEN CAST(unixepoch({column}, 'subsec') * 1000 AS INTEGER) END"
    )
}

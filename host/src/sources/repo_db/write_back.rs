//! Records observed clone state in the repo DB: `repo.cloned` (2020-10) or `gitserver_repos`
//! (2021), in bounded batches, touching only rows whose recorded state differs.
//!
//! Every text goes through [`text::storable`] here, and a row the database refuses is set
//! aside (see [`crate::db::refusal`]) so it cannot block the write-back of every other repo.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::db::refusal::{refusal_message, write_isolating, Refused};
use crate::db::Database;
use crate::model::CloneStatus;
use crate::text;

use super::{SchemaShape, WriteBack, WrittenBack, WRITE_BATCH};

/// Sets `repo.cloned` to the bound flag for the ids in `$1`, skipping rows that hold it already.
const PG_SET_CLONED: &str = "UPDATE repo SET cloned = $2 WHERE id = ANY($1) AND cloned IS DISTINCT FROM $2";

/// Upserts `gitserver_repos` from parallel arrays. Ids without a `repo` row (hard-deleted
/// since the load) are skipped rather than failing the batch on the foreign key.
const PG_UPSERT_GITSERVER_REPOS: &str = "\
    INSERT INTO gitserver_repos (repo_id, clone_status, shard_id, last_error, updated_at) \
    SELECT u.repo_id, u.clone_status, u.shard_id, u.last_error, now() \
      FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[]) \
           AS u (repo_id, clone_status, shard_id, last_error) \
     WHERE EXISTS (SELECT 1 FROM repo WHERE repo.id = u.repo_id) \
    ON CONFLICT (repo_id) DO UPDATE \
       SET clone_status = EXCLUDED.clone_status, shard_id = EXCLUDED.shard_id, \
           last_error = EXCLUDED.last_error, updated_at = now() \
     WHERE (gitserver_repos.clone_status, gitserver_repos.shard_id, gitserver_repos.last_error) \
           IS DISTINCT FROM (EXCLUDED.clone_status, EXCLUDED.shard_id, EXCLUDED.last_error)";

const SQLITE_SET_CLONED: &str = "UPDATE repo SET cloned = ?1 WHERE id = ?2 AND cloned IS NOT ?1";

const SQLITE_UPSERT_GITSERVER_REPOS: &str = "\
    INSERT INTO gitserver_repos (repo_id, clone_status, shard_id, last_error, updated_at) \
    SELECT ?1, ?2, ?3, ?4, CAST(unixepoch('subsec') * 1000 AS INTEGER) \
     WHERE EXISTS (SELECT 1 FROM repo WHERE repo.id = ?1) \
    ON CONFLICT (repo_id) DO UPDATE \
       SET clone_status = excluded.clone_status, shard_id = excluded.shard_id, \
           last_error = excluded.last_error, updated_at = excluded.updated_at \
     WHERE gitserver_repos.clone_status IS NOT excluded.clone_status \
        OR gitserver_repos.shard_id IS NOT excluded.shard_id \
        OR gitserver_repos.last_error IS NOT excluded.last_error";

/// Writes `changes` for `shape`: the rows changed and the repos whose row was refused.
pub(super) async fn write(
    db: &Database,
    shape: SchemaShape,
    changes: &[WriteBack],
) -> Result<WrittenBack, sqlx::Error> {
    if shape == SchemaShape::Sources2020_06 {
        return Ok(WrittenBack::default());
    }
    let changes = last_per_repo(changes);
    let done = write_isolating(&changes, WRITE_BATCH, |batch| write_batch(db, shape, batch)).await?;
    Ok(WrittenBack {
        rows: usize::try_from(done.rows).unwrap_or(usize::MAX),
        refused: done
            .refused
            .into_iter()
            .map(|(change, error)| Refused { name: change.name.clone(), message: refusal_message(&error) })
            .collect(),
    })
}

/// Writes one batch: a statement or two on Postgres, one transaction on SQLite.
async fn write_batch(db: &Database, shape: SchemaShape, batch: &[&WriteBack]) -> Result<u64, sqlx::Error> {
    let mut changed = 0u64;
    match (shape, db) {
        (SchemaShape::Sources2020_06, _) => {}
        (SchemaShape::ClonedFlag2020_10, Database::Postgres(pool)) => {
            for flag in [true, false] {
                let ids: Vec<i64> = batch
                    .iter()
                    .filter(|change| is_cloned(change.status) == flag)
                    .map(|change| change.repo_id)
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                changed += sqlx::query(PG_SET_CLONED).bind(ids).bind(flag).execute(pool).await?.rows_affected();
            }
        }
        (SchemaShape::GitserverRepos2021, Database::Postgres(pool)) => {
            let ids: Vec<i64> = batch.iter().map(|change| change.repo_id).collect();
            let statuses: Vec<&str> = batch.iter().map(|change| change.status.as_str()).collect();
            let shards: Vec<Cow<'_, str>> = batch.iter().map(|change| text::storable(&change.shard)).collect();
            let shards: Vec<&str> = shards.iter().map(|shard| shard.as_ref()).collect();
            let errors: Vec<Option<Cow<'_, str>>> = batch.iter().map(|change| stored_error(change)).collect();
            let errors: Vec<Option<&str>> = errors.iter().map(|error| error.as_deref()).collect();
            changed += sqlx::query(PG_UPSERT_GITSERVER_REPOS)
                .bind(ids)
                .bind(statuses)
                .bind(shards)
                .bind(errors)
                .execute(pool)
                .await?
                .rows_affected();
        }
        (SchemaShape::ClonedFlag2020_10, Database::Sqlite(pool)) => {
            let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
            for change in batch {
                changed += sqlx::query(SQLITE_SET_CLONED)
                    .bind(is_cloned(change.status))
                    .bind(change.repo_id)
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
            }
            transaction.commit().await?;
        }
        (SchemaShape::GitserverRepos2021, Database::Sqlite(pool)) => {
            let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
            for change in batch {
                changed += sqlx::query(SQLITE_UPSERT_GITSERVER_REPOS)
                    .bind(change.repo_id)
                    .bind(change.status.as_str())
                    .bind(text::storable(&change.shard))
                    .bind(stored_error(change))
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
            }
            transaction.commit().await?;
        }
    }
    Ok(changed)
}

/// The change's last error as stored.
fn stored_error(change: &WriteBack) -> Option<Cow<'_, str>> {
    change.last_error.as_deref().map(text::storable)
}

/// `repo.cloned` is true only for a finished clone; a clone in progress is not one yet.
fn is_cloned(status: CloneStatus) -> bool {
    status == CloneStatus::Cloned
}

/// The last change of each repo, in input order. One statement may not upsert a row twice,
/// and the last word is the freshest.
fn last_per_repo(changes: &[WriteBack]) -> Vec<&WriteBack> {
    let mut seen = HashSet::with_capacity(changes.len());
    let mut kept: Vec<&WriteBack> = changes.iter().rev().filter(|change| seen.insert(change.repo_id)).collect();
    kept.reverse();
    kept
}

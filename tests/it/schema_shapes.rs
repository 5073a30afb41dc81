//! The sidecar reads each of the three repo DB shapes: it clones every desired repo under
//! its normalised name, never a deleted one, ignores what the DB itself claims about clone
//! state, and (where the shape has a place for it) writes the observed state back.

use std::time::Duration;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{eventually, source_repos, starts_per_repo};

/// (name as stored, normalised name, deleted)
const ROWS: &[(&str, &str, bool)] = &[
    ("github.com/shapes/alpha", "github.com/shapes/alpha", false),
    // The DB claims this one is cloned; no shard has it.
    ("github.com/shapes/stale-claim", "github.com/shapes/stale-claim", false),
    // Only github.com paths are case-insensitive; elsewhere only the host is lower-cased.
    ("GitLab.Example.com/Shapes/Gamma", "gitlab.example.com/Shapes/Gamma", false),
    ("GitHub.com/Acme/Widget.git", "github.com/acme/widget", false),
    ("github.com/shapes/deleted", "github.com/shapes/deleted", true),
];

const WIDGET: &str = "github.com/acme/widget";
const DELETED: &str = "github.com/shapes/deleted";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_2020_06_sources_jsonb() {
    check_shape(Shape::Sources2020_06).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_2020_10_cloned_flag() {
    check_shape(Shape::Cloned2020_10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_2021_gitserver_repos() {
    check_shape(Shape::GitserverRepos2021).await;
}

async fn check_shape(shape: Shape) {
    let work = tempfile::tempdir().expect("a temporary directory");
    let stored: Vec<String> = ROWS.iter().map(|(name, _, _)| name.to_string()).collect();
    let urls = source_repos(&work.path().join("sources"), &stored).await;
    let db = PgDb::create(shape).await;
    let rows: Vec<NewRepo> = ROWS
        .iter()
        .zip(&urls)
        .enumerate()
        .map(|(i, ((name, _, deleted), url))| {
            let mut row = NewRepo::new(*name, url).created(i as i64).stars(1000 - i as i32 * 100);
            if *deleted {
                row = row.deleted();
            }
            if name.contains("stale-claim") {
                row = row.recorded_cloned();
            }
            row
        })
        .collect();
    db.insert_repos(&rows).await;
    let desired = ROWS.iter().filter(|(_, _, deleted)| !deleted).count() as u64;

    let shard = DevShard::start(&work.path().join("shard-0"), Duration::from_millis(50));
    let mut config = SidecarConfig::new(db.url(), vec![shard.addr()]);
    config.writeback = shape != Shape::Sources2020_06;
    let sidecar = Sidecar::start(&config);

    let done = sidecar
        .wait_for("every desired repo cloned", |s| s.totals.desired == desired && s.totals.cloned == desired)
        .await;
    let shape_name = done.repo_db_shape.clone().unwrap_or_default();
    assert!(shape_name.starts_with(shape.label()), "detected shape {shape_name:?}, expected {}", shape.label());
    assert_eq!(done.totals.desired, desired, "{done:#?}");
    assert_eq!(done.totals.failed, 0, "{done:#?}");
    assert!(done.problems.is_empty(), "every row is well-formed, yet: {:?}", done.problems);
    assert!(done.orphans.is_empty(), "{:?}", done.orphans);

    // Mirrors under normalised names, and only there.
    for (stored, normalised, deleted) in ROWS {
        assert_eq!(shard.has_mirror(normalised), !deleted, "mirror of {stored:?} at {normalised}");
    }
    assert!(shard.repos_dir().join(WIDGET).join(".git").join("HEAD").is_file(), "a complete mirror of {WIDGET}");
    assert!(!shard.repos_dir().join("GitHub.com").exists(), "a mirror under the raw spelling");

    // The deleted repo was never asked for; the others exactly once.
    let starts = starts_per_repo([&shard.dispatches().await]);
    assert!(!starts.contains_key(DELETED), "the deleted repo was dispatched: {starts:?}");
    for (_, normalised, deleted) in ROWS.iter().filter(|(_, _, deleted)| !deleted) {
        assert_eq!(starts.get(*normalised), Some(&1), "clone starts of {normalised} (deleted: {deleted})");
    }

    match shape {
        Shape::Sources2020_06 => {}
        Shape::Cloned2020_10 => {
            eventually("repo.cloned written back for every desired repo", || async {
                let rows: Vec<(String, bool, bool)> =
                    sqlx::query_as("SELECT name::text, cloned, deleted_at IS NOT NULL FROM repo ORDER BY id")
                        .fetch_all(db.pool())
                        .await
                        .map_err(|e| e.to_string())?;
                let wrong: Vec<_> = rows.iter().filter(|(_, cloned, deleted)| cloned == deleted).collect();
                if wrong.is_empty() {
                    Ok(())
                } else {
                    Err(format!("rows whose repo.cloned is not (not deleted): {wrong:?}"))
                }
            })
            .await;
        }
        Shape::GitserverRepos2021 => {
            eventually("gitserver_repos written back for every desired repo", || async {
                let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT repo.name::text, gr.clone_status FROM repo \
                       LEFT JOIN gitserver_repos gr ON gr.repo_id = repo.id ORDER BY repo.id",
                )
                .fetch_all(db.pool())
                .await
                .map_err(|e| e.to_string())?;
                let wrong: Vec<_> = rows
                    .iter()
                    .filter(|(name, status)| {
                        let expected = if name.as_str() == DELETED { None } else { Some("cloned") };
                        status.as_deref() != expected
                    })
                    .collect();
                if wrong.is_empty() {
                    Ok(())
                } else {
                    Err(format!("rows whose clone_status is wrong: {wrong:?}"))
                }
            })
            .await;
        }
    }
    let last = sidecar.status().await.expect("status");
    assert_eq!(last.writeback_error, None, "{last:#?}");
}

//! The state DB (here also the repo DB) crashes while the sidecar dispatches and persists:
//! every connection dies at once and writes fail until it is back. The sidecar keeps
//! running, and afterwards every attempt record that should be stored is stored, as the
//! sidecar itself sees it, and every record that should be gone is gone: no write is lost.

use std::time::Duration;

use sqlx::Connection as _;

use crate::support::postgres::PrivatePostgres;
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{assert_never_concurrent, broken_url, eventually, source_repos};

const GOOD: usize = 40;
const BROKEN: usize = 4;

/// A stored attempt record: name, attempts, last error, next attempt, in flight.
type Row = (String, i64, Option<String>, Option<i64>, bool);

async fn attempt_rows(url: &str) -> Result<Vec<Row>, String> {
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(|e| format!("connecting: {e}"))?;
    sqlx::query_as(
        "SELECT repo_name, attempts::bigint, last_error, next_attempt_at, in_flight \
           FROM clonekeeper_attempts ORDER BY repo_name",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| format!("reading clonekeeper_attempts: {e}"))
}

/// Loads the 2020-10 schema and the repos (`names[i]` cloned from `urls[i]`, oldest first).
async fn load_repo_db(url: &str, names: &[String], urls: &[String]) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connecting to the private cluster");
    sqlx::raw_sql(clonekeeper::sources::repo_db::POSTGRES_SCHEMA_2020_10).execute(&mut conn).await.expect("schema");
    sqlx::query("INSERT INTO external_services (id, kind, display_name, config) VALUES (1, 'GITHUB', 'gh', '{}')")
        .execute(&mut conn)
        .await
        .expect("the external service");
    for (i, (name, url)) in names.iter().zip(urls).enumerate() {
        let id = i32::try_from(i + 1).expect("few repos");
        sqlx::query("INSERT INTO repo (id, name, created_at) VALUES ($1, $2, to_timestamp(1600000000 + $1 * 60))")
            .bind(id)
            .bind(name)
            .execute(&mut conn)
            .await
            .expect("a repo row");
        sqlx::query("INSERT INTO external_service_repos (external_service_id, repo_id, clone_url) VALUES (1, $1, $2)")
            .bind(id)
            .bind(url)
            .execute(&mut conn)
            .await
            .expect("a clone URL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_db_crash_mid_persist_loses_no_write() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let cluster = PrivatePostgres::create();
    // Broken repos spread among the good ones, so some fail before, during and after the crash.
    let names: Vec<String> = (0..GOOD + BROKEN)
        .map(|i| {
            if i % (GOOD / BROKEN + 1) == 0 {
                format!("github.com/crash/broken-{i:02}")
            } else {
                format!("github.com/crash/good-{i:02}")
            }
        })
        .collect();
    let broken: Vec<&String> = names.iter().filter(|n| n.contains("/broken-")).collect();
    assert_eq!(broken.len(), BROKEN);
    let good: Vec<String> = names.iter().filter(|n| n.contains("/good-")).cloned().collect();
    let good_urls = source_repos(&work.path().join("sources"), &good).await;
    let mut good_urls = good_urls.into_iter();
    let urls: Vec<String> = names
        .iter()
        .map(|n| if n.contains("/broken-") { broken_url(work.path()) } else { good_urls.next().expect("a URL each") })
        .collect();
    load_repo_db(&cluster.url(), &names, &urls).await;

    let shard = DevShard::start(&work.path().join("shard-0"), Duration::from_millis(300));
    let mut config = SidecarConfig::new(&cluster.url(), vec![shard.addr()]);
    // A broken repo fails once and then waits: its record must end exactly as its one failure.
    config.backoff_base = "10m";
    config.backoff_max = "20m";
    let sidecar = Sidecar::start(&config);

    sidecar.wait_for("dispatching under way", |s| s.dispatches.succeeded >= 3 && s.totals.in_flight > 0).await;
    let crashed = &cluster;
    tokio::task::block_in_place(|| crashed.crash());
    // Dispatches go on while the state DB is down; wait until a write has failed.
    eventually("an attempt-state write failing while Postgres is down", || async {
        let log = sidecar.log_tail(100_000);
        if log.contains("Writing attempt state failed") {
            Ok(())
        } else {
            Err("no failed write in the sidecar log yet".to_owned())
        }
    })
    .await;
    let status = sidecar.status().await.expect("the sidecar answers while Postgres is down");
    assert!(status.totals.cloned < GOOD as u64, "the crash came too late to matter: {status:#?}");
    tokio::task::block_in_place(|| cluster.start());

    sidecar.wait_for("every good repo cloned after the crash", |s| s.totals.cloned == GOOD as u64).await;
    let rows = eventually("exactly the broken repos' failures stored", || async {
        let rows = attempt_rows(&cluster.url()).await?;
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let settled = names == broken.iter().map(|b| b.as_str()).collect::<Vec<_>>()
            && rows.iter().all(|(_, attempts, error, next, in_flight)| {
                *attempts == 1 && error.is_some() && next.is_some() && !in_flight
            });
        if settled {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    // What is stored is what the sidecar holds.
    for (name, attempts, error, _, in_flight) in &rows {
        let explained = sidecar.explain(name).await.expect("explain");
        assert_eq!(
            (i64::from(explained.attempts), &explained.last_error, explained.in_flight),
            (*attempts, error, *in_flight),
            "{name}"
        );
    }
    let status = sidecar.status().await.expect("status");
    assert_eq!(status.totals.failed, BROKEN as u64, "{status:#?}");
    assert_eq!(status.state_refused.total, 0, "{status:#?}");
    assert_never_concurrent("shard 0", &shard.dispatches().await);
}

//! A repo DB read that hangs or keeps failing is a stall an operator sees: `/readyz` answers
//! 503 naming the step and how long, `/healthz` stays 200 (a restart does not unlock a
//! table), and once the lock is gone the next tick runs and what was added meanwhile is
//! cloned.

use std::time::Duration;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{eventually, source_repos};

const STALL_AFTER: &str = "2s";

/// Starts one dev shard and a sidecar over three repos, waits for them to be cloned and for
/// `/readyz` to pass, and returns the pieces plus the clone URL of a fourth source repo.
async fn healed_deployment(
    work: &std::path::Path,
    prefix: &str,
    env: Vec<(&'static str, String)>,
) -> (PgDb, DevShard, Sidecar, String) {
    let names: Vec<String> = (0..4).map(|i| format!("github.com/{prefix}/repo-{i}")).collect();
    let urls = source_repos(&work.join("sources"), &names).await;
    let db = PgDb::create(Shape::Cloned2020_10).await;
    let rows: Vec<NewRepo> = names.iter().zip(&urls).take(3).map(|(n, u)| NewRepo::new(n, u)).collect();
    db.insert_repos(&rows).await;
    let shard = DevShard::start(work, Duration::ZERO);
    let mut config = SidecarConfig::new(db.url(), vec![shard.addr()]);
    config.env = env;
    config.env.push(("CLONEKEEPER_SYNC_STALL_AFTER", STALL_AFTER.to_string()));
    let sidecar = Sidecar::start(&config);
    sidecar.wait_for("the first three repos cloned", |s| s.totals.desired == 3 && s.totals.cloned == 3).await;
    readiness(&sidecar, "ready before the lock", |code, _| code == 200).await;
    (db, shard, sidecar, urls[3].clone())
}

/// Polls `/readyz` until `done(code, body)`.
async fn readiness(sidecar: &Sidecar, what: &str, done: impl Fn(u16, &str) -> bool) -> String {
    eventually(what, || async {
        let (code, body) = sidecar.get("/readyz").await?;
        if done(code, &body) {
            Ok(body)
        } else {
            Err(format!("{code} {body}"))
        }
    })
    .await
}

/// Locks `repo` in a transaction that also inserts a fourth repo, as another session would.
async fn lock_repo_table_and_insert(db: &PgDb, name: &str, url: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = db.pool().begin().await.expect("starting the locking transaction");
    sqlx::query("LOCK TABLE repo IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.expect("locking repo");
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO repo (name, external_service_type, external_service_id, external_id, created_at) \
         VALUES ($1, 'github', '1', 'added-while-locked', now()) RETURNING id",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await
    .expect("inserting a repo under the lock");
    sqlx::query("INSERT INTO external_service_repos (external_service_id, repo_id, clone_url) VALUES (1, $1, $2)")
        .bind(id)
        .bind(url)
        .execute(&mut *tx)
        .await
        .expect("inserting its clone URL");
    tx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_repo_table_is_a_visible_stall_and_healing_resumes_after() {
    let work = tempfile::tempdir().expect("a temporary directory");
    // Lock and statement timeouts far beyond the test: the read really hangs behind the lock.
    let env = vec![
        ("CLONEKEEPER_REPO_DB_LOCK_TIMEOUT", "10m".to_string()),
        ("CLONEKEEPER_REPO_DB_STATEMENT_TIMEOUT", "10m".to_string()),
    ];
    let (db, shard, sidecar, url) = healed_deployment(work.path(), "locked", env).await;
    let new_repo = "github.com/locked/repo-3";
    let tx = lock_repo_table_and_insert(&db, new_repo, &url).await;

    let body = readiness(&sidecar, "/readyz failing on the stalled read", |code, body| {
        code == 503 && body.contains("tick loop stalled")
    })
    .await;
    assert!(body.contains("reading the repo DB"), "the stall must name its step: {body}");
    assert!(body.contains("stall_after 2s"), "{body}");
    let (health, _) = sidecar.get("/healthz").await.expect("GET /healthz");
    assert_eq!(health, 200, "a locked table is not cured by a restart: liveness stays green");
    let (_, metrics) = sidecar.get("/metrics").await.expect("GET /metrics");
    assert!(metrics.contains("clonekeeper_tick_step{step=\"repo_db_read\"} 1"), "{metrics}");
    assert!(metrics.contains("clonekeeper_last_tick_completed_timestamp_seconds"), "{metrics}");

    tx.commit().await.expect("releasing the lock");
    sidecar.wait_for("the repo added under the lock cloned", |s| s.totals.desired == 4 && s.totals.cloned == 4).await;
    readiness(&sidecar, "ready again once the lock is gone", |code, _| code == 200).await;
    assert!(shard.has_mirror(new_repo));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_on_a_stale_desired_set_are_not_ready() {
    let work = tempfile::tempdir().expect("a temporary directory");
    // A short lock timeout: each read fails fast and ticks go on with the last desired set.
    let env = vec![("CLONEKEEPER_REPO_DB_LOCK_TIMEOUT", "200ms".to_string())];
    let (db, _shard, sidecar, url) = healed_deployment(work.path(), "stale", env).await;
    let tx = lock_repo_table_and_insert(&db, "github.com/stale/repo-3", &url).await;

    let body = readiness(&sidecar, "/readyz failing on a stale desired set", |code, body| {
        code == 503 && body.contains("desired set stale")
    })
    .await;
    assert!(!body.contains("tick loop stalled"), "ticks still complete on the last desired set: {body}");
    let status = sidecar.status().await.expect("the status");
    let error = status.repo_db_error.clone().unwrap_or_default();
    assert!(error.contains("lock timeout"), "the repo DB error should say why: {error:?}");
    let ticks = status.ticks;
    sidecar.wait_for("more ticks on the last good desired set", |s| s.ticks > ticks + 2 && s.totals.cloned == 3).await;

    tx.commit().await.expect("releasing the lock");
    sidecar.wait_for("the repo added under the lock cloned", |s| s.totals.desired == 4 && s.totals.cloned == 4).await;
    readiness(&sidecar, "ready again", |code, _| code == 200).await;
}

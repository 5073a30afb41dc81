//! Incremental repo DB reads, on each schema shape: with `full_interval` far beyond the test,
//! every kind of change (insert, soft delete, undelete, rename, clone-URL change) reaches the
//! sidecar through incremental reads alone (one full read at start, counted in the metrics).

use std::time::Duration;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::eventually;
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_reads_see_every_change_2020_06() {
    every_change_through_incremental_reads(Shape::Sources2020_06).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_reads_see_every_change_2020_10() {
    every_change_through_incremental_reads(Shape::Cloned2020_10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_reads_see_every_change_2021() {
    every_change_through_incremental_reads(Shape::GitserverRepos2021).await;
}

const KEPT: &str = "github.com/delta/kept";
const DOOMED: &str = "github.com/delta/doomed";
const OLD_NAME: &str = "github.com/delta/old-name";
const NEW_NAME: &str = "github.com/delta/new-name";
const FIXED: &str = "github.com/delta/fixed-url";
const ADDED: &str = "github.com/delta/added";

async fn every_change_through_incremental_reads(shape: Shape) {
    let work = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = [KEPT, DOOMED, OLD_NAME, FIXED, ADDED].iter().map(|s| s.to_string()).collect();
    let urls = crate::support::source_repos(&work.path().join("sources"), &names).await;
    let (kept_url, doomed_url, renamed_url, fixed_url, added_url) = (&urls[0], &urls[1], &urls[2], &urls[3], &urls[4]);
    let missing_url = work.path().join("sources/missing.git").to_string_lossy().into_owned();

    let db = PgDb::create(shape).await;
    let ids = db
        .insert_repos(&[
            NewRepo::new(KEPT, kept_url).created(0),
            NewRepo::new(DOOMED, doomed_url).created(1),
            NewRepo::new(OLD_NAME, renamed_url).created(2),
            NewRepo::new(FIXED, &missing_url).created(3),
        ])
        .await;
    let (doomed_id, renamed_id, fixed_id) = (ids[1], ids[2], ids[3]);

    let shard = DevShard::start(&work.path().join("shard-0"), Duration::from_millis(20));
    let mut config = SidecarConfig::new(db.url(), vec![shard.addr()]);
    config.env.push(("CLONEKEEPER_SYNC_FULL_INTERVAL", "\"1h\"".to_string()));
    let sidecar = Sidecar::start(&config);
    sidecar.wait_for("three repos cloned and one failing", |s| s.totals.cloned == 3 && s.totals.failed == 1).await;

    // Every kind of change at once, in separate transactions as a syncer would make them.
    let pool = db.pool();
    let exec = |sql: String| async move { sqlx::query(&sql).execute(pool).await.expect(&sql) };
    exec(format!("UPDATE repo SET deleted_at = now() WHERE id = {doomed_id}")).await;
    exec(format!("UPDATE repo SET name = '{NEW_NAME}' WHERE id = {renamed_id}")).await;
    match shape {
        Shape::Sources2020_06 => {
            exec(format!(
                "UPDATE repo SET sources = jsonb_build_object('extsvc:github:1', \
                   jsonb_build_object('ID', 'R3', 'CloneURL', '{fixed_url}')) WHERE id = {fixed_id}"
            ))
            .await
        }
        _ => {
            exec(format!("UPDATE external_service_repos SET clone_url = '{fixed_url}' WHERE repo_id = {fixed_id}"))
                .await
        }
    };
    db.insert_repos(&[NewRepo::new(ADDED, added_url).created(4)]).await;

    sidecar
        .wait_for("the added, renamed and fixed repos cloned, the deleted one gone", |s| {
            s.totals.desired == 4 && s.totals.cloned == 4
        })
        .await;
    for name in [ADDED, NEW_NAME, FIXED] {
        assert!(shard.has_mirror(name), "{name} was cloned");
    }
    let doomed = sidecar.explain(DOOMED).await.expect("explain");
    assert!(!doomed.desired, "a soft-deleted repo is no longer desired: {doomed:?}");
    let old = sidecar.explain(OLD_NAME).await.expect("explain");
    assert!(!old.desired, "a renamed repo is desired under its new name only: {old:?}");

    // Undelete: desired again, and already on the shard.
    exec(format!("UPDATE repo SET deleted_at = NULL WHERE id = {doomed_id}")).await;
    sidecar.wait_for("the undeleted repo desired and cloned", |s| s.totals.desired == 5 && s.totals.cloned == 5).await;

    // Only the first read was a full one.
    let metrics = eventually("the read counters", || async {
        let (code, body) = sidecar.get("/metrics").await?;
        (code == 200).then_some(body).ok_or_else(|| format!("/metrics answered {code}"))
    })
    .await;
    let sample = |series: &str, kind: &str| -> f64 {
        let prefix = format!("{series}{{kind=\"{kind}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())?.trim().parse().ok()).unwrap_or(0.0)
    };
    let count = |kind: &str| sample("clonekeeper_repo_db_reads_total", kind);
    assert_eq!(count("full"), 1.0, "one full read, at start:\n{metrics}");
    assert!(count("incremental") >= 3.0, "the changes came through incremental reads:\n{metrics}");
    // Every read counted is timed too.
    let timed = |kind: &str| sample("clonekeeper_repo_db_read_duration_seconds_count", kind);
    assert_eq!(timed("full"), count("full"), "one duration per full read:\n{metrics}");
    assert_eq!(timed("incremental"), count("incremental"), "one duration per incremental read:\n{metrics}");
}

//! SIGTERM (what Kubernetes sends before it kills a pod) stops the sidecar cleanly with exit
//! status 0, whether it is running its ticks or still waiting for its repo DB.

use std::time::Duration;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{source_repos, start_shards, DEADLINE};

/// Generous: a stop may wait for the last attempt records to be written (up to 10s).
const STOP_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_running_sidecar() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = (0..3).map(|i| format!("github.com/sigterm/repo-{i}")).collect();
    let urls = source_repos(&work.path().join("sources"), &names).await;
    let db = PgDb::create(Shape::Cloned2020_10).await;
    let rows: Vec<NewRepo> = names.iter().zip(&urls).map(|(name, url)| NewRepo::new(name, url)).collect();
    db.insert_repos(&rows).await;
    let shards = start_shards(work.path(), 1, Duration::from_millis(10));
    let sidecar = Sidecar::start(&SidecarConfig::new(db.url(), vec![shards[0].addr()]));
    sidecar.wait_for("every repo cloned", |s| s.totals.cloned == 3 && s.totals.desired == 3).await;

    sidecar.signal(libc::SIGTERM);
    let exit = sidecar.wait_exit(STOP_LIMIT).await;
    assert!(exit.is_some(), "still running {STOP_LIMIT:?} after SIGTERM; log:\n{}", sidecar.log_tail(30));
    assert_eq!(exit.and_then(|e| e.code()), Some(0), "log:\n{}", sidecar.log_tail(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_sidecar_waiting_for_its_repo_db() {
    // A database without a repo table: the sidecar keeps retrying until it becomes one.
    let db = PgDb::create_empty().await;
    let sidecar = Sidecar::start(&SidecarConfig::new(db.url(), vec!["127.0.0.1:9".to_owned()]));
    // The admin API is up before the databases are connected: from here on it is retrying.
    crate::support::eventually("the admin API to answer", || async {
        let response = reqwest::get(sidecar.url("/healthz")).await.map_err(|e| e.to_string())?;
        response.status().is_success().then_some(()).ok_or_else(|| format!("{}", response.status()))
    })
    .await;
    let status = sidecar.status().await.expect("the status while waiting for the repo DB");
    assert_eq!(status.ticks, 0, "a sidecar without a repo DB cannot have ticked: {status:#?}");

    sidecar.signal(libc::SIGTERM);
    let exit = sidecar.wait_exit(STOP_LIMIT.min(DEADLINE)).await;
    assert!(
        exit.is_some(),
        "still running {STOP_LIMIT:?} after SIGTERM while waiting for the repo DB; log:\n{}",
        sidecar.log_tail(30)
    );
    assert_eq!(exit.and_then(|e| e.code()), Some(0), "log:\n{}", sidecar.log_tail(30));
}

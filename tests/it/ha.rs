//! Two replicas with `[ha]` against one Postgres state DB and the same dev shards: one leads,
//! the other follows; the follower takes over a SIGKILLed leader, and a leader whose lock
//! session is terminated steps down for the other. No repo is ever dispatched by both at once
//! (each shard's record of concurrent `/repo-update` calls), and every repo ends cloned.

use std::time::{Duration, Instant};

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{assert_never_concurrent, eventually, source_repos, start_shards};

/// The bound: a standby leads within this long of the leader's end.
const TAKEOVER: Duration = Duration::from_secs(15);

async fn role(sidecar: &Sidecar) -> String {
    sidecar.status().await.map(|s| s.role).unwrap_or_default()
}

/// The backend holding the leader lease (the one granted advisory lock in the test's database).
async fn lease_session(db: &PgDb) -> Result<i32, String> {
    sqlx::query_scalar(
        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
          WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
    )
    .fetch_one(db.pool())
    .await
    .map_err(|e| format!("no lease session yet: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_a_killed_or_fenced_leader_and_no_repo_is_dispatched_twice_at_once() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let first: Vec<String> = (0..40).map(|i| format!("github.com/ha/first-{i:02}")).collect();
    let second: Vec<String> = (0..20).map(|i| format!("github.com/ha/second-{i:02}")).collect();
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    let urls = source_repos(&work.path().join("sources"), &all).await;
    let rows = |names: &[String], offset: usize| -> Vec<NewRepo> {
        names.iter().zip(&urls[offset..]).map(|(name, url)| NewRepo::new(name, url)).collect()
    };
    let db = PgDb::create(Shape::Cloned2020_10).await;
    db.insert_repos(&rows(&first, 0)).await;

    // Slow clones, few at a time: the kill lands mid-work.
    let shards = start_shards(work.path(), 2, Duration::from_millis(600));
    let mut config = SidecarConfig::new(db.url(), shards.iter().map(DevShard::addr).collect());
    config.max_in_flight_per_shard = 2;
    config.env = vec![
        ("CLONEKEEPER_HA_ENABLED", "true".to_string()),
        ("CLONEKEEPER_HA_CHECK_INTERVAL", "300ms".to_string()),
        ("CLONEKEEPER_HA_TAKEOVER_DELAY", "2s".to_string()),
    ];
    let a = Sidecar::start(&config);
    a.wait_for("the first replica leads", |s| s.role == "leader").await;
    let b = Sidecar::start(&config);
    eventually("the second replica follows", || async {
        match role(&b).await.as_str() {
            "follower" => Ok(()),
            other => Err(format!("role {other:?}")),
        }
    })
    .await;
    let (code, ready) = b.get("/readyz").await.expect("the follower's readiness");
    assert!(code == 200 && ready.contains("follower"), "a follower is ready to take over: {code} {ready}");
    assert!(b.explain(&first[0]).await.is_err(), "a follower does not answer for the loop");

    a.wait_for("some clones done and dispatches in flight", |s| s.totals.cloned >= 4 && s.totals.in_flight > 0).await;
    a.kill();
    let killed = Instant::now();
    b.wait_for("the follower leads after the leader's SIGKILL", |s| s.role == "leader").await;
    let took = killed.elapsed();
    eprintln!("the standby led {took:?} after the leader's SIGKILL");
    assert!(took < TAKEOVER, "the standby took {took:?} to lead");
    let led = b.status().await.expect("the new leader's status");
    assert!(led.epoch.is_some_and(|e| e >= 2), "a new leader has a new epoch: {:?}", led.epoch);
    b.wait_for("every first repo cloned", |s| s.totals.cloned == first.len() as u64).await;

    // The killed replica comes back as a follower; the leader's lock session is terminated:
    // the leader steps down and the other takes over.
    a.restart();
    eventually("the restarted replica follows", || async {
        match role(&a).await.as_str() {
            "follower" => Ok(()),
            other => Err(format!("role {other:?}")),
        }
    })
    .await;
    db.insert_repos(&rows(&second, first.len())).await;
    b.wait_for("the new repos in flight", |s| s.totals.in_flight > 0).await;
    let session = eventually("the lease session", || lease_session(&db)).await;
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(session)
        .fetch_one(db.pool())
        .await
        .expect("terminating the lease session");
    assert!(terminated);
    let cut = Instant::now();
    a.wait_for("the other replica leads after the lease session ended", |s| s.role == "leader").await;
    let took = cut.elapsed();
    eprintln!("the standby led {took:?} after the lease session was terminated");
    assert!(took < TAKEOVER, "the standby took {took:?} to lead");
    eventually("the old leader follows", || async {
        match role(&b).await.as_str() {
            "follower" => Ok(()),
            other => Err(format!("role {other:?}")),
        }
    })
    .await;
    a.wait_for("every repo cloned", |s| s.totals.cloned == all.len() as u64 && s.totals.desired == all.len() as u64)
        .await;

    for (idx, shard) in shards.iter().enumerate() {
        assert_never_concurrent(&format!("shard {idx}"), &shard.dispatches().await);
    }
    let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM clonekeeper_leader WHERE id = 1")
        .fetch_one(db.pool())
        .await
        .expect("the leader row");
    assert!(epoch >= 3, "three terms of leadership: {epoch}");
}

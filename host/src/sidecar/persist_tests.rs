//! Tests of the attempt-state writer against real Postgres (a fresh database per test): a
//! refused record is set aside without blocking the others, an unavailable state DB loses
//! nothing, and writes land in the order they were made, a started attempt acknowledged only
//! once it is stored.

use std::time::{Duration, Instant};

use futures::FutureExt as _;

use super::*;
use crate::db::test_support::PgTestDb;
use crate::db::Database;
use crate::model::Timestamp;

/// Bounds a wait in these tests; it measures nothing.
const DEADLINE: Duration = Duration::from_secs(30);

fn name(raw: &str) -> RepoName {
    RepoName::normalize(raw).expect("a valid repo name")
}

fn record(attempts: u32, in_flight: bool, last_error: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        attempts,
        in_flight,
        last_error: last_error.map(str::to_owned),
        last_attempt_at: Some(Timestamp::from_millis(1_600_000_000_000 + i64::from(attempts))),
        ..AttemptRecord::default()
    }
}

async fn pool(db: &Database) -> &sqlx::PgPool {
    match db {
        Database::Postgres(pool) => pool,
        Database::Sqlite(_) => unreachable!("these tests use Postgres"),
    }
}

async fn execute(db: &Database, sql: &str) {
    sqlx::query(sql).execute(pool(db).await).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// Polls `done` until it holds, at most [`DEADLINE`].
async fn eventually(what: &str, store: &StateStore, done: impl Fn(&HashMap<RepoName, AttemptRecord>) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let loaded = store.load().await;
        if loaded.as_ref().is_ok_and(&done) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last load: {loaded:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_refused_record_is_reported_and_set_aside_and_the_others_are_written() {
    let test_db = PgTestDb::create().await;
    let db = test_db.connect().await;
    let store = StateStore::open(db.clone()).await.expect("migrating");
    execute(&db, "ALTER TABLE clonekeeper_attempts ADD CONSTRAINT refuse_one CHECK (attempts < 1000)").await;
    let metrics = Metrics::default();
    let (persister, _writer) = Persister::start(store.clone(), &metrics, None);

    let acks = [
        persister.save_acked(name("github.com/a/before"), record(1, true, None)),
        persister.save_acked(name("github.com/a/refused"), record(1000, false, Some("fatal: \0 in git's text"))),
        persister.save_acked(name("github.com/a/after"), record(2, false, Some("fatal: also\0 NUL"))),
    ];
    let [before, refused, after] = acks;
    assert_eq!(before.stored().await, Ok(()));
    let refusal = refused.stored().await.expect_err("the state DB refuses 1000 attempts");
    assert!(refusal.contains("refuse_one"), "{refusal}");
    assert_eq!(after.stored().await, Ok(()));

    let loaded = store.load().await.expect("loading");
    assert_eq!(loaded.len(), 2, "{loaded:?}");
    assert_eq!(loaded[&name("github.com/a/after")].last_error.as_deref(), Some("fatal: also\u{FFFD} NUL"));
    assert_eq!(metrics.state_records_refused.get(), 1);
    let shown = persister.refusals().state.snapshot();
    assert_eq!(shown.total, 1);
    assert!(
        shown.sample[0].starts_with("github.com/a/refused: ") && shown.sample[0].contains("refuse_one"),
        "{shown:?}"
    );

    // The refused record is not retried: later writes go through at once.
    assert_eq!(persister.save_acked(name("github.com/a/later"), record(1, true, None)).stored().await, Ok(()));
    assert_eq!(metrics.state_records_refused.get(), 1);
}

#[tokio::test]
async fn an_unavailable_state_db_is_retried_and_loses_nothing() {
    let test_db = PgTestDb::create().await;
    let db = test_db.connect().await;
    let store = StateStore::open(db.clone()).await.expect("migrating");
    let metrics = std::sync::Arc::new(Metrics::default());
    let liveness = std::sync::Arc::new(crate::liveness::Liveness::new(
        std::time::Duration::from_secs(60),
        std::sync::Arc::clone(&metrics),
        crate::model::Timestamp::now(),
    ));
    let (persister, _writer) = Persister::start(store.clone(), &metrics, Some(std::sync::Arc::clone(&liveness)));
    // Not a refusal of the data (SQLSTATE 42P01): everything is kept and retried.
    execute(&db, "ALTER TABLE clonekeeper_attempts RENAME TO parked").await;

    let error = persister.save_acked(name("github.com/b/one"), record(1, true, None)).stored().await;
    assert!(error.as_ref().is_err_and(|e| e.contains("unavailable")), "{error:?}");
    persister.save(name("github.com/b/two"), record(3, false, Some("boom")));
    persister.save(name("github.com/b/one"), record(1, false, Some("newer")));
    // Told at once while the writer backs off, rather than held until the retry.
    let error = persister.save_acked(name("github.com/b/three"), record(1, true, None)).stored().await;
    assert!(error.is_err(), "{error:?}");
    let backlog = liveness.report().state_unwritten_since;
    assert!(backlog.is_some(), "the backlog is reported to liveness while the state DB refuses writes");

    execute(&db, "ALTER TABLE parked RENAME TO clonekeeper_attempts").await;
    eventually("every change written once the state DB is back", &store, |loaded| {
        loaded.len() == 3
            && loaded.get(&name("github.com/b/one")) == Some(&record(1, false, Some("newer")))
            && loaded.get(&name("github.com/b/two")) == Some(&record(3, false, Some("boom")))
    })
    .await;
    assert_eq!(metrics.state_records_refused.get(), 0, "unavailable is not refused");
    let deadline = Instant::now() + DEADLINE;
    while liveness.report().state_unwritten_since.is_some() {
        assert!(Instant::now() < deadline, "the backlog is cleared once everything is written");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn writes_land_in_order_and_a_started_attempt_is_acknowledged_once_stored() {
    let test_db = PgTestDb::create().await;
    let db = test_db.connect().await;
    let store = StateStore::open(db.clone()).await.expect("migrating");
    let metrics = Metrics::default();
    let (persister, _writer) = Persister::start(store.clone(), &metrics, None);
    let repo = name("github.com/c/repo");

    // The first attempt failed; its decision is being written while the table is locked, so
    // the writer is stuck on it when the next attempt starts.
    let mut lock = pool(&db).await.begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE clonekeeper_attempts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("locking the table");
    let failed = record(1, false, Some("fatal: first attempt"));
    persister.save(repo.clone(), failed.clone());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool(&db).await)
        .await
        .expect("reading pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the writer never waited on the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = record(2, true, Some("fatal: first attempt"));
    let mut stored = persister.save_acked(repo.clone(), started.clone()).stored().boxed();
    assert!((&mut stored).now_or_never().is_none(), "acknowledged before it was written");

    lock.commit().await.expect("releasing the lock");
    assert_eq!(stored.await, Ok(()));
    let loaded = store.load().await.expect("loading");
    assert_eq!(loaded[&repo], started, "the acknowledged start is what the state DB holds");

    // The outcome, made after the start, always ends in the state DB: one writer, in order.
    let outcome = record(2, false, None);
    assert_eq!(persister.save_acked(repo.clone(), outcome.clone()).stored().await, Ok(()));
    assert_eq!(store.load().await.expect("loading")[&repo], outcome);
    persister.forget(repo.clone());
    eventually("the record forgotten", &store, |loaded| !loaded.contains_key(&repo)).await;
}

//! Tests of the state store against real Postgres (a fresh database per test) and real
//! SQLite files: round trip, overwrite, forget, restart, idempotent and concurrent migration,
//! and skipping of invalid rows.

use super::*;
use crate::db::test_support::{PgTestDb, SqliteTestDb};

fn name(raw: &str) -> RepoName {
    RepoName::normalize(raw).expect("a valid repo name")
}

fn failed_twice() -> AttemptRecord {
    AttemptRecord {
        attempts: 2,
        last_error: Some("fatal: could not read Username".to_owned()),
        last_attempt_at: Some(Timestamp::from_millis(1_600_000_000_000)),
        next_attempt_at: Some(Timestamp::from_millis(1_600_000_060_000)),
        in_flight: false,
        gave_up: None,
    }
}

async fn execute(db: &Database, sql: &str) {
    let result = match db {
        Database::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        Database::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
    };
    result.unwrap_or_else(|error| panic!("running test SQL failed: {error}\n{sql}"));
}

async fn versions(db: &Database) -> Vec<i64> {
    let sql = "SELECT CAST(version AS BIGINT) FROM clonekeeper_schema_version ORDER BY version";
    match db {
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
    }
    .expect("reading the schema versions")
}

/// The whole life of a store on one backend. `first` and `restarted` are two pools on the
/// same database, the second standing for a new process.
async fn check_life_cycle(first: Database, restarted: Database) {
    let store = StateStore::open(first.clone()).await.expect("migrating");
    let store_again = StateStore::open(first.clone()).await.expect("migrating twice is harmless");
    assert_eq!(versions(&first).await, [1, 2]);
    assert!(store.load().await.expect("loading").is_empty());

    let in_flight = AttemptRecord {
        attempts: 1,
        in_flight: true,
        last_attempt_at: Some(Timestamp::from_millis(1_600_000_000_000)),
        ..AttemptRecord::default()
    };
    store
        .save(&[
            (name("github.com/a/failed"), failed_twice()),
            (name("github.com/a/in-flight"), in_flight.clone()),
            (name("github.com/a/fresh"), AttemptRecord::default()),
        ])
        .await
        .expect("saving");
    let expected = HashMap::from([
        (name("github.com/a/failed"), failed_twice()),
        (name("github.com/a/in-flight"), in_flight.clone()),
        (name("github.com/a/fresh"), AttemptRecord::default()),
    ]);
    assert_eq!(store.load().await.expect("loading"), expected);
    assert_eq!(store_again.load().await.expect("loading"), expected);

    // Upsert overwrites, and the last record of a name given twice wins.
    let gave_up =
        AttemptRecord { attempts: 9, gave_up: Some("policy: repository is gone".to_owned()), ..failed_twice() };
    store
        .save(&[
            (name("github.com/a/failed"), AttemptRecord::default()),
            (name("github.com/a/failed"), gave_up.clone()),
        ])
        .await
        .expect("overwriting");
    let loaded = store.load().await.expect("loading");
    assert_eq!(loaded.len(), 3);
    assert_eq!(loaded[&name("github.com/a/failed")], gave_up);
    assert_eq!(loaded[&name("github.com/a/in-flight")], in_flight);

    let forgotten =
        store.forget(&[name("github.com/a/fresh"), name("github.com/a/never-saved")]).await.expect("forgetting");
    assert_eq!(forgotten, Written { rows: 1, refused: Vec::new() });
    let loaded = store.load().await.expect("loading");
    assert_eq!(loaded.len(), 2);
    assert!(!loaded.contains_key(&name("github.com/a/fresh")));

    // A new process on the same database sees everything.
    drop(store);
    drop(store_again);
    first.close().await;
    let store = StateStore::open(restarted.clone()).await.expect("reopening");
    let loaded = store.load().await.expect("loading after restart");
    assert_eq!(loaded[&name("github.com/a/failed")], gave_up);
    assert_eq!(loaded[&name("github.com/a/in-flight")], in_flight);
    assert_eq!(versions(&restarted).await, [1, 2]);
}

/// Invalid rows are skipped; more than one batch is saved and forgotten correctly.
async fn check_invalid_rows_and_batches(db: Database) {
    let store = StateStore::open(db.clone()).await.expect("migrating");
    execute(
        &db,
        "INSERT INTO clonekeeper_attempts (repo_name, attempts, in_flight, updated_at) \
         VALUES ('github.com/bad/negative', -1, false, 0), ('..', 1, false, 0), \
                ('GitHub.com/Good/Spelling.git', 3, true, 0)",
    )
    .await;
    let loaded = store.load().await.expect("loading skips bad rows");
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert_eq!(loaded[&name("github.com/good/spelling")].attempts, 3);

    let count = BATCH + 345;
    let records: Vec<(RepoName, AttemptRecord)> = (0..count)
        .map(|i| {
            let record = AttemptRecord { attempts: u32::try_from(i).expect("small"), ..AttemptRecord::default() };
            (name(&format!("github.com/gen/repo-{i}")), record)
        })
        .collect();
    store.save(&records).await.expect("saving two batches");
    let loaded = store.load().await.expect("loading");
    assert_eq!(loaded.len(), count + 1);
    assert_eq!(loaded[&name("github.com/gen/repo-10100")].attempts, 10_100);

    let names: Vec<RepoName> = records.into_iter().map(|(name, _)| name).collect();
    let forgotten = store.forget(&names).await.expect("forgetting two batches");
    assert_eq!(forgotten.rows, u64::try_from(count).expect("small"));
    assert_eq!(store.load().await.expect("loading").len(), 1);
}

#[tokio::test]
async fn postgres_state_survives_a_restart() {
    let test_db = PgTestDb::create().await;
    check_life_cycle(test_db.connect().await, test_db.connect().await).await;
}

#[tokio::test]
async fn sqlite_state_survives_a_restart() {
    let test_db = SqliteTestDb::create();
    check_life_cycle(test_db.connect().await, test_db.connect().await).await;
}

#[tokio::test]
async fn postgres_skips_invalid_rows_and_batches_writes() {
    let test_db = PgTestDb::create().await;
    check_invalid_rows_and_batches(test_db.connect().await).await;
}

#[tokio::test]
async fn sqlite_skips_invalid_rows_and_batches_writes() {
    let test_db = SqliteTestDb::create();
    check_invalid_rows_and_batches(test_db.connect().await).await;
}

#[tokio::test]
async fn postgres_concurrent_migrations_both_succeed() {
    let test_db = PgTestDb::create().await;
    let pools = [test_db.connect().await, test_db.connect().await, test_db.connect().await];
    let opened = futures::future::join_all(pools.iter().cloned().map(StateStore::open)).await;
    for result in opened {
        result.expect("every concurrent migration succeeds");
    }
    assert_eq!(versions(&pools[0]).await, [1, 2]);
}

#[tokio::test]
async fn sqlite_concurrent_migrations_both_succeed() {
    let test_db = SqliteTestDb::create();
    let pools = [test_db.connect().await, test_db.connect().await];
    let opened = futures::future::join_all(pools.iter().cloned().map(StateStore::open)).await;
    for result in opened {
        result.expect("every concurrent migration succeeds");
    }
    assert_eq!(versions(&pools[0]).await, [1, 2]);
}

/// A NUL byte and control characters in the texts are stored replaced, a long error cut to
/// the byte cap: none of them makes the database refuse the record.
async fn check_text_is_made_storable(db: Database) {
    let store = StateStore::open(db).await.expect("migrating");
    let long = format!("fatal: {}", "é".repeat(text::STORED_TEXT_MAX_BYTES));
    let nul = AttemptRecord {
        last_error: Some("fatal: bad\0ref\r\x1b[31m".to_owned()),
        gave_up: Some("policy:\0 gone".to_owned()),
        ..failed_twice()
    };
    let written = store
        .save(&[
            (name("github.com/text/nul"), nul),
            (name("github.com/text/long"), AttemptRecord { last_error: Some(long), ..failed_twice() }),
            (name("github.com/text/plain"), failed_twice()),
        ])
        .await
        .expect("the state DB takes every record");
    assert_eq!(written, Written { rows: 3, refused: Vec::new() });
    let loaded = store.load().await.expect("loading");
    let nul = &loaded[&name("github.com/text/nul")];
    assert_eq!(nul.last_error.as_deref(), Some("fatal: bad\u{FFFD}ref  [31m"));
    assert_eq!(nul.gave_up.as_deref(), Some("policy:\u{FFFD} gone"));
    let long = loaded[&name("github.com/text/long")].last_error.as_deref().expect("an error");
    assert!(long.len() <= text::STORED_TEXT_MAX_BYTES && long.starts_with("fatal: é"), "{} bytes", long.len());
    assert_eq!(loaded[&name("github.com/text/plain")], failed_twice());
}

#[tokio::test]
async fn postgres_stores_nul_bytes_and_long_errors_made_storable() {
    let test_db = PgTestDb::create().await;
    check_text_is_made_storable(test_db.connect().await).await;
}

#[tokio::test]
async fn sqlite_stores_nul_bytes_and_long_errors_made_storable() {
    let test_db = SqliteTestDb::create();
    check_text_is_made_storable(test_db.connect().await).await;
}

/// `refuse` makes the database refuse the record of `github.com/refused/one`: it is set aside
/// with the database's message and every other record is written, in batches of any size.
async fn check_refused_record_is_set_aside(db: Database, refuse: &str, message: &str) {
    let store = StateStore::open(db.clone()).await.expect("migrating");
    execute(&db, refuse).await;
    let mut records: Vec<(RepoName, AttemptRecord)> =
        (0..40).map(|i| (name(&format!("github.com/ok/repo-{i}")), failed_twice())).collect();
    records.insert(17, (name("github.com/refused/one"), failed_twice()));
    let written = store.save(&records).await.expect("a refusal is not an error");
    assert_eq!(written.rows, 40);
    let refused: Vec<&str> = written.refused.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(refused, ["github.com/refused/one"]);
    assert!(written.refused[0].message.contains(message), "{:?}", written.refused[0]);
    let loaded = store.load().await.expect("loading");
    assert_eq!(loaded.len(), 40);
    assert!(!loaded.contains_key(&name("github.com/refused/one")));
}

#[tokio::test]
async fn postgres_sets_aside_a_refused_record_and_writes_the_others() {
    let test_db = PgTestDb::create().await;
    let db = test_db.connect().await;
    check_refused_record_is_set_aside(
        db.clone(),
        "ALTER TABLE clonekeeper_attempts ADD CONSTRAINT refuse_one CHECK (repo_name <> 'github.com/refused/one')",
        "refuse_one",
    )
    .await;
    // A name Postgres cannot hold (names are keys, so they are not rewritten) is refused
    // alone, by save and by forget alike.
    let store = StateStore::open(db).await.expect("opening");
    let unstorable = name("github.com/nul/a\0b");
    let written = store
        .save(&[(unstorable.clone(), failed_twice()), (name("github.com/nul/fine"), failed_twice())])
        .await
        .expect("a refusal is not an error");
    assert_eq!((written.rows, written.refused.len()), (1, 1), "{written:?}");
    assert_eq!(written.refused[0].name, unstorable);
    let forgotten =
        store.forget(&[name("github.com/nul/fine"), unstorable.clone()]).await.expect("a refusal is not an error");
    assert_eq!(forgotten.rows, 1);
    assert_eq!(forgotten.refused.iter().map(|r| &r.name).collect::<Vec<_>>(), [&unstorable]);
}

#[tokio::test]
async fn sqlite_sets_aside_a_refused_record_and_writes_the_others() {
    let test_db = SqliteTestDb::create();
    check_refused_record_is_set_aside(
        test_db.connect().await,
        "CREATE TRIGGER refuse_one BEFORE INSERT ON clonekeeper_attempts \
         WHEN NEW.repo_name = 'github.com/refused/one' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        "refused by the test",
    )
    .await;
}

#[tokio::test]
async fn postgres_lease_is_exclusive_and_a_superseded_epoch_is_fenced_off() {
    let test_db = PgTestDb::create().await;
    let store = StateStore::open(test_db.connect().await).await.unwrap();
    let bound = std::time::Duration::from_secs(5);
    let key = 4242;

    let mut first = lease::Lease::try_acquire(test_db.url(), key, "a/1", bound).await.unwrap().expect("a free lease");
    assert!(
        lease::Lease::try_acquire(test_db.url(), key, "b/2", bound).await.unwrap().is_none(),
        "the lock is held: a second replica does not get it"
    );
    let old = store.fenced(first.epoch());
    old.save(&[(name("x/a"), failed_twice())]).await.expect("the leader writes");
    first.check(bound).await.expect("the lease holds");

    first.release().await;
    let second = lease::Lease::try_acquire(test_db.url(), key, "b/2", bound).await.unwrap().expect("released");
    assert_eq!(second.epoch(), old.fence.unwrap() + 1, "every new leader bumps the epoch");
    let error = old.save(&[(name("x/a"), AttemptRecord::default())]).await.unwrap_err();
    assert!(error.is_fenced(), "{error}");
    let error = old.forget(&[name("x/a")]).await.unwrap_err();
    assert!(error.is_fenced() && error.to_string().contains("fenced"), "{error}");
    assert_eq!(store.load().await.unwrap()[&name("x/a")], failed_twice(), "nothing of the old leader landed");

    let new = store.fenced(second.epoch());
    new.forget(&[name("x/a")]).await.expect("the new leader writes");
    assert!(store.load().await.unwrap().is_empty());
}

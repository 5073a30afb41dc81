//! Tests of the repo DB reader and write-back against real Postgres (a fresh database per
//! test) and real SQLite files, for every schema shape.

use std::fmt::Write as _;

use expect_test::{expect, Expect};

use super::*;
use crate::db::test_support::{PgTestDb, SqliteTestDb};
use crate::model::{RecordedState, RepoColumns};
use crate::routing::{Routing, ShardMap};

/// Runs a script of several statements.
async fn run(db: &Database, sql: &str) {
    let result = match db {
        Database::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        Database::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
    };
    result.unwrap_or_else(|error| panic!("running test SQL failed: {error}\n{sql}"));
}

/// One line per repo and per problem, for expect tests.
fn render(set: &DesiredSet) -> String {
    let mut out = String::new();
    for repo in set.repos.iter() {
        writeln!(
            out,
            "{} {} url={} type={} created={} updated={} stars={:?} fork={} archived={} \
             private={} recorded={}",
            repo.id(),
            repo.name(),
            repo.clone_url().as_deref().unwrap_or("-"),
            repo.service_type().map_or("-", |kind| kind.as_str()),
            repo.created_at().map_or("-".to_owned(), |t| t.to_rfc3339()),
            repo.updated_at().map_or("-".to_owned(), |t| t.to_rfc3339()),
            repo.stars(),
            repo.fork(),
            repo.archived(),
            repo.private(),
            describe(set, repo.recorded()),
        )
        .expect("writing to a String");
    }
    for problem in &set.problems {
        writeln!(out, "problem: {problem}").expect("writing to a String");
    }
    out
}

async fn check_load(repo_db: &RepoDb, expect: Expect) {
    let set = repo_db.load_desired().await.expect("loading the desired repos");
    expect.assert_eq(&render(&set));
}

/// A recorded state with its shard index resolved to the `shard_id` it stands for.
fn describe(set: &DesiredSet, recorded: RecordedState) -> String {
    match recorded {
        RecordedState::Status { status, shard } => {
            let shard = shard.map_or("-", |idx| &*set.recorded_shards[idx.index()]);
            format!("Status({status:?} on {shard})")
        }
        other => format!("{other:?}"),
    }
}

fn recorded_of(set: &DesiredSet, id: i64) -> String {
    let repo = set.repos.iter().find(|repo| repo.id() == id).unwrap_or_else(|| panic!("repo {id} is desired"));
    describe(set, repo.recorded())
}

fn change(repo_id: i64, status: CloneStatus, shard: &str, last_error: Option<&str>) -> WriteBack {
    let name = RepoName::normalize(&format!("github.com/repo/{repo_id}")).expect("a valid name");
    WriteBack { repo_id, status, shard: shard.to_owned(), last_error: last_error.map(str::to_owned), name }
}

// === 2020-06: clone URLs in repo.sources ===

const ROWS_2020_06_PG: &str = r#"
INSERT INTO repo (id, name, external_service_type, created_at, updated_at, fork, archived, private,
                  sources, metadata, deleted_at) VALUES
 (1, 'GitHub.com/Foo/Bar.git', 'github', '2020-01-01T00:00:00Z', '2020-01-02T00:00:00Z', true, false, false,
  '{"extsvc:github:1": {"ID": "R1", "CloneURL": "https://github.com/Foo/Bar.git"}}', '{"stargazerCount": 42}', NULL),
 (2, 'github.com/a/deleted', 'github', '2020-01-01T00:00:00Z', NULL, false, false, false,
  '{"extsvc:github:1": {"ID": "R2", "CloneURL": "https://github.com/a/deleted"}}', '{}', now()),
 (3, 'gitlab.example.com/x/no-url', 'gitlab', '2020-01-01T00:00:00Z', NULL, NULL, true, true,
  '{}', '{"stargazerCount": "many"}', NULL),
 (4, 'github.com/foo/bar', 'github', '2020-01-01T00:00:00Z', NULL, false, false, false,
  '{"extsvc:github:1": {"ID": "R4", "CloneURL": "https://github.com/foo/bar"}}', '{}', NULL),
 (5, '..', 'github', '2020-01-01T00:00:00Z', NULL, false, false, false, '{}', '{}', NULL),
 (6, 'github.com/two/sources', 'github', '2020-01-01T00:00:00Z', NULL, false, false, false,
  '{"extsvc:gitlab:2": {"CloneURL": "https://b.example/two"}, "extsvc:github:1": {"CloneURL": "https://a.example/two"}}',
  '{"stargazerCount": 12.5}', NULL),
 (7, 'github.com/odd/sources', 'github', '2020-01-01T00:00:00Z', NULL, false, false, false, '[]', '[]', NULL);
"#;

#[tokio::test]
async fn postgres_2020_06_reads_clone_urls_from_sources() {
    let test_db = PgTestDb::create().await;
    let db = test_db.connect().await;
    run(&db, POSTGRES_SCHEMA_2020_06).await;
    run(&db, ROWS_2020_06_PG).await;

    let repo_db = RepoDb::open(db).await.expect("the 2020-06 shape is known");
    assert_eq!(repo_db.shape(), SchemaShape::Sources2020_06);
    check_every_column_choice(&repo_db).await;
    check_load(
        &repo_db,
        expect![[r#"
            1 github.com/foo/bar url=https://github.com/Foo/Bar.git type=github created=2020-01-01T00:00:00.000Z updated=2020-01-02T00:00:00.000Z stars=Some(42) fork=true archived=false private=false recorded=NotTracked
            7 github.com/odd/sources url=- type=github created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=NotTracked
            6 github.com/two/sources url=https://a.example/two type=github created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=NotTracked
            3 gitlab.example.com/x/no-url url=- type=gitlab created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=true private=true recorded=NotTracked
            problem: repo row 3 (gitlab.example.com/x/no-url): no clone URL
            problem: repo row 4 (github.com/foo/bar): name normalises to the same name as repo row 1; skipped in favour of the lower id
            problem: repo row 5 (..): name normalises to nothing, so no shard could hold it; skipped
            problem: repo row 7 (github.com/odd/sources): no clone URL
        "#]],
    )
    .await;

    let written = repo_db
        .write_back(&[change(1, CloneStatus::Cloned, "gs-0", None)])
        .await
        .expect("write-back to 2020-06 is a no-op");
    assert_eq!(written, WrittenBack::default());
    repo_db.ping().await.expect("ping");
}

#[tokio::test]
async fn sqlite_2020_06_reads_clone_urls_from_sources() {
    let test_db = SqliteTestDb::create();
    let db = test_db.connect().await;
    run(&db, SQLITE_SCHEMA_2020_06).await;
    run(
        &db,
        r#"
        INSERT INTO repo (id, name, external_service_type, created_at, sources, metadata) VALUES
         (1, 'GitHub.com/Foo/Bar.git', 'github', 1577836800000,
          '{"extsvc:gitlab:2": {"CloneURL": "https://b.example/foo"}, "extsvc:github:1": {"CloneURL": "https://a.example/foo"}}',
          '{"stargazerCount": 42}'),
         (2, 'github.com/broken/json', 'github', 1577836800000, '{not json', '{not json'),
         (3, 'github.com/odd/sources', 'github', 1577836800000, '["x"]', '[]');
        "#,
    )
    .await;

    let repo_db = RepoDb::open(db).await.expect("the 2020-06 shape is known");
    assert_eq!(repo_db.shape(), SchemaShape::Sources2020_06);
    check_every_column_choice(&repo_db).await;
    check_load(
        &repo_db,
        expect![[r#"
            2 github.com/broken/json url=- type=github created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=NotTracked
            1 github.com/foo/bar url=https://a.example/foo type=github created=2020-01-01T00:00:00.000Z updated=- stars=Some(42) fork=false archived=false private=false recorded=NotTracked
            3 github.com/odd/sources url=- type=github created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=NotTracked
            problem: repo row 2 (github.com/broken/json): no clone URL
            problem: repo row 3 (github.com/odd/sources): no clone URL
        "#]],
    )
    .await;
}

// === 2020-10: repo.cloned, clone URLs in external_service_repos ===

const ROWS_2020_10_PG: &str = r#"
INSERT INTO external_services (id, kind, display_name, config) VALUES
 (1, 'GITHUB', 'GitHub', '{}'), (2, 'GITHUB', 'GitHub mirror', '{}');
INSERT INTO repo (id, name, external_service_type, created_at, updated_at, fork, private, metadata,
                  cloned, deleted_at) VALUES
 (1, 'GitHub.com/Foo/Bar.git', 'github', '2020-01-01T00:00:00Z', '2020-01-02T00:00:00Z', true, false,
  '{"stargazerCount": 42}', true, NULL),
 (2, 'github.com/a/deleted', 'github', '2020-01-01T00:00:00Z', NULL, false, false, '{}', false, now()),
 (3, 'github.com/no/url', 'github', '2020-01-01T00:00:00Z', NULL, NULL, true, '{}', false, NULL),
 (4, 'github.com/foo/bar', 'github', '2020-01-01T00:00:00Z', NULL, false, false, '{}', false, NULL),
 (5, 'gitlab.example.com/Plain/Repo', 'gitlab', '2020-01-01T00:00:00Z', NULL, false, false, '{}', false, NULL);
INSERT INTO external_service_repos (external_service_id, repo_id, clone_url) VALUES
 (2, 1, 'https://mirror.example/foo/bar'), (1, 1, 'https://github.com/Foo/Bar.git'),
 (1, 2, 'https://github.com/a/deleted'), (1, 4, 'https://github.com/foo/bar'),
 (1, 5, 'https://gitlab.example.com/Plain/Repo');
"#;

const ROWS_2020_10_SQLITE: &str = r#"
INSERT INTO external_services (id, kind, display_name, config) VALUES
 (1, 'GITHUB', 'GitHub', '{}'), (2, 'GITHUB', 'GitHub mirror', '{}');
INSERT INTO repo (id, name, external_service_type, created_at, updated_at, fork, private, metadata,
                  cloned, deleted_at) VALUES
 (1, 'GitHub.com/Foo/Bar.git', 'github', 1577836800000, '2020-01-02T00:00:00Z', 1, 0,
  '{"stargazerCount": 42}', 1, NULL),
 (2, 'github.com/a/deleted', 'github', 1577836800000, NULL, 0, 0, '{}', 0, 1577836800000),
 (3, 'github.com/no/url', 'github', 1577836800000, NULL, NULL, 1, '{}', 0, NULL),
 (4, 'github.com/foo/bar', 'github', 1577836800000, NULL, 0, 0, '{}', 0, NULL),
 (5, 'gitlab.example.com/Plain/Repo', 'gitlab', '2020-01-01 00:00:00', NULL, 0, 0, '{}', 0, NULL);
INSERT INTO external_service_repos (external_service_id, repo_id, clone_url) VALUES
 (2, 1, 'https://mirror.example/foo/bar'), (1, 1, 'https://github.com/Foo/Bar.git'),
 (1, 2, 'https://github.com/a/deleted'), (1, 4, 'https://github.com/foo/bar'),
 (1, 5, 'https://gitlab.example.com/Plain/Repo');
"#;

const EXPECT_2020_10: &str = "\
1 github.com/foo/bar url=https://github.com/Foo/Bar.git type=github created=2020-01-01T00:00:00.000Z updated=2020-01-02T00:00:00.000Z stars=Some(42) fork=true archived=false private=false recorded=ClonedFlag(true)
3 github.com/no/url url=- type=github created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=true recorded=ClonedFlag(false)
5 gitlab.example.com/Plain/Repo url=https://gitlab.example.com/Plain/Repo type=gitlab created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=ClonedFlag(false)
problem: repo row 3 (github.com/no/url): no clone URL
problem: repo row 4 (github.com/foo/bar): name normalises to the same name as repo row 1; skipped in favour of the lower id
";

const EXPECT_2020_10_MINIMAL: &str = "\
1 github.com/foo/bar url=https://github.com/Foo/Bar.git type=- created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=NotTracked
3 github.com/no/url url=- type=- created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=NotTracked
5 gitlab.example.com/Plain/Repo url=https://gitlab.example.com/Plain/Repo type=- created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=NotTracked
problem: repo row 3 (github.com/no/url): no clone URL
problem: repo row 4 (github.com/foo/bar): name normalises to the same name as repo row 1; skipped in favour of the lower id
";

/// Every choice of optional columns reads the same repos with exactly the chosen columns
/// filled: the statement selects only those (the 2021 shape without write-back does not join
/// `gitserver_repos`), and the reader finds each where the layout puts it.
async fn check_every_column_choice(repo_db: &RepoDb) {
    let full = repo_db.load_desired().await.expect("loading every column");
    let without_recorded = RepoColumns { recorded: false, ..RepoColumns::ALL };
    assert!(
        !repo_db.desired_sql(without_recorded).contains("gitserver_repos"),
        "{}",
        repo_db.desired_sql(without_recorded)
    );
    for choice in 0..8u8 {
        let columns = RepoColumns { stars: choice & 1 != 0, details: choice & 2 != 0, recorded: choice & 4 != 0 };
        let set = repo_db.load_desired_reading(columns).await.unwrap_or_else(|e| panic!("loading {columns:?}: {e}"));
        assert_eq!(set.repos.len(), full.repos.len(), "{columns:?}");
        for (repo, full) in set.repos.iter().zip(full.repos.iter()) {
            let full = full.to_record();
            let expected = crate::model::DesiredRepo {
                service_type: full.service_type.clone().filter(|_| columns.details),
                updated_at: full.updated_at.filter(|_| columns.details),
                fork: full.fork && columns.details,
                archived: full.archived && columns.details,
                private: full.private && columns.details,
                stars: full.stars.filter(|_| columns.stars),
                recorded: if columns.recorded { full.recorded } else { RecordedState::NotTracked },
                ..full.clone()
            };
            assert_eq!(repo.to_record(), expected, "{columns:?}");
        }
        if !columns.recorded {
            assert!(set.problems.iter().all(|p| !p.message.contains("clone_status")), "{:?}", set.problems);
        }
    }
}

/// Loads, writes back, and loads again: the same story on either backend.
async fn check_2020_10(db: Database) {
    let repo_db = RepoDb::open(db).await.expect("the 2020-10 shape is known");
    assert_eq!(repo_db.shape(), SchemaShape::ClonedFlag2020_10);
    check_every_column_choice(&repo_db).await;
    let set = repo_db.load_desired().await.expect("loading");
    assert_eq!(render(&set), EXPECT_2020_10);
    // Without a policy that reads stars, the metadata JSON is not read; nothing else changes.
    let without_stars =
        repo_db.load_desired_reading(RepoColumns { stars: false, ..RepoColumns::ALL }).await.expect("loading");
    assert_eq!(render(&without_stars), EXPECT_2020_10.replace("stars=Some(42)", "stars=None"));
    // Without any policy module and write-back: only id, name, clone URL and created_at.
    let minimal = repo_db.load_desired_reading(RepoColumns::default()).await.expect("loading the minimum");
    assert_eq!(render(&minimal), EXPECT_2020_10_MINIMAL);
    let github = set.repos.at(0).service_type().expect("github");
    let github_too = set.repos.at(1).service_type().expect("github");
    assert!(github.ptr_eq(github_too), "service types are interned");

    let changes = [
        change(1, CloneStatus::NotCloned, "gs-0", Some("gone")),
        change(5, CloneStatus::Cloning, "gs-1", None),
        change(5, CloneStatus::Cloned, "gs-1", None),
        change(3, CloneStatus::Cloning, "gs-0", None),
        change(999, CloneStatus::Cloned, "gs-0", None),
    ];
    let written = repo_db.write_back(&changes).await.expect("writing back");
    assert_eq!(written.rows, 2, "repo 1 and 5 change; 3 stays uncloned; 999 does not exist");

    let set = repo_db.load_desired().await.expect("loading again");
    assert_eq!(recorded_of(&set, 1), "ClonedFlag(false)");
    assert_eq!(recorded_of(&set, 3), "ClonedFlag(false)");
    assert_eq!(recorded_of(&set, 5), "ClonedFlag(true)");

    let written = repo_db.write_back(&changes).await.expect("writing back again");
    assert_eq!(written.rows, 0, "nothing left to change");
    repo_db.ping().await.expect("ping");
}

#[tokio::test]
async fn postgres_2020_10_reads_and_writes_back_the_cloned_flag() {
    let test_db = PgTestDb::create().await;
    let db = test_db.connect().await;
    run(&db, POSTGRES_SCHEMA_2020_10).await;
    run(&db, ROWS_2020_10_PG).await;
    check_2020_10(db).await;
}

#[tokio::test]
async fn sqlite_2020_10_reads_and_writes_back_the_cloned_flag() {
    let test_db = SqliteTestDb::create();
    let db = test_db.connect().await;
    run(&db, SQLITE_SCHEMA_2020_10).await;
    // The schema is safe to run again, as the demo does on every start.
    run(&db, SQLITE_SCHEMA_2020_10).await;
    run(&db, ROWS_2020_10_SQLITE).await;
    check_2020_10(db).await;
}

// === 2021: gitserver_repos ===

const ROWS_2021_PG: &str = r#"
INSERT INTO external_services (id, kind, display_name, config) VALUES (1, 'GITHUB', 'GitHub', '{}');
INSERT INTO repo (id, name, external_service_type, created_at, stars, metadata, deleted_at) VALUES
 (1, 'GitHub.com/Foo/Bar.git', 'github', '2020-01-01T00:00:00Z', 7, '{"stargazerCount": 42}', NULL),
 (2, 'github.com/a/deleted', 'github', '2020-01-01T00:00:00Z', 1, '{}', now()),
 (3, 'github.com/no/url', 'github', '2020-01-01T00:00:00Z', NULL, '{}', NULL),
 (4, 'github.com/foo/bar', 'github', '2020-01-01T00:00:00Z', NULL, '{}', NULL),
 (5, 'github.com/negative/stars', 'github', '2020-01-01T00:00:00Z', -1, '{}', NULL),
 (6, 'github.com/has/status', 'github', '2020-01-01T00:00:00Z', 0, '{}', NULL);
INSERT INTO external_service_repos (external_service_id, repo_id, clone_url) VALUES
 (1, 1, 'https://github.com/Foo/Bar.git'), (1, 2, 'https://github.com/a/deleted'),
 (1, 4, 'https://github.com/foo/bar'), (1, 5, 'https://github.com/negative/stars'),
 (1, 6, 'https://github.com/has/status');
INSERT INTO gitserver_repos (repo_id, clone_status, shard_id) VALUES
 (1, 'cloning', 'gs-0'), (5, 'weird', 'gs-1'), (6, 'cloned', 'gs-1');
"#;

#[tokio::test]
async fn postgres_2021_reads_and_upserts_gitserver_repos() {
    let test_db = PgTestDb::create().await;
    let db = test_db.connect().await;
    run(&db, POSTGRES_SCHEMA_2021).await;
    run(&db, ROWS_2021_PG).await;
    let Database::Postgres(pool) = db.clone() else { panic!("a Postgres test database") };

    let repo_db = RepoDb::open(db).await.expect("the 2021 shape is known");
    assert_eq!(repo_db.shape(), SchemaShape::GitserverRepos2021);
    check_load(
        &repo_db,
        expect![[r#"
            1 github.com/foo/bar url=https://github.com/Foo/Bar.git type=github created=2020-01-01T00:00:00.000Z updated=- stars=Some(7) fork=false archived=false private=false recorded=Status(Some(Cloning) on gs-0)
            6 github.com/has/status url=https://github.com/has/status type=github created=2020-01-01T00:00:00.000Z updated=- stars=Some(0) fork=false archived=false private=false recorded=Status(Some(Cloned) on gs-1)
            5 github.com/negative/stars url=https://github.com/negative/stars type=github created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=Status(None on gs-1)
            3 github.com/no/url url=- type=github created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=Status(None on -)
            problem: repo row 3 (github.com/no/url): no clone URL
            problem: repo row 4 (github.com/foo/bar): name normalises to the same name as repo row 1; skipped in favour of the lower id
            problem: repo row 5 (github.com/negative/stars): stars -1 out of range; ignored
            problem: repo row 5 (github.com/negative/stars): gitserver_repos.clone_status `weird` unknown; ignored
        "#]],
    )
    .await;
    check_every_column_choice(&repo_db).await;

    let changes = [
        change(1, CloneStatus::Cloned, "gs-0", None),
        change(3, CloneStatus::NotCloned, "gs-1", Some("fatal: repository not found")),
        change(6, CloneStatus::Cloned, "gs-1", None),
        change(999, CloneStatus::Cloned, "gs-0", None),
    ];
    let written = repo_db.write_back(&changes).await.expect("writing back");
    assert_eq!(written.rows, 2, "1 changes, 3 is new, 6 is unchanged, 999 does not exist");

    let set = repo_db.load_desired().await.expect("loading again");
    assert_eq!(recorded_of(&set, 1), "Status(Some(Cloned) on gs-0)");
    assert_eq!(recorded_of(&set, 3), "Status(Some(NotCloned) on gs-1)");
    assert_eq!(recorded_of(&set, 6), "Status(Some(Cloned) on gs-1)");
    let (shard, last_error): (String, Option<String>) =
        sqlx::query_as("SELECT shard_id, last_error FROM gitserver_repos WHERE repo_id = 3")
            .fetch_one(&pool)
            .await
            .expect("repo 3 has a gitserver_repos row");
    assert_eq!(shard, "gs-1");
    assert_eq!(last_error.as_deref(), Some("fatal: repository not found"));

    let written = repo_db.write_back(&changes).await.expect("writing back again");
    assert_eq!(written.rows, 0, "nothing left to change");
}

#[tokio::test]
async fn sqlite_2021_reads_and_upserts_gitserver_repos() {
    let test_db = SqliteTestDb::create();
    let db = test_db.connect().await;
    run(&db, SQLITE_SCHEMA_2021).await;
    run(
        &db,
        r#"
        INSERT INTO external_services (id, kind, display_name, config) VALUES (1, 'GITHUB', 'GitHub', '{}');
        INSERT INTO repo (id, name, external_service_type, created_at, stars) VALUES
         (1, 'GitHub.com/Foo/Bar.git', 'github', 1577836800000, 7),
         (2, 'github.com/no/status', 'github', 1577836800000, NULL);
        INSERT INTO external_service_repos (external_service_id, repo_id, clone_url) VALUES
         (1, 1, 'https://github.com/Foo/Bar.git'), (1, 2, 'https://github.com/no/status');
        INSERT INTO gitserver_repos (repo_id, clone_status, shard_id) VALUES (1, 'cloning', 'gs-0');
        "#,
    )
    .await;

    let repo_db = RepoDb::open(db).await.expect("the 2021 shape is known");
    assert_eq!(repo_db.shape(), SchemaShape::GitserverRepos2021);
    check_load(
        &repo_db,
        expect![[r#"
            1 github.com/foo/bar url=https://github.com/Foo/Bar.git type=github created=2020-01-01T00:00:00.000Z updated=- stars=Some(7) fork=false archived=false private=false recorded=Status(Some(Cloning) on gs-0)
            2 github.com/no/status url=https://github.com/no/status type=github created=2020-01-01T00:00:00.000Z updated=- stars=None fork=false archived=false private=false recorded=Status(None on -)
        "#]],
    )
    .await;
    check_every_column_choice(&repo_db).await;

    let changes = [
        change(1, CloneStatus::Cloned, "gs-0", None),
        change(2, CloneStatus::NotCloned, "gs-1", Some("boom")),
        change(999, CloneStatus::Cloned, "gs-0", None),
    ];
    assert_eq!(repo_db.write_back(&changes).await.expect("writing back").rows, 2);
    let set = repo_db.load_desired().await.expect("loading again");
    assert_eq!(recorded_of(&set, 1), "Status(Some(Cloned) on gs-0)");
    assert_eq!(recorded_of(&set, 2), "Status(Some(NotCloned) on gs-1)");
    assert_eq!(repo_db.write_back(&changes).await.expect("again").rows, 0);
}

#[tokio::test]
async fn postgres_write_back_stores_nul_bytes_made_storable_and_sets_aside_a_refused_row() {
    let test_db = PgTestDb::create().await;
    let db = test_db.connect().await;
    run(&db, POSTGRES_SCHEMA_2021).await;
    run(
        &db,
        "INSERT INTO repo (id, name, external_service_type, created_at) \
             SELECT i, 'github.com/repo/' || i, 'github', now() FROM generate_series(1, 5) AS i; \
         ALTER TABLE gitserver_repos ADD CONSTRAINT refuse_three CHECK (repo_id <> 3);",
    )
    .await;
    let repo_db = RepoDb::open(db.clone()).await.expect("the 2021 shape is known");
    let changes: Vec<WriteBack> = (1..=5)
        .map(|id| change(id, CloneStatus::NotCloned, "gs-0", Some(&format!("fatal: repo {id}\0 is\x07 gone"))))
        .collect();
    let written = repo_db.write_back(&changes).await.expect("a refused row is not an error");
    assert_eq!(written.rows, 4);
    let refused: Vec<&str> = written.refused.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(refused, ["github.com/repo/3"]);
    assert!(written.refused[0].message.contains("refuse_three"), "{:?}", written.refused);
    let Database::Postgres(pool) = &db else { unreachable!("a Postgres test database") };
    let stored: Vec<(i64, String)> =
        sqlx::query_as("SELECT repo_id::bigint, last_error FROM gitserver_repos ORDER BY repo_id")
            .fetch_all(pool)
            .await
            .expect("reading gitserver_repos");
    let expected: Vec<(i64, String)> =
        [1, 2, 4, 5].into_iter().map(|id| (id, format!("fatal: repo {id}\u{FFFD} is  gone"))).collect();
    assert_eq!(stored, expected);
}

// === Scale and detection ===

#[tokio::test]
async fn postgres_streams_twenty_thousand_generated_rows() {
    let test_db = PgTestDb::create().await;
    let db = test_db.connect().await;
    run(&db, POSTGRES_SCHEMA_2020_10).await;
    run(
        &db,
        "INSERT INTO external_services (id, kind, display_name, config) \
             VALUES (1, 'GITHUB', 'GitHub', '{}'); \
         INSERT INTO repo (id, name, external_service_type, metadata) \
             SELECT i, 'github.com/gen/repo-' || i, 'github', \
                    jsonb_build_object('stargazerCount', i) \
               FROM generate_series(1, 20000) AS i; \
         INSERT INTO external_service_repos (external_service_id, repo_id, clone_url) \
             SELECT 1, i, 'https://github.com/gen/repo-' || i \
               FROM generate_series(1, 20000) AS i;",
    )
    .await;

    let repo_db = RepoDb::open(db).await.expect("the 2020-10 shape is known");
    let set = repo_db.load_desired().await.expect("loading");
    assert_eq!(set.repos.len(), 20_000);
    assert!(set.problems.is_empty(), "{:?}", set.problems.first());
    assert!(set.repos.names().collect::<Vec<_>>().windows(2).all(|pair| pair[0] < pair[1]));
    let stars: u64 = set.repos.iter().filter_map(|repo| repo.stars()).map(u64::from).sum();
    assert_eq!(stars, 20_000 * 20_001 / 2);

    // Routed as the rows arrive: each route stays with its repo through the sort by name.
    let shards = ShardMap::new((0..8).map(|i| format!("shard-{i}")).collect(), Routing::Md5).expect("eight shards");
    let router = shards.clone();
    let (routed, routes) = repo_db
        .load_desired_routed(RepoColumns::default(), Some(Box::new(move |name| router.shard_for(name))))
        .await
        .expect("loading, routed");
    assert_eq!(routed.repos.len(), 20_000);
    assert_eq!(routes, routed.repos.names().map(|name| shards.shard_for(name)).collect::<Vec<_>>());
    assert!(routes.iter().any(|&route| route != routes[0]), "the routes differ from repo to repo");
}

#[tokio::test]
async fn postgres_without_repo_table_is_refused_by_name() {
    let test_db = PgTestDb::create().await;
    let db = test_db.connect().await;
    let error = RepoDb::open(db).await.expect_err("no repo table");
    let message = error.to_string();
    assert!(message.contains(test_db.name()), "{message}");
    assert!(message.contains("no `repo` table"), "{message}");
}

#[tokio::test]
async fn sqlite_unknown_or_incomplete_shapes_are_refused() {
    let test_db = SqliteTestDb::create();
    let db = test_db.connect().await;
    run(&db, "CREATE TABLE repo (id INTEGER PRIMARY KEY, name TEXT)").await;
    let error = RepoDb::open(db.clone()).await.expect_err("no known shape");
    let message = error.to_string();
    assert!(message.contains(test_db.url()), "{message}");
    assert!(message.contains("neither a `sources` nor a `cloned` column"), "{message}");

    run(&db, "ALTER TABLE repo ADD COLUMN cloned INTEGER").await;
    let error = RepoDb::open(db).await.expect_err("columns are missing");
    expect![[r#"looks like the 2020-10 (repo.cloned) schema but lacks repo.deleted_at, repo.external_service_type, repo.created_at, repo.updated_at, repo.fork, repo.archived, repo.private, repo.metadata, external_service_repos.external_service_id, external_service_repos.repo_id, external_service_repos.clone_url"#]]
        .assert_eq(&error.to_string().replace(&format!("repo DB {}: ", test_db.url()), ""));
}

#[test]
fn row_problem_names_the_row() {
    let problem = RowProblem { repo_id: 17, name: "github.com/a/b".to_owned(), message: "no clone URL".to_owned() };
    assert_eq!(problem.to_string(), "repo row 17 (github.com/a/b): no clone URL");
}

//! A Postgres repo DB per test: created on the admin server (`CLONEKEEPER_TEST_PG`), loaded
//! with one of the three Sourcegraph schema shapes, filled with repo rows, and dropped when
//! the test ends (best effort, even when it panics).

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use clonekeeper::sources::repo_db::{POSTGRES_SCHEMA_2020_06, POSTGRES_SCHEMA_2020_10, POSTGRES_SCHEMA_2021};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Where repos and their clone URLs live.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Clone URLs in the `repo.sources` jsonb.
    Sources2020_06,
    /// `external_service_repos` + `repo.cloned`.
    Cloned2020_10,
    /// `external_service_repos` + `gitserver_repos` + `repo.stars`.
    GitserverRepos2021,
}

impl Shape {
    fn schema(self) -> &'static str {
        match self {
            Shape::Sources2020_06 => POSTGRES_SCHEMA_2020_06,
            Shape::Cloned2020_10 => POSTGRES_SCHEMA_2020_10,
            Shape::GitserverRepos2021 => POSTGRES_SCHEMA_2021,
        }
    }

    /// What `/v1/status` names this shape with (`repo_db_shape` starts with it).
    pub fn label(self) -> &'static str {
        match self {
            Shape::Sources2020_06 => "2020-06",
            Shape::Cloned2020_10 => "2020-10",
            Shape::GitserverRepos2021 => "2021",
        }
    }
}

/// One `repo` row to write, with its clone URL.
#[derive(Clone, Debug)]
pub struct NewRepo {
    /// The name as stored (may need normalising).
    pub name: String,
    pub clone_url: String,
    /// `created_at` in milliseconds since the epoch; the built-in order clones oldest first.
    pub created_at_ms: i64,
    pub deleted: bool,
    /// `repo.stars` (2021 shape only).
    pub stars: Option<i32>,
    /// Records the repo as cloned in the DB's own clone state (`repo.cloned` in 2020-10,
    /// a `gitserver_repos` row in 2021), whatever the shards hold.
    pub recorded_cloned: bool,
}

impl NewRepo {
    pub fn new(name: impl Into<String>, clone_url: impl Into<String>) -> NewRepo {
        NewRepo {
            name: name.into(),
            clone_url: clone_url.into(),
            created_at_ms: 1_600_000_000_000,
            deleted: false,
            stars: None,
            recorded_cloned: false,
        }
    }

    /// `created_at` = a fixed base plus `minutes`.
    pub fn created(mut self, minutes: i64) -> NewRepo {
        self.created_at_ms = 1_600_000_000_000 + minutes * 60_000;
        self
    }

    pub fn deleted(mut self) -> NewRepo {
        self.deleted = true;
        self
    }

    pub fn stars(mut self, stars: i32) -> NewRepo {
        self.stars = Some(stars);
        self
    }

    pub fn recorded_cloned(mut self) -> NewRepo {
        self.recorded_cloned = true;
        self
    }
}

/// A row of `clonekeeper_attempts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRow {
    pub attempts: i64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub in_flight: bool,
    pub gave_up: Option<String>,
}

/// A `clonekeeper_attempts` row as selected by [`PgDb::attempt`].
type AttemptTuple = (i64, Option<String>, Option<i64>, Option<i64>, bool, Option<String>);

/// A database created for one test, dropped when this value is dropped.
pub struct PgDb {
    name: String,
    url: String,
    pool: PgPool,
    /// `None` for a database without the repo schema.
    shape: Option<Shape>,
}

fn admin_url() -> String {
    std::env::var("CLONEKEEPER_TEST_PG").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

fn admin_options() -> PgConnectOptions {
    PgConnectOptions::from_str(&admin_url()).expect("CLONEKEEPER_TEST_PG is a Postgres URL")
}

/// `url` pointing at database `name`, keeping host, user and parameters.
fn with_database(url: &str, name: &str) -> String {
    let authority_start = url.find("://").map_or(0, |at| at + 3);
    let rest = &url[authority_start..];
    let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[path_start..].find('?').map_or("", |at| &rest[path_start + at..]);
    format!("{}/{name}{query}", &url[..authority_start + path_start])
}

impl PgDb {
    /// Creates `ck_it_<pid>_<nanos>_<n>`, loads the schema of `shape` and one external
    /// service (id 1) that every repo row belongs to.
    pub async fn create(shape: Shape) -> PgDb {
        let mut db = PgDb::create_empty().await;
        db.shape = Some(shape);
        sqlx::raw_sql(shape.schema()).execute(&db.pool).await.expect("loading the repo DB schema");
        sqlx::query(
            "INSERT INTO external_services (id, kind, display_name, config) VALUES (1, 'GITHUB', 'GitHub', '{}')",
        )
        .execute(&db.pool)
        .await
        .expect("inserting the external service");
        db
    }

    /// Creates an empty database: no repo table, so not (yet) a repo DB.
    pub async fn create_empty() -> PgDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_nanos();
        let name = format!("ck_it_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect_with(&admin_options())
            .await
            .unwrap_or_else(|error| panic!("the test Postgres server ({}) is not reachable: {error}", admin_url()));
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("the admin user may create databases");
        admin.close().await.expect("closing the admin connection");
        let url = with_database(&admin_url(), &name);
        let pool =
            PgPoolOptions::new().max_connections(2).connect(&url).await.expect("connecting to the test database");
        PgDb { name, url, pool, shape: None }
    }

    /// The connection string the sidecar is given.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes the rows of `repos` (one transaction) and returns their ids.
    pub async fn insert_repos(&self, repos: &[NewRepo]) -> Vec<i64> {
        let shape = self.shape.expect("repos go into a database with a repo schema");
        let mut tx = self.pool.begin().await.expect("starting a transaction");
        let mut ids = Vec::with_capacity(repos.len());
        for (n, repo) in repos.iter().enumerate() {
            let external_id = format!("R{n}");
            let id: i32 = match shape {
                Shape::Sources2020_06 => sqlx::query_scalar(
                    "INSERT INTO repo (name, external_service_type, external_service_id, external_id, created_at, \
                                       deleted_at, sources) \
                     VALUES ($1, 'github', '1', $2, to_timestamp($3::float8 / 1000), \
                             CASE WHEN $4::bool THEN now() END, \
                             jsonb_build_object('extsvc:github:1', jsonb_build_object('ID', $2::text, 'CloneURL', $5::text))) \
                     RETURNING id",
                )
                .bind(&repo.name)
                .bind(&external_id)
                .bind(repo.created_at_ms as f64)
                .bind(repo.deleted)
                .bind(&repo.clone_url)
                .fetch_one(&mut *tx)
                .await
                .expect("inserting a 2020-06 repo row"),
                Shape::Cloned2020_10 => sqlx::query_scalar(
                    "INSERT INTO repo (name, external_service_type, external_service_id, external_id, created_at, \
                                       deleted_at, cloned) \
                     VALUES ($1, 'github', '1', $2, to_timestamp($3::float8 / 1000), \
                             CASE WHEN $4::bool THEN now() END, $5) \
                     RETURNING id",
                )
                .bind(&repo.name)
                .bind(&external_id)
                .bind(repo.created_at_ms as f64)
                .bind(repo.deleted)
                .bind(repo.recorded_cloned)
                .fetch_one(&mut *tx)
                .await
                .expect("inserting a 2020-10 repo row"),
                Shape::GitserverRepos2021 => sqlx::query_scalar(
                    "INSERT INTO repo (name, external_service_type, external_service_id, external_id, created_at, \
                                       deleted_at, stars) \
                     VALUES ($1, 'github', '1', $2, to_timestamp($3::float8 / 1000), \
                             CASE WHEN $4::bool THEN now() END, $5) \
                     RETURNING id",
                )
                .bind(&repo.name)
                .bind(&external_id)
                .bind(repo.created_at_ms as f64)
                .bind(repo.deleted)
                .bind(repo.stars)
                .fetch_one(&mut *tx)
                .await
                .expect("inserting a 2021 repo row"),
            };
            if shape != Shape::Sources2020_06 {
                sqlx::query(
                    "INSERT INTO external_service_repos (external_service_id, repo_id, clone_url) VALUES (1, $1, $2)",
                )
                .bind(id)
                .bind(&repo.clone_url)
                .execute(&mut *tx)
                .await
                .expect("inserting an external_service_repos row");
            }
            if shape == Shape::GitserverRepos2021 && repo.recorded_cloned {
                sqlx::query(
                    "INSERT INTO gitserver_repos (repo_id, clone_status, shard_id) VALUES ($1, 'cloned', 'gone:3178')",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .expect("inserting a gitserver_repos row");
            }
            ids.push(i64::from(id));
        }
        tx.commit().await.expect("committing the repo rows");
        ids
    }

    /// The stored attempt record of `repo` (a normalised name). An error while the sidecar has
    /// not created the table yet is returned, not a panic, so that callers can poll.
    pub async fn attempt(&self, repo: &str) -> Result<Option<AttemptRow>, String> {
        let row: Option<AttemptTuple> = sqlx::query_as(
            "SELECT attempts::bigint, last_error, last_attempt_at, next_attempt_at, in_flight, gave_up \
               FROM clonekeeper_attempts WHERE repo_name = $1",
        )
        .bind(repo)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| format!("reading clonekeeper_attempts: {error}"))?;
        Ok(row.map(|(attempts, last_error, last_attempt_at, next_attempt_at, in_flight, gave_up)| AttemptRow {
            attempts,
            last_error,
            last_attempt_at,
            next_attempt_at,
            in_flight,
            gave_up,
        }))
    }

    /// Names of every stored attempt record, and whether it is marked in flight.
    pub async fn attempt_names(&self) -> Result<Vec<(String, bool)>, String> {
        sqlx::query_as("SELECT repo_name, in_flight FROM clonekeeper_attempts ORDER BY repo_name")
            .fetch_all(&self.pool)
            .await
            .map_err(|error| format!("reading clonekeeper_attempts: {error}"))
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a future; a thread with
        // its own runtime can. `WITH (FORCE)` ends the sidecar's and the pool's connections.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async move {
                let mut admin = PgConnection::connect_with(&admin_options()).await.ok()?;
                admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("Could not drop test database {}; drop it by hand.", self.name);
        }
    }
}

//! Test helpers for real databases: a fresh, uniquely named Postgres database per test,
//! dropped afterwards (best effort, even when the test panics), and a SQLite file in a
//! temporary directory.
//!
//! The Postgres server comes from `CLONEKEEPER_TEST_PG` (an admin URL whose user may create
//! databases), by default the local trust-auth server.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};

use super::Database;

/// The admin URL used when `CLONEKEEPER_TEST_PG` is not set.
pub(crate) const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL: `CLONEKEEPER_TEST_PG` or [`DEFAULT_ADMIN_URL`].
pub(crate) fn admin_url() -> String {
    std::env::var("CLONEKEEPER_TEST_PG").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

pub(crate) fn admin_options() -> PgConnectOptions {
    PgConnectOptions::from_str(&admin_url()).expect("CLONEKEEPER_TEST_PG is a Postgres URL")
}

/// A database created for one test and dropped when this value is dropped.
pub(crate) struct PgTestDb {
    name: String,
    url: String,
}

impl PgTestDb {
    /// Creates `ck_<pid>_<nanos>_<n>` on the admin server.
    pub(crate) async fn create() -> PgTestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_nanos();
        let name = format!("ck_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect_with(&admin_options())
            .await
            .expect("the test Postgres server (CLONEKEEPER_TEST_PG) is reachable");
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("the admin user may create databases");
        admin.close().await.expect("closing the admin connection");
        let url = with_database(&admin_url(), &name);
        PgTestDb { name, url }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A new pool on this database.
    pub(crate) async fn connect(&self) -> Database {
        Database::connect(&self.url).await.expect("connecting to the test database")
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a future; a thread with
        // its own runtime can. `WITH (FORCE)` ends connections the test left open.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database");
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

/// `url` pointing at database `name` instead of its own, keeping host, user and parameters.
fn with_database(url: &str, name: &str) -> String {
    let authority_start = url.find("://").map_or(0, |at| at + 3);
    let rest = &url[authority_start..];
    let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[path_start..].find('?').map_or("", |at| &rest[path_start + at..]);
    format!("{}/{name}{query}", &url[..authority_start + path_start])
}

/// A SQLite database file in a temporary directory, removed when this value is dropped.
pub(crate) struct SqliteTestDb {
    _dir: tempfile::TempDir,
    url: String,
}

impl SqliteTestDb {
    pub(crate) fn create() -> SqliteTestDb {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite:{}", dir.path().join("test.db").display());
        SqliteTestDb { _dir: dir, url }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A new pool on this database (creating the file the first time).
    pub(crate) async fn connect(&self) -> Database {
        Database::connect(&self.url).await.expect("opening the test SQLite database")
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "ck_1"),
            "postgres://postgres@127.0.0.1:5432/ck_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "ck_1"),
            "postgres://u:p@h/ck_1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "ck_1"), "postgres://h/ck_1");
    }
}

//! Connections to the databases clonekeeper talks to: the repo DB it reads the desired repos
//! from, and the state DB it keeps attempt records in (by default the same database).
//!
//! Both may be Postgres (a real deployment) or SQLite (the demo and small setups), chosen by
//! the URL's scheme. Every message that mentions a URL shows it through [`redact_url`], so a
//! password in a connection string never reaches a log line.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub mod refusal;
#[cfg(test)]
pub(crate) mod test_support;

/// Connections per pool. clonekeeper runs one streaming read per tick plus small batched
/// writes, so a few connections are plenty and leave the repo DB's connection budget alone.
const POOL_SIZE: u32 = 4;

/// How long a caller waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Server-side bounds on every statement of a pool's sessions, so a locked table or a runaway
/// query fails with an error that names it instead of hanging a tick.
///
/// Postgres gets them as session settings at connect time (`statement_timeout`,
/// `lock_timeout`); SQLite has no statement timeout, and its lock wait is the busy timeout.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DbTimeouts {
    pub statement: Duration,
    pub lock: Duration,
}

impl Default for DbTimeouts {
    fn default() -> DbTimeouts {
        DbTimeouts { statement: Duration::from_secs(120), lock: Duration::from_secs(10) }
    }
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "database URL {url}: unsupported scheme `{scheme}` \
         (expected postgres://, postgresql:// or sqlite:)"
    )]
    UnsupportedScheme { url: String, scheme: String },
    #[error("database URL {url}: not a valid connection string")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database {url}: connecting failed")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
}

/// A pool of connections to one database, Postgres or SQLite.
///
/// Cloning is cheap (the pools are reference-counted), so the repo DB and the state DB can
/// share one pool when they are the same database.
#[derive(Clone, Debug)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Opens a pool for `url`; shorthand for [`Database::connect`].
pub async fn connect(url: &str) -> Result<Database, DbError> {
    Database::connect(url).await
}

impl Database {
    /// Opens a small pool for `url`, choosing the backend by scheme: `postgres://` or
    /// `postgresql://` for Postgres, `sqlite:` for SQLite.
    ///
    /// Connects eagerly, so a wrong URL or an unreachable server fails here, at startup,
    /// rather than on the first tick. A SQLite file is created if missing and opened in WAL
    /// mode with a busy timeout, so a reader never blocks the writer and two writers wait
    /// for each other instead of failing at once.
    pub async fn connect(url: &str) -> Result<Database, DbError> {
        Database::connect_with(url, DbTimeouts::default()).await
    }

    /// [`Database::connect`] with the given statement and lock timeouts.
    pub async fn connect_with(url: &str, timeouts: DbTimeouts) -> Result<Database, DbError> {
        let redacted = redact_url(url);
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => {
                let millis = |d: Duration| d.as_millis().max(1).to_string();
                let options = PgConnectOptions::from_str(url)
                    .map_err(|source| DbError::InvalidUrl { url: redacted.clone(), source })?
                    .options([
                        ("statement_timeout", millis(timeouts.statement)),
                        ("lock_timeout", millis(timeouts.lock)),
                    ]);
                let pool = PgPoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|source| DbError::Connect { url: redacted, source })?;
                Ok(Database::Postgres(pool))
            }
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|source| DbError::InvalidUrl { url: redacted.clone(), source })?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(timeouts.lock);
                let mut pool_options =
                    SqlitePoolOptions::new().max_connections(POOL_SIZE).acquire_timeout(ACQUIRE_TIMEOUT);
                if is_sqlite_in_memory(url) {
                    // An in-memory database lives as long as one connection to it: keep one
                    // open for the life of the pool.
                    pool_options = pool_options.min_connections(1).idle_timeout(None).max_lifetime(None);
                }
                let pool = pool_options
                    .connect_with(options)
                    .await
                    .map_err(|source| DbError::Connect { url: redacted, source })?;
                Ok(Database::Sqlite(pool))
            }
            _ => Err(DbError::UnsupportedScheme {
                scheme: if is_plausible_scheme(scheme) { scheme.to_owned() } else { String::new() },
                url: redacted,
            }),
        }
    }

    /// Where this pool points, without credentials, for error messages and logs:
    /// `postgres://host:port/dbname` or `sqlite:path`.
    pub fn describe(&self) -> String {
        self.to_string()
    }

    /// Closes every connection of the pool and waits for them to finish.
    pub async fn close(&self) {
        match self {
            Database::Postgres(pool) => pool.close().await,
            Database::Sqlite(pool) => pool.close().await,
        }
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Postgres(pool) => {
                let options = pool.connect_options();
                let database = options.get_database().unwrap_or("");
                match options.get_socket() {
                    Some(socket) => write!(f, "postgres:{}/{database}", socket.display()),
                    None => write!(f, "postgres://{}:{}/{database}", options.get_host(), options.get_port()),
                }
            }
            Database::Sqlite(pool) => {
                write!(f, "sqlite:{}", pool.connect_options().get_filename().display())
            }
        }
    }
}

/// `url` with its userinfo and any `password` query parameter replaced by `***`, for
/// messages and logs.
///
/// Errs towards hiding too much: everything up to the last `@` before the query is treated
/// as userinfo, so a password containing `/` is hidden too (at the price of also hiding
/// part of a SQLite path that contains `@`).
pub fn redact_url(url: &str) -> String {
    let (prefix, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let query_start = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_start);
    let mut redacted = String::with_capacity(url.len());
    redacted.push_str(prefix);
    match before_query.rfind('@') {
        Some(at) => {
            redacted.push_str("***");
            redacted.push_str(&before_query[at..]);
        }
        None => redacted.push_str(before_query),
    }
    redacted.push_str(&redact_query(query));
    redacted
}

/// Replaces the value of every query parameter whose name mentions `password`
/// (`password`, `sslpassword`) with `***`.
fn redact_query(query: &str) -> String {
    let Some(params) = query.strip_prefix('?') else {
        return query.to_owned();
    };
    let (params, fragment) = match params.find('#') {
        Some(at) => params.split_at(at),
        None => (params, ""),
    };
    let redacted: Vec<String> = params
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                format!("{key}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("?{}{fragment}", redacted.join("&"))
}

/// Whether `scheme` has the shape of a URL scheme (RFC 3986), so that naming it in an error
/// cannot echo, say, the user name of a `user:password@host` string given without scheme.
fn is_plausible_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && scheme.len() <= 32
}

fn is_sqlite_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_userinfo_and_password_parameters() {
        let cases = [
            ("postgres://sg:secret@db.internal:5432/sg", "postgres://***@db.internal:5432/sg"),
            ("postgres://sg:pa/ss@db.internal/sg?sslmode=require", "postgres://***@db.internal/sg?sslmode=require"),
            (
                "postgresql://db/sg?user=sg&password=secret&sslpassword=k",
                "postgresql://db/sg?user=sg&password=***&sslpassword=***",
            ),
            ("postgres://db.internal/sg", "postgres://db.internal/sg"),
            ("sqlite:/var/lib/ck/repos.db?mode=rwc", "sqlite:/var/lib/ck/repos.db?mode=rwc"),
            ("sg:secret@db.internal/sg", "***@db.internal/sg"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "redacting {url}");
        }
    }

    #[tokio::test]
    async fn unsupported_scheme_is_named_without_the_password() {
        let error = Database::connect("mysql://root:hunter2@db/sg").await.expect_err("mysql is not supported");
        let message = error.to_string();
        assert!(message.contains("`mysql`"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("mysql://***@db/sg"), "{message}");
    }

    #[tokio::test]
    async fn connect_failure_message_hides_the_password() {
        // A role that does not exist fails at once (a refused connection would be retried
        // until the acquire timeout).
        let admin = test_support::admin_options();
        let url = format!("postgres://ck_no_such_role:hunter2@{}:{}/postgres", admin.get_host(), admin.get_port());
        let error = Database::connect(&url).await.expect_err("the role does not exist");
        let message = format!("{error}: {:?}", std::error::Error::source(&error));
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("postgres://***@"), "{message}");
    }

    #[tokio::test]
    async fn sqlite_file_is_created_and_described() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("new.db");
        let db = Database::connect(&format!("sqlite:{}", path.display())).await.expect("SQLite creates the file");
        assert!(path.exists());
        assert_eq!(db.describe(), format!("sqlite:{}", path.display()));
        let Database::Sqlite(pool) = &db else { panic!("sqlite: URL opens SQLite") };
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.expect("journal mode");
        assert_eq!(mode, "wal");
        db.close().await;
    }

    #[tokio::test]
    async fn postgres_connects_and_describes_itself() {
        let test_db = test_support::PgTestDb::create().await;
        let db = test_db.connect().await;
        assert!(matches!(db, Database::Postgres(_)));
        assert!(db.describe().ends_with(&format!("/{}", test_db.name())), "{}", db.describe());
        db.close().await;
    }

    #[tokio::test]
    async fn postgres_sessions_carry_the_statement_and_lock_timeouts() {
        let test_db = test_support::PgTestDb::create().await;
        let timeouts = DbTimeouts { statement: Duration::from_millis(1500), lock: Duration::from_millis(250) };
        let db = Database::connect_with(test_db.url(), timeouts).await.expect("connecting");
        let Database::Postgres(pool) = &db else { panic!("postgres: URL opens Postgres") };
        let statement: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(pool).await.expect("SHOW");
        let lock: String = sqlx::query_scalar("SHOW lock_timeout").fetch_one(pool).await.expect("SHOW");
        assert_eq!((statement.as_str(), lock.as_str()), ("1500ms", "250ms"));
        let error =
            sqlx::query("SELECT pg_sleep(3)").execute(pool).await.expect_err("the statement timeout cancels it");
        assert!(error.to_string().contains("statement timeout"), "{error}");
        db.close().await;
    }
}

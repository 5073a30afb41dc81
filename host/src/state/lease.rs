//! The leader lease of several replicas: a Postgres advisory lock held on a session of its own
//! in the state DB, and an epoch that every new leader bumps.
//!
//! Postgres releases a session's advisory locks the moment the session ends (the process
//! dies, the network drops, `pg_terminate_backend`), so a standby can take the lock at once.
//! Two things keep the old and the new leader from dispatching together:
//! - the epoch: the new leader bumps it when it takes the lock, and every write of attempt
//!   records is fenced with the writer's epoch ([`super::StateStore::fenced`]); a replica only
//!   dispatches once its started attempt is stored, so an old leader cannot dispatch past the
//!   bump;
//! - the takeover delay: the new leader waits before its first dispatch for longer than the old
//!   one takes to notice the loss of its session (`[ha] takeover_delay` > 2 × `check_interval`),
//!   covering the calls the old leader had already made.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::db::redact_url;
use crate::model::Timestamp;

/// A held lease: the lock session and the epoch this replica leads as.
#[derive(Debug)]
pub struct Lease {
    session: PgConnection,
    epoch: i64,
    db: String,
}

/// Why the lease could not be taken or was lost.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("state DB {db}: the lock session failed: {source}")]
    Session {
        db: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("state DB {db}: the lock session did not answer within {}", humantime::format_duration(*.bound))]
    Timeout { db: String, bound: Duration },
    #[error("state DB {db}: epoch {ours} was superseded by epoch {current:?}")]
    Superseded { db: String, ours: i64, current: Option<i64> },
}

impl Lease {
    /// Tries once to take the lock under `key`. `Ok(None)`: another replica holds it. Every
    /// call on the session is bounded by `bound`.
    pub async fn try_acquire(url: &str, key: i64, holder: &str, bound: Duration) -> Result<Option<Lease>, LeaseError> {
        let db = redact_url(url);
        let session_error = |source| LeaseError::Session { db: db.clone(), source };
        let timeout = |_| LeaseError::Timeout { db: db.clone(), bound };
        let options: PgConnectOptions = url.parse().map_err(session_error)?;
        let options = options.application_name("clonekeeper-lease").log_statements(tracing::log::LevelFilter::Trace);
        let mut session =
            tokio::time::timeout(bound, options.connect()).await.map_err(timeout)?.map_err(session_error)?;
        let got: bool = tokio::time::timeout(
            bound,
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut session),
        )
        .await
        .map_err(timeout)?
        .map_err(session_error)?;
        if !got {
            let _ = session.close().await;
            return Ok(None);
        }
        // The bump waits for writes still fenced with the old epoch (they hold a share lock on
        // the row), and every write after it sees the new epoch.
        let epoch: i64 = tokio::time::timeout(
            bound,
            sqlx::query_scalar(
                "INSERT INTO clonekeeper_leader (id, epoch, holder, since) VALUES (1, 1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE \
                    SET epoch = clonekeeper_leader.epoch + 1, holder = EXCLUDED.holder, since = EXCLUDED.since \
                 RETURNING epoch",
            )
            .bind(holder)
            .bind(Timestamp::now().as_millis())
            .fetch_one(&mut session),
        )
        .await
        .map_err(timeout)?
        .map_err(session_error)?;
        Ok(Some(Lease { session, epoch, db }))
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Checks that the session is alive (so the lock is held) and the epoch still ours.
    pub async fn check(&mut self, bound: Duration) -> Result<(), LeaseError> {
        let query =
            sqlx::query_scalar("SELECT epoch FROM clonekeeper_leader WHERE id = 1").fetch_optional(&mut self.session);
        let current: Option<i64> = tokio::time::timeout(bound, query)
            .await
            .map_err(|_| LeaseError::Timeout { db: self.db.clone(), bound })?
            .map_err(|source| LeaseError::Session { db: self.db.clone(), source })?;
        if current != Some(self.epoch) {
            return Err(LeaseError::Superseded { db: self.db.clone(), ours: self.epoch, current });
        }
        Ok(())
    }

    /// Gives the lock up (at shutdown), so a standby need not wait for the session to time out.
    pub async fn release(self) {
        let _ = self.session.close().await;
    }
}

//! The records a database refused: logged, counted and kept (the latest few) for the status,
//! so a refusal that was set aside is seen rather than silently dropped.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter;

use crate::db::refusal::Refused;
use crate::status::RefusedRecords;

/// How many refusals the status names.
const SAMPLE: usize = 20;

/// One database's refusals; shared by the writer that meets them and the status that shows
/// them.
#[derive(Debug)]
pub struct RefusalLog {
    /// `state DB` or `repo DB`, for log lines.
    db: &'static str,
    counter: Counter,
    inner: Mutex<RefusedRecords>,
}

impl RefusalLog {
    pub fn new(db: &'static str, counter: Counter) -> RefusalLog {
        RefusalLog { db, counter, inner: Mutex::new(RefusedRecords::default()) }
    }

    /// Logs each refusal with the repo's name and the database's message, counts it, and
    /// keeps it in the sample (one line per repo, newest last).
    pub fn record(&self, refused: &[Refused]) {
        if refused.is_empty() {
            return;
        }
        for Refused { name, message } in refused {
            tracing::warn!(repo = %name, db = self.db, error = %message, "The database refused a record; set it aside and wrote the others.");
        }
        self.counter.inc_by(refused.len() as u64);
        // Plain data, consistent after any panic: a poisoned lock is still usable.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.total += refused.len() as u64;
        let mut sample: VecDeque<String> = std::mem::take(&mut inner.sample).into();
        for Refused { name, message } in refused {
            let prefix = format!("{name}: ");
            sample.retain(|line| !line.starts_with(&prefix));
            sample.push_back(format!("{prefix}{message}"));
            while sample.len() > SAMPLE {
                sample.pop_front();
            }
        }
        inner.sample = sample.into();
    }

    /// What the status shows.
    pub fn snapshot(&self) -> RefusedRecords {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

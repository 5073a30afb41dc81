//! Test instrumentation behind `GET /debug/dispatches`; the real gitserver had nothing like
//! it.
//!
//! It answers two questions a test of a gitserver client cannot answer from the outside:
//! in which order did clones start, and did the client ever send two `/repo-update` requests
//! for one repository at the same time? Every `/repo-update` request is counted while it is
//! being handled (including those answered "already cloned" or "in progress"), and the
//! largest count seen per repository is kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One `/repo-update` request that started a clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchEvent {
    /// Normalised repository name.
    pub repo: String,
    /// Position in arrival order, starting at 1; increases with every event.
    pub seq: u64,
    /// When the request started the clone, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

/// Body of `GET /debug/dispatches`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchLog {
    /// Every `/repo-update` that started a clone, in arrival order.
    pub events: Vec<DispatchEvent>,
    /// Per normalised repository name: the largest number of `/repo-update` requests for it
    /// that were being handled at the same time. 1 means the client never overlapped them.
    pub max_concurrent: BTreeMap<String, usize>,
    /// Number of events, i.e. of clones started since the server started.
    pub total: usize,
}

/// The recorder shared by all request handlers of one server.
#[derive(Debug, Default)]
pub(crate) struct Dispatches {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<DispatchEvent>,
    in_flight: HashMap<String, usize>,
    max_concurrent: BTreeMap<String, usize>,
}

impl Dispatches {
    /// Counts one `/repo-update` request for `repo` as being handled until the returned guard
    /// is dropped, which also happens when the client disconnects and the handler is dropped.
    pub(crate) fn enter(self: &Arc<Self>, repo: &str) -> InFlight {
        let mut inner = self.lock();
        let current = inner.in_flight.entry(repo.to_owned()).or_default();
        *current += 1;
        let current = *current;
        let max = inner.max_concurrent.entry(repo.to_owned()).or_default();
        *max = (*max).max(current);
        InFlight { dispatches: Arc::clone(self), repo: repo.to_owned() }
    }

    /// Records that a `/repo-update` request for `repo` started a clone.
    pub(crate) fn record_clone_start(&self, repo: &str) {
        let started_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        let mut inner = self.lock();
        let seq = inner.events.len() as u64 + 1;
        inner.events.push(DispatchEvent { repo: repo.to_owned(), seq, started_at_ms });
    }

    /// What has been recorded so far.
    pub(crate) fn snapshot(&self) -> DispatchLog {
        let inner = self.lock();
        DispatchLog {
            events: inner.events.clone(),
            max_concurrent: inner.max_concurrent.clone(),
            total: inner.events.len(),
        }
    }

    /// The recorder holds plain counters, consistent after any panic, so a poisoned lock is
    /// still usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One `/repo-update` request being handled; see [`Dispatches::enter`].
#[derive(Debug)]
pub(crate) struct InFlight {
    dispatches: Arc<Dispatches>,
    repo: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = self.dispatches.lock();
        if let Some(current) = inner.in_flight.get_mut(&self.repo) {
            *current -= 1;
            if *current == 0 {
                inner.in_flight.remove(&self.repo);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_peak_of_overlapping_requests_per_repo() {
        let dispatches = Arc::new(Dispatches::default());
        let first = dispatches.enter("a");
        let second = dispatches.enter("a");
        dispatches.record_clone_start("a");
        drop(first);
        drop(second);
        let _third = dispatches.enter("a");
        let _other = dispatches.enter("b");
        dispatches.record_clone_start("b");
        let log = dispatches.snapshot();
        assert_eq!(log.max_concurrent, BTreeMap::from([("a".into(), 2), ("b".into(), 1)]));
        assert_eq!(log.total, 2);
        let order: Vec<_> = log.events.iter().map(|e| (e.repo.as_str(), e.seq)).collect();
        assert_eq!(order, [("a", 1), ("b", 2)]);
    }
}

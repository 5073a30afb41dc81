//! The single writer of attempt records: every change to `clonekeeper_attempts` goes through
//! this task, in the order the tick loop made them, so an older record can never overwrite a
//! newer one.
//!
//! Changes that arrive together are written together (the latest per repo). When the state
//! DB cannot be used, everything pending is kept and retried with a bounded backoff, so an
//! outage loses nothing. A record the state DB refuses is set aside (logged, counted, shown
//! in the status) and never holds up the others. A change can be acknowledged: the dispatch
//! of a started attempt waits (with a bound) until the record is stored.
//!
//! With several replicas the store is fenced with this leader's epoch: once another replica
//! leads, the writer is refused, says so through [`Persister::fenced`], and writes nothing
//! more (every waiter is told), so the loop steps down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::refused::RefusalLog;
use crate::error_chain::error_chain;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::model::{AttemptRecord, RepoName, Timestamp};
use crate::state::StateStore;

/// First wait before retrying a write the state DB could not take.
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// A change to the durable attempt state.
#[derive(Debug)]
pub enum Change {
    Save(RepoName, AttemptRecord),
    /// The repo is confirmed cloned: its record is no longer needed.
    Forget(RepoName),
}

/// Whether an acknowledged change is stored: `Err` says why not (the state DB is
/// unavailable, refused it, or the writer stopped).
pub type Stored = Result<(), String>;

/// Resolves once the change it acknowledges (or a newer change of the same repo) was written,
/// or its write failed.
#[derive(Debug)]
pub struct Ack(oneshot::Receiver<Stored>);

impl Ack {
    pub async fn stored(self) -> Stored {
        self.0.await.unwrap_or_else(|_| Err("the attempt-state writer stopped".to_owned()))
    }
}

/// The records the databases refused, kept for the status and metrics.
#[derive(Debug)]
pub struct Refusals {
    pub state: RefusalLog,
    /// Write-back rows the repo DB refused (recorded by the write-back task).
    pub repo_db: RefusalLog,
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Persister {
    tx: mpsc::UnboundedSender<(Change, Option<oneshot::Sender<Stored>>)>,
    refusals: Arc<Refusals>,
    fenced: watch::Receiver<Option<String>>,
}

impl Persister {
    /// Starts the writer task; it ends when every `Persister` is dropped and all is written.
    ///
    /// `liveness` learns how long records have waited for the state DB, so a state DB that
    /// hangs or refuses every write shows on `/readyz`.
    pub fn start(
        state: StateStore,
        metrics: &Metrics,
        liveness: Option<Arc<Liveness>>,
    ) -> (Persister, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let refusals = Arc::new(Refusals {
            state: RefusalLog::new("state DB", metrics.state_records_refused.clone()),
            repo_db: RefusalLog::new("repo DB", metrics.writeback_records_refused.clone()),
        });
        let (fenced_tx, fenced) = watch::channel(None);
        let writer = tokio::spawn(write_loop(state, rx, Arc::clone(&refusals), liveness, fenced_tx));
        (Persister { tx, refusals, fenced }, writer)
    }

    /// Resolves with the reason once the state DB refused a write because another replica
    /// leads (never, with one replica).
    pub async fn fenced(&self) -> String {
        let mut fenced = self.fenced.clone();
        let reason = fenced.wait_for(Option::is_some).await.map(|reason| reason.clone().unwrap_or_default());
        match reason {
            Ok(reason) => reason,
            // The writer ended without being fenced (shutdown): never resolve.
            Err(_) => std::future::pending().await,
        }
    }

    pub fn save(&self, name: RepoName, record: AttemptRecord) {
        // The writer lives as long as any sender; a send only fails during shutdown.
        let _ = self.tx.send((Change::Save(name, record), None));
    }

    /// Like [`Persister::save`], with an acknowledgement of the write: a dispatch awaits it
    /// before its call, so a started attempt is stored first.
    pub fn save_acked(&self, name: RepoName, record: AttemptRecord) -> Ack {
        let (ack, stored) = oneshot::channel();
        // A failed send drops `ack`, which the receiver reads as "the writer stopped".
        let _ = self.tx.send((Change::Save(name, record), Some(ack)));
        Ack(stored)
    }

    pub fn forget(&self, name: RepoName) {
        let _ = self.tx.send((Change::Forget(name), None));
    }

    /// The records refused so far, by the state DB and by the repo DB's write-back.
    pub fn refusals(&self) -> &Arc<Refusals> {
        &self.refusals
    }
}

/// The latest change of one repo not yet written, and who waits for it.
#[derive(Debug)]
struct Pending {
    /// `None`: forget.
    record: Option<AttemptRecord>,
    acks: Vec<oneshot::Sender<Stored>>,
}

type PendingMap = HashMap<RepoName, Pending>;

async fn write_loop(
    state: StateStore,
    mut rx: mpsc::UnboundedReceiver<(Change, Option<oneshot::Sender<Stored>>)>,
    refusals: Arc<Refusals>,
    liveness: Option<Arc<Liveness>>,
    fenced: watch::Sender<Option<String>>,
) {
    let mut pending = PendingMap::new();
    let mut retry_in = RETRY_FIRST;
    let report_backlog = |since: Option<Timestamp>| {
        if let Some(liveness) = &liveness {
            liveness.state_unwritten_since(since);
        }
    };
    loop {
        if pending.is_empty() {
            report_backlog(None);
            match rx.recv().await {
                Some((change, ack)) => apply(&mut pending, change, ack),
                None => return,
            }
            // The backlog's age counts from its oldest change; later ones join it.
            report_backlog(Some(Timestamp::now()));
        }
        while let Ok((change, ack)) = rx.try_recv() {
            apply(&mut pending, change, ack);
        }
        let error = match write(&state, &mut pending, &refusals.state).await {
            Ok(()) => {
                retry_in = RETRY_FIRST;
                continue;
            }
            Err(WriteFailure { fenced: true, message }) => {
                tracing::warn!(%message, pending = pending.len(), "Another replica leads: this one writes no more attempt state.");
                let refused = Err(format!("not stored: {message}"));
                for entry in pending.values_mut() {
                    answer(&mut entry.acks, &refused);
                }
                report_backlog(None);
                let _ = fenced.send(Some(message));
                // Whatever comes later is refused too, until the loop has stepped down.
                while let Some((_, ack)) = rx.recv().await {
                    if let Some(ack) = ack {
                        let _ = ack.send(refused.clone());
                    }
                }
                return;
            }
            Err(WriteFailure { message, .. }) => message,
        };
        tracing::warn!(
            pending = pending.len(),
            %error,
            retry_in_ms = retry_in.as_millis() as u64,
            "Writing attempt state failed; keeping it to retry."
        );
        // Whoever waits learns now that the state DB is unavailable; the records stay pending.
        for entry in pending.values_mut() {
            answer(&mut entry.acks, &Err(format!("the state DB is unavailable: {error}")));
        }
        // Wait, taking new changes meanwhile; a change that waits is told at once that the
        // state DB is unavailable rather than held until the retry.
        let retry = tokio::time::sleep(retry_in);
        tokio::pin!(retry);
        let mut open = true;
        while open {
            tokio::select! {
                () = &mut retry => break,
                received = rx.recv() => match received {
                    Some((change, ack)) => {
                        if let Some(ack) = ack {
                            // The waiter may be gone already; nothing to tell then.
                            let _ = ack.send(Err(format!("the state DB is unavailable: {error}")));
                        }
                        apply(&mut pending, change, None);
                    }
                    // Every sender is gone (shutdown): keep retrying what is pending.
                    None => open = false,
                },
            }
        }
        if !open {
            retry.await;
        }
        retry_in = (retry_in * 2).min(RETRY_MAX);
    }
}

/// Adds a change, replacing an older one of the same repo (whose waiters now wait for it).
fn apply(pending: &mut PendingMap, change: Change, ack: Option<oneshot::Sender<Stored>>) {
    let (name, record) = match change {
        Change::Save(name, record) => (name, Some(record)),
        Change::Forget(name) => (name, None),
    };
    let entry = pending.entry(name).or_insert(Pending { record: None, acks: Vec::new() });
    entry.record = record;
    entry.acks.extend(ack);
}

/// Why writing failed: the state DB could not be used, or it fenced this replica off.
struct WriteFailure {
    message: String,
    fenced: bool,
}

/// Writes everything pending. What was written, or refused, leaves `pending`; on an error
/// (the state DB could not be used) the rest stays for the retry.
async fn write(state: &StateStore, pending: &mut PendingMap, refusals: &RefusalLog) -> Result<(), WriteFailure> {
    let mut saves = Vec::new();
    let mut forgets = Vec::new();
    for (name, entry) in pending.iter() {
        match &entry.record {
            Some(record) => saves.push((name.clone(), record.clone())),
            None => forgets.push(name.clone()),
        }
    }
    let failed =
        |error: &crate::state::StateError| WriteFailure { message: error_chain(error), fenced: error.is_fenced() };
    let mut failure: Option<WriteFailure> = None;
    if !saves.is_empty() {
        match state.save(&saves).await {
            Ok(written) => settle(pending, saves.iter().map(|(name, _)| name), &written.refused, refusals),
            Err(error) if error.is_fenced() => return Err(failed(&error)),
            Err(error) => failure = Some(failed(&error)),
        }
    }
    if !forgets.is_empty() {
        match state.forget(&forgets).await {
            Ok(written) => settle(pending, forgets.iter(), &written.refused, refusals),
            Err(error) if error.is_fenced() => return Err(failed(&error)),
            Err(error) => failure = failure.or(Some(failed(&error))),
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Takes the written and refused repos out of `pending`, telling their waiters.
fn settle<'a>(
    pending: &mut PendingMap,
    names: impl Iterator<Item = &'a RepoName>,
    refused: &[crate::db::refusal::Refused],
    refusals: &RefusalLog,
) {
    refusals.record(refused);
    let refused: HashMap<&RepoName, &str> = refused.iter().map(|r| (&r.name, r.message.as_str())).collect();
    for name in names {
        if let Some(mut entry) = pending.remove(name) {
            let stored = match refused.get(name) {
                Some(message) => Err(format!("the state DB refused the record: {message}")),
                None => Ok(()),
            };
            answer(&mut entry.acks, &stored);
        }
    }
}

fn answer(acks: &mut Vec<oneshot::Sender<Stored>>, stored: &Stored) {
    for ack in acks.drain(..) {
        // The waiter may have stopped waiting (its bound passed); nothing to tell then.
        let _ = ack.send(stored.clone());
    }
}

#[cfg(test)]
#[path = "persist_tests.rs"]
mod tests;

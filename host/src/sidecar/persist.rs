//! Writes attempt records to the state DB off the tick loop, batching what arrives together
//! and retrying until the state DB takes it, so an outage of the state DB loses nothing.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error_chain::error_chain;
use crate::model::{AttemptRecord, RepoName};
use crate::state::StateStore;

/// A change to the durable attempt state.
#[derive(Debug)]
pub enum Change {
    Save(RepoName, AttemptRecord),
    /// The repo is confirmed cloned: its record is no longer needed.
    Forget(RepoName),
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Persister {
    tx: mpsc::UnboundedSender<Change>,
}

impl Persister {
    /// Starts the writer task; it ends when every `Persister` is dropped and all is written.
    pub fn start(state: StateStore) -> (Persister, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Persister { tx }, tokio::spawn(write_loop(state, rx)))
    }

    pub fn save(&self, name: RepoName, record: AttemptRecord) {
        // The writer lives as long as any sender; a send only fails during shutdown.
        let _ = self.tx.send(Change::Save(name, record));
    }

    pub fn forget(&self, name: RepoName) {
        let _ = self.tx.send(Change::Forget(name));
    }
}

async fn write_loop(state: StateStore, mut rx: mpsc::UnboundedReceiver<Change>) {
    // Latest change per repo not yet written; later changes replace earlier ones.
    let mut pending: HashMap<RepoName, Option<AttemptRecord>> = HashMap::new();
    let mut closed = false;
    while !(closed && pending.is_empty()) {
        if pending.is_empty() {
            match rx.recv().await {
                Some(change) => apply(&mut pending, change),
                None => closed = true,
            }
        }
        while let Ok(change) = rx.try_recv() {
            apply(&mut pending, change);
        }
        if pending.is_empty() {
            continue;
        }
        let mut saves = Vec::new();
        let mut forgets = Vec::new();
        for (name, change) in &pending {
            match change {
                Some(record) => saves.push((name.clone(), record.clone())),
                None => forgets.push(name.clone()),
            }
        }
        let saved = if saves.is_empty() { Ok(()) } else { state.save(&saves).await };
        let forgotten = if forgets.is_empty() { Ok(0) } else { state.forget(&forgets).await };
        match (saved, forgotten) {
            (Ok(()), Ok(_)) => pending.clear(),
            (saved, forgotten) => {
                let error = saved.err().map(|e| error_chain(&e)).or(forgotten.err().map(|e| error_chain(&e)));
                tracing::warn!(
                    pending = pending.len(),
                    error = error.as_deref().unwrap_or("unknown"),
                    "Writing attempt state failed; retrying in 1s."
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                if rx.is_closed() && rx.is_empty() {
                    closed = true;
                }
            }
        }
    }
}

fn apply(pending: &mut HashMap<RepoName, Option<AttemptRecord>>, change: Change) {
    match change {
        Change::Save(name, record) => pending.insert(name, Some(record)),
        Change::Forget(name) => pending.insert(name, None),
    };
}

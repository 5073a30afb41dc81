//! The clone queue: which repositories are being cloned, at most `max_concurrent_clones`
//! git processes at once, and the clone itself (temporary directory, then rename into place).
//!
//! Like gitserver's, the queue lives in memory only. Killing the server drops every queued
//! and running clone, and [`Layout::prepare`] deletes their temporary directories at the next
//! start, so nothing remembers that they were ever requested.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Semaphore};

use crate::git::{self, GitError};
use crate::layout::{InvalidName, Layout};

/// Why a clone did not produce a mirror. Its `Display` is the `Error` of `/repo-update`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CloneError {
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error("no clone URL")]
    NoUrl,
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the clone task ended without a result")]
    Lost,
}

/// What [`Clones::claim`] did with a `/repo-update` request.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The mirror exists; nothing to do.
    AlreadyCloned,
    /// Another request is cloning the repository; no second clone was started.
    InProgress,
    /// This request started the clone; its outcome arrives here. The clone goes on even if
    /// the receiver is dropped.
    Started(oneshot::Receiver<Result<(), CloneError>>),
}

/// What the server knows about one repository, for `/repos` and `/repo-clone-progress`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) cloned: bool,
    pub(crate) in_progress: bool,
    /// URL of the running clone, else of the last one, else empty.
    pub(crate) url: String,
    /// A human-readable phase of the running clone, else empty.
    pub(crate) progress: String,
}

/// The in-memory clone queue of one server.
#[derive(Debug)]
pub(crate) struct Clones {
    layout: Layout,
    slots: Semaphore,
    clone_delay: Duration,
    next_tmp: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Repositories with a queued or running clone, by normalised name.
    running: HashMap<String, Running>,
    /// URL of the last finished clone, by normalised name.
    last_url: HashMap<String, String>,
}

#[derive(Debug)]
struct Running {
    url: String,
    phase: Phase,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Queued,
    Cloning,
}

impl Clones {
    /// A queue that runs at most `max_concurrent` clones at once. tokio's semaphore is fair,
    /// so waiting clones start in the order they were requested.
    pub(crate) fn new(layout: Layout, max_concurrent: usize, clone_delay: Duration) -> Self {
        Clones {
            layout,
            slots: Semaphore::new(max_concurrent),
            clone_delay,
            next_tmp: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    /// The status of a normalised name.
    pub(crate) fn status(&self, name: &str) -> Status {
        let state = self.lock();
        let cloned = self.layout.is_cloned(name);
        match state.running.get(name) {
            Some(running) => Status {
                cloned,
                in_progress: true,
                url: running.url.clone(),
                progress: match running.phase {
                    Phase::Queued => "waiting for a clone slot".to_owned(),
                    Phase::Cloning => format!("cloning from {}", running.url),
                },
            },
            None => Status {
                cloned,
                in_progress: false,
                url: state.last_url.get(name).cloned().unwrap_or_default(),
                progress: String::new(),
            },
        }
    }

    /// Starts a clone of the normalised `name` from `url` unless the mirror exists or a clone
    /// is already queued or running. Must be called inside the server's runtime.
    ///
    /// The check and the claim happen under one lock, and a clone renames its mirror into
    /// place before it leaves the running set, so two requests can never both start a clone,
    /// nor can one start a clone of a repository that has just been cloned.
    pub(crate) fn claim(self: &Arc<Self>, name: &str, url: &str) -> Result<Claim, CloneError> {
        self.layout.repo_dir(name)?;
        let mut state = self.lock();
        if state.running.contains_key(name) {
            return Ok(Claim::InProgress);
        }
        if self.layout.is_cloned(name) {
            return Ok(Claim::AlreadyCloned);
        }
        if url.is_empty() {
            return Err(CloneError::NoUrl);
        }
        state.running.insert(name.to_owned(), Running { url: url.to_owned(), phase: Phase::Queued });
        drop(state);

        let (done, outcome) = oneshot::channel();
        let clones = Arc::clone(self);
        let finish = Finish { clones: Arc::clone(self), name: name.to_owned(), url: url.to_owned() };
        tokio::spawn(async move {
            let result = clones.clone_into_place(&finish.name, &finish.url).await;
            drop(finish);
            // The requester may have disconnected; the mirror is in place all the same.
            let _ = done.send(result);
        });
        Ok(Claim::Started(outcome))
    }

    /// Waits for a slot, sleeps the artificial delay, clones into the temporary area and
    /// renames the result into place.
    async fn clone_into_place(&self, name: &str, url: &str) -> Result<(), CloneError> {
        let _slot = self.slots.acquire().await.map_err(|_closed| CloneError::Lost)?;
        if let Some(running) = self.lock().running.get_mut(name) {
            running.phase = Phase::Cloning;
        }
        if !self.clone_delay.is_zero() {
            tokio::time::sleep(self.clone_delay).await;
        }
        let started = Instant::now();
        tracing::info!("Cloning {name} from {url}.");
        let tmp = self.tmp_dir();
        let result = self.clone_and_rename(name, url, &tmp).await;
        match &result {
            Ok(()) => tracing::info!("Cloned {name} in {:?}.", started.elapsed()),
            Err(err) => {
                tracing::warn!("Cloning {name} from {url} failed: {err}");
                if let Err(err) = tokio::fs::remove_dir_all(&tmp).await {
                    if err.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!("Could not remove {}: {err}.", tmp.display());
                    }
                }
            }
        }
        result
    }

    async fn clone_and_rename(&self, name: &str, url: &str, tmp: &Path) -> Result<(), CloneError> {
        git::clone_mirror(url, tmp).await?;
        let mirror = self.layout.mirror_dir(name)?;
        let repo_dir = self.layout.repo_dir(name)?;
        tokio::fs::create_dir_all(&repo_dir)
            .await
            .map_err(|source| CloneError::Io { action: format!("create {}", repo_dir.display()), source })?;
        tokio::fs::rename(tmp, &mirror)
            .await
            .map_err(|source| CloneError::Io { action: format!("move the clone to {}", mirror.display()), source })
    }

    /// A fresh directory name in the temporary area; unique within this server's lifetime,
    /// and the area is emptied at every start.
    fn tmp_dir(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.layout.tmp_root().join(format!("clone-{n}"))
    }

    /// The state is a map edited in single statements, consistent after any panic, so a
    /// poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes a repository out of the running set when its clone task ends, whether it finished,
/// failed or panicked.
struct Finish {
    clones: Arc<Clones>,
    name: String,
    url: String,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let mut state = self.clones.lock();
        state.running.remove(&self.name);
        state.last_url.insert(std::mem::take(&mut self.name), std::mem::take(&mut self.url));
    }
}

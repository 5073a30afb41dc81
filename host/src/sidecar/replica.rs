//! Several replicas (`[ha]`): following until the lease is free, keeping it while leading.
//!
//! A follower tries for the lease every `check_interval` and answers the admin API's requests
//! to the loop with a pointer to the leader. A new leader keeps its lease checked from the
//! moment it takes it, waits `takeover_delay` (so a leader that lost its session has stopped),
//! and only then loads the attempt state and dispatches. See [`crate::state::lease`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{AbortOnDrop, ControlRequest, Parts, Shared};
use crate::config::HaConfig;
use crate::state::lease::Lease;
use crate::status::Status;

/// The lease of a leader, checked by a task of its own.
pub(super) struct LeaseKeeper {
    epoch: i64,
    lost: watch::Receiver<Option<String>>,
    /// Dropping it drops the lock session, which releases the lock.
    _task: AbortOnDrop,
}

impl LeaseKeeper {
    fn start(mut lease: Lease, check_interval: Duration) -> LeaseKeeper {
        let epoch = lease.epoch();
        let (tx, lost) = watch::channel(None);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(check_interval).await;
                if let Err(error) = lease.check(check_interval).await {
                    let _ = tx.send(Some(error.to_string()));
                    // The session is dropped with the task's end: the lock is released if it was
                    // still held (a check that timed out).
                    return;
                }
            }
        });
        LeaseKeeper { epoch, lost, _task: AbortOnDrop(task) }
    }

    pub(super) fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Resolves with the reason once the lease is lost.
    pub(super) async fn lost(&self) -> String {
        let mut lost = self.lost.clone();
        let reason = lost.wait_for(Option::is_some).await.map(|reason| reason.clone().unwrap_or_default());
        reason.unwrap_or_else(|_| "the lease keeper stopped".to_string())
    }
}

/// This replica's name in the leader row: host name and process id.
pub(super) fn holder() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "unknown-host".to_string());
    format!("{host}/{}", std::process::id())
}

/// Follows until this replica takes the lease and has waited out the takeover delay, or until
/// `shutdown` resolves (`None`).
pub(super) async fn follow<F: std::future::Future<Output = ()>>(
    parts: &Arc<Parts>,
    shared: &Shared,
    ha: &HaConfig,
    holder: &str,
    control: &mut mpsc::Receiver<ControlRequest>,
    mut shutdown: Pin<&mut F>,
) -> Option<LeaseKeeper> {
    shared.status.store(Arc::new(Status { role: "follower".to_string(), ..Status::default() }));
    let mut announced_failure = false;
    loop {
        let attempt = Lease::try_acquire(
            &parts.config.state_url,
            ha.lock_key,
            holder,
            ha.check_interval.max(Duration::from_secs(2)),
        );
        let acquired = tokio::select! {
            () = &mut shutdown => return None,
            acquired = attempt => acquired,
        };
        let keeper = match acquired {
            Ok(Some(lease)) => LeaseKeeper::start(lease, ha.check_interval),
            Ok(None) | Err(_) => {
                if let Err(error) = acquired {
                    if !announced_failure {
                        tracing::warn!(%error, "Trying for the leader lease failed; trying again.");
                        announced_failure = true;
                    }
                } else {
                    announced_failure = false;
                }
                let next = tokio::time::sleep(ha.check_interval);
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        () = &mut shutdown => return None,
                        () = &mut next => break,
                        Some(request) = control.recv() => {
                            request.refuse("this replica is a follower; ask the leader (see /v1/status of each replica)");
                        }
                    }
                }
                continue;
            }
        };
        tracing::info!(
            epoch = keeper.epoch(),
            takeover_delay_ms = ha.takeover_delay.as_millis() as u64,
            "Took the leader lease; dispatching after the takeover delay."
        );
        let delay = tokio::time::sleep(ha.takeover_delay);
        tokio::pin!(delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return None,
                () = &mut delay => return Some(keeper),
                reason = keeper.lost() => {
                    tracing::warn!(%reason, "Lost the leader lease during the takeover delay; following again.");
                    break;
                }
                Some(request) = control.recv() => {
                    request.refuse("this replica is taking over as leader; ask again in a few seconds");
                }
            }
        }
    }
}

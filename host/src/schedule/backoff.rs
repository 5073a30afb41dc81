//! When to retry a failed dispatch: exponential backoff with a ceiling, behind the
//! [`RetryPolicy`] trait that the policy engine's `reenqueue` implements.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use super::priority::BUILTIN;
use crate::model::{AttemptRecord, DesiredRepo, RepoName, ShardIdx, Timestamp};
use crate::reconcile::RepoState;

/// Exponential backoff: `base · 2^(attempts-1)`, capped at `max`, plus up to 25% jitter so
/// the repos of a shard that went down together do not retry in lockstep. The jitter is a
/// hash of the name and attempt, so the same inputs give the same delay.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { base: Duration::from_secs(10), max: Duration::from_secs(30 * 60) }
    }
}

impl Backoff {
    /// The delay after the `attempts`-th failed attempt (1-based).
    pub fn delay(&self, attempts: u32, name: &RepoName) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exponent).min(self.max);
        let mut hasher = std::hash::DefaultHasher::new();
        (name, attempts).hash(&mut hasher);
        let jitter_permille = hasher.finish() % 251;
        let jittered = raw + raw.mul_f64(jitter_permille as f64 / 1000.0);
        jittered.min(self.max)
    }
}

/// One failed dispatch, as a retry policy sees it.
#[derive(Copy, Clone, Debug)]
pub struct Failure<'a> {
    pub name: &'a RepoName,
    /// The record including this attempt and its error.
    pub record: &'a AttemptRecord,
    /// The repo's row, when the caller still has it (a policy sees its metadata).
    pub repo: Option<&'a DesiredRepo>,
    /// The owning shard.
    pub shard: ShardIdx,
    /// The repo's state as the policy should see it (usually `Failed`).
    pub state: RepoState,
}

/// What to do after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Dispatch again no earlier than this.
    RetryAt(Timestamp),
    /// Stop dispatching this repo; the reason is stored and shown in status.
    GiveUp { reason: String },
}

/// Decides retries for a batch of failures (one decision per failure, in order).
pub trait RetryPolicy: Send + Sync {
    fn on_failures(&self, batch: &[Failure<'_>], now: Timestamp) -> Vec<RetryDecision>;

    /// Like [`RetryPolicy::on_failures`], also naming who answered (a module digest, or
    /// `builtin`).
    fn on_failures_traced(&self, batch: &[Failure<'_>], now: Timestamp) -> (Vec<RetryDecision>, Arc<str>) {
        (self.on_failures(batch, now), Arc::from(BUILTIN))
    }
}

/// The built-in retry rhythm: exponential backoff, and optionally give up after
/// `max_attempts`.
#[derive(Clone, Debug, Default)]
pub struct BuiltinRetry {
    pub backoff: Backoff,
    pub max_attempts: Option<u32>,
}

impl RetryPolicy for BuiltinRetry {
    fn on_failures(&self, batch: &[Failure<'_>], now: Timestamp) -> Vec<RetryDecision> {
        batch
            .iter()
            .map(|failure| {
                let attempts = failure.record.attempts;
                match self.max_attempts {
                    Some(max) if attempts >= max => {
                        RetryDecision::GiveUp { reason: format!("gave up after {attempts} failed attempts") }
                    }
                    _ => RetryDecision::RetryAt(now.saturating_add(self.backoff.delay(attempts, failure.name))),
                }
            })
            .collect()
    }
}

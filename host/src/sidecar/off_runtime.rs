//! Policy calls off the runtime's worker: the machine calls its policies synchronously, and a
//! module may take its whole deadline; on a multi-threaded runtime this worker hands its other
//! tasks (dispatches, the admin API) over meanwhile.

use std::sync::Arc;

use crate::model::Timestamp;
use crate::schedule::{Candidate, Failure, KeyLoad, LimitKey, Prioritizer, Priority, RateLimit, RateLimitPolicy};
use crate::schedule::{RetryDecision, RetryPolicy};

/// A policy seam whose every call runs through [`off_runtime`].
pub(super) struct OffRuntime<P: ?Sized>(pub Arc<P>);

impl Prioritizer for OffRuntime<dyn Prioritizer> {
    fn prioritize(&self, batch: &[Candidate<'_>], now: Timestamp) -> Vec<Priority> {
        off_runtime(|| self.0.prioritize(batch, now))
    }

    fn prioritize_traced(&self, batch: &[Candidate<'_>], now: Timestamp) -> (Vec<Priority>, Arc<str>) {
        off_runtime(|| self.0.prioritize_traced(batch, now))
    }
}

impl RetryPolicy for OffRuntime<dyn RetryPolicy> {
    fn on_failures(&self, batch: &[Failure<'_>], now: Timestamp) -> Vec<RetryDecision> {
        off_runtime(|| self.0.on_failures(batch, now))
    }

    fn on_failures_traced(&self, batch: &[Failure<'_>], now: Timestamp) -> (Vec<RetryDecision>, Arc<str>) {
        off_runtime(|| self.0.on_failures_traced(batch, now))
    }
}

impl RateLimitPolicy for OffRuntime<dyn RateLimitPolicy> {
    fn limits(&self, seen: &[KeyLoad], now: Timestamp) -> Vec<(LimitKey, RateLimit)> {
        off_runtime(|| self.0.limits(seen, now))
    }

    fn limits_traced(&self, seen: &[KeyLoad], now: Timestamp) -> (Vec<(LimitKey, RateLimit)>, Arc<str>) {
        off_runtime(|| self.0.limits_traced(seen, now))
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }
}

/// Runs `call` without stalling the runtime's other tasks: on a multi-threaded runtime this
/// worker hands its tasks over meanwhile.
fn off_runtime<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

//! The policy host behind the scheduler's three seams: `Prioritizer`, `RetryPolicy` and
//! `RateLimitPolicy` for [`PolicyHost`], each asking its chain (serving module, last good
//! module, built-in), and the conversions between the scheduler's types and the views
//! modules see (shared with shadow evaluation).

use std::sync::Arc;

use super::*;

impl Prioritizer for PolicyHost {
    fn prioritize(&self, batch: &[Candidate<'_>], now: Timestamp) -> Vec<Priority> {
        self.prioritize_traced(batch, now).0
    }

    fn prioritize_traced(&self, batch: &[Candidate<'_>], now: Timestamp) -> (Vec<Priority>, Arc<str>) {
        if self.set.load().chain(Interface::Prioritize).is_empty() {
            return (BuiltinOrder.prioritize(batch, now), Arc::from(BUILTIN));
        }
        if let budget::Admit::Spent { first, used } = self.tick_budget.admit() {
            if let Some(metrics) = self.metrics.get() {
                metrics.policy_fallbacks.inc();
            }
            if first {
                tracing::warn!(
                    budget = %humantime::format_duration(self.tick_budget.limit()),
                    used = %humantime::format_duration(used),
                    "The policy time budget of this tick ran out (policy.tick_budget); its remaining batches \
                     use the built-in order."
                );
            }
            return (BuiltinOrder.prioritize(batch, now), Arc::from(BUILTIN));
        }
        let shard_addrs = &self.config.shard_addrs;
        let started = std::time::Instant::now();
        let decided =
            self.decide(Interface::Prioritize, now, |module| module.prioritize_candidates(batch, shard_addrs, now));
        self.tick_budget.charge(started.elapsed());
        match decided {
            Some(decided) => (decided.answers, decided.digest),
            None => (BuiltinOrder.prioritize(batch, now), Arc::from(BUILTIN)),
        }
    }
}

impl RetryPolicy for PolicyHost {
    fn on_failures(&self, batch: &[Failure<'_>], now: Timestamp) -> Vec<RetryDecision> {
        self.on_failures_traced(batch, now).0
    }

    fn on_failures_traced(&self, batch: &[Failure<'_>], now: Timestamp) -> (Vec<RetryDecision>, Arc<str>) {
        if self.set.load().chain(Interface::Reenqueue).is_empty() {
            return (self.config.builtin_retry.on_failures(batch, now), Arc::from(BUILTIN));
        }
        let failures: Vec<RetryFailure> = batch.iter().map(|f| self.retry_failure(f)).collect();
        match PolicyHost::reenqueue(self, &failures, now) {
            Some(decided) => {
                let decisions = decided.answers.into_iter().map(|retry| retry_decision(retry, now)).collect();
                (decisions, decided.digest)
            }
            None => (self.config.builtin_retry.on_failures(batch, now), Arc::from(BUILTIN)),
        }
    }
}

impl PolicyHost {
    /// A failure as `reenqueue` sees it.
    pub(super) fn retry_failure(&self, f: &Failure<'_>) -> RetryFailure {
        let repo = match f.repo {
            Some(repo) => RepoView::from_repo(repo, f.state, f.shard, self.shard_addr(f.shard), Some(f.record)),
            None => RepoView {
                id: 0,
                name: f.name.as_str().to_string(),
                code_host: schedule::code_host_of(f.name.as_str()).to_string(),
                state: ViewState::Failed,
                shard: u32::from(f.shard),
                shard_addr: self.shard_addr(f.shard).to_string(),
                attempts: f.record.attempts,
                last_error: f.record.last_error.clone(),
                last_attempt_at: f.record.last_attempt_at.map(Timestamp::as_millis),
                ..RepoView::default()
            },
        };
        RetryFailure { repo, error: f.record.last_error.clone().unwrap_or_default() }
    }

    /// The loads as `rate-limits` sees them.
    pub(super) fn load_views(&self, seen: &[schedule::KeyLoad]) -> Vec<KeyLoad> {
        seen.iter()
            .map(|load| KeyLoad {
                key: self.key_view(&load.key),
                service_type: load.service_type.as_deref().unwrap_or_default().to_string(),
                repos: load.repos,
                queued: load.queued,
                in_flight: load.in_flight,
            })
            .collect()
    }

    fn key_view(&self, key: &schedule::LimitKey) -> LimitKey {
        match key {
            schedule::LimitKey::CodeHost(host) => LimitKey::CodeHost(host.to_string()),
            schedule::LimitKey::Shard(shard) => LimitKey::Shard(self.shard_addr(*shard).to_string()),
        }
    }

    /// A module's limits back on the scheduler's keys (they were checked against `seen`).
    pub(super) fn limits_from(
        &self,
        seen: &[schedule::KeyLoad],
        answers: Vec<KeyLimit>,
    ) -> Vec<(schedule::LimitKey, RateLimit)> {
        answers
            .into_iter()
            .filter_map(|limit| {
                let key = seen.iter().find(|load| self.key_view(&load.key) == limit.key)?.key.clone();
                let rate = RateLimit {
                    per_hour: std::num::NonZeroU32::new(limit.per_hour)?,
                    burst: std::num::NonZeroU32::new(limit.burst)?,
                    max_in_flight: limit.max_in_flight.and_then(std::num::NonZeroU32::new),
                };
                Some((key, rate))
            })
            .collect()
    }
}

/// A module's retry answer as the scheduler's decision, at `now`.
pub(super) fn retry_decision(retry: Retry, now: Timestamp) -> RetryDecision {
    match retry {
        Retry::Now => RetryDecision::RetryAt(now),
        Retry::After(delay) => RetryDecision::RetryAt(now.saturating_add(delay)),
        Retry::GiveUp(reason) => RetryDecision::GiveUp { reason },
    }
}

impl RateLimitPolicy for PolicyHost {
    /// A serving rate-limit module, or a shadow of one, needs the loads.
    fn is_active(&self) -> bool {
        let set = self.set.load();
        !set.chain(Interface::RateLimits).is_empty()
            || set.shadows().any(|m| m.shadowed.contains(&Interface::RateLimits))
    }

    fn limits(&self, seen: &[schedule::KeyLoad], now: Timestamp) -> Vec<(schedule::LimitKey, RateLimit)> {
        self.limits_traced(seen, now).0
    }

    fn limits_traced(
        &self,
        seen: &[schedule::KeyLoad],
        now: Timestamp,
    ) -> (Vec<(schedule::LimitKey, RateLimit)>, Arc<str>) {
        if self.set.load().chain(Interface::RateLimits).is_empty() {
            return (Vec::new(), Arc::from(BUILTIN));
        }
        let loads = self.load_views(seen);
        let Some(decided) = PolicyHost::rate_limits(self, &loads, now) else {
            return (Vec::new(), Arc::from(BUILTIN));
        };
        (self.limits_from(seen, decided.answers), decided.digest)
    }
}

//! Rate limits per code host and per shard: the [`RateLimitPolicy`] trait (the policy engine's
//! `rate-limits` plugs in here) and [`RateLimiters`], which enforces the answers with
//! governor's GCRA on a clock driven by the `now` the scheduler is given.
//!
//! Pure like the rest of `schedule/`: the clock is governor's manual `FakeRelativeClock`,
//! advanced to each `now`; nothing here reads a real clock.
//!
//! **Invariant:** a limit only ever slows dispatching. Keys without a limit are unlimited
//! (apart from the scheduler's own in-flight caps), and every limit lets at least one dispatch
//! through per period, so no answer of a policy can stop cloning.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, FakeRelativeClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;

use crate::model::{ShardIdx, Timestamp};

/// What a limit applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKey {
    /// A code host: the first segment of a repo name, e.g. `github.com`.
    CodeHost(Box<str>),
    /// A shard, by index in the address list.
    Shard(ShardIdx),
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::CodeHost(host) => write!(f, "code host {host}"),
            LimitKey::Shard(shard) => write!(f, "shard #{shard}"),
        }
    }
}

/// The load on one key this tick: what a rate-limit policy is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyLoad {
    pub key: LimitKey,
    /// For a code host, the service type of most of its repos (`github`, …), so a policy can
    /// budget self-hosted instances by kind; `None` for a shard or when the repo DB is silent.
    pub service_type: Option<Arc<str>>,
    /// Desired repos behind the key.
    pub repos: u32,
    /// Repos due and waiting.
    pub queued: u32,
    pub in_flight: u32,
}

/// A limit for one key.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained dispatches per hour (above zero).
    pub per_hour: NonZeroU32,
    /// Dispatches allowed at once above the sustained rate (at least 1).
    pub burst: NonZeroU32,
    /// Dispatches in flight at once; `None`: no extra cap.
    pub max_in_flight: Option<NonZeroU32>,
}

/// Decides limits from the load per key. Answers for keys not in `seen` are ignored.
pub trait RateLimitPolicy: Send + Sync {
    fn limits(&self, seen: &[KeyLoad], now: Timestamp) -> Vec<(LimitKey, RateLimit)>;

    /// Like [`RateLimitPolicy::limits`], also naming who answered (a module digest, or
    /// `builtin`).
    fn limits_traced(&self, seen: &[KeyLoad], now: Timestamp) -> (Vec<(LimitKey, RateLimit)>, Arc<str>) {
        (self.limits(seen, now), Arc::from(super::BUILTIN))
    }

    /// Whether asking is worth building the loads at all (false: no limits).
    fn is_active(&self) -> bool {
        true
    }
}

/// The built-in behaviour: no limits beyond the in-flight caps.
#[derive(Copy, Clone, Debug, Default)]
pub struct NoLimits;

impl RateLimitPolicy for NoLimits {
    fn limits(&self, _seen: &[KeyLoad], _now: Timestamp) -> Vec<(LimitKey, RateLimit)> {
        Vec::new()
    }

    fn is_active(&self) -> bool {
        false
    }
}

type Gcra = governor::RateLimiter<NotKeyed, InMemoryState, FakeRelativeClock, NoOpMiddleware<Nanos>>;

struct Entry {
    limit: RateLimit,
    gcra: Gcra,
    /// No dispatch for this key before this time (the limiter refused earlier).
    blocked_until: Option<Timestamp>,
    /// Dispatches in flight counted against this key.
    in_flight: u32,
}

impl Entry {
    fn new(limit: RateLimit, clock: &FakeRelativeClock) -> Entry {
        let quota = Quota::per_hour(limit.per_hour).allow_burst(limit.burst);
        Entry { limit, gcra: Gcra::direct_with_clock(quota, clock.clone()), blocked_until: None, in_flight: 0 }
    }

    /// Whether the key refuses a dispatch at `now`, without consuming anything.
    fn refuses(&self, now: Timestamp) -> bool {
        self.limit.max_in_flight.is_some_and(|cap| self.in_flight >= cap.get())
            || self.blocked_until.is_some_and(|until| until > now)
    }
}

/// The limiters in force: one GCRA cell per limited key.
///
/// Only limited keys are tracked. In-flight counts start when a key gets a limit, so a new
/// `max-in-flight` counts only dispatches started under it: it can be briefly exceeded by
/// dispatches that were already running, never by new ones.
#[derive(Default)]
pub struct RateLimiters {
    clock: FakeRelativeClock,
    /// The time the clock's zero stands for.
    origin: Option<Timestamp>,
    /// The clock's current time (it only moves forward).
    at: Timestamp,
    hosts: HashMap<Box<str>, Entry>,
    shards: HashMap<ShardIdx, Entry>,
}

impl fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<(&Box<str>, &RateLimit)> = self.hosts.iter().map(|(k, e)| (k, &e.limit)).collect();
        let shards: Vec<(&ShardIdx, &RateLimit)> = self.shards.iter().map(|(k, e)| (k, &e.limit)).collect();
        f.debug_struct("RateLimiters").field("hosts", &hosts).field("shards", &shards).finish()
    }
}

/// Why a dispatch may not go now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The key's rate is used up until then.
    RateUntil(LimitKey, Timestamp),
    /// The key's in-flight cap is reached; a finished dispatch frees a slot.
    InFlight(LimitKey),
}

impl RateLimiters {
    /// Whether any limit is in force.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.shards.is_empty()
    }

    /// The limit of `key`, if any.
    pub fn limit(&self, key: &LimitKey) -> Option<RateLimit> {
        match key {
            LimitKey::CodeHost(host) => self.hosts.get(host).map(|e| e.limit),
            LimitKey::Shard(shard) => self.shards.get(shard).map(|e| e.limit),
        }
    }

    /// Replaces the limits. A key whose limit is unchanged keeps its limiter state (and
    /// in-flight count), so asking every tick does not refill the bursts.
    pub fn handle_limits(&mut self, limits: Vec<(LimitKey, RateLimit)>, now: Timestamp) {
        self.advance(now);
        let mut old_hosts = std::mem::take(&mut self.hosts);
        let mut old_shards = std::mem::take(&mut self.shards);
        for (key, limit) in limits {
            match key {
                LimitKey::CodeHost(host) => {
                    let entry = match old_hosts.remove(&host) {
                        Some(entry) if entry.limit == limit => entry,
                        Some(entry) => Entry { in_flight: entry.in_flight, ..Entry::new(limit, &self.clock) },
                        None => Entry::new(limit, &self.clock),
                    };
                    self.hosts.insert(host, entry);
                }
                LimitKey::Shard(shard) => {
                    let entry = match old_shards.remove(&shard) {
                        Some(entry) if entry.limit == limit => entry,
                        Some(entry) => Entry { in_flight: entry.in_flight, ..Entry::new(limit, &self.clock) },
                        None => Entry::new(limit, &self.clock),
                    };
                    self.shards.insert(shard, entry);
                }
            }
        }
    }

    fn advance(&mut self, now: Timestamp) {
        let origin = *self.origin.get_or_insert(now);
        if now > self.at {
            self.clock.advance(now.since(self.at.max(origin)));
            self.at = now;
        }
    }

    /// Whether dispatches to `shard` are refused at `now` (nothing consumed).
    pub fn shard_refuses(&self, shard: ShardIdx, now: Timestamp) -> bool {
        self.shards.get(&shard).is_some_and(|e| e.refuses(now))
    }

    /// Whether dispatches to `host` are refused at `now` (nothing consumed).
    pub fn host_refuses(&self, host: &str, now: Timestamp) -> bool {
        self.hosts.get(host).is_some_and(|e| e.refuses(now))
    }

    /// Takes one dispatch from the budgets of `shard` and `host`, or says which refuses. The
    /// shard is checked first; when it gives a cell and the host then refuses, the cell stays
    /// spent: limits can be slightly under-used, never exceeded.
    pub fn try_acquire(&mut self, shard: ShardIdx, host: &str, now: Timestamp) -> Result<(), Refusal> {
        self.advance(now);
        if self.shard_refuses(shard, now) {
            return Err(self.refusal(LimitKey::Shard(shard), now));
        }
        if self.host_refuses(host, now) {
            return Err(self.refusal(LimitKey::CodeHost(host.into()), now));
        }
        let clock_now = self.clock.now();
        let shard_entry = self.shards.get_mut(&shard);
        if let Some(entry) = shard_entry {
            if let Err(until) = take(entry, clock_now, now) {
                return Err(Refusal::RateUntil(LimitKey::Shard(shard), until));
            }
        }
        if let Some(entry) = self.hosts.get_mut(host) {
            if let Err(until) = take(entry, clock_now, now) {
                return Err(Refusal::RateUntil(LimitKey::CodeHost(host.into()), until));
            }
        }
        if let Some(entry) = self.shards.get_mut(&shard) {
            entry.in_flight += 1;
        }
        if let Some(entry) = self.hosts.get_mut(host) {
            entry.in_flight += 1;
        }
        Ok(())
    }

    fn refusal(&self, key: LimitKey, now: Timestamp) -> Refusal {
        let entry = match &key {
            LimitKey::CodeHost(host) => self.hosts.get(host),
            LimitKey::Shard(shard) => self.shards.get(shard),
        };
        match entry.and_then(|e| e.blocked_until).filter(|&until| until > now) {
            Some(until) => Refusal::RateUntil(key, until),
            None => Refusal::InFlight(key),
        }
    }

    /// Records that a dispatch to `shard` for a repo of `host` ended.
    pub fn release(&mut self, shard: ShardIdx, host: &str) {
        if let Some(entry) = self.shards.get_mut(&shard) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
        if let Some(entry) = self.hosts.get_mut(host) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
    }

    /// Forgets blocks that ended by `now`, so [`RateLimiters::next_unblock`] names only
    /// blocks still to come.
    pub fn expire(&mut self, now: Timestamp) {
        for entry in self.hosts.values_mut().chain(self.shards.values_mut()) {
            if entry.blocked_until.is_some_and(|until| until <= now) {
                entry.blocked_until = None;
            }
        }
    }

    /// The earliest time a rate-blocked key frees up.
    pub fn next_unblock(&self) -> Option<Timestamp> {
        self.hosts.values().chain(self.shards.values()).filter_map(|e| e.blocked_until).min()
    }
}

/// Takes one cell from `entry`'s GCRA, or returns when the next one is available.
fn take(entry: &mut Entry, clock_now: Nanos, now: Timestamp) -> Result<(), Timestamp> {
    match entry.gcra.check() {
        Ok(()) => {
            entry.blocked_until = None;
            Ok(())
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(clock_now).max(Duration::from_millis(1));
            let until = now.saturating_add(wait);
            entry.blocked_until = Some(until);
            Err(until)
        }
    }
}

/// The code host of a repo name: its first segment.
pub fn code_host_of(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::RepoName;
    use crate::schedule::{Job, Limits, Scheduler};

    fn limit(per_hour: u32, burst: u32, max_in_flight: Option<u32>) -> RateLimit {
        RateLimit {
            per_hour: NonZeroU32::new(per_hour).expect("nonzero"),
            burst: NonZeroU32::new(burst).expect("nonzero"),
            max_in_flight: max_in_flight.and_then(NonZeroU32::new),
        }
    }

    fn t(secs: u64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000).saturating_add(Duration::from_secs(secs))
    }

    #[test]
    fn a_rate_refills_with_time_and_keeps_state_across_identical_answers() {
        let mut rates = RateLimiters::default();
        let github = || vec![(LimitKey::CodeHost("github.com".into()), limit(3600, 2, None))];
        rates.handle_limits(github(), t(0));
        assert!(rates.try_acquire(0, "github.com", t(0)).is_ok());
        assert!(rates.try_acquire(0, "github.com", t(0)).is_ok());
        let refusal = rates.try_acquire(0, "github.com", t(0)).unwrap_err();
        assert_eq!(refusal, Refusal::RateUntil(LimitKey::CodeHost("github.com".into()), t(1)));
        // Asking again with the same answer does not refill the burst.
        rates.handle_limits(github(), t(0));
        assert!(rates.host_refuses("github.com", t(0)));
        assert!(rates.try_acquire(0, "gitlab.com", t(0)).is_ok(), "other hosts are unlimited");
        assert!(rates.try_acquire(0, "github.com", t(1)).is_ok(), "one per second at 3600/h");
    }

    #[test]
    fn an_in_flight_cap_holds_until_a_dispatch_ends() {
        let mut rates = RateLimiters::default();
        rates.handle_limits(vec![(LimitKey::Shard(1), limit(1_000_000, 100, Some(1)))], t(0));
        assert!(rates.try_acquire(1, "github.com", t(0)).is_ok());
        assert_eq!(rates.try_acquire(1, "github.com", t(0)), Err(Refusal::InFlight(LimitKey::Shard(1))));
        rates.release(1, "github.com");
        assert!(rates.try_acquire(1, "github.com", t(0)).is_ok());
    }

    #[test]
    fn the_scheduler_skips_a_limited_code_host_and_wakes_when_it_refills() {
        let names: Vec<RepoName> = ["github.com/a/1", "github.com/a/2", "gitlab.com/b/1"]
            .iter()
            .map(|n| RepoName::normalize(n).expect("name"))
            .collect();
        let mut scheduler = Scheduler::new(1, Limits { max_in_flight_per_shard: 10, max_in_flight: 10 });
        scheduler.handle_plan(&[Job { repo: 0, shard: 0 }, Job { repo: 1, shard: 0 }, Job { repo: 2, shard: 0 }]);
        scheduler.handle_rate_limits(vec![(LimitKey::CodeHost("github.com".into()), limit(60, 1, None))], t(0));
        let name_of = |idx: u32| names[idx as usize].as_str();
        assert_eq!(scheduler.poll_dispatch(t(0), name_of).map(|(job, _)| job.repo), Some(0));
        // github.com is used up for a minute: gitlab.com goes ahead of github.com/a/2.
        assert_eq!(scheduler.poll_dispatch(t(0), name_of).map(|(job, _)| job.repo), Some(2));
        assert_eq!(scheduler.poll_dispatch(t(0), name_of), None);
        assert_eq!(scheduler.poll_timeout(), Some(t(60)));
        assert_eq!(scheduler.poll_dispatch(t(60), name_of).map(|(job, _)| job.repo), Some(1));
    }

    #[test]
    fn without_limits_the_order_is_unchanged() {
        let names: Vec<RepoName> =
            ["github.com/a/1", "github.com/a/2"].iter().map(|n| RepoName::normalize(n).expect("name")).collect();
        let mut scheduler = Scheduler::new(1, Limits::default());
        scheduler.handle_plan(&[Job { repo: 1, shard: 0 }, Job { repo: 0, shard: 0 }]);
        let name_of = |idx: u32| names[idx as usize].as_str();
        assert_eq!(scheduler.poll_dispatch(t(0), name_of).map(|(job, _)| job.repo), Some(1));
        assert_eq!(scheduler.poll_dispatch(t(0), name_of).map(|(job, _)| job.repo), Some(0));
        assert!(scheduler.rate_limits().is_empty());
    }
}

//! Simulated policies behind the machine's three seams. Well behaved they are the built-in
//! order and retry (and, for some seeds, per-code-host rate limits); while the schedule says
//! they misbehave they answer the wrong number of items, NaN scores, "not now" for a whole
//! batch, retries in the past, give-ups, and limits that change every tick, which the machine
//! must absorb. Their randomness is seeded, and they are called in the machine's order, so a
//! run stays a function of its seed.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::machine::Policies;
use crate::model::Timestamp;
use crate::schedule::{
    Backoff, BuiltinOrder, BuiltinRetry, Candidate, Failure, KeyLoad, LimitKey, Prioritizer, Priority, RateLimit,
    RateLimitPolicy, RetryDecision, RetryPolicy,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What the policies share: whether they misbehave now, and their own random stream.
pub struct Mood {
    misbehaving: AtomicBool,
    rng: Mutex<ChaCha8Rng>,
}

impl Mood {
    pub fn new(seed: u64) -> Arc<Mood> {
        Arc::new(Mood { misbehaving: AtomicBool::new(false), rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)) })
    }

    pub fn set_misbehaving(&self, on: bool) {
        self.misbehaving.store(on, Ordering::Relaxed);
    }

    /// A roll of the policies' dice when misbehaving, `None` when behaving.
    fn roll(&self) -> Option<u32> {
        if !self.misbehaving.load(Ordering::Relaxed) {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(rng.random_range(0..100))
    }
}

/// The three seams, sharing one mood. `limits`: whether the rate-limit seam sets limits.
pub fn policies(mood: &Arc<Mood>, backoff: Backoff, limits: bool) -> Policies {
    Policies {
        prioritizer: Arc::new(SimOrder(Arc::clone(mood))),
        retry: Arc::new(SimRetry { mood: Arc::clone(mood), builtin: BuiltinRetry { backoff, max_attempts: None } }),
        rate_limits: Arc::new(SimLimits { mood: Arc::clone(mood), active: limits }),
    }
}

struct SimOrder(Arc<Mood>);

impl Prioritizer for SimOrder {
    fn prioritize(&self, batch: &[Candidate<'_>], now: Timestamp) -> Vec<Priority> {
        let mut answers = BuiltinOrder.prioritize(batch, now);
        match self.0.roll() {
            Some(0..=19) => {
                answers.pop();
            }
            Some(20..=39) => answers.push(Priority::Score(1.0)),
            Some(40..=54) => answers.iter_mut().for_each(|a| *a = Priority::Score(f64::NAN)),
            Some(55..=74) => answers.iter_mut().for_each(|a| *a = Priority::NotNow),
            Some(75..=99) => answers.reverse(),
            _ => {}
        }
        answers
    }
}

struct SimRetry {
    mood: Arc<Mood>,
    builtin: BuiltinRetry,
}

impl RetryPolicy for SimRetry {
    fn on_failures(&self, batch: &[Failure<'_>], now: Timestamp) -> Vec<RetryDecision> {
        let mut answers = self.builtin.on_failures(batch, now);
        match self.mood.roll() {
            Some(0..=19) => {
                answers.pop();
            }
            Some(20..=39) => answers.iter_mut().for_each(|a| *a = RetryDecision::RetryAt(Timestamp::from_millis(0))),
            Some(40..=54) => {
                answers.iter_mut().for_each(|a| *a = RetryDecision::GiveUp { reason: "simulated give-up".into() })
            }
            Some(55..=79) => answers
                .iter_mut()
                .for_each(|a| *a = RetryDecision::RetryAt(now.saturating_add(Duration::from_secs(120)))),
            _ => {}
        }
        answers
    }
}

struct SimLimits {
    mood: Arc<Mood>,
    active: bool,
}

impl RateLimitPolicy for SimLimits {
    fn limits(&self, seen: &[KeyLoad], _now: Timestamp) -> Vec<(LimitKey, RateLimit)> {
        let per_hour = match self.mood.roll() {
            Some(roll) => 360 + roll * 36,
            None => 3_600,
        };
        let (Some(per_hour), Some(burst)) = (NonZeroU32::new(per_hour), NonZeroU32::new(4)) else {
            return Vec::new();
        };
        let max_in_flight = NonZeroU32::new(3);
        seen.iter()
            .filter(|load| matches!(load.key, LimitKey::CodeHost(_)))
            .map(|load| (load.key.clone(), RateLimit { per_hour, burst, max_in_flight }))
            .collect()
    }

    fn is_active(&self) -> bool {
        self.active
    }
}

//! The policy time of one tick (`[policy] tick_budget`).
//!
//! Each call has a deadline (`call_timeout`), but a tick of a large repo DB makes many calls:
//! 1M due repos are 100 batches, and a slow but valid module could hold the tick for
//! 100 × 500 ms. So the sidecar opens a budget at the start of each tick
//! ([`super::PolicyHost::start_tick`]), every `prioritize` call of the tick is charged to it,
//! and once it is spent the tick's remaining batches get the built-in order. A call under way
//! is never cut short by the budget, so a tick spends at most `tick_budget` plus one call's
//! deadline per module of the chain.
//!
//! The clock is read here, in the policy host, never in the pure core.

use std::sync::Mutex;
use std::time::Duration;

/// What [`TickBudget::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Call the policy.
    Call,
    /// The budget is spent: use the built-in answer. `first` is set for the first batch
    /// turned away in this tick (say so once).
    Spent { first: bool, used: Duration },
}

/// The budget of the current tick.
#[derive(Debug)]
pub struct TickBudget {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: Duration,
    /// Whether a tick has started: calls outside a tick (the CLI, tests, load-time checks)
    /// are not budgeted.
    open: bool,
    used: Duration,
    /// Batches turned away in this tick.
    turned_away: u64,
}

impl TickBudget {
    pub fn new(limit: Duration) -> TickBudget {
        TickBudget { state: Mutex::new(State { limit, open: false, used: Duration::ZERO, turned_away: 0 }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain numbers: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The budget of each tick.
    pub fn limit(&self) -> Duration {
        self.state().limit
    }

    pub fn set_limit(&self, limit: Duration) {
        self.state().limit = limit;
    }

    /// Starts a tick with the whole budget.
    pub fn start(&self) {
        let mut state = self.state();
        state.open = true;
        state.used = Duration::ZERO;
        state.turned_away = 0;
    }

    /// Whether a policy call may start now.
    pub fn admit(&self) -> Admit {
        let mut state = self.state();
        if !state.open || state.used < state.limit {
            return Admit::Call;
        }
        state.turned_away += 1;
        Admit::Spent { first: state.turned_away == 1, used: state.used }
    }

    /// Charges a call's time to the current tick.
    pub fn charge(&self, took: Duration) {
        let mut state = self.state();
        if state.open {
            state.used = state.used.saturating_add(took);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_turns_calls_away_until_the_next_tick() {
        let budget = TickBudget::new(Duration::from_millis(100));
        budget.charge(Duration::from_secs(10));
        assert_eq!(budget.admit(), Admit::Call, "no tick started: not budgeted");
        budget.start();
        budget.charge(Duration::from_millis(60));
        assert_eq!(budget.admit(), Admit::Call);
        budget.charge(Duration::from_millis(60));
        let used = Duration::from_millis(120);
        assert_eq!(budget.admit(), Admit::Spent { first: true, used });
        assert_eq!(budget.admit(), Admit::Spent { first: false, used });
        budget.start();
        assert_eq!(budget.admit(), Admit::Call, "a new tick has the whole budget");
    }
}

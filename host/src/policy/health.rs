//! Quarantine bookkeeping of one module: consecutive failures, and a backoff during which the
//! module is not called. Pure: time is a parameter.
//!
//! After `quarantine_after` failures in a row the module is quarantined for
//! [`QUARANTINE_BASE`], doubling with each quarantine up to [`QUARANTINE_MAX`]. When the time
//! is up it is called again on probation: one more failure quarantines it again (for longer),
//! one success clears its record.

use std::time::Duration;

use crate::model::Timestamp;

/// First quarantine of a module.
pub const QUARANTINE_BASE: Duration = Duration::from_secs(30);
/// Longest quarantine.
pub const QUARANTINE_MAX: Duration = Duration::from_secs(30 * 60);

/// A module's record of calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Quarantines since the last success; sets the next backoff.
    pub quarantines: u32,
    /// Not called before this time.
    pub quarantined_until: Option<Timestamp>,
    /// The last failure's message.
    pub last_error: Option<String>,
    pub calls: u64,
    pub failures: u64,
}

/// What [`Health::failure`] did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Still called.
    Counted,
    /// Quarantined until then.
    Quarantined(Timestamp),
}

impl Health {
    /// Whether the module may be called at `now`; ends a quarantine whose time is up, putting
    /// the module on probation.
    pub fn admit(&mut self, now: Timestamp, quarantine_after: u32) -> bool {
        match self.quarantined_until {
            Some(until) if now < until => false,
            Some(_) => {
                self.quarantined_until = None;
                self.consecutive_failures = quarantine_after.saturating_sub(1);
                true
            }
            None => true,
        }
    }

    /// Whether the module is in quarantine at `now`.
    pub fn is_quarantined(&self, now: Timestamp) -> bool {
        self.quarantined_until.is_some_and(|until| now < until)
    }

    pub fn success(&mut self) {
        self.calls += 1;
        self.consecutive_failures = 0;
        self.quarantines = 0;
    }

    /// Counts a failure; quarantines the module after `quarantine_after` in a row.
    pub fn failure(&mut self, error: String, now: Timestamp, quarantine_after: u32) -> FailureVerdict {
        self.calls += 1;
        self.failures += 1;
        self.consecutive_failures += 1;
        self.last_error = Some(error);
        if self.consecutive_failures < quarantine_after.max(1) {
            return FailureVerdict::Counted;
        }
        let exponent = self.quarantines.min(16);
        self.quarantines += 1;
        self.consecutive_failures = 0;
        let backoff = QUARANTINE_BASE.saturating_mul(1 << exponent).min(QUARANTINE_MAX);
        let until = now.saturating_add(backoff);
        self.quarantined_until = Some(until);
        FailureVerdict::Quarantined(until)
    }
}

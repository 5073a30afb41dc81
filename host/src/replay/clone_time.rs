//! How long a replayed clone takes, and whether it fails: learned from the durations a
//! snapshot observed, or given. Draws are a function of the seed, the repo and the attempt,
//! so every policy of one replay meets the same clone times and the same failures, and a
//! replay is repeatable.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::capture::CapturedClone;
use crate::model::RepoName;

/// The clone-time model of a replay.
#[derive(Clone, Debug)]
pub enum CloneTime {
    /// Every clone takes this long and succeeds.
    Fixed(Duration),
    /// Durations drawn from what the snapshot observed (successful dispatches), failures at
    /// the observed rate.
    Observed {
        /// Sorted.
        durations: Vec<Duration>,
        failure_rate: f64,
        observed: usize,
    },
}

/// One clone's fate in the replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    pub took: Duration,
    pub succeeds: bool,
}

impl CloneTime {
    /// The model learned from a snapshot's clones; `None` when it observed no successful one.
    pub fn observed(clones: &[CapturedClone]) -> Option<CloneTime> {
        let mut durations: Vec<Duration> = clones.iter().filter(|c| c.succeeded).map(|c| c.took).collect();
        if durations.is_empty() {
            return None;
        }
        durations.sort_unstable();
        let failed = clones.iter().filter(|c| !c.succeeded).count();
        Some(CloneTime::Observed {
            failure_rate: failed as f64 / clones.len() as f64,
            observed: clones.len(),
            durations,
        })
    }

    /// What `name`'s `attempt`-th dispatch does.
    pub fn draw(&self, seed: u64, name: &RepoName, attempt: u32) -> Draw {
        match self {
            CloneTime::Fixed(took) => Draw { took: *took, succeeds: true },
            CloneTime::Observed { durations, failure_rate, .. } => {
                let mut hasher = twox_hash::XxHash64::with_seed(seed);
                name.as_str().hash(&mut hasher);
                attempt.hash(&mut hasher);
                let bits = hasher.finish();
                // The high half picks the duration, the low half decides the failure.
                let idx = ((bits >> 32) as usize) % durations.len();
                let unit = (bits & 0xffff_ffff) as f64 / f64::from(u32::MAX);
                Draw { took: durations[idx], succeeds: unit >= *failure_rate }
            }
        }
    }

    /// The model in words, for the report.
    pub fn describe(&self) -> String {
        match self {
            CloneTime::Fixed(took) => format!("every clone takes {}, none fails", humantime::format_duration(*took)),
            CloneTime::Observed { durations, failure_rate, observed } => {
                let median = durations[durations.len() / 2];
                let p90 = durations[(durations.len() * 9 / 10).min(durations.len() - 1)];
                format!(
                    "learned from {observed} observed dispatches: median {:.1}s, p90 {:.1}s, {:.1}% failed",
                    median.as_secs_f64(),
                    p90.as_secs_f64(),
                    failure_rate * 100.0
                )
            }
        }
    }

    /// The mean time of a clone, for sizing the replay's tick.
    pub fn mean(&self) -> Duration {
        match self {
            CloneTime::Fixed(took) => *took,
            CloneTime::Observed { durations, .. } => {
                durations.iter().sum::<Duration>() / u32::try_from(durations.len()).unwrap_or(u32::MAX)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clone(secs: u64, succeeded: bool) -> CapturedClone {
        CapturedClone { took: Duration::from_secs(secs), succeeded, size_bytes: None }
    }

    #[test]
    fn the_observed_model_draws_only_observed_durations_and_fails_at_the_observed_rate() {
        let clones: Vec<CapturedClone> = (1..=4).map(|s| clone(s, true)).chain([clone(9, false)]).collect();
        let model = CloneTime::observed(&clones).expect("successes observed");
        let names: Vec<RepoName> = (0..4000).map(|i| RepoName::from_normalized(format!("h/r{i}"))).collect();
        let draws: Vec<Draw> = names.iter().map(|n| model.draw(7, n, 1)).collect();
        assert!(draws.iter().all(|d| (1..=4).contains(&d.took.as_secs())), "9s was a failure's duration");
        let failed = draws.iter().filter(|d| !d.succeeds).count() as f64 / draws.len() as f64;
        assert!((failed - 0.2).abs() < 0.03, "failure share {failed}, observed 1 in 5");
        for secs in 1..=4 {
            assert!(draws.iter().any(|d| d.took.as_secs() == secs), "{secs}s is never drawn");
        }
    }

    #[test]
    fn draws_depend_on_seed_repo_and_attempt_only() {
        let model = CloneTime::observed(&(1..=50).map(|s| clone(s, s % 3 != 0)).collect::<Vec<_>>()).expect("some");
        let name = RepoName::from_normalized("github.com/a/b");
        assert_eq!(model.draw(1, &name, 1), model.draw(1, &name, 1));
        let attempts: Vec<Draw> = (1..20).map(|a| model.draw(1, &name, a)).collect();
        assert!(attempts.windows(2).any(|w| w[0] != w[1]), "a retry meets the same fate forever");
        let seeds: Vec<Draw> = (1..20).map(|s| model.draw(s, &name, 1)).collect();
        assert!(seeds.windows(2).any(|w| w[0] != w[1]), "the seed changes nothing");
    }

    #[test]
    fn no_successful_clone_gives_no_model() {
        assert!(CloneTime::observed(&[]).is_none());
        assert!(CloneTime::observed(&[clone(3, false)]).is_none());
    }
}

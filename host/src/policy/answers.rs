//! The checks of a module's answers: what `rank`, `prioritize`, `reenqueue` and `rate-limits` returned,
//! turned into the host's values or refused with a [`CallFailure::BadAnswer`].
//!
//! Pure functions of the lifted answer and the inputs it answers, apart from [`Module`]'s calls
//! so that they can be property-tested without a wasm instance (`answer_props.rs`). A refusal's
//! message names the repo or key and what was wrong, and stays short: a name or key is quoted
//! cut to [`NAMED_MAX_BYTES`], since a module chooses the keys it answers with.
//!
//! [`Module`]: super::Module

use std::time::Duration;

use super::bindings::{prioritize, rank, rate_limits, reenqueue};
use super::module::{CallFailure, MAX_REASON_BYTES, MAX_RETRY_DELAY};
use super::view::{KeyLimit, KeyLoad, LimitKey, Retry};
use crate::schedule::Priority;
use crate::text;

/// Longest repo name or limit key quoted in a refusal (the rest of a message is short and fixed).
pub const NAMED_MAX_BYTES: usize = 256;

/// `rank`'s answers for a batch of `len` repos, in batch order: one score per repo, every
/// position in `not-now` inside the batch, every other score finite. `name_of(i)` names repo
/// `i` for a refusal, and is called for nothing else: a batch's names cost a lookup each.
pub(super) fn ranking<'n>(
    ranking: rank::Ranking,
    len: usize,
    name_of: impl Fn(usize) -> &'n str,
) -> Result<Vec<Priority>, CallFailure> {
    let rank::Ranking { scores, not_now } = ranking;
    check_len("rank", scores.len(), len)?;
    let mut later = vec![false; if not_now.is_empty() { 0 } else { len }];
    for &position in &not_now {
        match later.get_mut(position as usize) {
            Some(later) => *later = true,
            None => {
                return Err(CallFailure::BadAnswer(format!(
                    "rank put position {position} in not-now, past the end of a batch of {len} repos"
                )))
            }
        }
    }
    let held = |i: usize| later.get(i) == Some(&true);
    if let Some(i) = (0..len).find(|&i| !scores[i].is_finite() && !held(i)) {
        return Err(not_finite_score("rank", name_of(i), scores[i]));
    }
    if later.is_empty() {
        return Ok(scores.into_iter().map(Priority::Score).collect());
    }
    Ok(scores
        .into_iter()
        .zip(later)
        .map(|(score, later)| if later { Priority::NotNow } else { Priority::Score(score) })
        .collect())
}

/// `prioritize`'s answers (contract 0.2.0, 0.2.1) for a batch of `len` repos, in batch order:
/// one per repo, every score finite. `name_of` as for [`ranking`].
pub(super) fn priorities<'n>(
    answers: Vec<prioritize::Priority>,
    len: usize,
    name_of: impl Fn(usize) -> &'n str,
) -> Result<Vec<Priority>, CallFailure> {
    check_len("prioritize", answers.len(), len)?;
    let not_finite = answers.iter().enumerate().find_map(|(i, answer)| match answer {
        prioritize::Priority::Score(score) if !score.is_finite() => Some((i, *score)),
        _ => None,
    });
    if let Some((i, score)) = not_finite {
        return Err(not_finite_score("prioritize", name_of(i), score));
    }
    Ok(answers
        .into_iter()
        .map(|answer| match answer {
            prioritize::Priority::Score(score) => Priority::Score(score),
            prioritize::Priority::NotNow => Priority::NotNow,
        })
        .collect())
}

fn not_finite_score(function: &str, name: &str, score: f64) -> CallFailure {
    CallFailure::BadAnswer(format!("{function} gave repo {} the score {score}, which is not finite", named(name)))
}

/// `reenqueue`'s answers for the failures of the repos named by `names`, in input order: one per
/// failure, delays at most [`MAX_RETRY_DELAY`], give-up reasons not blank and cut to
/// [`MAX_REASON_BYTES`].
pub(super) fn retries<'n>(
    answers: Vec<reenqueue::Retry>,
    names: impl ExactSizeIterator<Item = &'n str>,
) -> Result<Vec<Retry>, CallFailure> {
    check_len("reenqueue", answers.len(), names.len())?;
    answers
        .into_iter()
        .zip(names)
        .map(|(answer, name)| match answer {
            reenqueue::Retry::Now => Ok(Retry::Now),
            reenqueue::Retry::AfterMs(ms) if Duration::from_millis(ms) <= MAX_RETRY_DELAY => {
                Ok(Retry::After(Duration::from_millis(ms)))
            }
            reenqueue::Retry::AfterMs(ms) => Err(CallFailure::BadAnswer(format!(
                "reenqueue asked to retry repo {} after {ms} ms, more than the 30 days allowed",
                named(name)
            ))),
            reenqueue::Retry::GiveUp(mut reason) => {
                if reason.trim().is_empty() {
                    return Err(CallFailure::BadAnswer(format!(
                        "reenqueue gave up on repo {} without a reason",
                        named(name)
                    )));
                }
                text::truncate(&mut reason, MAX_REASON_BYTES);
                Ok(Retry::GiveUp(reason))
            }
        })
        .collect()
}

/// The largest burst a limit may hold, in hours of its sustained rate: a year. The limiter
/// keeps a burst as nanoseconds of refill in a `u64` (governor's GCRA `tau`), which overflows
/// (a panic in debug builds, a wrong limit in release) near 584 years' worth; no sane policy
/// needs a burst beyond a year's dispatches.
pub const MAX_BURST_HOURS: u64 = 365 * 24;

/// `limits`' answers for the keys `seen`: keys among those seen, one limit per key, and every
/// limit letting dispatches through (rate above zero, burst and in-flight caps at least 1): a
/// policy may slow cloning, not stop it. A burst is at most [`MAX_BURST_HOURS`] of the rate.
pub(super) fn limits(answers: Vec<rate_limits::Limit>, seen: &[KeyLoad]) -> Result<Vec<KeyLimit>, CallFailure> {
    let mut out: Vec<KeyLimit> = Vec::with_capacity(answers.len().min(seen.len()));
    for answer in answers {
        let key = LimitKey::from_wit(answer.key);
        let bad = |what: &str| {
            Err(CallFailure::BadAnswer(format!("rate-limits: the limit for {} {what}", named(&key.to_string()))))
        };
        if !seen.iter().any(|load| load.key == key) {
            return bad("names a key the host did not pass in");
        }
        if out.iter().any(|l| l.key == key) {
            return bad("is given twice");
        }
        if answer.per_hour == 0 {
            return bad("has per-hour 0; it must be above zero");
        }
        if answer.burst == 0 {
            return bad("has burst 0; it must be at least 1");
        }
        if u64::from(answer.burst) > u64::from(answer.per_hour) * MAX_BURST_HOURS {
            let (burst, per_hour) = (answer.burst, answer.per_hour);
            return bad(&format!("has burst {burst}, more than a year at per-hour {per_hour}"));
        }
        if answer.max_in_flight == Some(0) {
            return bad("has max-in-flight 0; it must be at least 1 (a policy may slow cloning, not stop it)");
        }
        out.push(KeyLimit { key, per_hour: answer.per_hour, burst: answer.burst, max_in_flight: answer.max_in_flight });
    }
    Ok(out)
}

fn check_len(function: &str, got: usize, want: usize) -> Result<(), CallFailure> {
    if got == want {
        Ok(())
    } else {
        Err(CallFailure::BadAnswer(format!("{function} returned {got} answers for {want} inputs")))
    }
}

/// A repo name or key as quoted in a refusal: cut, so a message stays short whatever it names.
fn named(name: &str) -> String {
    text::truncated(name, NAMED_MAX_BYTES)
}

//! Properties of the checks of a module's answers (`answers.rs`): whatever a module returns,
//! the checks never panic; an answer is accepted exactly when it keeps the contract
//! (`wit/policy.wit`, restated here), and what is accepted is what the host can use; a refusal
//! names the repo or key and what was wrong, in a short message.
//!
//! The contract is written out in this file rather than taken from the checks' own constants,
//! so a loosened check fails here.

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;

use super::answers;
use super::bindings::{prioritize, rank, rate_limits, reenqueue};
use super::module::CallFailure;
use super::view::{KeyLimit, KeyLoad, LimitKey, Retry};
use crate::model::Timestamp;
use crate::schedule::{self, Priority, RateLimit, RateLimiters};

/// The contract's longest retry delay: 30 days.
const THIRTY_DAYS_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// The contract's longest kept give-up reason, in bytes.
const REASON_BYTES: usize = 1024;
/// A refusal's budget, in bytes, whatever the module answered or the batch held.
const MESSAGE_BYTES: usize = 512;
/// A refusal quotes at least this much of a long name or key.
const QUOTED_BYTES: usize = 200;

/// Repo names and limit keys: short plain ones, anything (multi-byte, NUL, control), and long
/// multi-byte ones that a refusal must cut.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9./-]{1,24}",
        2 => any::<String>(),
        1 => "[aé€😀\0 ]{200,1200}",
    ]
}

/// Scores, mostly finite (so whole batches pass often), with every kind of f64 mixed in.
fn score() -> impl Strategy<Value = f64> {
    use prop::num::f64 as f;
    prop_oneof![
        8 => f::POSITIVE | f::NEGATIVE | f::NORMAL | f::SUBNORMAL | f::ZERO,
        1 => any::<f64>(),
        1 => prop::sample::select(vec![
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::from_bits(1),
            f64::MIN_POSITIVE / 2.0,
            f64::MAX,
            f64::MIN,
        ]),
    ]
}

fn priority() -> impl Strategy<Value = prioritize::Priority> {
    prop_oneof![4 => score().prop_map(prioritize::Priority::Score), 1 => Just(prioritize::Priority::NotNow)]
}

/// Delays in range, at the 30-day edge, and anywhere up to `u64::MAX`.
fn delay() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0..=THIRTY_DAYS_MS,
        2 => THIRTY_DAYS_MS - 2..=THIRTY_DAYS_MS + 2,
        1 => any::<u64>(),
        1 => Just(u64::MAX),
    ]
}

/// Give-up reasons: plain, anything, blank (Unicode spaces included), non-blank only through a
/// character that is not whitespace (U+200B), and long multi-byte ones that must be cut.
fn reason() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z ]{1,30}",
        2 => any::<String>(),
        1 => "[ \t\n\r\u{a0}\u{85}\u{2028}\u{3000}]{0,6}",
        1 => "[ \u{3000}]{0,3}\u{200b}[ ]{0,3}",
        2 => "[aé€😀\0 ]{300,1500}",
    ]
}

fn retry() -> impl Strategy<Value = reenqueue::Retry> {
    prop_oneof![
        1 => Just(reenqueue::Retry::Now),
        3 => delay().prop_map(reenqueue::Retry::AfterMs),
        3 => reason().prop_map(reenqueue::Retry::GiveUp),
    ]
}

/// A batch and its answers: mostly one answer per input, sometimes a few too many or too few.
fn answered<S: Strategy>(answer: fn() -> S) -> impl Strategy<Value = (Vec<String>, Vec<S::Value>)> {
    let skew = prop_oneof![6 => Just(0i32), 1 => -2i32..=2];
    (prop::collection::vec((name(), answer()), 0..8), skew, prop::collection::vec(answer(), 2)).prop_map(
        |(pairs, skew, spare)| {
            let (mut names, mut answers): (Vec<String>, Vec<S::Value>) = pairs.into_iter().unzip();
            match skew {
                // One or two answers too many.
                1 | 2 => answers.extend(spare.into_iter().take(skew as usize)),
                // Two inputs without an answer, or one answer missing.
                -2 => names.truncate(names.len().saturating_sub(2)),
                -1 => answers.truncate(answers.len().saturating_sub(1)),
                _ => {}
            }
            (names, answers)
        },
    )
}

/// The keys a rate-limit policy may be told about; answers also use others.
const HOSTS: [&str; 4] = ["github.com", "gitlab.example", "é.example", "gitserver-0:3178"];

fn known_key() -> impl Strategy<Value = LimitKey> {
    (prop::sample::select(HOSTS.to_vec()), any::<bool>()).prop_map(|(host, shard)| key(host.to_string(), shard))
}

fn key(name: String, shard: bool) -> LimitKey {
    if shard {
        LimitKey::Shard(name)
    } else {
        LimitKey::CodeHost(name)
    }
}

fn answer_key() -> impl Strategy<Value = LimitKey> {
    prop_oneof![
        5 => known_key(),
        1 => (name(), any::<bool>()).prop_map(|(n, shard)| key(n, shard)),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![1 => Just(0u32), 1 => Just(1u32), 4 => 1..=u32::MAX]
}

fn limit() -> impl Strategy<Value = rate_limits::Limit> {
    let max_in_flight = prop_oneof![2 => Just(None), 1 => Just(Some(0u32)), 3 => (1..=u32::MAX).prop_map(Some)];
    // A rate and a burst drawn apart, or a burst near a year's worth of its rate.
    let at = prop_oneof![3 => (-1i64..=1).prop_map(Ok), 1 => (0..=20_000u64).prop_map(Err)];
    let near_a_year = (1..=100_000u32, at).prop_map(|(per_hour, at)| {
        let burst = match at {
            // On the bound, or one dispatch either side.
            Ok(off) => (i64::from(per_hour) * 8_760 + off) as u64,
            // Anywhere up to a little over two years.
            Err(hours) => u64::from(per_hour) * hours,
        };
        (per_hour, u32::try_from(burst).unwrap_or(u32::MAX))
    });
    let rate = prop_oneof![2 => (count(), count()), 1 => near_a_year];
    (answer_key(), rate, max_in_flight).prop_map(|(key, (per_hour, burst), max_in_flight)| rate_limits::Limit {
        key: key.to_wit(),
        per_hour,
        burst,
        max_in_flight,
    })
}

fn seen() -> impl Strategy<Value = Vec<KeyLoad>> {
    prop::collection::vec(known_key(), 0..6).prop_map(|keys| {
        keys.into_iter()
            .map(|key| KeyLoad { key, service_type: String::new(), repos: 1, queued: 1, in_flight: 0 })
            .collect()
    })
}

/// The longest prefix of `text` on a character boundary within `bytes`.
fn prefix(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A refusal: a bad answer, short, naming `who` (at least its first [`QUOTED_BYTES`]) and
/// saying `what`.
fn check_refusal(error: &CallFailure, who: Option<&str>, what: &str) -> Result<(), TestCaseError> {
    let CallFailure::BadAnswer(message) = error else {
        return Err(TestCaseError::fail(format!("not a bad answer: {error:?}")));
    };
    let shown = error.to_string();
    prop_assert!(shown.len() <= MESSAGE_BYTES, "{} bytes: {shown}", shown.len());
    prop_assert!(message.contains(what), "{message:?} does not say {what:?}");
    if let Some(who) = who {
        prop_assert!(message.contains(prefix(who, QUOTED_BYTES)), "{message:?} does not name {who:?}");
    }
    Ok(())
}

fn limit_key(key: &rate_limits::LimitKey) -> LimitKey {
    match key {
        rate_limits::LimitKey::CodeHost(host) => LimitKey::CodeHost(host.clone()),
        rate_limits::LimitKey::Shard(addr) => LimitKey::Shard(addr.clone()),
    }
}

fn key_name(key: &LimitKey) -> &str {
    match key {
        LimitKey::CodeHost(name) | LimitKey::Shard(name) => name,
    }
}

/// Puts `limit` in force in the scheduler's limiter, as the host does (on a code host named by
/// the key), and takes one dispatch through it.
fn admits_a_dispatch(limit: &KeyLimit) -> Result<(), TestCaseError> {
    let zero = || TestCaseError::fail(format!("a zero was accepted: {limit:?}"));
    let rate = RateLimit {
        per_hour: NonZeroU32::new(limit.per_hour).ok_or_else(zero)?,
        burst: NonZeroU32::new(limit.burst).ok_or_else(zero)?,
        max_in_flight: limit.max_in_flight.map(|cap| NonZeroU32::new(cap).ok_or_else(zero)).transpose()?,
    };
    let host = key_name(&limit.key);
    let now = Timestamp::from_millis(1_700_000_000_000);
    let mut limiters = RateLimiters::default();
    limiters.handle_limits(vec![(schedule::LimitKey::CodeHost(host.into()), rate)], now);
    prop_assert!(limiters.try_acquire(0, host, now).is_ok(), "{:?} admits no dispatch", limit);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Accepted exactly with one finite score (or not-now) per repo, kept bit for bit (-0 and
    /// subnormals included); otherwise the refusal gives the counts or names the first repo
    /// whose score is not finite.
    #[test]
    fn prioritize_answers_are_one_finite_score_per_repo((names, answers) in answered(priority)) {
        let result = answers::priorities(answers.clone(), names.len(), |i| names[i].as_str());
        let bad_score = answers.iter().position(|a| matches!(a, prioritize::Priority::Score(s) if !s.is_finite()));
        match result {
            Ok(priorities) => {
                prop_assert_eq!(priorities.len(), names.len());
                prop_assert!(bad_score.is_none(), "accepted a non-finite score: {:?}", priorities);
                for (got, sent) in priorities.iter().zip(&answers) {
                    match (got, sent) {
                        (Priority::Score(got), prioritize::Priority::Score(sent)) => {
                            prop_assert!(got.is_finite());
                            prop_assert_eq!(got.to_bits(), sent.to_bits());
                        }
                        (Priority::NotNow, prioritize::Priority::NotNow) => {}
                        other => prop_assert!(false, "answer changed: {:?}", other),
                    }
                }
            }
            Err(error) if answers.len() != names.len() => {
                check_refusal(&error, None, &format!("{} answers for {} inputs", answers.len(), names.len()))?;
            }
            Err(error) => {
                let Some(i) = bad_score else {
                    return Err(TestCaseError::fail(format!("refused a good answer: {error}")));
                };
                check_refusal(&error, Some(&names[i]), "not finite")?;
            }
        }
    }

    /// `rank`: accepted exactly with one score per repo, every not-now position inside the
    /// batch, and every score finite except those held back (whatever they are); what is
    /// accepted keeps each score bit for bit and holds back exactly the positions named.
    #[test]
    fn rank_answers_are_one_score_per_repo_and_positions_inside_the_batch(
        (names, scores) in answered(score),
        picks in prop::collection::vec(0u32..10, 0..4),
    ) {
        let not_now: Vec<u32> = picks;
        let ranking = rank::Ranking { scores: scores.clone(), not_now: not_now.clone() };
        let result = answers::ranking(ranking, names.len(), |i| names[i].as_str());
        let held = |i: usize| not_now.contains(&(i as u32));
        let past_end = not_now.iter().find(|&&p| p as usize >= scores.len());
        let bad_score = (0..scores.len()).find(|&i| !held(i) && !scores[i].is_finite());
        match result {
            Ok(priorities) => {
                prop_assert_eq!(priorities.len(), names.len());
                prop_assert!(scores.len() == names.len() && past_end.is_none() && bad_score.is_none());
                for (i, got) in priorities.iter().enumerate() {
                    match got {
                        Priority::NotNow => prop_assert!(held(i), "position {} held back unasked", i),
                        Priority::Score(got) => {
                            prop_assert!(!held(i), "position {} not held back", i);
                            prop_assert_eq!(got.to_bits(), scores[i].to_bits());
                        }
                    }
                }
            }
            Err(error) if scores.len() != names.len() => {
                check_refusal(&error, None, &format!("{} answers for {} inputs", scores.len(), names.len()))?;
            }
            Err(error) => match (past_end, bad_score) {
                (Some(p), _) => check_refusal(&error, None, &format!("position {p} in not-now"))?,
                (None, Some(i)) => check_refusal(&error, Some(&names[i]), "not finite")?,
                (None, None) => return Err(TestCaseError::fail(format!("refused a good answer: {error}"))),
            },
        }
    }

    /// Accepted exactly with one decision per failure, every delay at most 30 days and every
    /// give-up reason not blank; a kept reason is the module's, or its start cut on a character
    /// boundary and marked, within the byte cap.
    #[test]
    fn reenqueue_answers_keep_delays_in_bounds_and_reasons_short((names, answers) in answered(retry)) {
        let result = answers::retries(answers.clone(), names.iter().map(String::as_str));
        let blank = |r: &str| r.chars().all(char::is_whitespace);
        let first_bad = answers.iter().position(|a| match a {
            reenqueue::Retry::AfterMs(ms) => *ms > THIRTY_DAYS_MS,
            reenqueue::Retry::GiveUp(reason) => blank(reason),
            reenqueue::Retry::Now => false,
        });
        match result {
            Ok(retries) => {
                prop_assert_eq!(retries.len(), names.len());
                prop_assert!(first_bad.is_none(), "accepted a bad answer: {:?}", retries);
                for (got, sent) in retries.iter().zip(&answers) {
                    match (got, sent) {
                        (Retry::Now, reenqueue::Retry::Now) => {}
                        (Retry::After(delay), reenqueue::Retry::AfterMs(ms)) => {
                            prop_assert_eq!(*delay, Duration::from_millis(*ms));
                            prop_assert!(*delay <= Duration::from_millis(THIRTY_DAYS_MS));
                        }
                        (Retry::GiveUp(kept), reenqueue::Retry::GiveUp(sent)) => {
                            prop_assert!(!blank(kept), "blank reason kept: {:?}", kept);
                            prop_assert!(kept.len() <= REASON_BYTES, "{} bytes", kept.len());
                            if sent.len() <= REASON_BYTES {
                                prop_assert_eq!(kept, sent);
                            } else {
                                let Some(start) = kept.strip_suffix('…') else {
                                    return Err(TestCaseError::fail(format!("cut without a mark: {kept:?}")));
                                };
                                prop_assert!(sent.starts_with(start), "not the reason's start: {:?}", kept);
                                // Cut at the last boundary that fits: at most one character short.
                                let cut_short = start.len() + '…'.len_utf8() + 4 <= REASON_BYTES;
                                prop_assert!(!cut_short, "cut short: {} bytes", start.len());
                            }
                        }
                        other => prop_assert!(false, "answer changed: {:?}", other),
                    }
                }
            }
            Err(error) if answers.len() != names.len() => {
                check_refusal(&error, None, &format!("{} answers for {} inputs", answers.len(), names.len()))?;
            }
            Err(error) => {
                let Some(i) = first_bad else {
                    return Err(TestCaseError::fail(format!("refused a good answer: {error}")));
                };
                let late = matches!(answers[i], reenqueue::Retry::AfterMs(_));
                let what = if late { "30 days" } else { "without a reason" };
                check_refusal(&error, Some(&names[i]), what)?;
            }
        }
    }

    /// Accepted exactly when every limit is for a key the host passed in, at most one per key,
    /// with a burst of at most a year at its rate, and lets dispatches through: each accepted
    /// limit, put in force in the scheduler's limiter, admits a first dispatch (and does not
    /// overflow it, as a burst of 5 million at one per hour did before the year's bound).
    /// A refusal names the first bad limit's key and what is wrong with it.
    #[test]
    fn rate_limit_answers_are_known_keys_with_usable_limits(
        seen in seen(),
        answers in prop::collection::vec(limit(), 0..6),
    ) {
        let result = answers::limits(answers.clone(), &seen);
        let problem = |i: usize, a: &rate_limits::Limit| -> Option<&'static str> {
            let key = limit_key(&a.key);
            if !seen.iter().any(|load| load.key == key) {
                Some("did not pass in")
            } else if answers[..i].iter().any(|earlier| limit_key(&earlier.key) == key) {
                Some("given twice")
            } else if a.per_hour == 0 {
                Some("per-hour 0")
            } else if a.burst == 0 {
                Some("burst 0")
            } else if u64::from(a.burst) > u64::from(a.per_hour) * 24 * 365 {
                Some("more than a year")
            } else if a.max_in_flight == Some(0) {
                Some("max-in-flight 0")
            } else {
                None
            }
        };
        let first_bad = answers.iter().enumerate().find_map(|(i, a)| problem(i, a).map(|what| (i, what)));
        match result {
            Ok(limits) => {
                prop_assert!(first_bad.is_none(), "accepted a bad limit: {:?}", limits);
                prop_assert_eq!(limits.len(), answers.len());
                for (got, sent) in limits.iter().zip(&answers) {
                    prop_assert_eq!(&got.key, &limit_key(&sent.key));
                    prop_assert!(seen.iter().any(|load| load.key == got.key));
                    prop_assert_eq!(limits.iter().filter(|l| l.key == got.key).count(), 1);
                    prop_assert_eq!(got.per_hour, sent.per_hour);
                    prop_assert_eq!(got.burst, sent.burst);
                    prop_assert_eq!(got.max_in_flight, sent.max_in_flight);
                    admits_a_dispatch(got)?;
                }
            }
            Err(error) => {
                let Some((i, what)) = first_bad else {
                    return Err(TestCaseError::fail(format!("refused good limits: {error}")));
                };
                check_refusal(&error, Some(key_name(&limit_key(&answers[i].key))), what)?;
            }
        }
    }
}

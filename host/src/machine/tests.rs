//! Machine tests: observations and outcomes in, commands out; no runtime, no clock. The
//! simulator (`sim/`) drives the same machine through many seeded fault schedules; these name
//! the basic exchanges one by one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::dispatch::{DispatchError, Outcome};
use crate::model::{DesiredRepo, NameList};
use crate::reconcile::RepoState;
use crate::routing::Routing;
use crate::schedule::{Backoff, BuiltinOrder, BuiltinRetry, NoLimits, RetryDecision};
use crate::sources::repo_db::DesiredSet;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000 + secs * 1000)
}

fn name(s: &str) -> RepoName {
    RepoName::normalize(s).unwrap()
}

fn repo(id: i64, n: &str) -> DesiredRepo {
    DesiredRepo::new(id, name(n), &format!("https://{n}"))
}

fn settings() -> Settings {
    Settings {
        shards: ShardMap::new(vec!["s0:3178".into()], Routing::Md5).unwrap(),
        limits: Limits { max_in_flight_per_shard: 8, max_in_flight: 8 },
        interval: Duration::from_secs(1),
        backoff: Backoff { base: Duration::from_secs(10), max: Duration::from_secs(60) },
        full_interval: Duration::from_secs(60),
    }
}

fn machine(attempts: HashMap<RepoName, AttemptRecord>) -> Machine {
    let policies = Policies {
        prioritizer: Arc::new(BuiltinOrder),
        retry: Arc::new(BuiltinRetry { backoff: settings().backoff, max_attempts: None }),
        rate_limits: Arc::new(NoLimits),
    };
    Machine::new(settings(), policies, attempts)
}

fn desired(names: &[&str]) -> Arc<Snapshot> {
    let mut repos: Vec<DesiredRepo> = names.iter().enumerate().map(|(i, n)| repo(i as i64 + 1, n)).collect();
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    let routes = vec![0; repos.len()];
    Arc::new(Snapshot { desired: DesiredSet { repos: repos.into(), ..DesiredSet::default() }, routes })
}

fn answered(cloned: &[&str], cloning: &[&str]) -> ShardObservation {
    ShardObservation::Answered(ShardAnswer {
        cloned: cloned.iter().map(|n| name(n)).collect(),
        cloning: cloning.iter().map(|n| name(n)).collect(),
    })
}

fn drain(m: &mut Machine, now: Timestamp) -> Vec<Command> {
    std::iter::from_fn(|| m.poll_command(now)).collect()
}

fn dispatched(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch { dispatch, .. } => Some(dispatch.name.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_interrupted_attempt_is_cleared_first_and_a_dispatch_carries_its_started_record() {
    let interrupted = AttemptRecord { attempts: 2, in_flight: true, ..AttemptRecord::default() };
    let mut m = machine(HashMap::from([(name("x/a"), interrupted)]));
    let first = drain(&mut m, t(0));
    let cleared = AttemptRecord { attempts: 2, ..AttemptRecord::default() };
    assert_eq!(first, vec![Command::Save { name: name("x/a"), record: cleared }]);

    m.handle_observation(Observation { snapshot: Ok(desired(&["x/a"])), shards: vec![answered(&[], &[])] }, t(1));
    let commands = drain(&mut m, t(1));
    let [Command::Dispatch { dispatch, record }] = &commands[..] else { panic!("{commands:?}") };
    assert_eq!((dispatch.name.as_str(), dispatch.shard_addr.as_str()), ("x/a", "s0:3178"));
    assert_eq!((record.attempts, record.in_flight, record.last_attempt_at), (3, true, Some(t(1))));
    assert_eq!(m.in_flight().count(), 1);
}

#[test]
fn a_failed_read_keeps_what_was_cloning_and_dispatches_nothing_again() {
    let mut m = machine(HashMap::new());
    let snapshot = desired(&["x/a", "x/b"]);
    m.handle_observation(
        Observation { snapshot: Ok(Arc::clone(&snapshot)), shards: vec![answered(&["x/b"], &["x/a"])] },
        t(0),
    );
    assert_eq!(dispatched(&drain(&mut m, t(0))), Vec::<String>::new(), "a is cloning, b is cloned");
    m.handle_observation(
        Observation {
            snapshot: Err("repo DB down".into()),
            shards: vec![ShardObservation::Failed("s0: refused".into())],
        },
        t(5),
    );
    assert_eq!(dispatched(&drain(&mut m, t(5))), Vec::<String>::new(), "nothing re-dispatched on a failed read");
    assert_eq!(m.repo_db_error(), Some("repo DB down"));
    assert_eq!(m.plan().totals.desired, 2, "the last good desired set stays");
}

#[test]
fn a_failure_is_saved_with_the_retry_policys_deadline_and_a_success_waits_for_the_list() {
    let mut m = machine(HashMap::new());
    m.handle_observation(
        Observation { snapshot: Ok(desired(&["x/a", "x/b"])), shards: vec![answered(&[], &[])] },
        t(0),
    );
    assert_eq!(dispatched(&drain(&mut m, t(0))), vec!["x/a", "x/b"]);
    let outcome = |n: &str, result| Outcome { name: name(n), shard: 0, started_at: t(0), finished_at: t(2), result };
    let failure = DispatchError { message: "git: not found".into(), shard_down: false };
    m.handle_outcomes(vec![outcome("x/a", Err(failure)), outcome("x/b", Ok(()))]);
    let commands = drain(&mut m, t(2));
    let saved: HashMap<String, AttemptRecord> = commands
        .into_iter()
        .map(|c| match c {
            Command::Save { name, record } => (name.to_string(), record),
            other => panic!("only saves after outcomes: {other:?}"),
        })
        .collect();
    let a = &saved["x/a"];
    assert_eq!(a.last_error.as_deref(), Some("git: not found"));
    assert!(!a.in_flight && a.next_attempt_at.is_some_and(|at| at >= t(12)), "{a:?}");
    let b = &saved["x/b"];
    assert_eq!(b.next_attempt_at, Some(t(4)), "two intervals for a list to confirm the clone");
    assert_eq!(m.in_flight().count(), 0);

    // The next list confirms b: its record is forgotten; a waits for its backoff.
    m.handle_observation(
        Observation { snapshot: Ok(desired(&["x/a", "x/b"])), shards: vec![answered(&["x/b"], &[])] },
        t(3),
    );
    assert_eq!(drain(&mut m, t(3)), vec![Command::Forget { name: name("x/b") }]);
}

#[test]
fn between_sweeps_progress_is_asked_only_where_the_answer_can_change_a_decision() {
    let mut m = machine(HashMap::new());
    let first = m.progress_scope(t(0));
    assert!(first.is_sweep(), "the first observation asks about everything a list lacks");

    // 1,000 uncloned repos, one the shard says it is cloning.
    let names: Vec<String> = (0..1000).map(|i| format!("x/r{i:04}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("x/busy");
    m.handle_observation(Observation { snapshot: Ok(desired(&all)), shards: vec![answered(&[], &["x/busy"])] }, t(0));
    let sent = dispatched(&drain(&mut m, t(0)));
    assert_eq!(sent.len(), 8, "the caps allow eight at once");

    // One dispatch succeeds: it awaits the list's confirmation for two intervals.
    let done = name(&sent[0]);
    let success = Outcome { name: done.clone(), shard: 0, started_at: t(0), finished_at: t(1), result: Ok(()) };
    m.handle_outcomes(vec![success]);
    drain(&mut m, t(1));

    let scope = m.progress_scope(t(1));
    assert!(!scope.is_sweep());
    assert!(scope.wants(&name("x/busy")), "what a shard said it was cloning is followed");
    assert!(scope.wants(&done), "a successful dispatch awaiting its confirmation is asked about");
    for in_flight in &sent[1..] {
        assert!(scope.wants(&name(in_flight)), "{in_flight} is in flight");
    }
    let queued = m.queue(1);
    assert!(scope.wants(&name(&queued[0].name)), "the head of the queue is asked about");
    assert!(!scope.wants(&name("x/r0999")), "the tail of the queue is not");
    // The cloning one, eight in flight (the freed slot went to the next repo), the one awaiting
    // confirmation, and 4 × the per-shard cap from the queue's head.
    assert_eq!(scope.len(), 1 + 8 + 1 + 32, "names between sweeps, of 1,001 uncloned");

    assert!(!m.progress_scope(t(59)).is_sweep());
    assert!(m.progress_scope(t(61)).is_sweep(), "a sweep every full_interval");
}

#[test]
fn a_scope_asks_a_shard_only_about_the_repos_it_owns_lacks_and_names() {
    let mut m = machine(HashMap::new());
    let sweep = m.progress_scope(t(0));
    let four = desired(&["x/a", "x/b", "x/c", "x/d"]);
    let two_shards = Snapshot { desired: four.desired.clone(), routes: vec![0, 1, 0, 0] };
    let listed = vec![name("x/a"), name("x/orphan")];
    let names = |found: Vec<&str>| found.into_iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(sweep.missing(&two_shards, 0, &listed.clone().into())),
        vec!["x/c", "x/d"],
        "a sweep: every owned repo not listed"
    );
    assert_eq!(names(sweep.missing(&two_shards, 1, &NameList::default())), vec!["x/b"]);

    m.handle_observation(Observation { snapshot: Ok(desired(&["x/c"])), shards: vec![answered(&[], &["x/c"])] }, t(0));
    let scoped = m.progress_scope(t(1));
    assert!(!scoped.is_sweep());
    assert_eq!(
        names(scoped.missing(&two_shards, 0, &listed.into())),
        vec!["x/c"],
        "between sweeps: only what the scope names"
    );
    assert!(scoped.missing(&two_shards, 0, &[name("x/c")].into()).is_empty(), "listed now: nothing to ask");
    assert!(
        scoped.missing(&two_shards, 1, &NameList::default()).is_empty(),
        "another shard's repo is not asked about here"
    );
}

/// A rate-limit policy that limits every code host it sees to 60 an hour.
struct SixtyAnHour;

impl crate::schedule::RateLimitPolicy for SixtyAnHour {
    fn limits(
        &self,
        seen: &[crate::schedule::KeyLoad],
        _now: Timestamp,
    ) -> Vec<(crate::schedule::LimitKey, crate::schedule::RateLimit)> {
        let sixty = std::num::NonZeroU32::new(60).expect("non-zero");
        let limit = crate::schedule::RateLimit { per_hour: sixty, burst: sixty, max_in_flight: None };
        seen.iter()
            .filter(|load| matches!(load.key, crate::schedule::LimitKey::CodeHost(_)))
            .map(|load| (load.key.clone(), limit))
            .collect()
    }
}

#[test]
fn the_decision_log_gets_retries_with_their_failure_and_limits_once_with_their_load() {
    let policies = Policies {
        prioritizer: Arc::new(BuiltinOrder),
        retry: Arc::new(BuiltinRetry { backoff: settings().backoff, max_attempts: Some(2) }),
        rate_limits: Arc::new(SixtyAnHour),
    };
    let mut m = Machine::new(settings(), policies, HashMap::new());
    let observe = |m: &mut Machine, at| {
        m.handle_observation(
            Observation { snapshot: Ok(desired(&["x/a", "x/b"])), shards: vec![answered(&[], &[])] },
            at,
        )
    };
    observe(&mut m, t(0));
    assert_eq!(m.due_reason("x/a"), "uncloned, never dispatched");
    let limits = m.take_decision_log();
    assert_eq!(limits.len(), 1, "one code host, limited once: {limits:?}");
    assert_eq!((limits[0].subject.as_str(), limits[0].interface), ("code host x", "rate-limits"));
    assert_eq!(limits[0].decision, "60/h, burst 60");
    assert_eq!(limits[0].reason, "2 repos, 2 queued, 0 in flight");
    assert_eq!(limits[0].module, "builtin");

    let sent = dispatched(&drain(&mut m, t(0)));
    assert!(!sent.is_empty());
    let failure = DispatchError { message: "git: repository not found".into(), shard_down: false };
    let outcome = Outcome { name: name(&sent[0]), shard: 0, started_at: t(0), finished_at: t(1), result: Err(failure) };
    m.handle_outcomes(vec![outcome]);
    let retries = m.take_decision_log();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0].interface, "reenqueue");
    assert!(retries[0].decision.starts_with("retry at "), "{:?}", retries[0]);
    assert_eq!(retries[0].reason, "dispatch 1 to s0:3178 failed: git: repository not found");
    assert!(m.take_decision_log().is_empty(), "taken once");

    observe(&mut m, t(2));
    assert!(m.take_decision_log().is_empty(), "an unchanged limit is not logged again");
    assert_eq!(
        m.due_reason(name(&sent[0]).as_str()),
        "failed 1 time(s), retry due; last error: git: repository not found"
    );
    assert_eq!(m.due_reason("x/gone"), "not desired any more");
}

#[test]
fn failed_and_lost_retry_decisions_are_kept_for_shadows_with_what_the_policy_was_told() {
    let mut m = machine(HashMap::new());
    let observe = |m: &mut Machine, cloned: &[&str], at: Timestamp| {
        m.handle_observation(
            Observation { snapshot: Ok(desired(&["x/a", "x/b"])), shards: vec![answered(cloned, &[])] },
            at,
        )
    };
    observe(&mut m, &[], t(0));
    assert_eq!(dispatched(&drain(&mut m, t(0))), vec!["x/a", "x/b"]);
    let outcome = |n: &str, result| Outcome { name: name(n), shard: 0, started_at: t(0), finished_at: t(1), result };
    let failure = DispatchError { message: "git: not found".into(), shard_down: false };
    m.handle_outcomes(vec![outcome("x/a", Err(failure)), outcome("x/b", Ok(()))]);
    drain(&mut m, t(1));
    // b's dispatch succeeded, yet no list shows it past the confirmation grace: lost.
    observe(&mut m, &[], t(5));
    let cases = m.take_retry_cases();
    let seen: Vec<(String, RepoState, u32)> =
        cases.iter().map(|c| (c.name.to_string(), c.state, c.record.attempts)).collect();
    assert_eq!(seen, [("x/a".to_string(), RepoState::Failed, 1), ("x/b".to_string(), RepoState::Lost, 1)]);
    assert_eq!(cases[0].record.last_error.as_deref(), Some("git: not found"), "the record as the policy saw it");
    assert!(matches!(cases[1].decision, RetryDecision::RetryAt(_)), "{:?}", cases[1].decision);
    assert!(m.take_retry_cases().is_empty(), "taken once");
}

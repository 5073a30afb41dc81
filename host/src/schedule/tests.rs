//! Scheduler tests: caps, order, the never-twice invariant, backoff and the built-in order.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::model::{AttemptRecord, DesiredRepo, DesiredRepos, Timestamp};
use crate::reconcile::{Plan, RepoState};

fn names(n: usize) -> Vec<RepoName> {
    (0..n).map(|i| RepoName::normalize(&format!("x/r{i}")).unwrap()).collect()
}

fn jobs(spec: &[(u32, ShardIdx)]) -> Vec<Job> {
    spec.iter().map(|&(repo, shard)| Job { repo, shard }).collect()
}

fn drain(s: &mut Scheduler, names: &[RepoName]) -> Vec<u32> {
    std::iter::from_fn(|| s.poll_dispatch(Timestamp::default(), |i| names[i as usize].as_str()))
        .map(|(job, _)| job.repo)
        .collect()
}

#[test]
fn respects_per_shard_and_global_caps() {
    let names = names(10);
    let mut s = Scheduler::new(2, Limits { max_in_flight_per_shard: 2, max_in_flight: 3 });
    s.handle_plan(&jobs(&[(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)]));
    assert_eq!(drain(&mut s, &names), vec![0, 1, 3], "2 on shard 0, then the global cap of 3");
    assert_eq!(s.in_flight_per_shard(), vec![2, 1]);
    s.handle_finished(&names[0]);
    assert_eq!(drain(&mut s, &names), vec![2]);
    s.handle_finished(&names[3]);
    assert_eq!(drain(&mut s, &names), vec![4]);
    assert_eq!(s.queued_per_shard(), vec![0, 1]);
}

#[test]
fn follows_the_global_order_across_shards() {
    let names = names(4);
    let mut s = Scheduler::new(2, Limits { max_in_flight_per_shard: 1, max_in_flight: 10 });
    s.handle_plan(&jobs(&[(3, 1), (0, 0), (2, 1), (1, 0)]));
    assert_eq!(s.peek(10), jobs(&[(3, 1), (0, 0), (2, 1), (1, 0)]));
    assert_eq!(s.queue_position(2), Some(2));
    assert_eq!(drain(&mut s, &names), vec![3, 0]);
}

#[test]
fn never_dispatches_one_repo_twice_at_once() {
    let names = names(2);
    let mut s = Scheduler::new(1, Limits { max_in_flight_per_shard: 5, max_in_flight: 5 });
    s.handle_plan(&jobs(&[(0, 0), (1, 0)]));
    assert_eq!(drain(&mut s, &names), vec![0, 1]);
    // A new tick queues repo 0 again while it is still in flight: it is skipped.
    s.handle_plan(&jobs(&[(0, 0)]));
    assert_eq!(drain(&mut s, &names), Vec::<u32>::new());
    assert!(s.is_in_flight(&names[0]));
    s.handle_finished(&names[0]);
    s.handle_plan(&jobs(&[(0, 0)]));
    assert_eq!(drain(&mut s, &names), vec![0]);
}

#[test]
fn a_new_plan_replaces_the_queue() {
    let names = names(3);
    let mut s = Scheduler::new(1, Limits { max_in_flight_per_shard: 1, max_in_flight: 1 });
    s.handle_plan(&jobs(&[(0, 0), (1, 0)]));
    assert_eq!(drain(&mut s, &names), vec![0]);
    s.handle_plan(&jobs(&[(2, 0)]));
    s.handle_finished(&names[0]);
    assert_eq!(drain(&mut s, &names), vec![2]);
}

#[test]
fn backoff_doubles_up_to_the_ceiling_with_bounded_jitter() {
    let b = Backoff { base: Duration::from_secs(10), max: Duration::from_secs(100) };
    let name = RepoName::normalize("x/a").unwrap();
    for (attempts, raw) in [(1, 10), (2, 20), (3, 40), (4, 80)] {
        let d = b.delay(attempts, &name).as_secs_f64();
        assert!(d >= raw as f64 && d <= raw as f64 * 1.25 + 1e-9, "attempt {attempts}: {d}");
    }
    assert_eq!(b.delay(5, &name), Duration::from_secs(100));
    assert_eq!(b.delay(60, &name), Duration::from_secs(100));
    assert_eq!(b.delay(3, &name), b.delay(3, &name), "deterministic");
}

#[test]
fn builtin_retry_gives_up_only_when_configured() {
    let name = RepoName::normalize("x/a").unwrap();
    let record = AttemptRecord { attempts: 3, last_error: Some("boom".into()), ..Default::default() };
    let now = Timestamp::from_millis(1_000_000);
    let failure = [Failure { name: &name, record: &record, repo: None, shard: 0, state: RepoState::Failed }];
    let forever = BuiltinRetry::default();
    match &forever.on_failures(&failure, now)[..] {
        [RetryDecision::RetryAt(at)] => assert!(*at >= now.saturating_add(Duration::from_secs(40))),
        other => panic!("{other:?}"),
    }
    let bounded = BuiltinRetry { max_attempts: Some(3), ..Default::default() };
    assert!(matches!(&bounded.on_failures(&failure, now)[..], [RetryDecision::GiveUp { .. }]));
}

fn desired(id: i64, created_secs: i64) -> DesiredRepo {
    DesiredRepo {
        created_at: Some(Timestamp::from_millis(created_secs * 1000)),
        ..DesiredRepo::new(id, RepoName::normalize(&format!("x/r{id}")).unwrap(), "u")
    }
}

#[test]
fn builtin_order_puts_never_attempted_first_then_oldest() {
    let repos = vec![desired(1, 300), desired(2, 100), desired(3, 200), desired(4, 50)];
    let routes = vec![0; 4];
    let plan = Plan {
        states: vec![RepoState::Uncloned, RepoState::Uncloned, RepoState::Failed, RepoState::Failed],
        due: vec![0, 1, 2, 3],
        ..Plan::default()
    };
    let mut attempts = HashMap::new();
    let failed_at = |secs: i64| AttemptRecord {
        attempts: 1,
        last_error: Some("e".into()),
        last_attempt_at: Some(Timestamp::from_millis(secs * 1000)),
        ..Default::default()
    };
    attempts.insert(repos[2].name.clone(), failed_at(900));
    attempts.insert(repos[3].name.clone(), failed_at(500));
    let ordered =
        order(&DesiredRepos::in_given_order(&repos), &routes, &plan, &attempts, &BuiltinOrder, 2, Timestamp::default());
    let ids: Vec<i64> = ordered.jobs.iter().map(|j| repos[j.repo as usize].id).collect();
    assert_eq!(ids, vec![2, 1, 4, 3]);
    assert_eq!(ordered.fallbacks, 0);
}

struct Broken;
impl Prioritizer for Broken {
    fn prioritize(&self, batch: &[Candidate<'_>], _: Timestamp) -> Vec<Priority> {
        vec![Priority::Score(f64::NAN); batch.len()]
    }
}

struct OnlyEven;
impl Prioritizer for OnlyEven {
    fn prioritize(&self, batch: &[Candidate<'_>], _: Timestamp) -> Vec<Priority> {
        batch
            .iter()
            .map(|c| if c.repo.id() % 2 == 0 { Priority::Score(c.repo.id() as f64) } else { Priority::NotNow })
            .collect()
    }
}

#[test]
fn unusable_answers_fall_back_and_not_now_defers() {
    let repos: Vec<_> = (1..=4).map(|i| desired(i, i)).collect();
    let plan = Plan { states: vec![RepoState::Uncloned; 4], due: vec![0, 1, 2, 3], ..Plan::default() };
    let routes = vec![0; 4];
    let none = HashMap::new();
    let ordered = order(&DesiredRepos::in_given_order(&repos), &routes, &plan, &none, &Broken, 3, Timestamp::default());
    assert_eq!(ordered.fallbacks, 2);
    assert_eq!(ordered.jobs.len(), 4);

    let ordered =
        order(&DesiredRepos::in_given_order(&repos), &routes, &plan, &none, &OnlyEven, 3, Timestamp::default());
    let ids: Vec<i64> = ordered.jobs.iter().map(|j| repos[j.repo as usize].id).collect();
    assert_eq!(ids, vec![4, 2]);
    assert_eq!(ordered.deferred, 2);
}

#[test]
fn a_down_shard_is_paused_with_growing_pauses_and_resumes_when_up() {
    let names = names(4);
    let t = |secs: i64| Timestamp::from_millis(secs * 1000);
    let mut s = Scheduler::new(2, Limits { max_in_flight_per_shard: 5, max_in_flight: 10 });
    s.handle_plan(&jobs(&[(0, 0), (1, 1), (2, 0), (3, 1)]));
    s.handle_shard_down(0, t(100));
    assert_eq!(s.paused_until(0), Some(t(101)));
    let poll = |s: &mut Scheduler, at| {
        std::iter::from_fn(|| s.poll_dispatch(at, |i| names[i as usize].as_str()))
            .map(|(j, _)| j.repo)
            .collect::<Vec<_>>()
    };
    assert_eq!(poll(&mut s, t(100)), vec![1, 3], "shard 0 is paused");
    assert_eq!(s.poll_timeout(), Some(t(101)));
    s.handle_shard_down(0, t(101));
    assert_eq!(s.paused_until(0), Some(t(103)), "the second pause is twice as long");
    assert_eq!(poll(&mut s, t(102)), Vec::<u32>::new());
    assert_eq!(poll(&mut s, t(103)), vec![0, 2]);
    s.handle_shard_down(0, t(200));
    s.handle_shard_up(0);
    assert_eq!(s.paused_until(0), None);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn the_builtin_order_explains_why_in_its_own_terms() {
    use crate::model::{AttemptRecord, DesiredRepo, RepoName};
    use crate::reconcile::RepoState;
    use crate::schedule::{BuiltinOrder, Candidate};
    let mut repo = DesiredRepo::new(1, RepoName::from_normalized("github.com/a/b"), "https://github.com/a/b");
    repo.created_at = Some(Timestamp::from_millis(1_600_000_000_000));
    let one = crate::model::DesiredRepos::in_given_order(std::slice::from_ref(&repo));
    let fresh = Candidate { repo: one.at(0), shard: 0, state: RepoState::Uncloned, record: None };
    assert_eq!(
        BuiltinOrder::explain(&fresh),
        "never attempted, created 2020-09-13: never-attempted repos go first, the oldest first"
    );
    let record = AttemptRecord {
        attempts: 2,
        last_attempt_at: Some(Timestamp::from_millis(1_700_000_000_000)),
        ..AttemptRecord::default()
    };
    let failed = Candidate { record: Some(&record), state: RepoState::Failed, ..fresh };
    assert!(
        BuiltinOrder::explain(&failed).starts_with("failed 2 times (last 2023-11-14)"),
        "{}",
        BuiltinOrder::explain(&failed)
    );
}

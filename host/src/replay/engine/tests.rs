use std::sync::Arc;
use std::time::Duration;

use super::{replay, Options};
use crate::machine::Policies;
use crate::model::{AttemptRecord, DesiredRepo, RepoName, Timestamp};
use crate::reconcile::RepoState;
use crate::replay::capture::{Capture, CapturedClone, CapturedRepo, Header};
use crate::replay::clone_time::CloneTime;
use crate::routing::{Routing, ShardMap};
use crate::schedule::{Backoff, BuiltinOrder, BuiltinRetry, Candidate, Limits, NoLimits, Prioritizer, Priority};

const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// `repos` repos over two shards, those with an even index cloned when `half_cloned`; repo
/// `i` has `i` stars, so the last ones are the popular ones.
fn capture(repos: usize, half_cloned: bool, limits: Limits) -> Capture {
    let shards = ShardMap::new(vec!["gs-0:3178".into(), "gs-1:3178".into()], Routing::Md5).expect("two shards");
    let mut list: Vec<CapturedRepo> = (0..repos)
        .map(|i| {
            let name = RepoName::from_normalized(format!("github.com/org/r{i:05}"));
            let mut repo = DesiredRepo::new(i as i64, name.clone(), &format!("https://{name}"));
            repo.stars = Some(i as u32);
            let state = if half_cloned && i % 2 == 0 { RepoState::Cloned } else { RepoState::Uncloned };
            CapturedRepo { shard: shards.shard_for(&name), repo, state, record: None }
        })
        .collect();
    list.sort_by(|a, b| a.repo.name.cmp(&b.repo.name));
    let header = Header {
        format: crate::replay::capture::FORMAT.into(),
        taken_at: START.to_rfc3339(),
        clonekeeper: "test".into(),
        interval_secs: 5.0,
        max_in_flight: limits.max_in_flight,
        max_in_flight_per_shard: limits.max_in_flight_per_shard,
        backoff_base_secs: 1.0,
        backoff_max_secs: 30.0,
        routing: "md5".into(),
        shards: shards.addrs().to_vec(),
        repos: repos as u64,
    };
    Capture {
        header,
        shards,
        limits,
        interval: Duration::from_secs(5),
        backoff: Backoff { base: Duration::from_secs(1), max: Duration::from_secs(30) },
        taken_at: START,
        repos: list,
        clones: Vec::new(),
    }
}

fn options(clone_time: CloneTime, top: Vec<u32>) -> Options {
    Options { tick: Duration::from_secs(60), clone_time, horizon: Duration::from_secs(30 * 86_400), seed: 1, top }
}

fn policies(prioritizer: Arc<dyn Prioritizer>, max_attempts: Option<u32>) -> Policies {
    let backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(30) };
    Policies { prioritizer, retry: Arc::new(BuiltinRetry { backoff, max_attempts }), rate_limits: Arc::new(NoLimits) }
}

/// Most stars first.
struct StarsFirst;

impl Prioritizer for StarsFirst {
    fn prioritize(&self, batch: &[Candidate<'_>], _now: Timestamp) -> Vec<Priority> {
        batch.iter().map(|c| Priority::Score(f64::from(c.repo.stars().unwrap_or(0)))).collect()
    }
}

fn at(run: &crate::replay::PolicyRun, percent: u8) -> f64 {
    let milestone = run.milestones.iter().find(|m| m.percent == percent).expect("milestone");
    milestone.at_secs.unwrap_or_else(|| panic!("{percent}% not reached: {run:?}"))
}

#[test]
fn the_backlog_is_cloned_no_faster_than_the_caps_allow() {
    let limits = Limits { max_in_flight_per_shard: 2, max_in_flight: 3 };
    let capture = capture(60, true, limits);
    let run = replay(
        &capture,
        "built-in",
        policies(Arc::new(BuiltinOrder), None),
        &options(CloneTime::Fixed(Duration::from_secs(10)), vec![]),
    );
    // 30 repos of the backlog, 3 at a time, 10 s each: 100 s at best.
    assert_eq!(run.cloned.last().map(|p| p.1), Some(30));
    let all = at(&run, 100);
    assert!((100.0..=130.0).contains(&all), "100% after {all}s; the caps allow 100s");
    assert_eq!(run.dispatches, 30);
    assert_eq!(run.retries, 0);
    // At most 3 start within any one minute's 10 s slots: 18 per minute.
    let peak = run.per_minute_by_host.get("github.com").and_then(|m| m.iter().max().copied()).unwrap_or(0);
    assert!(peak <= 18, "{peak} dispatches in one minute with 3 slots of 10 s");
    assert!(run.cloned.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1), "curve not increasing");
}

#[test]
fn the_policy_decides_which_repos_clone_first() {
    let limits = Limits { max_in_flight_per_shard: 1, max_in_flight: 2 };
    let capture = capture(200, false, limits);
    // The ten most starred: the ten highest indices.
    let mut top: Vec<u32> = (0..capture.repos.len() as u32).collect();
    top.sort_by_key(|&idx| std::cmp::Reverse(capture.repos[idx as usize].repo.stars));
    top.truncate(10);
    let model = CloneTime::Fixed(Duration::from_secs(30));
    let stars = replay(&capture, "stars", policies(Arc::new(StarsFirst), None), &options(model.clone(), top.clone()));
    let builtin = replay(&capture, "built-in", policies(Arc::new(BuiltinOrder), None), &options(model, top.clone()));
    let stars_top = stars.top.and_then(|t| t.all_at_secs).expect("top cloned");
    let builtin_top = builtin.top.and_then(|t| t.all_at_secs).expect("top cloned");
    // Stars-first clones the ten first, one at a time per shard: as many 30 s rounds as the
    // busier shard owns of them. The built-in order (oldest first) reaches them last.
    let on_first = top.iter().filter(|&&idx| capture.repos[idx as usize].shard == 0).count();
    let rounds = on_first.max(top.len() - on_first) as f64;
    assert!(stars_top <= rounds * 30.0, "stars-first cloned its top 10 after {stars_top}s, in {rounds} rounds");
    assert!(builtin_top > 3.0 * stars_top, "built-in {builtin_top}s vs stars-first {stars_top}s");
    // Same work either way.
    assert_eq!(at(&stars, 100).round(), at(&builtin, 100).round());
}

#[test]
fn failures_are_retried_and_the_same_seed_replays_the_same() {
    let limits = Limits { max_in_flight_per_shard: 3, max_in_flight: 6 };
    let capture = capture(100, false, limits);
    let clones: Vec<CapturedClone> = (1..=10)
        .map(|s| CapturedClone { took: Duration::from_secs(s), succeeded: s % 3 != 0, size_bytes: None })
        .collect();
    let model = CloneTime::observed(&clones).expect("successes");
    let first = replay(&capture, "a", policies(Arc::new(BuiltinOrder), None), &options(model.clone(), vec![]));
    assert!(first.retries > 0, "30% failures and no retry: {first:?}");
    assert_eq!(first.dispatches, 100 + first.retries);
    assert_eq!(first.cloned.last().map(|p| p.1), Some(100));
    let again = replay(&capture, "a", policies(Arc::new(BuiltinOrder), None), &options(model, vec![]));
    assert_eq!(first.cloned, again.cloned);
    assert_eq!(first.per_minute_by_shard, again.per_minute_by_shard);
}

#[test]
fn repos_given_up_end_the_replay_early_and_are_counted() {
    let limits = Limits { max_in_flight_per_shard: 2, max_in_flight: 4 };
    let mut capture = capture(20, false, limits);
    for repo in capture.repos.iter_mut().take(3) {
        repo.state = RepoState::Failed;
        repo.record = Some(AttemptRecord {
            attempts: 5,
            last_error: Some("remote: not found".into()),
            gave_up: Some("5 attempts".into()),
            ..AttemptRecord::default()
        });
    }
    let run = replay(
        &capture,
        "a",
        policies(Arc::new(BuiltinOrder), None),
        &options(CloneTime::Fixed(Duration::from_secs(5)), vec![]),
    );
    assert_eq!(run.gave_up, 3);
    assert_eq!(run.cloned.last().map(|p| p.1), Some(17));
    assert!(run.milestones[3].at_secs.is_none(), "100% reached with 3 repos given up");
    let last = run.cloned.last().map_or(0.0, |p| p.0);
    assert!(run.ticks < 10, "the replay ran on to the horizon after the last clone at {last}s: {} ticks", run.ticks);
}

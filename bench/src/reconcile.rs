//! Pure reconcile of N desired repos against 8 shards' lists.
//!
//! Baseline, measured in the same run: the least any diff of this size must do — build a hash
//! set of the desired names and look every listed name up once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clonekeeper::model::{AttemptRecord, CloneUrl, DesiredRepo, DesiredRepos, RecordedState, RepoName, Timestamp};
use clonekeeper::reconcile::{self, Actual, Context, ShardActual};
use clonekeeper::routing::{Routing, ShardMap};

use crate::alloc;
use crate::report::{median, Section};

pub const SHARDS: usize = 8;

pub fn run(n_repos: usize, runs: usize) -> Section {
    let shards = ShardMap::new((0..SHARDS).map(|i| format!("gitserver-{i}:3178")).collect(), Routing::Md5)
        .expect("eight shards");
    let before_inputs = alloc::live();
    let desired: DesiredRepos = (0..n_repos).map(desired_repo).collect();
    let routes: Vec<u16> = desired.names().map(|name| shards.shard_for(name)).collect();
    // 90% cloned on their owner, 1% of those listed on the wrong shard, 1,000 orphans per shard.
    let mut lists: Vec<Vec<RepoName>> = vec![Vec::new(); SHARDS];
    for (idx, (repo, &shard)) in desired.iter().zip(&routes).enumerate() {
        if !idx.is_multiple_of(10) {
            let holder = if idx % 100 == 1 { (usize::from(shard) + 1) % SHARDS } else { usize::from(shard) };
            lists[holder].push(repo.repo_name());
        }
    }
    for (shard, list) in lists.iter_mut().enumerate() {
        list.extend((0..1000).map(|i| RepoName::from_normalized(format!("github.com/gone/{shard}-{i}"))));
    }
    let actual = Actual {
        shards: lists
            .into_iter()
            .map(|cloned| ShardActual {
                reachable: true,
                cloned: Some(Arc::new(cloned.into())),
                cloning: Arc::default(),
            })
            .collect(),
    };
    let mut attempts = HashMap::new();
    for repo in desired.iter().step_by(100) {
        attempts.insert(
            repo.repo_name(),
            AttemptRecord {
                attempts: 2,
                last_error: Some("fatal: could not read from remote repository".into()),
                next_attempt_at: Some(Timestamp::from_millis(2_000_000_000_000)),
                ..Default::default()
            },
        );
    }
    let in_flight = HashSet::new();
    let inputs_bytes = alloc::live() - before_inputs;
    let now = Timestamp::from_millis(1_900_000_000_000);

    let mut times = Vec::new();
    let mut extra_peak = 0;
    let mut plan_bytes = 0;
    for _ in 0..runs {
        let before = alloc::live();
        alloc::reset_peak();
        let started = Instant::now();
        let plan = reconcile::reconcile(
            &desired,
            &routes,
            &actual,
            &Context { attempts: &attempts, in_flight: &in_flight, now },
        );
        times.push(started.elapsed());
        extra_peak = extra_peak.max(alloc::peak() - before);
        plan_bytes = alloc::live() - before;
        assert_eq!(plan.totals.desired as usize, n_repos);
        drop(plan);
    }

    let mut baseline = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let set: HashSet<&str> = desired.names().collect();
        let hits = actual
            .shards
            .iter()
            .flat_map(|s| s.cloned.iter().flat_map(|list| list.iter()))
            .filter(|n| set.contains(n))
            .count();
        baseline.push(started.elapsed());
        assert!(hits > 0);
    }

    let t = median(&mut times);
    let b = median(&mut baseline);
    let per_repo = |bytes: usize| bytes as f64 / n_repos as f64;
    let mut section = Section::new(format!("Pure reconcile: {n_repos} desired repos, {SHARDS} shards"));
    section.row("reconcile (median of runs)", fmt_duration(t), "goal < 1 s");
    section.row("baseline: hash set of names + one lookup per listed name", fmt_duration(b), "");
    section.row("ratio reconcile / baseline", format!("{:.2}×", t.as_secs_f64() / b.as_secs_f64()), "");
    section.row(
        "peak extra memory during reconcile",
        format!("{:.0} bytes/repo", per_repo(extra_peak)),
        "goal < 300 bytes/repo",
    );
    section.row("plan kept after reconcile", format!("{:.0} bytes/repo", per_repo(plan_bytes)), "");
    section.row("inputs (desired + 8 lists + attempts)", format!("{:.0} bytes/repo", per_repo(inputs_bytes)), "");
    section
}

fn desired_repo(i: usize) -> DesiredRepo {
    let name = format!("github.com/org-{}/repo-{i}", i % 5000);
    DesiredRepo {
        id: i as i64 + 1,
        url: CloneUrl::FromName { git: true },
        name: RepoName::from_normalized(name),
        service_type: None,
        created_at: Some(Timestamp::from_millis(1_500_000_000_000 + i as i64)),
        updated_at: None,
        stars: Some((i % 1000) as u32),
        fork: i.is_multiple_of(7),
        archived: i.is_multiple_of(11),
        private: false,
        recorded: RecordedState::ClonedFlag(false),
    }
}

pub fn fmt_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

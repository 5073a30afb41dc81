//! Where one process stops being enough: one tick of the production decision machine
//! (`Machine::handle_observation`: reconcile, order with the built-in prioritizer, the
//! scheduler's new queue) at 1M repos on 8 shards and at 10M on 100, 90% cloned. No I/O: this
//! is the CPU and memory a tick needs on top of reading the repo DB and the lists.
//!
//! The baseline is what the work needs at the least: one hash-set lookup per listed name
//! (the same as the reconcile section's), measured at each size in the same run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clonekeeper::machine::{Machine, Observation, Policies, Settings, ShardAnswer, ShardObservation, Snapshot};
use clonekeeper::model::{DesiredRepo, NameList, NameListBuilder, RepoName, Timestamp};
use clonekeeper::routing::{Routing, ShardMap};
use clonekeeper::schedule::{Backoff, BuiltinOrder, BuiltinRetry, Limits, NoLimits};
use clonekeeper::sources::repo_db::DesiredSet;

use crate::alloc;
use crate::reconcile::fmt_duration;
use crate::report::{median, Section};

/// One size: repos and shards.
struct Size {
    repos: usize,
    shards: usize,
}

struct Measured {
    tick: Duration,
    baseline: Duration,
    inputs_bytes: usize,
    tick_peak_bytes: usize,
    due: usize,
}

pub fn run(scale_repos: usize, runs: usize) -> Section {
    let sizes = [Size { repos: 1_000_000, shards: 8 }, Size { repos: scale_repos, shards: 100 }];
    let mut section = Section::new(format!(
        "One process at scale: a tick of the decision machine at 1000000 repos / 8 shards and {scale_repos} / 100"
    ));
    let mut results = Vec::new();
    for size in &sizes {
        let m = measure(size, runs);
        let per_repo = |bytes: usize| bytes as f64 / size.repos as f64;
        let label = format!("{} repos, {} shards", size.repos, size.shards);
        section.row(&format!("{label}: tick (reconcile, order {} due, queue)", m.due), fmt_duration(m.tick), "");
        section.row(&format!("{label}: baseline, a hash-set lookup per listed name"), fmt_duration(m.baseline), "");
        section.row(&format!("{label}: ratio tick / baseline"), format!("{:.2}×", ratio(m.tick, m.baseline)), "");
        section.row(
            &format!("{label}: inputs held (desired set, lists, routes)"),
            format!("{:.0} MB ({:.0} bytes/repo)", m.inputs_bytes as f64 / 1e6, per_repo(m.inputs_bytes)),
            "",
        );
        section.row(
            &format!("{label}: peak extra memory during the tick"),
            format!("{:.0} MB ({:.0} bytes/repo)", m.tick_peak_bytes as f64 / 1e6, per_repo(m.tick_peak_bytes)),
            "",
        );
        results.push(m);
    }
    let growth = ratio(results[1].tick, results[0].tick);
    section.row(
        "tick time growth from the first size to the second",
        format!("{growth:.1}× for {:.0}× the repos", sizes[1].repos as f64 / sizes[0].repos as f64),
        "linear would be the repo ratio",
    );
    section.notes.push("The tick here is the decision machine alone (reconcile, the built-in order of every due repo, the scheduler's queue), with nothing read (reconcile's per-shard lookups run on every core, the rest on one): at 10M repos it takes seconds on its own, before the repo DB read (≈ 10 × the 1M figures of the sections above) and the 9M listed names; the inputs row is what the process holds for them. docs/scale-out.md designs how replicas would split the shards with a lease per shard when one process is no longer enough.".to_string());
    section
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn measure(size: &Size, runs: usize) -> Measured {
    let shards = ShardMap::new((0..size.shards).map(|i| format!("gitserver-{i}:3178")).collect(), Routing::Md5)
        .expect("shard addresses");
    let before_inputs = alloc::live();
    let mut repos: Vec<DesiredRepo> = (0..size.repos).map(repo).collect();
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    let routes: Vec<u16> = repos.iter().map(|r| shards.shard_for(&r.name)).collect();
    let mut lists: Vec<NameListBuilder> = (0..size.shards).map(|_| NameListBuilder::default()).collect();
    for (idx, (repo, &shard)) in repos.iter().zip(&routes).enumerate() {
        if !idx.is_multiple_of(10) {
            lists[usize::from(shard)].push(repo.name.as_str());
        }
    }
    let lists: Vec<NameList> = lists.into_iter().map(NameListBuilder::finish).collect();
    let snapshot = Arc::new(Snapshot { desired: DesiredSet { repos: repos.into(), ..DesiredSet::default() }, routes });
    let inputs_bytes = alloc::live() - before_inputs;

    let settings = Settings {
        shards,
        limits: Limits { max_in_flight_per_shard: 5, max_in_flight: 40 },
        interval: Duration::from_secs(10),
        backoff: Backoff { base: Duration::from_secs(10), max: Duration::from_secs(3600) },
        full_interval: Duration::from_secs(300),
    };
    let policies = Policies {
        prioritizer: Arc::new(BuiltinOrder),
        retry: Arc::new(BuiltinRetry { backoff: settings.backoff, max_attempts: None }),
        rate_limits: Arc::new(NoLimits),
    };
    let mut machine = Machine::new(settings, policies, HashMap::new());
    let now = Timestamp::from_millis(1_900_000_000_000);

    let mut times = Vec::new();
    let mut peak = 0;
    let mut due = 0;
    for run in 0..runs.max(1) {
        // Each tick gets the lists as a shard would send them: a fresh copy, made outside the
        // timing (decoding the answers is the I/O side's cost).
        let shards = lists
            .iter()
            .map(|list| ShardObservation::Answered(ShardAnswer { cloned: list.clone(), cloning: Vec::new() }))
            .collect();
        let observation = Observation { snapshot: Ok(Arc::clone(&snapshot)), shards };
        let before = alloc::live();
        alloc::reset_peak();
        let started = Instant::now();
        let report = machine.handle_observation(observation, now.saturating_add(Duration::from_secs(run as u64)));
        times.push(started.elapsed());
        peak = peak.max(alloc::peak().saturating_sub(before));
        due = report.due;
    }

    let mut baseline = Vec::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let set: HashSet<&str> = snapshot.desired.repos.iter().map(|r| r.name()).collect();
        let hits = lists.iter().flat_map(NameList::iter).filter(|n| set.contains(n)).count();
        baseline.push(started.elapsed());
        assert_eq!(hits, lists.iter().map(NameList::len).sum::<usize>());
    }
    Measured { tick: median(&mut times), baseline: median(&mut baseline), inputs_bytes, tick_peak_bytes: peak, due }
}

fn repo(i: usize) -> DesiredRepo {
    let name = format!("github.com/org-{}/repo-{i}", i % 50_000);
    let mut repo = DesiredRepo::new(i as i64 + 1, RepoName::from_normalized(name.as_str()), &format!("https://{name}"));
    repo.created_at = Some(Timestamp::from_millis(1_500_000_000_000 + i as i64));
    repo.stars = Some((i % 1000) as u32);
    repo
}

//! Reconcile tests: plain values in, plain values out; no network, DB or clock.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::model::{DesiredRepo, DesiredRepos};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

fn name(s: &str) -> RepoName {
    RepoName::normalize(s).unwrap()
}

fn repo(id: i64, n: &str) -> DesiredRepo {
    DesiredRepo { created_at: Some(t(id)), ..DesiredRepo::new(id, name(n), &format!("https://{n}")) }
}

/// Desired is `"a@0 b@1"` (name@owning shard); actual is one line per shard:
/// `"a b ~c"` lists a and b as cloned and c as cloning, `"?"` means never listed.
struct Fixture {
    desired: Vec<DesiredRepo>,
    routes: Vec<ShardIdx>,
    actual: Actual,
    attempts: HashMap<RepoName, AttemptRecord>,
    in_flight: HashSet<RepoName>,
}

fn fixture(desired: &str, actual: &[&str]) -> Fixture {
    let mut repos = Vec::new();
    let mut routes = Vec::new();
    for (i, item) in desired.split_whitespace().enumerate() {
        let (n, shard) = item.split_once('@').unwrap();
        repos.push(repo(i as i64 + 1, n));
        routes.push(shard.parse().unwrap());
    }
    let shards = actual
        .iter()
        .map(|line| {
            if line.trim() == "?" {
                return ShardActual::default();
            }
            let (mut cloned, mut cloning) = (Vec::new(), Vec::new());
            for item in line.split_whitespace() {
                match item.strip_prefix('~') {
                    Some(n) => cloning.push(name(n)),
                    None => cloned.push(name(item)),
                }
            }
            ShardActual { reachable: true, cloned: Some(Arc::new(cloned.into())), cloning: cloning.into() }
        })
        .collect();
    Fixture { desired: repos, routes, actual: Actual { shards }, attempts: HashMap::new(), in_flight: HashSet::new() }
}

impl Fixture {
    fn run(&self, now: Timestamp) -> Plan {
        let ctx = Context { attempts: &self.attempts, in_flight: &self.in_flight, now };
        reconcile(&DesiredRepos::in_given_order(&self.desired), &self.routes, &self.actual, &ctx)
    }

    fn states(&self, plan: &Plan) -> String {
        self.desired
            .iter()
            .zip(&plan.states)
            .map(|(r, s)| format!("{}={}", r.name, s.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn due(&self, plan: &Plan) -> String {
        plan.due.iter().map(|&i| self.desired[i as usize].name.to_string()).collect::<Vec<_>>().join(" ")
    }
}

#[test]
fn classifies_cloned_cloning_and_uncloned() {
    let f = fixture("x/a@0 x/b@0 x/c@1 x/d@1", &["x/a ~x/b", "x/c"]);
    let plan = f.run(t(100));
    assert_eq!(f.states(&plan), "x/a=cloned x/b=cloning x/c=cloned x/d=uncloned");
    assert_eq!(f.due(&plan), "x/d");
    assert_eq!((plan.totals.desired, plan.totals.cloned, plan.totals.cloning, plan.totals.uncloned), (4, 2, 1, 1));
    assert_eq!((plan.shards[0].cloned, plan.shards[1].uncloned), (1, 1));
}

#[test]
fn unlisted_shard_is_unknown_not_empty() {
    let f = fixture("x/a@0 x/b@1", &["", "?"]);
    let plan = f.run(t(0));
    assert_eq!(f.states(&plan), "x/a=uncloned x/b=unknown");
    assert_eq!(f.due(&plan), "x/a", "nothing is dispatched to a shard never listed");
    assert!(!plan.shards[1].reachable && !plan.totals.reachable);
    assert_eq!(plan.shards[1].unknown, 1);
}

#[test]
fn unreachable_shard_keeps_its_last_list() {
    let mut f = fixture("x/a@0 x/b@0", &["x/a"]);
    f.actual.shards[0].reachable = false;
    let plan = f.run(t(0));
    assert_eq!(f.states(&plan), "x/a=cloned x/b=uncloned");
    assert_eq!(f.due(&plan), "x/b");
    assert!(!plan.shards[0].reachable);
}

#[test]
fn misplaced_clone_does_not_count_and_orphans_are_reported() {
    let f = fixture("x/a@0 x/b@1", &["x/b gone/z", ""]);
    let plan = f.run(t(0));
    assert_eq!(f.states(&plan), "x/a=uncloned x/b=uncloned");
    assert_eq!((plan.shards[0].misplaced, plan.shards[0].orphaned), (1, 1));
    assert_eq!(plan.orphans, vec![Orphan { shard: 0, name: name("gone/z") }]);
    assert_eq!(f.due(&plan), "x/a x/b");
}

#[test]
fn a_list_is_classified_name_by_name_in_its_own_order() {
    // Shard 0 lists a repo it owns twice (one clone), a misplaced clone twice (counted twice,
    // as two listed names), and orphans, sampled in the list's order.
    let f = fixture("x/a@0 x/b@1 x/c@0", &["gone/y x/c x/b x/c gone/w x/b", "x/b"]);
    let plan = f.run(t(0));
    assert_eq!(f.states(&plan), "x/a=uncloned x/b=cloned x/c=cloned");
    assert_eq!((plan.shards[0].misplaced, plan.shards[0].orphaned), (2, 2));
    assert_eq!((plan.shards[1].misplaced, plan.shards[1].orphaned), (0, 0));
    let orphans: Vec<&str> = plan.orphans.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(orphans, ["gone/y", "gone/w"]);
    assert_eq!(f.due(&plan), "x/a");
}

#[test]
fn compares_normalised_names() {
    // The repo DB spelling differs from the shard's listing; both normalise alike.
    let f = fixture("GitHub.com/Org/Repo.git@0", &["github.com/org/repo"]);
    let plan = f.run(t(0));
    assert_eq!(plan.states, vec![RepoState::Cloned]);
}

#[test]
fn failed_repo_backs_off_until_its_deadline() {
    let mut f = fixture("x/a@0 x/b@0", &[""]);
    f.attempts.insert(
        name("x/a"),
        AttemptRecord {
            attempts: 2,
            last_error: Some("fatal: repository not found".into()),
            next_attempt_at: Some(t(60)),
            ..Default::default()
        },
    );
    let plan = f.run(t(59));
    assert_eq!(f.states(&plan), "x/a=failed x/b=uncloned");
    assert_eq!(f.due(&plan), "x/b");
    assert_eq!(plan.totals.backing_off, 1);
    assert_eq!(plan.next_due_at, Some(t(60)));

    let plan = f.run(t(60));
    assert_eq!(f.due(&plan), "x/a x/b");
    assert_eq!(plan.next_due_at, None);
}

#[test]
fn in_flight_and_given_up_repos_are_not_due() {
    let mut f = fixture("x/a@0 x/b@0", &[""]);
    f.in_flight.insert(name("x/a"));
    f.attempts
        .insert(name("x/b"), AttemptRecord { attempts: 9, gave_up: Some("too many".into()), ..Default::default() });
    let plan = f.run(t(0));
    assert_eq!(f.states(&plan), "x/a=cloning x/b=failed");
    assert_eq!(f.due(&plan), "");
}

#[test]
fn row_without_clone_url_is_failed_and_reported() {
    let mut f = fixture("x/a@0", &[""]);
    f.desired[0].url = crate::model::CloneUrl::Missing;
    let plan = f.run(t(0));
    assert_eq!(plan.states, vec![RepoState::Failed]);
    assert_eq!(plan.problems, vec![Problem::NoCloneUrl { name: name("x/a") }]);
    assert!(plan.due.is_empty());
}

#[test]
fn oldest_uncloned_is_tracked_per_shard_and_in_total() {
    let f = fixture("x/a@0 x/b@0 x/c@1", &["x/a", ""]);
    let plan = f.run(t(0));
    assert_eq!(plan.shards[0].oldest_uncloned_created_at, Some(t(2)));
    assert_eq!(plan.shards[1].oldest_uncloned_created_at, Some(t(3)));
    assert_eq!(plan.totals.oldest_uncloned_created_at, Some(t(2)));
}

#[test]
fn a_confirmed_dispatch_whose_clone_never_shows_is_lost_after_the_grace() {
    let mut f = fixture("x/a@0 x/b@0", &[""]);
    let succeeded = AttemptRecord { attempts: 1, next_attempt_at: Some(t(30)), ..Default::default() };
    f.attempts.insert(name("x/a"), succeeded);
    let plan = f.run(t(29));
    assert_eq!(f.states(&plan), "x/a=uncloned x/b=uncloned", "within the grace it waits for the list");
    assert_eq!(f.due(&plan), "x/b");
    let plan = f.run(t(30));
    assert_eq!(f.states(&plan), "x/a=lost x/b=uncloned");
    assert_eq!(f.due(&plan), "x/a x/b");
    assert_eq!(plan.totals.uncloned, 2, "lost repos count as uncloned");
}

#[test]
fn a_large_set_is_reconciled_on_every_core_as_shard_by_shard() {
    // Above PARALLEL_FROM the shards' lookups run at once; what each shard finds must not
    // depend on that: states, counts, and the orphan sample in shard order, then list order.
    let n = PARALLEL_FROM + 10_000;
    let repos: Vec<DesiredRepo> = (0..n).map(|i| repo(i as i64 + 1, &format!("x/r-{i:06}"))).collect();
    let routes: Vec<ShardIdx> = (0..n).map(|i| (i % 4) as ShardIdx).collect();
    let mut lists: Vec<Vec<RepoName>> = vec![Vec::new(); 4];
    for i in (0..n).filter(|i| i % 3 != 0) {
        lists[i % 4].push(name(&format!("x/r-{i:06}")));
    }
    // Misplaced: repo 3 (shard 3, unlisted there) listed on shard 1; orphans on every shard.
    lists[1].push(name("x/r-000003"));
    for (shard, list) in lists.iter_mut().enumerate() {
        list.extend((0..40).map(|o| name(&format!("gone/{shard}-{o:02}"))));
    }
    let shards = lists
        .into_iter()
        .map(|list| ShardActual { reachable: true, cloned: Some(Arc::new(list.into())), cloning: Arc::new([]) })
        .collect();
    let (attempts, in_flight) = (HashMap::new(), HashSet::new());
    let ctx = Context { attempts: &attempts, in_flight: &in_flight, now: t(0) };
    let plan = reconcile(&DesiredRepos::in_given_order(&repos), &routes, &Actual { shards }, &ctx);

    for (i, state) in plan.states.iter().enumerate() {
        let want = if i % 3 != 0 { RepoState::Cloned } else { RepoState::Uncloned };
        assert_eq!(*state, want, "repo {i}");
    }
    assert_eq!(plan.totals.cloned, (0..n).filter(|i| i % 3 != 0).count() as u64);
    assert_eq!((plan.shards[1].misplaced, plan.totals.misplaced, plan.totals.orphaned), (1, 1, 160));
    let sample: Vec<String> = plan.orphans.iter().map(|o| format!("{}:{}", o.shard, o.name)).collect();
    let want: Vec<String> =
        (0..4).flat_map(|s| (0..40).map(move |o| format!("{s}:gone/{s}-{o:02}"))).take(100).collect();
    assert_eq!(sample, want);
}

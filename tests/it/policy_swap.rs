//! Hot reload end to end: dropping `popular-first` into a running sidecar's policy folder
//! changes the order of the next dispatches, as the dev gitserver sees them.

use std::time::Duration;

use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{aged_repo_db, eventually, example_policy};

const REPOS: usize = 24;

fn name(i: usize) -> String {
    format!("github.com/pop/repo-{i:02}")
}

/// Repo `i` has `10·i` stars and was created `i` minutes after the first: the built-in order
/// (oldest first) clones the least starred first, popular-first the most starred.
fn stars(name: &str) -> usize {
    name.rsplit('-').next().and_then(|i| i.parse::<usize>().ok()).expect("a numbered name") * 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_popular_first_into_the_folder_reorders_the_next_dispatches() {
    let module = example_policy("popular-first");
    let work = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = (0..REPOS).map(name).collect();
    let db = aged_repo_db(work.path(), &names, |i| stars(&names[i]) as i32).await;

    let shard = DevShard::start(&work.path().join("shard"), Duration::from_millis(400));
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).expect("creating the policy folder");
    let mut config = SidecarConfig::new(db.url(), vec![shard.addr()]);
    config.max_in_flight_per_shard = 1;
    config.policy_dir = Some(policies.clone());
    config.env.push(("CLONEKEEPER_LOG_DECISION_SAMPLE", "1.0".to_string()));
    let sidecar = Sidecar::start(&config);

    let dispatched = |at_least: usize| {
        let shard = &shard;
        async move {
            let log = shard.dispatches().await;
            let names: Vec<String> = log.events.iter().map(|e| e.repo.clone()).collect();
            if names.len() >= at_least {
                Ok(names)
            } else {
                Err(format!("{} dispatched so far", names.len()))
            }
        }
    };
    let before = eventually("three dispatches in the built-in order", || dispatched(3)).await;
    assert_eq!(before[..3], names[..3], "the built-in order clones the oldest (least starred) first");
    // The built-in order explains itself.
    let last = names.last().expect("repos");
    let builtin = sidecar.explain(last).await.expect("explain").last_decision.expect("a queued repo's decision");
    assert_eq!(builtin.module, "builtin");
    let why = builtin.explanation.unwrap_or_default();
    assert!(why.starts_with("never attempted, created 20"), "{why}");

    // Drop the module in as a deployment tool would: write beside, then rename into place.
    let staging = policies.join(".popular-first.wasm.partial");
    std::fs::copy(&module, &staging).expect("copying the module");
    std::fs::rename(&staging, policies.join("popular-first.wasm")).expect("renaming into place");
    let live = sidecar
        .wait_for("popular-first live", |s| s.policies.iter().any(|p| p.name == "popular-first" && p.state == "active"))
        .await;
    let status = live.policies.iter().find(|p| p.name == "popular-first").expect("listed");
    assert_eq!(status.columns, ["flags", "stars", "updated-at"], "status names the columns it reads");
    let digest = status.digest.clone();
    // Two ticks later the queue has been rebuilt by the module.
    sidecar.wait_for("two more ticks", |s| s.ticks >= live.ticks + 2).await;
    let at_swap = dispatched(0).await.expect("the dispatch log");
    let after = eventually("four more dispatches", || dispatched(at_swap.len() + 4)).await;

    // The dispatch under way at the snapshot may come from the old queue; the next three come
    // from the module's order: the most starred of the repos not yet dispatched.
    let first_new = at_swap.len() + 1;
    let mut remaining: Vec<&String> = names.iter().filter(|n| !after[..first_new].contains(n)).collect();
    remaining.sort_by_key(|n| std::cmp::Reverse(stars(n)));
    let expected: Vec<String> = remaining.iter().take(3).map(|n| (*n).clone()).collect();
    assert_eq!(after[first_new..first_new + 3], expected[..], "popular-first's order; whole log: {after:?}");

    // Explain names the module that ordered a waiting repo.
    let waiting = eventually("a queued repo", || async {
        let status = sidecar.status().await?;
        let queue: serde_json::Value = reqwest::get(sidecar.url("/v1/queue?limit=1"))
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match queue[0]["name"].as_str() {
            Some(name) if status.totals.queued > 0 => Ok(name.to_string()),
            _ => Err(format!("queue: {queue}")),
        }
    })
    .await;
    let explain: clonekeeper::explain::Explain = reqwest::get(sidecar.url(&format!("/v1/repos/{waiting}")))
        .await
        .expect("GET explain")
        .json()
        .await
        .expect("an Explain");
    let decision = explain.last_decision.unwrap_or_else(|| panic!("no decision for {waiting}"));
    assert_eq!(decision.module, digest, "the decision names the module that made it");
    // popular-first (contract 0.2.1) says why, in its own words.
    let why = decision.explanation.unwrap_or_default();
    let stars = format!("{} stars", stars(&waiting));
    assert!(why.starts_with("score ") && why.contains(&stars), "{waiting}: {why}");
    // The decision log's first sampled decisions carry the module's sentence too.
    eventually("an explained decision of popular-first in the log", || async {
        let log = sidecar.log_tail(100_000);
        log.lines()
            .find(|l| {
                l.contains("clonekeeper::decision")
                    && l.contains(&digest)
                    && l.contains(" stars, ")
                    && l.contains("explanation=\"score ")
            })
            .map(str::to_string)
            .ok_or_else(|| log.lines().rev().find(|l| l.contains("clonekeeper::decision")).unwrap_or("").to_string())
    })
    .await;
}

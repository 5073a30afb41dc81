//! Shadow mode end to end: popular-first in the policy folder with `[clonekeeper] mode =
//! "shadow"` orders each tick's queue beside the built-in order without changing a dispatch;
//! `/v1/policies`, `/metrics` and explain show how the two disagree; and an edit of the TOML
//! promotes it.

use std::time::Duration;

use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{aged_repo_db, eventually, example_policy};

const REPOS: usize = 20;

fn name(i: usize) -> String {
    format!("github.com/shadow/repo-{i:02}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_policy_reports_its_disagreement_and_changes_no_dispatch_until_promoted() {
    let module = example_policy("popular-first");
    let work = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = (0..REPOS).map(name).collect();
    // Newer repos have more stars: the built-in order (oldest first) is popular-first's reverse.
    let db = aged_repo_db(work.path(), &names, |i| (i as i32 + 1) * 1000).await;

    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).expect("policy folder");
    std::fs::copy(&module, policies.join("popular-first.wasm")).expect("copy the module");
    let toml = policies.join("popular-first.toml");
    std::fs::write(&toml, "stars_weight = 1.0\n\n[clonekeeper]\nmode = \"shadow\"\nshadows = \"prioritize\"\n")
        .expect("toml");
    let shard = DevShard::start(&work.path().join("shard"), Duration::from_millis(500));
    let mut config = SidecarConfig::new(db.url(), vec![shard.addr()]);
    config.max_in_flight_per_shard = 1;
    config.policy_dir = Some(policies.clone());
    config.admin_token = Some("shadow-test-token-0123456789abcdef");
    let sidecar = Sidecar::start(&config);

    let evaluated = sidecar
        .wait_for("the shadow evaluated on a queue", |s| {
            s.policies.iter().any(|p| p.state == "shadow" && p.shadow.as_ref().is_some_and(|f| f.repos >= 5))
        })
        .await;
    let status = evaluated.policies.iter().find(|p| p.name == "popular-first").expect("listed");
    assert!(status.serving.is_empty(), "a shadow serves: {status:#?}");
    let figures = status.shadow.clone().expect("figures");
    assert!(figures.rank_correlation < -0.9, "popular-first is the built-in order reversed here: {figures:#?}");
    assert_eq!(figures.top_overlap, 0.0, "{figures:#?}");
    assert!(!figures.shadow_first.is_empty() && figures.error.is_none(), "{figures:#?}");
    let newest_queued = &figures.shadow_first[0];

    // Dispatches follow the built-in order: the shadow changes nothing.
    let log = eventually("three dispatches", || async {
        let log = shard.dispatches().await;
        let names: Vec<String> = log.events.iter().map(|e| e.repo.clone()).collect();
        if names.len() >= 3 {
            Ok(names)
        } else {
            Err(format!("{} so far", names.len()))
        }
    })
    .await;
    assert_eq!(log[..3], names[..3], "the built-in order (oldest first) dispatches");

    let (code, metrics) = sidecar.get("/metrics").await.expect("GET /metrics");
    assert_eq!(code, 200);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("clonekeeper_shadow_rank_correlation{module=\"popular-first\"}"))
        .unwrap_or_else(|| panic!("no shadow gauge in /metrics"));
    let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number");
    assert!(value < -0.9, "{line}");

    // Explain shows the shadow's answer beside the serving one.
    let explain = sidecar.explain(newest_queued).await.expect("explain");
    let shadow = explain.shadow.first().unwrap_or_else(|| panic!("no shadow answer for {newest_queued}: {explain:#?}"));
    assert_eq!(shadow.module, "popular-first");
    assert!(shadow.decision.starts_with("score "), "{shadow:?}");
    assert!(shadow.position < explain.queue_position.expect("queued"), "{shadow:?} vs {explain:#?}");

    // Promotion: drop the table; hot reload makes it serve.
    std::fs::write(&toml, "stars_weight = 1.0\n").expect("promote");
    let promoted = sidecar
        .wait_for("popular-first serving", |s| {
            s.policies.iter().any(|p| {
                p.name == "popular-first" && p.state == "active" && p.serving.contains(&"prioritize".to_string())
            })
        })
        .await;
    assert!(promoted.policies.iter().all(|p| p.shadow.is_none()), "{:#?}", promoted.policies);
    sidecar.kill();
}

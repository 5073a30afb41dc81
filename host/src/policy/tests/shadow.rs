//! Shadow mode: a module whose `NAME.toml` says `[clonekeeper] mode = "shadow"` never decides,
//! is evaluated beside the serving order, and serves once the table is gone.

use super::*;
use crate::model::{DesiredRepo, RepoName};
use crate::reconcile::RepoState;
use crate::schedule::Candidate;

const SHADOW_TOML: &str = "[clonekeeper]\nmode = \"shadow\"\nshadows = \"prioritize\"\n";

/// Repos in serving order, the least starred first: the stars module's exact reverse.
fn queued() -> Vec<DesiredRepo> {
    (0..30u32)
        .map(|i| {
            let name = RepoName::from_normalized(format!("github.com/s/r{i:02}"));
            let mut repo = DesiredRepo::new(i64::from(i), name.clone(), &format!("https://{name}"));
            repo.stars = Some(i * 10);
            repo
        })
        .collect()
}

fn candidates(repos: &[DesiredRepo]) -> Vec<Candidate<'_>> {
    repos.iter().map(|repo| Candidate { repo, shard: 0, state: RepoState::Uncloned, record: None }).collect()
}

#[test]
fn a_shadow_never_serves_and_reports_how_its_order_differs() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stars.wasm", &component("stars", "prioritizer"));
    std::fs::write(dir.path().join("stars.toml"), SHADOW_TOML).expect("toml");
    let host = host_for(dir.path(), 3);
    host.reload(now()).expect("reload");
    assert!(host.current().chain(Interface::Prioritize).is_empty(), "a shadow serves");
    assert!(host.has_shadows());
    assert!(host.current().reads_stars(), "the shadow's columns are read");
    let before = host.status(now());
    assert_eq!(status_of(&before, "shadow").len(), 1, "{before:#?}");
    assert!(before[0].shadow.is_none(), "figures before any evaluation");

    let repos = queued();
    host.evaluate_shadows(&candidates(&repos), 5, now(), Duration::from_secs(30));
    let figures = host.status(now())[0].shadow.clone().expect("figures after an evaluation");
    assert_eq!(figures.ticks, 1);
    assert_eq!(figures.repos, 30);
    assert_eq!(figures.rank_correlation, -1.0, "{figures:#?}");
    assert_eq!((figures.slots, figures.top_overlap), (5, 0.0));
    // The shadow would send the five most starred first: the serving order's last five.
    let expected: Vec<String> = (25..30).rev().map(|i| format!("github.com/s/r{i:02}")).collect();
    assert_eq!(figures.shadow_first, expected);
    assert!(figures.error.is_none());
    let explained = host.shadow_decisions(&RepoName::from_normalized("github.com/s/r29"));
    assert_eq!(explained.len(), 1);
    assert_eq!((explained[0].module.as_str(), explained[0].position), ("stars", 0));
    assert_eq!(explained[0].decision, "score 290");
}

#[test]
fn promotion_is_an_edit_of_the_toml_and_demotion_leaves_no_serving_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = component("stars", "prioritizer");
    write(dir.path(), "stars.wasm", &bytes);
    let toml = dir.path().join("stars.toml");
    std::fs::write(&toml, SHADOW_TOML).expect("toml");
    let host = host_for(dir.path(), 3);
    host.reload(now()).expect("reload");
    assert_eq!(&*host.serving_digest(Interface::Prioritize), crate::schedule::BUILTIN);
    std::fs::write(&toml, "").expect("promote");
    host.reload(now()).expect("reload");
    assert_eq!(*host.serving_digest(Interface::Prioritize), *digest_of(&bytes), "promoted");
    assert!(!host.has_shadows());
    // Back to shadow: it must not stay on as the serving chain's last good module.
    std::fs::write(&toml, SHADOW_TOML).expect("demote");
    host.reload(now()).expect("reload");
    assert!(host.current().chain(Interface::Prioritize).is_empty(), "the demoted module still serves");
    assert!(host.has_shadows());
}

#[test]
fn a_shadow_that_fails_or_overruns_its_budget_reports_it_and_keeps_what_it_had() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stars.wasm", &component("stars", "prioritizer"));
    std::fs::write(dir.path().join("stars.toml"), SHADOW_TOML).expect("toml");
    let host = host_for(dir.path(), 3);
    host.reload(now()).expect("reload");
    let repos = queued();
    host.evaluate_shadows(&candidates(&repos), 5, now(), Duration::ZERO);
    let figures = host.status(now())[0].shadow.clone().expect("figures");
    assert!(figures.error.as_deref().is_some_and(|e| e.contains("budget")), "{figures:#?}");
    assert_eq!(figures.repos, 0, "a budget of nothing orders nothing");
}

#[test]
fn a_shadow_without_prioritize_or_with_a_bad_table_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "retry.wasm", &component("retry", "retrier"));
    std::fs::write(dir.path().join("retry.toml"), SHADOW_TOML).expect("toml");
    write(dir.path(), "stars.wasm", &component("stars", "prioritizer"));
    std::fs::write(dir.path().join("stars.toml"), "[clonekeeper]\nmode = \"sometimes\"\n").expect("toml");
    let host = host_for(dir.path(), 3);
    host.reload(now()).expect("reload");
    let status = host.status(now());
    let rejected = status_of(&status, "rejected");
    assert_eq!(rejected.len(), 2, "{status:#?}");
    assert!(rejected
        .iter()
        .any(|r| r.last_error.as_deref().is_some_and(|e| e.contains("does not implement prioritize"))));
    assert!(rejected
        .iter()
        .any(|r| r.last_error.as_deref().is_some_and(|e| e.contains("stars.toml: [clonekeeper] mode"))));
}

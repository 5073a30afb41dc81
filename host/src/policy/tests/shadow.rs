//! Shadow mode: a module whose `NAME.toml` says `[clonekeeper] mode = "shadow"` never decides,
//! is evaluated beside the serving order, and serves once the table is gone.

use super::*;
use crate::machine::{LimitsAsked, RetryCase};
use crate::model::{AttemptRecord, DesiredRepo, DesiredRepos, RepoName};
use crate::policy::shadow::ShadowInput;
use crate::reconcile::RepoState;
use crate::schedule::{Candidate, KeyLoad, LimitKey, RateLimit, RetryDecision};

const SHADOW_TOML: &str = "[clonekeeper]\nmode = \"shadow\"\nshadows = \"prioritize\"\n";

/// Repos in serving order, the least starred first: the stars module's exact reverse.
fn queued() -> DesiredRepos {
    (0..30u32)
        .map(|i| {
            let name = RepoName::from_normalized(format!("github.com/s/r{i:02}"));
            let mut repo = DesiredRepo::new(i64::from(i), name.clone(), &format!("https://{name}"));
            repo.stars = Some(i * 10);
            repo
        })
        .collect()
}

fn input<'a>(queued: &'a [Candidate<'a>], retries: &'a [RetryCase]) -> ShadowInput<'a> {
    ShadowInput { queued, slots: 5, limits: None, retries }
}

fn candidates(repos: &DesiredRepos) -> Vec<Candidate<'_>> {
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
    assert!(host.current().columns_read().stars, "the shadow's columns are read");
    let before = host.status(now());
    assert_eq!(status_of(&before, "shadow").len(), 1, "{before:#?}");
    assert!(before[0].shadow.is_none(), "figures before any evaluation");

    let repos = queued();
    let queued = candidates(&repos);
    host.evaluate_shadows(&input(&queued, &[]), now(), Duration::from_secs(30));
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
    let queued = candidates(&repos);
    host.evaluate_shadows(&input(&queued, &[]), now(), Duration::ZERO);
    let figures = host.status(now())[0].shadow.clone().expect("figures");
    assert!(figures.error.as_deref().is_some_and(|e| e.contains("budget")), "{figures:#?}");
    assert_eq!(figures.repos, 0, "a budget of nothing orders nothing");
}

#[test]
fn a_shadow_of_an_interface_it_lacks_or_with_a_bad_table_is_refused() {
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
    assert!(rejected.iter().any(|r| r
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("shadows prioritize, which it does not implement"))));
    assert!(rejected
        .iter()
        .any(|r| r.last_error.as_deref().is_some_and(|e| e.contains("stars.toml: [clonekeeper] mode"))));
}

#[test]
fn a_rate_limit_shadow_names_the_limits_that_differ() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "limits.wasm", &component("limits", "limiter"));
    std::fs::write(dir.path().join("limits.toml"), "[clonekeeper]\nmode = \"shadow\"\n").expect("toml");
    let host = host_for(dir.path(), 3);
    host.reload(now()).expect("reload");
    assert!(crate::schedule::RateLimitPolicy::is_active(&*host), "a rate-limit shadow needs the loads");
    assert!(host.current().chain(Interface::RateLimits).is_empty());
    let load = |key: LimitKey| KeyLoad { key, service_type: None, repos: 10, queued: 5, in_flight: 1 };
    let same = RateLimit {
        per_hour: std::num::NonZeroU32::new(3600).expect("nonzero"),
        burst: std::num::NonZeroU32::new(2).expect("nonzero"),
        max_in_flight: std::num::NonZeroU32::new(1),
    };
    let asked = LimitsAsked {
        loads: vec![load(LimitKey::CodeHost("github.com".into())), load(LimitKey::CodeHost("gitlab.com".into()))],
        // The serving policy limited github.com as the shadow would, and left gitlab.com free.
        limits: vec![(LimitKey::CodeHost("github.com".into()), same)],
        decided_by: Arc::from(crate::schedule::BUILTIN),
    };
    host.evaluate_shadows(
        &ShadowInput { queued: &[], slots: 1, limits: Some(&asked), retries: &[] },
        now(),
        Duration::from_secs(30),
    );
    let figures = host.status(now())[0].shadow.clone().expect("figures");
    assert_eq!(figures.limit_keys, 2);
    assert_eq!(
        figures.limits_differ,
        ["code host gitlab.com: shadow 3600/h, burst 2, at most 1 in flight; serving none"],
        "{figures:#?}"
    );
    assert_eq!(figures.repos, 0, "it shadows no prioritize");
}

#[test]
fn a_retry_shadow_is_asked_about_the_same_failures_and_counts_the_decisions_that_differ() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "retry.wasm", &component("retry", "retrier"));
    std::fs::write(dir.path().join("retry.toml"), "[clonekeeper]\nmode = \"shadow\"\nshadows = \"reenqueue\"\n")
        .expect("toml");
    let host = host_for(dir.path(), 3);
    host.reload(now()).expect("reload");
    assert!(host.current().chain(Interface::Reenqueue).is_empty());
    let case = |name: &str, attempts: u32, decision: RetryDecision| RetryCase {
        name: RepoName::from_normalized(name),
        record: AttemptRecord { attempts, last_error: Some("fatal: hung up".into()), ..AttemptRecord::default() },
        repo: None,
        shard: 0,
        state: RepoState::Failed,
        decided_at: now(),
        decision,
    };
    // The shadow gives up after 3 attempts; the serving policy kept retrying the third.
    let later = now().saturating_add(Duration::from_secs(60));
    let cases = [
        case("github.com/a/third", 3, RetryDecision::RetryAt(later)),
        case("github.com/a/fourth", 4, RetryDecision::GiveUp { reason: "too many attempts".into() }),
    ];
    host.evaluate_shadows(
        &ShadowInput { queued: &[], slots: 1, limits: None, retries: &cases },
        now(),
        Duration::from_secs(30),
    );
    let figures = host.status(now())[0].shadow.clone().expect("figures");
    assert_eq!((figures.retries, figures.retries_differing), (2, 1), "{figures:#?}");
    assert_eq!(figures.retries_differ.len(), 1);
    assert!(figures.retries_differ[0].starts_with("github.com/a/third: shadow give up ("), "{figures:#?}");
    assert!(figures.retries_differ[0].ends_with("serving retry in 1m"), "{figures:#?}");
    // Counts add up over evaluations.
    host.evaluate_shadows(
        &ShadowInput { queued: &[], slots: 1, limits: None, retries: &cases[..1] },
        now(),
        Duration::from_secs(30),
    );
    let figures = host.status(now())[0].shadow.clone().expect("figures");
    assert_eq!((figures.retries, figures.retries_differing, figures.ticks), (3, 2, 2));
}

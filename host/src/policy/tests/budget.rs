//! The policy time budget of a tick: a slow but valid module cannot hold a tick of many
//! batches for batches × call_timeout.

use super::*;
use crate::model::{DesiredRepo, RecordedState, RepoName};

/// The stars prioritizer, made slow: `prioritize` first counts to ten million (several
/// milliseconds, far under the deadline).
fn slow_stars() -> Vec<u8> {
    let text = core_wat("stars").replace(
        "(local.set $n (i32.load offset=8 (local.get $args)))",
        "(local.set $i (i32.const 10000000))
         (loop $spin (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $spin (local.get $i)))
         (local.set $n (i32.load offset=8 (local.get $args)))",
    );
    componentize(text.as_bytes(), Some("prioritizer")).expect("test module encodes")
}

fn desired(n: usize) -> Vec<DesiredRepo> {
    (0..n)
        .map(|idx| DesiredRepo {
            id: idx as i64 + 1,
            name: RepoName::normalize(&format!("github.com/a/r{idx}")).expect("name"),
            url: crate::model::CloneUrl::Other("https://example.invalid".into()),
            service_type: None,
            created_at: None,
            updated_at: None,
            stars: Some(idx as u32),
            fork: false,
            archived: false,
            private: false,
            recorded: RecordedState::NotTracked,
        })
        .collect()
}

/// A host whose call deadline is far above the slow module's few milliseconds, even on a
/// loaded machine: only the tick budget can turn a batch away.
fn patient_host(dir: &Path) -> Arc<PolicyHost> {
    let limits = CallLimits { call_timeout: Duration::from_secs(5), memory_limit_bytes: 16 << 20 };
    Arc::new(PolicyHost::new(
        PolicyEngine::new(limits, None).expect("engine"),
        HostConfig {
            dir: Some(dir.to_path_buf()),
            allowlist: None,
            quarantine_after: 3,
            shard_addrs: vec!["gitserver-0:3178".to_string()],
            builtin_retry: crate::schedule::BuiltinRetry::default(),
        },
    ))
}

#[test]
fn once_a_tick_has_spent_its_policy_budget_its_remaining_batches_use_the_builtin_order() {
    const REPOS: usize = 40;
    const BATCH: usize = 2;
    let dir = tempfile::tempdir().expect("tempdir");
    let digest = write(dir.path(), "slow.wasm", &slow_stars());
    let host = patient_host(dir.path());
    let metrics = Arc::new(crate::metrics::Metrics::default());
    host.set_metrics(Arc::clone(&metrics));
    host.reload(now()).expect("reload");
    // Less than one call of the module: the first batch spends it.
    host.set_tick_budget(Duration::from_millis(1));
    let desired = crate::model::DesiredRepos::in_given_order(&desired(REPOS));
    let plan = crate::reconcile::Plan {
        states: vec![crate::reconcile::RepoState::Uncloned; REPOS],
        due: (0..REPOS as u32).collect(),
        ..Default::default()
    };
    let routes = vec![0; REPOS];
    let order = || crate::schedule::order(&desired, &routes, &plan, &Default::default(), host.as_ref(), BATCH, now());
    let by_module =
        |ordered: &crate::schedule::Ordered| ordered.decisions.iter().filter(|(_, by)| **by == *digest).count() / BATCH;

    for tick in 0..2 {
        host.start_tick();
        let fallbacks_before = metrics.policy_fallbacks.get();
        let ordered = order();
        assert_eq!(ordered.jobs.len(), REPOS, "every due repo is ordered");
        assert_eq!(by_module(&ordered), 1, "tick {tick}: the module answers until the budget is spent");
        let builtin = ordered.decisions.iter().filter(|(_, by)| **by == *crate::schedule::BUILTIN).count();
        assert_eq!(builtin, REPOS - BATCH, "tick {tick}: the rest get the built-in order");
        assert_eq!(
            metrics.policy_fallbacks.get() - fallbacks_before,
            (REPOS / BATCH - 1) as u64,
            "tick {tick}: each batch turned away counts as a fallback"
        );
        assert_eq!(host.current().modules[0].health.lock().expect("health").failures, 0, "not the module's fault");
    }
}

#[test]
fn calls_outside_a_tick_are_not_budgeted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let digest = write(dir.path(), "slow.wasm", &slow_stars());
    let host = patient_host(dir.path());
    host.reload(now()).expect("reload");
    host.set_tick_budget(Duration::from_millis(1));
    let desired = crate::model::DesiredRepos::in_given_order(&desired(6));
    let plan = crate::reconcile::Plan {
        states: vec![crate::reconcile::RepoState::Uncloned; 6],
        due: (0..6).collect(),
        ..Default::default()
    };
    let ordered = crate::schedule::order(&desired, &[0; 6], &plan, &Default::default(), host.as_ref(), 2, now());
    assert!(ordered.decisions.iter().all(|(_, by)| **by == *digest), "no tick started: the module answers every batch");
}

//! Explained rate limits end to end: with code-host-limits serving (contract 0.2.1), a repo
//! waiting behind its code host's budget is explained with the limit in force and the
//! module's own sentence on where that budget came from.

use std::time::Duration;

use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{aged_repo_db, eventually, example_policy};

const REPOS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repo_behind_a_rate_limit_is_explained_in_the_modules_words() {
    let module = example_policy("code-host-limits");
    let work = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = (0..REPOS).map(|i| format!("github.com/limited/repo-{i:02}")).collect();
    let db = aged_repo_db(work.path(), &names, |_| 0).await;
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).expect("policy folder");
    std::fs::copy(&module, policies.join("code-host-limits.wasm")).expect("copy the module");
    // One clone an hour for github.com: after the first, every repo waits on the limit.
    std::fs::write(policies.join("code-host-limits.toml"), "[code_hosts.\"github.com\"]\nper_hour = 1\nburst = 1\n")
        .expect("toml");
    let shard = DevShard::start(&work.path().join("shard"), Duration::from_millis(50));
    let mut config = SidecarConfig::new(db.url(), vec![shard.addr()]);
    config.policy_dir = Some(policies);
    let sidecar = Sidecar::start(&config);

    let waiting = &names[REPOS - 1];
    let explain = eventually("a repo waiting behind github.com's limit", || async {
        let explain = sidecar.explain(waiting).await?;
        match &explain.rate_limit {
            Some(note) if note.explanation.is_some() => Ok(explain),
            _ => Err(format!("{explain:#?}")),
        }
    })
    .await;
    let note = explain.rate_limit.expect("a limit");
    assert_eq!(note.key, "code host github.com");
    assert_eq!(note.limit, "1/h, burst 1");
    let why = note.explanation.expect("a sentence");
    assert_eq!(why, "github.com: 1/h, burst 1, from its own [code_hosts] entry");
    assert_eq!(explain.state.as_deref(), Some("uncloned"), "{:?}", explain.state);
    let dispatched = shard.dispatches().await.events.len();
    assert_eq!(dispatched, 1, "the limit lets one dispatch through an hour");
    sidecar.kill();
}

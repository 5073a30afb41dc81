//! The seed scenario (DESIGN §10): clones are under way when a gitserver shard is killed and
//! restarted with an empty queue; every repo still ends up cloned, on the shard that owns it,
//! and no repo is ever dispatched twice at once.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::routing::md5_shard;
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{assert_never_concurrent, source_repos, start_shards};

const REPOS: usize = 300;
const SHARDS: usize = 3;
const VICTIM: usize = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = (0..REPOS).map(|i| format!("github.com/seed-org-{}/repo-{i:03}", i % 7)).collect();
    let urls = source_repos(&work.path().join("sources"), &names).await;
    let db = PgDb::create(Shape::Cloned2020_10).await;
    let rows: Vec<NewRepo> =
        names.iter().zip(&urls).enumerate().map(|(i, (name, url))| NewRepo::new(name, url).created(i as i64)).collect();
    db.insert_repos(&rows).await;

    let mut shards: Vec<DevShard> = start_shards(work.path(), SHARDS, Duration::from_millis(100));
    let addrs: Vec<String> = shards.iter().map(DevShard::addr).collect();
    let sidecar = Sidecar::start(&SidecarConfig::new(db.url(), addrs.clone()));

    sidecar.wait_for("30% of the repos cloned", |s| s.totals.cloned * 10 >= REPOS as u64 * 3).await;
    let pre_kill_log = shards[VICTIM].dispatches().await;
    shards[VICTIM].kill();
    // Clones the victim had started (queued or running) and not finished are lost with it.
    let lost: BTreeSet<String> =
        pre_kill_log.events.iter().map(|e| e.repo.clone()).filter(|repo| !shards[VICTIM].has_mirror(repo)).collect();

    sidecar
        .wait_for("the sidecar to notice the killed shard", |s| s.shards.get(VICTIM).is_some_and(|v| !v.reachable))
        .await;
    shards[VICTIM].restart();
    let done = sidecar
        .wait_for("every repo cloned", |s| s.totals.cloned == REPOS as u64 && s.totals.desired == REPOS as u64)
        .await;

    assert_eq!(done.totals.failed, 0, "{done:#?}");
    assert_eq!(done.totals.uncloned, 0, "{done:#?}");
    assert_eq!(done.totals.unknown, 0, "{done:#?}");

    // Every mirror lives on exactly the shard md5 routing names, and the status agrees on how
    // many each shard owns.
    let mut owned = [0u64; SHARDS];
    for name in &names {
        let owner = md5_shard(name, SHARDS);
        owned[owner] += 1;
        for (idx, shard) in shards.iter().enumerate() {
            assert_eq!(
                shard.has_mirror(name),
                idx == owner,
                "{name}: mirror on shard {idx} (owner by md5: shard {owner}) is {}",
                if shard.has_mirror(name) { "present" } else { "absent" }
            );
        }
    }
    for (idx, shard_status) in done.shards.iter().enumerate() {
        assert_eq!(shard_status.addr, addrs[idx]);
        assert_eq!(shard_status.counts.desired, owned[idx], "desired repos of shard {idx}");
        assert_eq!(shard_status.counts.cloned, owned[idx], "cloned repos of shard {idx}");
    }

    // No repo was ever dispatched twice at once, on any shard, before or after the kill; and
    // each shard was only ever asked for the repos it owns.
    let mut logs = vec![(format!("shard {VICTIM} before the kill"), VICTIM, pre_kill_log)];
    for (idx, shard) in shards.iter().enumerate() {
        logs.push((format!("shard {idx} (last process)"), idx, shard.dispatches().await));
    }
    for (label, owner, log) in &logs {
        assert_never_concurrent(label, log);
        for event in &log.events {
            assert_eq!(md5_shard(&event.repo, SHARDS), *owner, "{label} was asked to clone {}", event.repo);
        }
    }

    // The kill did lose clones in progress, and the restarted shard was asked for each again.
    assert!(
        !lost.is_empty(),
        "the kill should have landed while shard {VICTIM} was cloning (it had started {} clones)",
        logs[0].2.total
    );
    let redispatched: BTreeSet<&str> = logs[VICTIM + 1].2.events.iter().map(|e| e.repo.as_str()).collect();
    let not_redispatched: Vec<&String> = lost.iter().filter(|repo| !redispatched.contains(repo.as_str())).collect();
    assert!(
        not_redispatched.is_empty(),
        "lost clones never re-dispatched to the restarted shard: {not_redispatched:?}"
    );
}

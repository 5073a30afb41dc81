//! A shard dies mid-clone and stays down: the others finish, the dead one is reported as
//! unreachable with its last known clones kept (never treated as empty), its interrupted repos
//! as failed or backing off; once it is back, everything is cloned.

use std::time::Duration;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::routing::md5_shard;
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{assert_never_concurrent, source_repos, start_shards};

const REPOS: usize = 60;
const SHARDS: usize = 3;
const VICTIM: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_down_backs_off_then_recovers() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = (0..REPOS).map(|i| format!("github.com/shard-down/repo-{i:02}")).collect();
    let urls = source_repos(&work.path().join("sources"), &names).await;
    let db = PgDb::create(Shape::GitserverRepos2021).await;
    let rows: Vec<NewRepo> =
        names.iter().zip(&urls).enumerate().map(|(i, (name, url))| NewRepo::new(name, url).created(i as i64)).collect();
    db.insert_repos(&rows).await;
    let victim_owns = names.iter().filter(|name| md5_shard(name, SHARDS) == VICTIM).count() as u64;
    assert!(victim_owns >= 8, "the fixture names give shard {VICTIM} only {victim_owns} repos");

    let mut shards = start_shards(work.path(), SHARDS, Duration::from_millis(300));
    let victim_addr = shards[VICTIM].addr();
    let sidecar = Sidecar::start(&SidecarConfig::new(db.url(), shards.iter().map(DevShard::addr).collect()));

    let before = sidecar
        .wait_for("the victim shard part-way through its clones", |s| {
            s.shards.get(VICTIM).is_some_and(|v| {
                let v = &v.counts;
                v.desired == victim_owns && v.cloned >= 1 && v.cloned < v.desired && v.in_flight >= 1
            })
        })
        .await;
    let victim_log = shards[VICTIM].dispatches().await;
    shards[VICTIM].kill();
    let cloned_before = before.shards[VICTIM].counts.cloned;

    let down = sidecar
        .wait_for("the live shards done, the dead one reported down with its interrupted repos", |s| {
            let Some(v) = s.shards.get(VICTIM) else { return false };
            let others_done = s
                .shards
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != VICTIM)
                .all(|(_, other)| other.counts.desired > 0 && other.counts.cloned == other.counts.desired);
            others_done && !v.reachable && v.error.is_some() && v.counts.failed + v.counts.backing_off > 0
        })
        .await;
    let v = &down.shards[VICTIM];
    let error = v.error.as_deref().unwrap_or_default();
    assert!(error.contains(&victim_addr), "the shard's error should name {victim_addr}: {error:?}");
    assert!(
        v.counts.cloned >= cloned_before,
        "the unreachable shard's last list must be kept: {} cloned before the kill, {} now",
        cloned_before,
        v.counts.cloned
    );
    assert_eq!(v.counts.desired, victim_owns);
    assert_eq!(v.counts.unknown, 0, "a shard listed once is never unknown again: {down:#?}");
    assert!(v.counts.cloned < v.counts.desired, "{down:#?}");

    shards[VICTIM].restart();
    let done = sidecar
        .wait_for("every repo cloned after the shard came back", |s| {
            s.totals.cloned == REPOS as u64 && s.totals.desired == REPOS as u64
        })
        .await;
    assert!(done.shards.iter().all(|s| s.reachable && s.error.is_none()), "{done:#?}");
    assert_eq!(done.totals.failed, 0, "{done:#?}");
    for name in &names {
        assert!(shards[md5_shard(name, SHARDS)].has_mirror(name), "{name} is not on its shard");
    }
    assert_never_concurrent("victim before the kill", &victim_log);
    for (idx, shard) in shards.iter().enumerate() {
        assert_never_concurrent(&format!("shard {idx}"), &shard.dispatches().await);
    }
}

//! Shard routing: clonekeeper's `ShardMap` against the two schemes computed independently,
//! for names that need normalising, and end to end with rendezvous routing.

use std::time::Duration;

use clonekeeper::model::RepoName;
use clonekeeper::routing::{Routing, ShardMap};

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::routing::{md5_shard, rendezvous_shard};
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{source_repos, start_shards, starts_per_repo};

/// (raw name, its normal form written out by hand)
const NAMES: &[(&str, &str)] = &[
    ("github.com/sourcegraph/sourcegraph", "github.com/sourcegraph/sourcegraph"),
    ("GitHub.com/Foo/Bar.git", "github.com/foo/bar"),
    ("gitlab.com//a/./b", "gitlab.com/a/b"),
    ("example.com/x/../y", "example.com/y"),
    ("GitLab.com/Mixed/Case", "gitlab.com/Mixed/Case"),
    ("/github.com/leading/slash/", "github.com/leading/slash"),
    ("bitbucket.org/team/repo.git", "bitbucket.org/team/repo"),
    ("github.com/a/b/../../c/d", "github.com/c/d"),
    ("git.example.org:8443/group/sub/project", "git.example.org:8443/group/sub/project"),
    ("github.com/kubernetes/kubernetes", "github.com/kubernetes/kubernetes"),
    ("ghe.corp.internal/Platform/API.git", "ghe.corp.internal/Platform/API"),
    ("github.com/torvalds/linux", "github.com/torvalds/linux"),
];

fn addrs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("gitserver-{i}.gitserver:3178")).collect()
}

#[test]
fn routing_table() {
    let mut spread = vec![vec![0usize; 8]; 2];
    for n in [1, 3, 8] {
        let addrs = addrs(n);
        let md5 = ShardMap::new(addrs.clone(), Routing::Md5).expect("a valid address list");
        let rendezvous = ShardMap::new(addrs.clone(), Routing::Rendezvous).expect("a valid address list");
        for (raw, normal) in NAMES {
            let name = RepoName::normalize(raw).expect("a name that normalises to something");
            assert_eq!(name.as_str(), *normal, "normal form of {raw:?}");
            let want_md5 = md5_shard(normal, n);
            let want_rendezvous = rendezvous_shard(normal, &addrs);
            assert_eq!(usize::from(md5.shard_for(&name)), want_md5, "md5 owner of {raw:?} among {n}");
            assert_eq!(
                usize::from(rendezvous.shard_for(&name)),
                want_rendezvous,
                "rendezvous owner of {raw:?} among {n}"
            );
            if n == 8 {
                spread[0][want_md5] += 1;
                spread[1][want_rendezvous] += 1;
            }
        }
    }
    // Guard against a degenerate table: among 8 shards the names land on several of them.
    for (scheme, counts) in ["md5", "rendezvous"].iter().zip(&spread) {
        let used = counts.iter().filter(|&&c| c > 0).count();
        assert!(used >= 4, "{scheme}: the table only reaches {used} of 8 shards: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendezvous_routing_end_to_end() {
    const REPOS: usize = 20;
    let work = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = (0..REPOS).map(|i| format!("github.com/rendezvous/repo-{i:02}")).collect();
    let urls = source_repos(&work.path().join("sources"), &names).await;
    let db = PgDb::create(Shape::Cloned2020_10).await;
    let rows: Vec<NewRepo> = names.iter().zip(&urls).map(|(name, url)| NewRepo::new(name, url)).collect();
    db.insert_repos(&rows).await;

    let shards = start_shards(work.path(), 2, Duration::from_millis(20));
    let addrs: Vec<String> = shards.iter().map(DevShard::addr).collect();
    let mut config = SidecarConfig::new(db.url(), addrs.clone());
    config.routing = "rendezvous";
    let sidecar = Sidecar::start(&config);
    let done = sidecar
        .wait_for("every repo cloned", |s| s.totals.cloned == REPOS as u64 && s.totals.desired == REPOS as u64)
        .await;
    assert_eq!(done.totals.misplaced, 0, "{done:#?}");

    let mut owned = [0u64; 2];
    for name in &names {
        let owner = rendezvous_shard(name, &addrs);
        owned[owner] += 1;
        for (idx, shard) in shards.iter().enumerate() {
            assert_eq!(shard.has_mirror(name), idx == owner, "{name} on shard {idx}; rendezvous owner is {owner}");
        }
    }
    for (idx, shard) in shards.iter().enumerate() {
        assert_eq!(done.shards[idx].counts.desired, owned[idx], "desired repos of shard {idx}");
        let starts = starts_per_repo([&shard.dispatches().await]);
        for repo in starts.keys() {
            assert_eq!(rendezvous_shard(repo, &addrs), idx, "shard {idx} was asked to clone {repo}");
        }
    }
}

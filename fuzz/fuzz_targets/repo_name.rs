//! Any text as a repository name: normalisation never panics, its canonical form is one a
//! shard leaves alone, and every name routes to a shard that exists.
#![no_main]

use clonekeeper::model::RepoName;
use clonekeeper::routing::{Routing, ShardMap};
use gitserver_api::{canonical_repo_name, normalize_repo_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let once = normalize_repo_name(raw);
    assert!(!once.starts_with('/') && !once.contains("//"), "{once:?}");
    let canonical = canonical_repo_name(raw);
    assert_eq!(normalize_repo_name(&canonical), canonical, "not stable: {raw:?}");
    assert!(!canonical.ends_with(".git"), "{canonical:?}");
    if normalize_repo_name(&once) == once {
        assert_eq!(canonical, once, "departs from gitserver for {raw:?}");
    }
    if let Some(name) = RepoName::normalize(raw) {
        for routing in [Routing::Md5, Routing::Rendezvous] {
            let addrs: Vec<String> = (0..7).map(|i| format!("gitserver-{i}:3178")).collect();
            let map = ShardMap::new(addrs, routing).expect("seven shards");
            assert!(usize::from(map.shard_for(&name)) < 7);
        }
    }
});

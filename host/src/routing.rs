//! Which shard owns a repo: pure functions of the normalised name and the address list.
//!
//! `md5` is the scheme gitserver's Go client used: md5 of the normalised name, the first
//! 8 bytes read as a big-endian u64, modulo the number of addresses in configured order.
//! `rendezvous` is highest-random-weight hashing as later deployments used it
//! (go-rendezvous with xxhash64: each address's weight is `xorshift_mult64(h(name) ^ h(addr))`),
//! so adding a shard moves only the repos the new shard wins.

use md5::{Digest, Md5};
use twox_hash::XxHash64;

use crate::model::ShardIdx;

/// The routing scheme, chosen in config (`[gitserver] routing`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Routing {
    #[default]
    Md5,
    Rendezvous,
}

/// The shard address list together with its routing scheme.
///
/// Invariant: `addrs` is non-empty and at most `ShardIdx::MAX` long (config validation).
#[derive(Clone, Debug)]
pub struct ShardMap {
    addrs: Vec<String>,
    routing: Routing,
    addr_hashes: Vec<u64>,
}

impl ShardMap {
    /// Returns `None` for an empty list or more than 65,535 shards.
    pub fn new(addrs: Vec<String>, routing: Routing) -> Option<ShardMap> {
        if addrs.is_empty() || addrs.len() > usize::from(ShardIdx::MAX) {
            return None;
        }
        let addr_hashes = addrs.iter().map(|a| xxhash64(a)).collect();
        Some(ShardMap { addrs, routing, addr_hashes })
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    pub fn routing(&self) -> Routing {
        self.routing
    }

    pub fn addr(&self, shard: ShardIdx) -> &str {
        &self.addrs[usize::from(shard)]
    }

    /// The shard that owns `name`.
    pub fn shard_for<N: std::borrow::Borrow<str> + ?Sized>(&self, name: &N) -> ShardIdx {
        let name: &str = name.borrow();
        let idx = match self.routing {
            Routing::Md5 => md5_index(name, self.addrs.len()),
            Routing::Rendezvous => {
                let key = xxhash64(name);
                let mut best = 0;
                let mut best_weight = xorshift_mult64(key ^ self.addr_hashes[0]);
                for (idx, addr_hash) in self.addr_hashes.iter().enumerate().skip(1) {
                    let weight = xorshift_mult64(key ^ addr_hash);
                    if weight > best_weight {
                        best = idx;
                        best_weight = weight;
                    }
                }
                best
            }
        };
        ShardIdx::try_from(idx).expect("shard count is bounded by ShardIdx::MAX in ShardMap::new")
    }
}

fn md5_index(name: &str, n_shards: usize) -> usize {
    let digest = Md5::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let n = u64::try_from(n_shards).expect("usize fits in u64");
    usize::try_from(u64::from_be_bytes(first) % n).expect("index is below n_shards")
}

pub(crate) fn xxhash64(text: &str) -> u64 {
    XxHash64::oneshot(0, text.as_bytes())
}

pub(crate) fn xorshift_mult64(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(2685821657736338717)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RepoName;

    fn map(n: usize, routing: Routing) -> ShardMap {
        ShardMap::new((0..n).map(|i| format!("gitserver-{i}:3178")).collect(), routing).unwrap()
    }

    #[test]
    fn md5_reads_first_eight_bytes_big_endian() {
        let name = RepoName::normalize("github.com/sourcegraph/sourcegraph").unwrap();
        let digest = Md5::digest(name.as_str().as_bytes());
        let expected = u64::from_be_bytes(digest[..8].try_into().unwrap()) % 3;
        assert_eq!(u64::from(map(3, Routing::Md5).shard_for(&name)), expected);
    }

    #[test]
    fn one_shard_owns_everything() {
        for routing in [Routing::Md5, Routing::Rendezvous] {
            let m = map(1, routing);
            assert_eq!(m.shard_for(&RepoName::normalize("a/b").unwrap()), 0);
        }
    }

    #[test]
    fn rendezvous_moves_only_repos_the_new_shard_wins() {
        let before = map(4, Routing::Rendezvous);
        let after = map(5, Routing::Rendezvous);
        let mut moved = 0;
        for i in 0..2000 {
            let name = RepoName::normalize(&format!("github.com/org/repo-{i}")).unwrap();
            let (a, b) = (before.shard_for(&name), after.shard_for(&name));
            if a != b {
                assert_eq!(b, 4, "a repo moved between two old shards");
                moved += 1;
            }
        }
        // About a fifth should move to the new shard.
        assert!((250..550).contains(&moved), "moved {moved}");
    }

    #[test]
    fn empty_address_list_is_refused() {
        assert!(ShardMap::new(Vec::new(), Routing::Md5).is_none());
    }
}

/// Properties: md5 routing against the specification written out independently, every name
/// on a shard that exists, and rendezvous moving only the keys it must.
#[cfg(test)]
mod props {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::model::RepoName;

    /// DESIGN.md §5, written out again: md5 of the normalised name, the first 8 bytes as a
    /// big-endian u64, modulo the number of addresses.
    fn md5_spec(name: &str, n_shards: u64) -> u64 {
        let digest: [u8; 16] = Md5::digest(name.as_bytes()).into();
        let first = digest[..8].iter().fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
        first % n_shards
    }

    fn names() -> impl Strategy<Value = Vec<RepoName>> {
        let raw = prop_oneof!["[a-z]{1,8}\\.com/[a-zA-Z0-9_-]{1,10}/[a-zA-Z0-9_.-]{1,12}", any::<String>()];
        prop::collection::vec(raw, 1..40).prop_map(|raw| raw.iter().filter_map(|r| RepoName::normalize(r)).collect())
    }

    fn addrs(range: std::ops::Range<usize>) -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_set("[a-z][a-z0-9-]{0,12}:[1-9][0-9]{0,4}", range)
            .prop_map(|set| set.into_iter().collect())
            .prop_shuffle()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn md5_routing_is_the_specified_function(names in names(), n_shards in 1usize..=1000) {
            let map = ShardMap::new((0..n_shards).map(|i| format!("gitserver-{i}:3178")).collect(), Routing::Md5)
                .expect("between 1 and 1000 shards");
            for name in &names {
                let n = u64::try_from(n_shards).expect("small");
                prop_assert_eq!(u64::from(map.shard_for(name)), md5_spec(name.as_str(), n), "{}", name);
            }
        }

        #[test]
        fn every_name_routes_to_a_configured_shard(names in names(), addrs in addrs(1..50)) {
            for routing in [Routing::Md5, Routing::Rendezvous] {
                let map = ShardMap::new(addrs.clone(), routing).expect("1 to 49 shards");
                for name in &names {
                    prop_assert!(usize::from(map.shard_for(name)) < addrs.len());
                }
            }
        }

        /// Adding a shard moves only the keys the new shard wins; removing one moves only its
        /// own keys. Compared by address, since removal shifts the indices after it.
        #[test]
        fn rendezvous_moves_only_what_it_must(names in names(), addrs in addrs(2..20), pick in any::<prop::sample::Index>()) {
            let (kept, added) = addrs.split_at(addrs.len() - 1);
            let before = ShardMap::new(kept.to_vec(), Routing::Rendezvous).expect("non-empty");
            let after = ShardMap::new(addrs.clone(), Routing::Rendezvous).expect("non-empty");
            let owner = |map: &ShardMap, name: &RepoName| map.addr(map.shard_for(name)).to_string();
            for name in &names {
                let (old, new) = (owner(&before, name), owner(&after, name));
                prop_assert!(old == new || new == added[0], "{name} moved from {old} to {new}, not to the added shard");
            }
            let removed = pick.index(addrs.len());
            let mut fewer = addrs.clone();
            let removed_addr = fewer.remove(removed);
            let smaller = ShardMap::new(fewer, Routing::Rendezvous).expect("at least one left");
            for name in &names {
                let (old, new) = (owner(&after, name), owner(&smaller, name));
                prop_assert!(old == new || old == removed_addr, "{name} moved from {old} to {new}, though {removed_addr} was removed");
            }
        }

        /// Spellings that normalise alike route alike, under both schemes.
        #[test]
        fn spellings_route_alike(
            org in "[a-zA-Z0-9_-]{1,10}",
            repo in "[a-zA-Z0-9_-]{1,10}",
            addrs in addrs(1..16),
        ) {
            let spellings = BTreeSet::from([
                format!("github.com/{org}/{repo}"),
                format!("/GitHub.com/{org}/{repo}.git"),
                format!("github.com//{}/./x/../{}/", org.to_ascii_uppercase(), repo.to_ascii_lowercase()),
            ]);
            for routing in [Routing::Md5, Routing::Rendezvous] {
                let map = ShardMap::new(addrs.clone(), routing).expect("non-empty");
                let shards: BTreeSet<ShardIdx> = spellings
                    .iter()
                    .map(|s| map.shard_for(&RepoName::normalize(s).expect("a repo name")))
                    .collect();
                prop_assert_eq!(shards.len(), 1, "{:?} routed to {:?}", spellings, shards);
            }
        }
    }
}

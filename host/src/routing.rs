//! Which shard owns a repo: pure functions of the normalised name and the address list.
//!
//! `md5` is the scheme gitserver's Go client used: md5 of the normalised name, the first
//! 8 bytes read as a big-endian u64, modulo the number of addresses in configured order.
//! `rendezvous` is highest-random-weight hashing as later deployments used it
//! (go-rendezvous with xxhash64: each address's weight is `xorshift_mult64(h(name) ^ h(addr))`),
//! so adding a shard moves only the repos the new shard wins.

use md5::{Digest, Md5};
use twox_hash::XxHash64;

use crate::model::{RepoName, ShardIdx};

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
    pub fn shard_for(&self, name: &RepoName) -> ShardIdx {
        let idx = match self.routing {
            Routing::Md5 => md5_index(name.as_str(), self.addrs.len()),
            Routing::Rendezvous => {
                let key = xxhash64(name.as_str());
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

fn xxhash64(text: &str) -> u64 {
    XxHash64::oneshot(0, text.as_bytes())
}

fn xorshift_mult64(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(2685821657736338717)
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! The two routing schemes written out again from their definitions (DESIGN §5 and
//! go-rendezvous), independently of clonekeeper's `routing` module, so that the tests check
//! clonekeeper against the schemes rather than against itself.

use md5::{Digest, Md5};
use twox_hash::XxHash64;

/// gitserver's Go client: md5 of the normalised name, first 8 bytes big-endian, modulo the
/// number of addresses.
pub fn md5_shard(normalised: &str, n_shards: usize) -> usize {
    let digest = Md5::digest(normalised.as_bytes());
    let first = u64::from_be_bytes(digest[..8].try_into().expect("md5 has 16 bytes"));
    (first % n_shards as u64) as usize
}

/// go-rendezvous with xxhash64 (seed 0): the address with the highest
/// `xorshift_mult64(xxh64(name) ^ xxh64(addr))` wins, the first one on ties.
pub fn rendezvous_shard(normalised: &str, addrs: &[String]) -> usize {
    let key = XxHash64::oneshot(0, normalised.as_bytes());
    let mut best = (0, 0u64);
    for (idx, addr) in addrs.iter().enumerate() {
        let weight = xorshift_mult64(key ^ XxHash64::oneshot(0, addr.as_bytes()));
        if idx == 0 || weight > best.1 {
            best = (idx, weight);
        }
    }
    best.0
}

fn xorshift_mult64(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(2685821657736338717)
}

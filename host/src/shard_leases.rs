//! Per-shard leases: how several replicas would split a deployment's shards among themselves
//! at 10M repos and 100+ shards (docs/scale-out.md). This is the pure part of one replica: what
//! it asks of the lease table after one look at it, and when it may dispatch to a shard.
//!
//! Not wired into the sidecar: `[ha]` elects one leader for every shard, which is enough up to
//! the size where one process stops being enough. The simulator (`sim::leases`) drives these
//! decisions through crashes, stalls, lost sessions and replicas joining, against a model of
//! the Postgres table that applies each statement atomically, and checks that no two replicas
//! ever may dispatch to one shard at once and that every shard is owned again within a bound.
//!
//! **The table** (one row per shard) and the statements a replica sends:
//! - take: `UPDATE … SET holder = $me, epoch = epoch + 1, renewed_at = now() WHERE shard = $s
//!   AND (holder IS NULL OR renewed_at < now() - $ttl) RETURNING epoch`;
//! - renew: `UPDATE … SET renewed_at = now() WHERE shard = $s AND holder = $me AND epoch = $e`;
//! - release: `UPDATE … SET holder = NULL, renewed_at = now() WHERE shard = $s AND holder = $me
//!   AND epoch = $e`.
//!
//! **Why two replicas never dispatch to one shard at once.** A replica may dispatch to a shard
//! only until `sent + ttl - margin`, where `sent` is its own clock when it sent the statement
//! that took or last renewed the lease. The database stamps `renewed_at` no earlier than that
//! send, and another replica can take the lease only once `renewed_at + ttl` has passed on the
//! database's clock. With clocks that advance at the same rate (the margin covers the drift a
//! deployment allows), the first replica's right ends before the second's can begin, whatever
//! the delays, stalls or lost answers in between.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::Timestamp;
use crate::routing::{xorshift_mult64, xxhash64};

/// The lease timings every replica shares.
#[derive(Copy, Clone, Debug)]
pub struct LeaseTimings {
    /// A lease not renewed for this long may be taken by another replica.
    pub ttl: Duration,
    /// A holder stops dispatching this long before its lease can expire.
    pub margin: Duration,
    /// How often a replica looks at the table, heartbeats and renews.
    pub check_interval: Duration,
}

impl LeaseTimings {
    /// The longest a shard stays without a holder after its holder dies, with every other
    /// replica healthy: the lease expires, then the next look of its preferred replica takes
    /// it (or any replica's, once it has been free for a further `ttl`).
    pub fn takeover_bound(&self) -> Duration {
        self.ttl * 2 + self.check_interval * 2
    }
}

/// One row of the lease table as a look at it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    pub shard: String,
    pub holder: Option<String>,
    pub epoch: u64,
    /// The database's clock.
    pub renewed_at: Timestamp,
}

/// What a replica asks of the table after a look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// Take a lease that is free or expired; the epoch is bumped by the take.
    Take { shard: String },
    /// Renew a lease this replica holds under `epoch`.
    Renew { shard: String, epoch: u64 },
    /// Give a lease this replica holds to the replica that should have it; sent only once this
    /// replica has stopped dispatching to the shard and its calls there have ended.
    Release { shard: String, epoch: u64 },
}

/// A lease this replica believes it holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub epoch: u64,
    /// Dispatching to the shard is allowed until then, on this replica's clock.
    pub until: Timestamp,
    /// Handing the shard over: no new dispatches, a release once its calls ended.
    pub releasing: bool,
}

/// The leases one replica holds, as far as it knows.
#[derive(Clone, Debug, Default)]
pub struct Holdings {
    held: BTreeMap<String, Held>,
}

impl Holdings {
    /// Whether this replica may start a call to `shard` at `now` (its own clock).
    pub fn may_dispatch(&self, shard: &str, now: Timestamp) -> bool {
        self.held.get(shard).is_some_and(|held| !held.releasing && now < held.until)
    }

    /// The lease held on `shard`, if any.
    pub fn get(&self, shard: &str) -> Option<&Held> {
        self.held.get(shard)
    }

    /// The leases held, in shard order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Held)> {
        self.held.iter().map(|(shard, held)| (shard.as_str(), held))
    }

    /// A take or renew sent at `sent` succeeded under `epoch`.
    pub fn granted(&mut self, shard: &str, epoch: u64, sent: Timestamp, timings: &LeaseTimings) {
        let until = sent.saturating_add(timings.ttl.saturating_sub(timings.margin));
        let releasing = self.held.get(shard).is_some_and(|held| held.epoch == epoch && held.releasing);
        self.held.insert(shard.to_owned(), Held { epoch, until, releasing });
    }

    /// A renew or release came back refused, or a release succeeded: the lease is gone.
    pub fn lost(&mut self, shard: &str, epoch: u64) {
        if self.held.get(shard).is_some_and(|held| held.epoch == epoch) {
            self.held.remove(shard);
        }
    }

    /// Forgets leases whose right to dispatch has run out (their renewals failed): they are
    /// taken again like any free lease.
    pub fn expire(&mut self, now: Timestamp) {
        self.held.retain(|_, held| now < held.until);
    }
}

/// The live replica that should hold `shard`: rendezvous hashing of (shard, replica), so that a
/// replica joining or leaving moves only the shards it wins or held.
pub fn preferred<'a>(shard: &str, live: &'a [String]) -> Option<&'a str> {
    let key = xxhash64(shard);
    live.iter().max_by_key(|replica| (xorshift_mult64(key ^ xxhash64(replica)), replica.as_str())).map(String::as_str)
}

/// What replica `me` asks of the table after a look at `rows` at database time `db_now`, with
/// `live` the replicas whose heartbeat is younger than the TTL (including `me`). Marks the
/// leases it hands over as releasing, so it stops dispatching to them at once; `busy` says
/// whether calls to a shard are still running (a release waits for them to end).
pub fn decide(
    me: &str,
    rows: &[LeaseRow],
    live: &[String],
    db_now: Timestamp,
    holdings: &mut Holdings,
    timings: &LeaseTimings,
    busy: impl Fn(&str) -> bool,
) -> Vec<LeaseAction> {
    let mut actions = Vec::new();
    for row in rows {
        let expired = db_now.since(row.renewed_at) > timings.ttl;
        let wanted_by = preferred(&row.shard, live);
        match (&row.holder, holdings.held.get_mut(&row.shard)) {
            (Some(holder), Some(held)) if holder == me && row.epoch == held.epoch => {
                let elsewhere = wanted_by.is_some_and(|replica| replica != me);
                if elsewhere {
                    held.releasing = true;
                }
                actions.push(if held.releasing && !busy(&row.shard) {
                    LeaseAction::Release { shard: row.shard.clone(), epoch: held.epoch }
                } else {
                    LeaseAction::Renew { shard: row.shard.clone(), epoch: held.epoch }
                });
            }
            // Held here by an epoch the table no longer has: another replica took it.
            (_, Some(_)) => {
                holdings.held.remove(&row.shard);
            }
            (None, None) => {
                // Free: the preferred replica takes it; any replica does once it has stayed
                // free for a TTL (the preferred one may be live in name only).
                if wanted_by == Some(me) || expired {
                    actions.push(LeaseAction::Take { shard: row.shard.clone() });
                }
            }
            (Some(_), None) if expired => {
                // Its holder stopped renewing: the preferred replica takes it; any replica does
                // a TTL later.
                let orphaned = db_now.since(row.renewed_at) > timings.ttl * 2;
                if wanted_by == Some(me) || orphaned {
                    actions.push(LeaseAction::Take { shard: row.shard.clone() });
                }
            }
            (Some(_), None) => {}
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMINGS: LeaseTimings = LeaseTimings {
        ttl: Duration::from_secs(10),
        margin: Duration::from_secs(2),
        check_interval: Duration::from_secs(2),
    };

    fn row(shard: &str, holder: Option<&str>, epoch: u64, renewed_at: i64) -> LeaseRow {
        LeaseRow {
            shard: shard.to_owned(),
            holder: holder.map(str::to_owned),
            epoch,
            renewed_at: Timestamp::from_millis(renewed_at),
        }
    }

    fn replicas(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn rendezvous_moves_only_the_shards_a_new_replica_wins() {
        let shards: Vec<String> = (0..200).map(|i| format!("gitserver-{i}:3178")).collect();
        let two = replicas(&["a", "b"]);
        let three = replicas(&["a", "b", "c"]);
        let mut moved = 0;
        for shard in &shards {
            let (before, after) = (preferred(shard, &two), preferred(shard, &three));
            if before != after {
                assert_eq!(after, Some("c"), "{shard} moved between old replicas");
                moved += 1;
            }
        }
        // About a third, with some spread.
        assert!((40..=95).contains(&moved), "{moved} of 200 moved");
    }

    #[test]
    fn a_free_shard_is_taken_by_its_preferred_replica_and_by_anyone_once_stale() {
        let live = replicas(&["a", "b"]);
        let shard =
            (0..).map(|i| format!("gs-{i}")).find(|s| preferred(s, &live) == Some("b")).expect("a shard b wins");
        let rows = vec![row(&shard, None, 3, 0)];
        let mut holdings = Holdings::default();
        let look = |at: i64, holdings: &mut Holdings| {
            decide("a", &rows, &live, Timestamp::from_millis(at), holdings, &TIMINGS, |_| false)
        };
        assert!(look(5_000, &mut holdings).is_empty(), "b should take it");
        assert_eq!(look(10_001, &mut holdings), vec![LeaseAction::Take { shard: shard.clone() }]);
    }

    #[test]
    fn a_holder_hands_over_only_once_its_calls_ended_and_stops_dispatching_at_once() {
        let shard = "gs-1";
        let live = replicas(&["a", "b"]);
        let me = if preferred(shard, &live) == Some("a") { "b" } else { "a" };
        let mut holdings = Holdings::default();
        holdings.granted(shard, 4, Timestamp::from_millis(0), &TIMINGS);
        assert!(holdings.may_dispatch(shard, Timestamp::from_millis(7_999)));
        assert!(!holdings.may_dispatch(shard, Timestamp::from_millis(8_000)), "ttl - margin");

        let rows = vec![row(shard, Some(me), 4, 0)];
        let at = Timestamp::from_millis(1_000);
        let busy = decide(me, &rows, &live, at, &mut holdings, &TIMINGS, |_| true);
        assert_eq!(busy, vec![LeaseAction::Renew { shard: shard.to_owned(), epoch: 4 }]);
        assert!(!holdings.may_dispatch(shard, at), "handing over: no new calls");
        let idle = decide(me, &rows, &live, at, &mut holdings, &TIMINGS, |_| false);
        assert_eq!(idle, vec![LeaseAction::Release { shard: shard.to_owned(), epoch: 4 }]);
    }

    #[test]
    fn a_lease_taken_elsewhere_is_forgotten_and_an_expired_one_waits_for_its_preferred_replica() {
        let live = replicas(&["a", "b"]);
        let mut holdings = Holdings::default();
        holdings.granted("gs-1", 4, Timestamp::from_millis(0), &TIMINGS);
        let rows = vec![row("gs-1", Some("b"), 5, 9_000)];
        decide("a", &rows, &live, Timestamp::from_millis(9_500), &mut holdings, &TIMINGS, |_| false);
        assert!(!holdings.may_dispatch("gs-1", Timestamp::from_millis(9_500)));
        assert_eq!(holdings.iter().count(), 0);

        let shard =
            (0..).map(|i| format!("gs-{i}")).find(|s| preferred(s, &live) == Some("b")).expect("a shard b wins");
        let dead = vec![row(&shard, Some("c"), 7, 0)];
        let at = |ms| Timestamp::from_millis(ms);
        assert!(decide("a", &dead, &live, at(15_000), &mut holdings, &TIMINGS, |_| false).is_empty());
        assert_eq!(
            decide("b", &dead, &live, at(15_000), &mut Holdings::default(), &TIMINGS, |_| false),
            vec![LeaseAction::Take { shard: shard.clone() }]
        );
        assert_eq!(
            decide("a", &dead, &live, at(20_001), &mut holdings, &TIMINGS, |_| false),
            vec![LeaseAction::Take { shard }],
            "orphaned for two TTLs: anyone"
        );
    }
}

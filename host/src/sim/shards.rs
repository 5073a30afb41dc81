//! A simulated gitserver shard: a set of clones, a clone queue that a restart loses, and the
//! ways a real one misbehaves (down, slow, garbled answers, failing clones, clones finishing
//! between the list and the progress call).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::dispatch::DispatchError;
use crate::machine::{ProgressScope, ShardAnswer, ShardObservation, Snapshot};
use crate::model::{NameList, RepoName, ShardIdx, Timestamp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug)]
pub struct Shard {
    pub addr: String,
    pub cloned: BTreeSet<RepoName>,
    /// Clones in the queue or running, with when each finishes.
    pub cloning: BTreeMap<RepoName, Timestamp>,
    /// Connections refused until then.
    pub down_until: Timestamp,
    /// Observations take longer than a tick until then (the shard is *late*).
    pub slow: Option<(Timestamp, Timestamp)>,
    /// Answers are not gitserver's (a proxy's error page, a cut body) until then.
    pub garbled_until: Timestamp,
    /// Clones fail (gitserver drops them) until then.
    pub failing_until: Timestamp,
    /// Clones that finish within this long after a list call are missed by both the list and
    /// the progress call, until `racy_until`.
    pub racy_until: Timestamp,
    /// Dispatches answer a git error until then.
    pub refusing_until: Timestamp,
}

impl Shard {
    pub fn new(addr: String) -> Shard {
        Shard {
            addr,
            cloned: BTreeSet::new(),
            cloning: BTreeMap::new(),
            down_until: Timestamp::from_millis(0),
            slow: None,
            garbled_until: Timestamp::from_millis(0),
            failing_until: Timestamp::from_millis(0),
            racy_until: Timestamp::from_millis(0),
            refusing_until: Timestamp::from_millis(0),
        }
    }

    pub fn is_down(&self, now: Timestamp) -> bool {
        now < self.down_until
    }

    /// Finishes the clones due by `now` (dropping them while clones fail).
    pub fn advance(&mut self, now: Timestamp) {
        let done: Vec<RepoName> = self.cloning.iter().filter(|(_, &at)| at <= now).map(|(n, _)| n.clone()).collect();
        for name in done {
            let Some(at) = self.cloning.remove(&name) else { continue };
            if at >= self.failing_until {
                self.cloned.insert(name);
            }
        }
    }

    /// The earliest clone completion, for the simulator's clock.
    pub fn next_completion(&self) -> Option<Timestamp> {
        self.cloning.values().min().copied()
    }

    /// A restart: the clone queue is gone, the clones on disk stay.
    pub fn restart(&mut self) {
        self.cloning.clear();
    }

    /// `POST /repo-update` arriving at `now`: queue a clone unless it is cloned or queued.
    pub fn receive_dispatch(
        &mut self,
        name: &RepoName,
        now: Timestamp,
        rng: &mut ChaCha8Rng,
    ) -> Result<(), DispatchError> {
        if self.is_down(now) {
            let message = format!("shard {}: POST /repo-update: connection refused", self.addr);
            return Err(DispatchError { message, shard_down: true });
        }
        if now < self.garbled_until {
            let message = format!("shard {}: POST /repo-update: the answer is not JSON", self.addr);
            return Err(DispatchError { message, shard_down: false });
        }
        if now < self.refusing_until {
            let message = format!("shard {}: {name}: git clone: remote hung up unexpectedly", self.addr);
            return Err(DispatchError { message, shard_down: false });
        }
        if !self.cloned.contains(name) && !self.cloning.contains_key(name) {
            let took = Duration::from_millis(rng.random_range(200..30_000));
            self.cloning.insert(name.clone(), now.saturating_add(took));
        }
        Ok(())
    }

    /// One observation finishing at `now`: the list, then the progress of the desired repos it
    /// owns that the list lacks (as of `snapshot`, the tick's desired set) and `scope` names.
    pub fn observe(
        &mut self,
        idx: ShardIdx,
        snapshot: &Snapshot,
        scope: &ProgressScope,
        now: Timestamp,
    ) -> ShardObservation {
        if self.is_down(now) {
            return ShardObservation::Failed(format!("shard {}: GET /list?cloned: connection refused", self.addr));
        }
        if let Some((since, until)) = self.slow {
            if now < until {
                return ShardObservation::Late { since };
            }
            self.slow = None;
        }
        if now < self.garbled_until {
            return ShardObservation::Failed(format!(
                "shard {}: GET /list?cloned: answer is not a JSON list of names",
                self.addr
            ));
        }
        self.advance(now);
        let cloned: NameList = self.cloned.iter().collect();
        if now < self.racy_until {
            // The progress call comes a moment later: clones finishing meanwhile are in
            // neither answer.
            self.advance(now.saturating_add(Duration::from_millis(300)));
        }
        let cloning = scope
            .missing(snapshot, idx, &cloned)
            .into_iter()
            .filter(|name| self.cloning.contains_key(*name))
            .map(RepoName::from_normalized)
            .collect();
        ShardObservation::Answered(ShardAnswer { cloned, cloning })
    }
}

//! The fault schedule of one run: what goes wrong and when, drawn from the seed before the run
//! starts, so a run is replayable from its seed alone.

use std::time::Duration;

use crate::model::Timestamp;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One thing that goes wrong.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The shard refuses connections for a while.
    ShardDown {
        shard: usize,
        lasts: Duration,
    },
    /// The shard restarts: its clone queue is lost.
    ShardRestart {
        shard: usize,
    },
    /// The shard's observation outlasts ticks for a while (it is *late*).
    ShardSlow {
        shard: usize,
        lasts: Duration,
    },
    /// The shard answers with something that is not gitserver's answer.
    ShardGarbled {
        shard: usize,
        lasts: Duration,
    },
    /// Clones on the shard fail (gitserver drops them) for a while.
    ClonesFail {
        shard: usize,
        lasts: Duration,
    },
    /// Clones finishing between the list call and the progress call are in neither.
    ListRace {
        shard: usize,
        lasts: Duration,
    },
    /// Dispatches to the shard answer a git error for a while.
    DispatchRefused {
        shard: usize,
        lasts: Duration,
    },
    /// Repo DB reads fail at once.
    RepoDbDown {
        lasts: Duration,
    },
    /// Repo DB reads hang until the client's bound.
    RepoDbHang {
        lasts: Duration,
    },
    /// The state DB takes no writes.
    StateDbDown {
        lasts: Duration,
    },
    Insert {
        rows: usize,
    },
    SoftDelete,
    Undelete,
    Rename,
    CloneUrlChange,
    /// Repo-updater rewrites rows without changing a column the sidecar reads.
    Rewrite {
        rows: usize,
    },
    /// The sidecar process dies (SIGKILL) and is restarted after a pause.
    Crash {
        restart_after: Duration,
    },
    /// The address list grows by one shard (a restart with the new list).
    Reshard,
    /// The policies misbehave for a while.
    PolicyMisbehaves {
        lasts: Duration,
    },
    /// The operator asks for every given-up repo to be cloned now.
    OperatorEnqueue,
}

impl Fault {
    /// How long the fault's effect lasts past its start (zero for instant ones).
    pub fn lasts(&self) -> Duration {
        match self {
            Fault::ShardDown { lasts, .. }
            | Fault::ShardSlow { lasts, .. }
            | Fault::ShardGarbled { lasts, .. }
            | Fault::ClonesFail { lasts, .. }
            | Fault::ListRace { lasts, .. }
            | Fault::DispatchRefused { lasts, .. }
            | Fault::RepoDbDown { lasts }
            | Fault::RepoDbHang { lasts }
            | Fault::StateDbDown { lasts }
            | Fault::PolicyMisbehaves { lasts } => *lasts,
            Fault::Crash { restart_after } => *restart_after,
            _ => Duration::ZERO,
        }
    }
}

/// Faults at their times, sorted.
pub fn schedule(rng: &mut ChaCha8Rng, start: Timestamp, window: Duration, n_shards: usize) -> Vec<(Timestamp, Fault)> {
    if window.is_zero() {
        return Vec::new();
    }
    // Each run weighs the kinds of fault differently, so some seeds are storms of one kind.
    let rate_per_min = rng.random_range(2.0..30.0f64);
    let count = (rate_per_min * window.as_secs_f64() / 60.0) as usize;
    let mut faults: Vec<(Timestamp, Fault)> = (0..count)
        .map(|_| {
            let at = start.saturating_add(Duration::from_millis(rng.random_range(0..window.as_millis() as u64)));
            (at, one(rng, n_shards))
        })
        .collect();
    if rng.random_bool(0.2) {
        let at = start.saturating_add(Duration::from_millis(rng.random_range(0..window.as_millis() as u64)));
        faults.push((at, Fault::Reshard));
    }
    faults.sort_by_key(|(at, _)| *at);
    faults
}

fn one(rng: &mut ChaCha8Rng, n_shards: usize) -> Fault {
    let shard = rng.random_range(0..n_shards);
    let secs = |rng: &mut ChaCha8Rng, max: u64| Duration::from_millis(rng.random_range(500..max * 1000));
    match rng.random_range(0..21) {
        0 | 1 => Fault::ShardDown { shard, lasts: secs(rng, 60) },
        2 => Fault::ShardRestart { shard },
        3 => Fault::ShardSlow { shard, lasts: secs(rng, 40) },
        4 => Fault::ShardGarbled { shard, lasts: secs(rng, 20) },
        5 => Fault::ClonesFail { shard, lasts: secs(rng, 30) },
        6 => Fault::ListRace { shard, lasts: secs(rng, 30) },
        7 => Fault::DispatchRefused { shard, lasts: secs(rng, 20) },
        8 => Fault::RepoDbDown { lasts: secs(rng, 90) },
        9 => Fault::RepoDbHang { lasts: secs(rng, 120) },
        10 => Fault::StateDbDown { lasts: secs(rng, 60) },
        11 => Fault::Insert { rows: rng.random_range(1..6) },
        12 => Fault::SoftDelete,
        13 => Fault::Undelete,
        14 => Fault::Rename,
        15 => Fault::CloneUrlChange,
        16 | 17 => Fault::Crash { restart_after: secs(rng, 5) },
        18 => Fault::PolicyMisbehaves { lasts: secs(rng, 60) },
        19 => Fault::Rewrite { rows: rng.random_range(1..20) },
        _ => Fault::OperatorEnqueue,
    }
}

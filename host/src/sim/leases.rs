//! The simulated split of shards among replicas by per-shard leases (`shard_leases`,
//! docs/scale-out.md): replicas that look at a model of the Postgres lease table, send their
//! statements over a network that delays and loses them, crash, stall and join, seeded like
//! the rest of the simulator.
//!
//! Checked for every seed:
//! - no two replicas ever have the right to dispatch to one shard at overlapping times (the
//!   rights are intervals of simulated time, recorded as each replica learns and loses them);
//! - once the faults are over, every shard is held, within [`LeaseTimings::takeover_bound`]
//!   and a few network delays, by its preferred live replica, and stays so.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::Timestamp;
use crate::shard_leases::{decide, preferred, Holdings, LeaseAction, LeaseRow, LeaseTimings};

/// The timings of the simulated deployment.
pub const TIMINGS: LeaseTimings = LeaseTimings {
    ttl: Duration::from_secs(10),
    margin: Duration::from_secs(2),
    check_interval: Duration::from_secs(2),
};
/// The longest a statement or its answer travels.
const MAX_DELAY: Duration = Duration::from_millis(400);
/// Faults happen within this window; the run goes on this long after it.
const FAULT_WINDOW: Duration = Duration::from_secs(300);
const SETTLE: Duration = Duration::from_secs(120);

/// What one seed's run did.
#[derive(Clone, Debug, Default)]
pub struct LeaseSummary {
    pub shards: usize,
    pub replicas_started: usize,
    pub takes: u64,
    pub releases: u64,
    pub refused: u64,
    pub crashes: u64,
    pub stalls: u64,
    /// Rights to dispatch granted (intervals), over all shards and replicas.
    pub rights: usize,
    /// After the last fault, how long until every shard was held by its preferred replica.
    pub settled_in: Duration,
}

/// A broken invariant, with the seed that replays it.
#[derive(Clone, Debug)]
pub struct LeaseViolation {
    pub seed: u64,
    pub message: String,
}

impl std::fmt::Display for LeaseViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lease seed {}: {}", self.seed, self.message)
    }
}

#[derive(Clone, Debug)]
enum Event {
    Look {
        replica: usize,
    },
    /// A statement reaches the table.
    Arrive {
        replica: usize,
        action: LeaseAction,
        sent: Timestamp,
    },
    /// Its answer reaches the replica: the epoch granted, or `None` for refused.
    Answer {
        replica: usize,
        action: LeaseAction,
        sent: Timestamp,
        granted: Option<u64>,
    },
    CallEnds {
        replica: usize,
        shard: String,
    },
    Crash {
        replica: usize,
        restart_after: Duration,
    },
    Stall {
        replica: usize,
        lasts: Duration,
    },
    Partition {
        replica: usize,
        lasts: Duration,
    },
    Join,
    /// A stall ends: the events it held back are handled.
    Resume {
        replica: usize,
    },
}

struct Replica {
    id: String,
    holdings: Holdings,
    /// Calls in flight per shard.
    calls: BTreeMap<String, u32>,
    up: bool,
    stalled_until: Timestamp,
    partitioned_until: Timestamp,
    /// Events that arrived while stalled, handled when it resumes.
    deferred: Vec<Event>,
}

/// The right of one replica incarnation to dispatch to a shard, as an interval being built.
#[derive(Clone, Debug)]
struct Right {
    replica: String,
    from: Timestamp,
    to: Timestamp,
}

struct World {
    rng: ChaCha8Rng,
    now: Timestamp,
    seq: u64,
    queue: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    events: Vec<Option<Event>>,
    table: BTreeMap<String, LeaseRow>,
    heartbeats: BTreeMap<String, Timestamp>,
    replicas: Vec<Replica>,
    /// Per shard: the rights given so far, closed or open.
    rights: BTreeMap<String, Vec<Right>>,
    summary: LeaseSummary,
    lossy_until: Timestamp,
}

/// Runs one seed: 2–5 replicas over 16–128 shards, five minutes of faults, two to settle.
pub fn run_lease_seed(seed: u64) -> Result<LeaseSummary, LeaseViolation> {
    let violation = |message: String| LeaseViolation { seed, message };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1ea5e);
    let n_shards = rng.random_range(16..=128);
    let n_replicas = rng.random_range(2..=5);
    let start = Timestamp::from_millis(1_000_000);
    let mut world = World {
        rng,
        now: start,
        seq: 0,
        queue: BinaryHeap::new(),
        events: Vec::new(),
        table: (0..n_shards)
            .map(|i| {
                let shard = format!("gitserver-{i}:3178");
                (shard.clone(), LeaseRow { shard, holder: None, epoch: 0, renewed_at: start })
            })
            .collect(),
        heartbeats: BTreeMap::new(),
        replicas: Vec::new(),
        rights: BTreeMap::new(),
        summary: LeaseSummary { shards: n_shards, ..LeaseSummary::default() },
        lossy_until: start,
    };
    for _ in 0..n_replicas {
        world.start_replica();
    }
    let fault_end = start.saturating_add(FAULT_WINDOW);
    let n_faults = world.rng.random_range(0..40);
    let mut last_fault = start;
    for _ in 0..n_faults {
        let at =
            start.saturating_add(Duration::from_millis(world.rng.random_range(0..FAULT_WINDOW.as_millis() as u64)));
        let replica = world.rng.random_range(0..world.replicas.len().max(1));
        let lasts = Duration::from_millis(world.rng.random_range(500..30_000));
        let event = match world.rng.random_range(0..5) {
            0 => Event::Crash { replica, restart_after: lasts },
            1 => Event::Stall { replica, lasts },
            2 => Event::Partition { replica, lasts },
            3 => Event::Join,
            _ => {
                // A lossy network for everyone: answers and statements dropped.
                world.lossy_until = world.lossy_until.max(at.saturating_add(lasts));
                continue;
            }
        };
        last_fault = last_fault.max(at.saturating_add(lasts));
        world.schedule(at, event);
    }
    last_fault = last_fault.max(world.lossy_until);
    let end = fault_end.max(last_fault).saturating_add(SETTLE);

    let mut settled_at: Option<Timestamp> = None;
    let mut next_check = last_fault;
    while let Some(Reverse((at, _, idx))) = world.queue.pop() {
        if at > end {
            break;
        }
        world.now = at;
        let Some(event) = world.events[idx].take() else { continue };
        world.handle(event);
        // Checked every simulated half second, which bounds the figure's error to that.
        if at >= last_fault && at >= next_check {
            next_check = at.saturating_add(Duration::from_millis(500));
            let settled = world.every_shard_held_by_its_preferred_replica();
            match (settled, settled_at) {
                (true, None) => settled_at = Some(at),
                (false, Some(_)) => settled_at = None,
                _ => {}
            }
        }
    }
    world.now = end;
    world.close_rights();

    for (shard, rights) in &world.rights {
        let rights: Vec<&Right> = rights.iter().filter(|r| r.from < r.to).collect();
        for (i, a) in rights.iter().enumerate() {
            if let Some(b) = rights[i + 1..].iter().find(|b| b.replica != a.replica && b.from < a.to && a.from < b.to) {
                return Err(violation(format!(
                    "{shard}: {} may dispatch from {} to {} ms, {} from {} to {} ms",
                    a.replica,
                    a.from.0 - start.0,
                    a.to.0 - start.0,
                    b.replica,
                    b.from.0 - start.0,
                    b.to.0 - start.0
                )));
            }
        }
    }
    let bound = TIMINGS.takeover_bound() + MAX_DELAY * 4;
    let Some(settled_at) = settled_at else {
        return Err(violation(format!(
            "{} s after the last fault, some shard is still not held by its preferred live replica",
            end.since(last_fault).as_secs()
        )));
    };
    world.summary.settled_in = settled_at.since(last_fault);
    if world.summary.settled_in > bound {
        return Err(violation(format!(
            "the shards settled {:.1} s after the last fault, past the bound of {:.1} s",
            world.summary.settled_in.as_secs_f64(),
            bound.as_secs_f64()
        )));
    }
    world.summary.rights = world.rights.values().map(Vec::len).sum();
    Ok(world.summary)
}

impl World {
    fn schedule(&mut self, at: Timestamp, event: Event) {
        self.seq += 1;
        self.events.push(Some(event));
        self.queue.push(Reverse((at, self.seq, self.events.len() - 1)));
    }

    fn delay(&mut self) -> Duration {
        Duration::from_millis(self.rng.random_range(0..=MAX_DELAY.as_millis() as u64))
    }

    /// Whether a message sent now is lost.
    fn lost(&mut self) -> bool {
        self.now < self.lossy_until && self.rng.random_bool(0.3)
    }

    fn start_replica(&mut self) {
        let idx = self.replicas.len();
        self.summary.replicas_started += 1;
        self.replicas.push(Replica {
            id: format!("replica-{idx}"),
            holdings: Holdings::default(),
            calls: BTreeMap::new(),
            up: true,
            stalled_until: self.now,
            partitioned_until: self.now,
            deferred: Vec::new(),
        });
        let first = self.now.saturating_add(self.delay());
        self.schedule(first, Event::Look { replica: idx });
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Join => self.start_replica(),
            Event::Arrive { replica, action, sent } => self.arrive(replica, action, sent),
            Event::Crash { replica, restart_after } => self.crash(replica, restart_after),
            Event::Stall { replica, lasts } => {
                let r = &mut self.replicas[replica];
                if r.up {
                    self.summary.stalls += 1;
                    r.stalled_until = r.stalled_until.max(self.now.saturating_add(lasts));
                }
            }
            Event::Partition { replica, lasts } => {
                let r = &mut self.replicas[replica];
                r.partitioned_until = r.partitioned_until.max(self.now.saturating_add(lasts));
            }
            Event::Look { replica } | Event::Answer { replica, .. } | Event::CallEnds { replica, .. } => {
                let r = &mut self.replicas[replica];
                if !r.up {
                    return;
                }
                if self.now < r.stalled_until {
                    // Handled in order when the stall ends; a look is simply late.
                    let resume = r.stalled_until;
                    r.deferred.push(event);
                    if r.deferred.len() == 1 {
                        self.schedule(resume, Event::Resume { replica });
                    }
                    return;
                }
                self.on_replica(replica, event);
            }
            Event::Resume { replica } => {
                let r = &self.replicas[replica];
                if !r.up {
                    return;
                }
                if self.now < r.stalled_until {
                    let resume = r.stalled_until;
                    self.schedule(resume, Event::Resume { replica });
                    return;
                }
                for event in std::mem::take(&mut self.replicas[replica].deferred) {
                    self.on_replica(replica, event);
                }
            }
        }
    }

    /// An event a running replica handles.
    fn on_replica(&mut self, replica: usize, event: Event) {
        match event {
            Event::Look { .. } => self.look(replica),
            Event::Answer { action, sent, granted, .. } => self.answer(replica, action, sent, granted),
            Event::CallEnds { shard, .. } => {
                if let Some(calls) = self.replicas[replica].calls.get_mut(&shard) {
                    *calls = calls.saturating_sub(1);
                }
            }
            _ => {}
        }
    }

    fn look(&mut self, replica: usize) {
        let now = self.now;
        // A heartbeat, and the table as it is now (one statement: it shares the network).
        let reachable = now >= self.replicas[replica].partitioned_until;
        if reachable && !self.lost() {
            self.heartbeats.insert(self.replicas[replica].id.clone(), now);
        }
        if reachable {
            let rows: Vec<LeaseRow> = self.table.values().cloned().collect();
            let live: Vec<String> = self
                .heartbeats
                .iter()
                .filter(|(_, seen)| now.since(**seen) < TIMINGS.ttl)
                .map(|(id, _)| id.clone())
                .collect();
            let r = &mut self.replicas[replica];
            r.holdings.expire(now);
            let calls = r.calls.clone();
            let actions = decide(&r.id, &rows, &live, now, &mut r.holdings, &TIMINGS, |shard| {
                calls.get(shard).is_some_and(|&n| n > 0)
            });
            let id = r.id.clone();
            // Rights end where dispatching stopped: handing over, or lost.
            for (shard, rights) in self.rights.iter_mut() {
                if !self.replicas[replica].holdings.may_dispatch(shard, now) {
                    close_open(rights, &id, now);
                }
            }
            for action in actions {
                if !self.lost() {
                    let at = now.saturating_add(self.delay());
                    self.schedule(at, Event::Arrive { replica, action, sent: now });
                }
            }
        }
        self.dispatch(replica);
        let jitter = Duration::from_millis(self.rng.random_range(0..300));
        let next = now.saturating_add(TIMINGS.check_interval + jitter);
        self.schedule(next, Event::Look { replica });
    }

    /// Starts a call on some shards this replica may dispatch to.
    fn dispatch(&mut self, replica: usize) {
        let now = self.now;
        let shards: Vec<String> = self.replicas[replica].holdings.iter().map(|(shard, _)| shard.to_owned()).collect();
        for shard in shards {
            if self.replicas[replica].holdings.may_dispatch(&shard, now) && self.rng.random_bool(0.3) {
                *self.replicas[replica].calls.entry(shard.clone()).or_default() += 1;
                let ends = now.saturating_add(Duration::from_millis(self.rng.random_range(100..6_000)));
                self.schedule(ends, Event::CallEnds { replica, shard });
            }
        }
    }

    /// A statement is applied to the table, atomically, at the database's clock.
    fn arrive(&mut self, replica: usize, action: LeaseAction, sent: Timestamp) {
        let now = self.now;
        let id = self.replicas[replica].id.clone();
        let granted = match &action {
            LeaseAction::Take { shard } => self.table.get_mut(shard).and_then(|row| {
                let free = row.holder.is_none() || now.since(row.renewed_at) > TIMINGS.ttl;
                free.then(|| {
                    row.holder = Some(id.clone());
                    row.epoch += 1;
                    row.renewed_at = now;
                    row.epoch
                })
            }),
            LeaseAction::Renew { shard, epoch } => self.table.get_mut(shard).and_then(|row| {
                let ours = row.holder.as_deref() == Some(id.as_str()) && row.epoch == *epoch;
                ours.then(|| {
                    row.renewed_at = now;
                    row.epoch
                })
            }),
            LeaseAction::Release { shard, epoch } => self.table.get_mut(shard).and_then(|row| {
                let ours = row.holder.as_deref() == Some(id.as_str()) && row.epoch == *epoch;
                ours.then(|| {
                    row.holder = None;
                    row.renewed_at = now;
                    row.epoch
                })
            }),
        };
        match (&action, granted) {
            (LeaseAction::Take { .. }, Some(_)) => self.summary.takes += 1,
            (LeaseAction::Release { .. }, Some(_)) => self.summary.releases += 1,
            (_, None) => self.summary.refused += 1,
            _ => {}
        }
        if !self.lost() {
            let at = now.saturating_add(self.delay());
            self.schedule(at, Event::Answer { replica, action, sent, granted });
        }
    }

    fn answer(&mut self, replica: usize, action: LeaseAction, sent: Timestamp, granted: Option<u64>) {
        let now = self.now;
        let r = &mut self.replicas[replica];
        let id = r.id.clone();
        match (action, granted) {
            (LeaseAction::Take { shard }, Some(epoch)) | (LeaseAction::Renew { shard, epoch: _ }, Some(epoch)) => {
                r.holdings.granted(&shard, epoch, sent, &TIMINGS);
                if r.holdings.may_dispatch(&shard, now) {
                    let until = r.holdings.get(&shard).map_or(now, |held| held.until);
                    let rights = self.rights.entry(shard).or_default();
                    match rights.iter_mut().rev().find(|right| right.replica == id && right.to >= now) {
                        Some(open) => open.to = open.to.max(until),
                        None => rights.push(Right { replica: id, from: now, to: until }),
                    }
                }
            }
            (LeaseAction::Release { shard, epoch }, _) | (LeaseAction::Renew { shard, epoch }, None) => {
                r.holdings.lost(&shard, epoch);
                close_open(self.rights.entry(shard).or_default(), &id, now);
            }
            (LeaseAction::Take { .. }, None) => {}
        }
    }

    fn crash(&mut self, replica: usize, restart_after: Duration) {
        if !self.replicas[replica].up {
            return;
        }
        self.summary.crashes += 1;
        let now = self.now;
        let id = self.replicas[replica].id.clone();
        for rights in self.rights.values_mut() {
            close_open(rights, &id, now);
        }
        let r = &mut self.replicas[replica];
        r.up = false;
        // It comes back as a new incarnation: a new id, nothing held.
        let restart = now.saturating_add(restart_after);
        self.schedule(restart, Event::Join);
    }

    fn close_rights(&mut self) {
        let now = self.now;
        for rights in self.rights.values_mut() {
            for right in rights.iter_mut() {
                right.to = right.to.min(now);
            }
        }
    }

    fn every_shard_held_by_its_preferred_replica(&self) -> bool {
        let live: Vec<String> = self.replicas.iter().filter(|r| r.up).map(|r| r.id.clone()).collect();
        self.table.keys().all(|shard| {
            let Some(want) = preferred(shard, &live) else { return false };
            self.replicas.iter().any(|r| r.up && r.id == want && r.holdings.may_dispatch(shard, self.now))
        })
    }
}

/// Ends `replica`'s open right among `rights` at `at`.
fn close_open(rights: &mut [Right], replica: &str, at: Timestamp) {
    for right in rights.iter_mut().filter(|right| right.replica == replica && right.to > at) {
        right.to = at.max(right.from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_stay_exclusive_and_settle_under_every_seed() {
        let mut totals = LeaseSummary::default();
        let mut settled_in = Duration::ZERO;
        for seed in 0..100 {
            let summary = run_lease_seed(seed).unwrap_or_else(|violation| panic!("{violation}"));
            totals.takes += summary.takes;
            totals.releases += summary.releases;
            totals.crashes += summary.crashes;
            totals.stalls += summary.stalls;
            totals.refused += summary.refused;
            settled_in = settled_in.max(summary.settled_in);
        }
        eprintln!("{totals:?}; slowest settling {settled_in:?}");
        // The schedules must hurt: takeovers after crashes, handovers, refused renewals.
        assert!(totals.crashes > 50 && totals.stalls > 50, "{totals:?}");
        assert!(totals.releases > 50 && totals.refused > 50, "{totals:?}");
    }
}

//! One seeded run: the world (repo DB, shards, state DB), the fault schedule, and the clock
//! that jumps from event to event; the simulated sidecar process around the production
//! machine is in [`process`]. A crash drops the process with its unwritten records and its
//! calls not yet made; calls that reached a shard go on there.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::model::{AttemptRecord, RepoName, Timestamp};
use crate::routing::{Routing, ShardMap};
use crate::schedule::{Backoff, Limits};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::faults::{self, Fault};
use super::invariants::{Checks, Violation};
use super::policies::Mood;
use super::repo_db::RepoDb;
use super::shards::Shard;
use super::wasm::{SharedKit, WASM_EVERY};

mod process;

pub(crate) use process::Process;

/// What a run simulates.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long faults are injected for, from the start.
    pub fault_window: Duration,
    /// Once the last fault has ended, every desired repo must be cloned on its owner within
    /// this long.
    pub settle_bound: Duration,
    /// Keep every trace line (for `--trace`), not only the last ones.
    pub full_trace: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { fault_window: Duration::from_secs(120), settle_bound: Duration::from_secs(600), full_trace: false }
    }
}

/// What a run that kept every invariant did.
#[derive(Clone, Debug)]
pub struct Summary {
    pub seed: u64,
    /// Simulated time from start to the end of the run.
    pub simulated: Duration,
    /// Desired repos at the end.
    pub repos: usize,
    /// Sum over simulated time of the repos desired: what the run covered, in repo-seconds.
    pub repo_seconds: f64,
    pub ticks: u64,
    pub dispatches: u64,
    pub faults: usize,
    pub crashes: u32,
    /// From the end of the last fault to every repo cloned on its owner.
    pub settled_in: Duration,
    /// A digest of everything that happened: the same seed gives the same digest.
    pub digest: u64,
    /// The trace, when `full_trace` was asked for.
    pub trace: Vec<String>,
}

/// The simulation starts here (2026-01-01T00:00:00Z); wall-clock based code sees plausible times.
const EPOCH: Timestamp = Timestamp::from_millis(1_767_225_600_000);
/// The bound on one repo DB read in production: the statement timeout (30 s here) plus 5 s.
const READ_BOUND: Duration = Duration::from_secs(35);
/// Trace lines a failure report shows.
const TRAIL: usize = 60;

struct Sim<'k> {
    seed: u64,
    /// This seed runs the real policy host (wasmtime components) instead of the simulated
    /// policies.
    wasm: bool,
    kit: &'k SharedKit,
    options: Options,
    rng: ChaCha8Rng,
    now: Timestamp,
    interval: Duration,
    stall_after: Duration,
    backoff: Backoff,
    limits: Limits,
    limits_active: bool,
    mood: Arc<Mood>,
    misbehaving_until: Timestamp,
    repo_db: RepoDb,
    shards: Vec<Shard>,
    shard_map: ShardMap,
    state_db: BTreeMap<RepoName, AttemptRecord>,
    state_db_down_until: Timestamp,
    process: Option<Process>,
    restart_at: Option<Timestamp>,
    faults: VecDeque<(Timestamp, Fault)>,
    faults_end: Timestamp,
    /// When each tick with a successful repo DB read completed (the last few).
    good_reads: VecDeque<Timestamp>,
    checks: Checks,
    digest: DefaultHasher,
    trail: VecDeque<String>,
    trace: Vec<String>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    ticks: u64,
    dispatches: u64,
    crashes: u32,
    faults: usize,
    repo_seconds: f64,
}

/// Runs one seed to the end: every repo cloned after the faults, or the first broken
/// invariant.
pub fn run_seed(seed: u64, options: &Options) -> Result<Summary, Box<Violation>> {
    run_seed_in(seed, options, &SharedKit::new())
}

/// [`run_seed`], sharing the real policy host's modules and engine with the batch.
pub(super) fn run_seed_in(seed: u64, options: &Options, kit: &SharedKit) -> Result<Summary, Box<Violation>> {
    let mut sim = Sim::new(seed, options.clone(), kit);
    sim.run()
}

impl<'k> Sim<'k> {
    fn new(seed: u64, options: Options, kit: &'k SharedKit) -> Sim<'k> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n_shards = rng.random_range(1..=4);
        let repos = rng.random_range(5..=60);
        let interval = Duration::from_millis(rng.random_range(500..=3_000));
        let limits =
            Limits { max_in_flight_per_shard: rng.random_range(1..=8), max_in_flight: rng.random_range(1..=20) };
        let addrs: Vec<String> = (0..n_shards).map(|i| format!("gitserver-{i}:3178")).collect();
        let routing = if rng.random_bool(0.5) { Routing::Md5 } else { Routing::Rendezvous };
        let shard_map = ShardMap::new(addrs.clone(), routing).expect("1–4 shards");
        let repo_db = RepoDb::with_repos(repos, &mut rng);
        let faults = faults::schedule(&mut rng, EPOCH, options.fault_window, n_shards);
        let faults_end =
            faults.iter().map(|(at, fault)| at.saturating_add(fault.lasts())).max().unwrap_or(EPOCH).max(EPOCH);
        let mood = Mood::new(rng.random());
        Sim {
            seed,
            wasm: seed % WASM_EVERY == WASM_EVERY - 1,
            kit,
            limits_active: rng.random_bool(0.3),
            rng,
            now: EPOCH,
            interval,
            // `[sync] stall_after`'s default.
            stall_after: (interval * 3).max(Duration::from_secs(60)),
            backoff: Backoff { base: Duration::from_secs(1), max: Duration::from_secs(30) },
            limits,
            mood,
            misbehaving_until: EPOCH,
            repo_db,
            shards: addrs.into_iter().map(Shard::new).collect(),
            shard_map,
            state_db: BTreeMap::new(),
            state_db_down_until: EPOCH,
            process: None,
            restart_at: Some(EPOCH),
            stats: Stats { faults: faults.len(), ..Stats::default() },
            faults: faults.into(),
            faults_end,
            good_reads: VecDeque::new(),
            checks: Checks::default(),
            digest: DefaultHasher::new(),
            trail: VecDeque::new(),
            trace: Vec::new(),
            options,
        }
    }

    fn run(&mut self) -> Result<Summary, Box<Violation>> {
        let deadline = self.faults_end.saturating_add(self.options.settle_bound);
        let mut settled_at = None;
        loop {
            let before = self.now;
            self.step().map_err(|what| self.violation(what))?;
            if self.now >= self.faults_end && settled_at.is_none() && self.settled() {
                settled_at = Some(self.now);
                self.note("settled: every desired repo is cloned on its owner".to_string());
            }
            if let Some(at) = settled_at {
                // Two more ticks on fresh reads: the records of cloned repos are forgotten and
                // written, and readiness has seen the repo DB again.
                if self.good_reads_after(at) >= 2 {
                    self.final_checks().map_err(|what| self.violation(what))?;
                    return Ok(self.summary(at));
                }
            }
            if self.now > deadline {
                let what = self.unsettled_report();
                return Err(self.violation(what));
            }
            self.advance_clock();
            let desired = self.repo_db.desired_names().len();
            self.stats.repo_seconds += desired as f64 * self.now.since(before).as_secs_f64();
        }
    }

    /// Everything due at `now`, then the invariants.
    fn step(&mut self) -> Result<(), String> {
        while self.faults.front().is_some_and(|(at, _)| *at <= self.now) {
            if let Some((_, fault)) = self.faults.pop_front() {
                self.apply(fault);
            }
        }
        self.mood.set_misbehaving(self.now < self.misbehaving_until);
        for shard in &mut self.shards {
            shard.advance(self.now);
        }
        if self.restart_at.is_some_and(|at| at <= self.now) {
            self.restart()?;
        }
        self.write_state()?;
        self.handle_calls();
        self.tick()?;
        if self.now >= self.faults_end {
            self.operator_enqueues_given_up();
        }
        self.perform()?;
        self.write_state()?;
        let Sim { process, checks, repo_db, now, stall_after, state_db, .. } = self;
        if let Some(process) = process {
            checks.after_step(process, repo_db, *now, *stall_after)?;
            if process.unwritten.is_empty() {
                checks.written(&process.machine, state_db)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, fault: Fault) {
        self.note(format!("fault: {fault:?}"));
        fault.hash(&mut self.digest);
        let until = self.now.saturating_add(fault.lasts());
        match fault {
            Fault::ShardDown { shard, .. } => self.shard(shard).down_until = until,
            Fault::ShardRestart { shard } => self.shard(shard).restart(),
            Fault::ShardSlow { shard, .. } => {
                let now = self.now;
                self.shard(shard).slow = Some((now, until));
            }
            Fault::ShardGarbled { shard, .. } => self.shard(shard).garbled_until = until,
            Fault::ClonesFail { shard, .. } => self.shard(shard).failing_until = until,
            Fault::ListRace { shard, .. } => self.shard(shard).racy_until = until,
            Fault::DispatchRefused { shard, .. } => self.shard(shard).refusing_until = until,
            Fault::RepoDbDown { .. } => self.repo_db.down_until = self.repo_db.down_until.max(until),
            Fault::RepoDbHang { .. } => self.repo_db.hung_until = self.repo_db.hung_until.max(until),
            Fault::StateDbDown { .. } => self.state_db_down_until = self.state_db_down_until.max(until),
            Fault::Insert { rows } => (0..rows).for_each(|_| self.repo_db.insert(&mut self.rng)),
            Fault::SoftDelete => self.repo_db.soft_delete(&mut self.rng),
            Fault::Undelete => self.repo_db.undelete(&mut self.rng),
            Fault::Rename => self.repo_db.rename(&mut self.rng),
            Fault::CloneUrlChange => self.repo_db.change_clone_url(&mut self.rng),
            Fault::Rewrite { rows } => self.repo_db.rewrite(&mut self.rng, rows),
            Fault::Crash { restart_after } => self.crash(restart_after),
            Fault::Reshard => {
                let mut addrs = self.shard_map.addrs().to_vec();
                let addr = format!("gitserver-{}:3178", addrs.len());
                addrs.push(addr.clone());
                if let Some(map) = ShardMap::new(addrs, self.shard_map.routing()) {
                    self.shard_map = map;
                    self.shards.push(Shard::new(addr));
                    self.crash(Duration::from_secs(1));
                }
            }
            Fault::PolicyMisbehaves { .. } => self.misbehaving_until = self.misbehaving_until.max(until),
            Fault::OperatorEnqueue => self.operator_enqueues_given_up(),
        }
    }

    /// A fault names a shard of the first address list; after a reshard it may name any.
    fn shard(&mut self, idx: usize) -> &mut Shard {
        let n = self.shards.len();
        &mut self.shards[idx % n]
    }

    fn crash(&mut self, restart_after: Duration) {
        if let Some(process) = self.process.take() {
            self.stats.crashes += 1;
            self.note(format!(
                "crash: {} records unwritten and {} calls not yet made are lost",
                process.unwritten.len(),
                process.calls.values().filter(|c| c.result.is_none()).count()
            ));
        }
        let at = self.now.saturating_add(restart_after);
        self.restart_at = Some(self.restart_at.map_or(at, |earlier| earlier.max(at)));
    }

    /// The next moment anything happens.
    fn advance_clock(&mut self) {
        let now = self.now;
        let mut next: Vec<Timestamp> = Vec::with_capacity(16);
        next.extend(self.faults.front().map(|(at, _)| *at));
        next.extend(self.restart_at);
        next.extend([self.faults_end, self.misbehaving_until, self.state_db_down_until]);
        next.extend([self.repo_db.down_until, self.repo_db.hung_until]);
        for shard in &self.shards {
            next.extend(shard.next_completion());
            next.extend([shard.down_until, shard.garbled_until, shard.refusing_until, shard.racy_until]);
            next.extend(shard.slow.map(|(_, until)| until));
        }
        if let Some(process) = &self.process {
            match process.observing {
                Some((_, ends, _)) => next.push(ends),
                None => next.push(process.next_tick),
            }
            next.extend(process.machine.poll_timeout());
            for call in process.calls.values() {
                next.push(if call.result.is_none() { call.arrive_at } else { call.outcome_at });
            }
        }
        self.now = next.into_iter().filter(|&at| at > now).min().unwrap_or(now.saturating_add(self.interval));
    }

    fn good_reads_after(&self, at: Timestamp) -> usize {
        self.good_reads.iter().filter(|&&read| read >= at).count()
    }

    /// Every desired repo cloned on its owner, and the process running.
    fn settled(&self) -> bool {
        self.process.is_some()
            && self.repo_db.desired_names().iter().all(|name| {
                let owner = usize::from(self.shard_map.shard_for(name));
                self.shards[owner].cloned.contains(name)
            })
    }

    fn unsettled_report(&self) -> String {
        let missing: Vec<String> = self
            .repo_db
            .desired_names()
            .into_iter()
            .filter(|name| !self.shards[usize::from(self.shard_map.shard_for(name))].cloned.contains(name))
            .map(|name| match &self.process {
                Some(process) => {
                    let explain = process.machine.explain(name.as_str(), self.now);
                    match explain {
                        Ok(e) => format!(
                            "{name} (state {:?}, attempts {}, next {:?}, gave up {:?}, in flight {})",
                            e.state, e.attempts, e.next_attempt_at, e.gave_up, e.in_flight
                        ),
                        Err(error) => format!("{name} ({error})"),
                    }
                }
                None => format!("{name} (no process)"),
            })
            .take(10)
            .collect();
        format!(
            "not settled {}s after the last fault: repos not cloned on their owner: {}",
            self.options.settle_bound.as_secs(),
            missing.join("; ")
        )
    }

    /// Once settled: the state DB holds what the machine holds, and readiness is green.
    fn final_checks(&self) -> Result<(), String> {
        let Some(process) = &self.process else { return Err("no process at the end".into()) };
        let machine: BTreeMap<&RepoName, &AttemptRecord> = process.machine.attempts().iter().collect();
        let stored: BTreeMap<&RepoName, &AttemptRecord> = self.state_db.iter().collect();
        if machine != stored {
            return Err(format!(
                "the state DB differs from the machine's records: machine {machine:?}, stored {stored:?}"
            ));
        }
        let problems = process.liveness.report().problems(self.now);
        if !problems.is_empty() {
            return Err(format!("readiness still reports problems after settling: {problems:?}"));
        }
        Ok(())
    }

    fn note(&mut self, line: String) {
        push_trail(&mut self.trail, &mut self.trace, self.options.full_trace, self.now, line);
    }

    fn violation(&self, what: String) -> Box<Violation> {
        Box::new(Violation {
            seed: self.seed,
            at: self.now.since(EPOCH),
            what,
            trail: if self.options.full_trace { self.trace.clone() } else { self.trail.iter().cloned().collect() },
        })
    }

    fn summary(&self, settled_at: Timestamp) -> Summary {
        Summary {
            seed: self.seed,
            simulated: self.now.since(EPOCH),
            repos: self.repo_db.desired_names().len(),
            repo_seconds: self.stats.repo_seconds,
            ticks: self.stats.ticks,
            dispatches: self.stats.dispatches,
            faults: self.stats.faults,
            crashes: self.stats.crashes,
            settled_in: settled_at.since(self.faults_end),
            digest: self.digest.finish(),
            trace: self.trace.clone(),
        }
    }
}

fn push_trail(trail: &mut VecDeque<String>, trace: &mut Vec<String>, full: bool, now: Timestamp, line: String) {
    let line = format!("{:>9.3}s {line}", now.since(EPOCH).as_secs_f64());
    if full {
        trace.push(line.clone());
    }
    if trail.len() == TRAIL {
        trail.pop_front();
    }
    trail.push_back(line);
}

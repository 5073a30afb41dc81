//! One policy replayed over a snapshot: the production [`Machine`] on simulated time, against
//! shards whose `/repo-update` blocks for the clone-time model's duration (as gitserver's
//! does), from the snapshot's state until every repo of the backlog is cloned, nothing more
//! can happen (the rest was given up), or the horizon ends.
//!
//! **What differs from production, and why.** Repos cloned when the snapshot was taken are
//! left out of the replayed desired set, and repos the replay clones leave it once a tick has
//! confirmed them: a cloned repo takes no decision, and a million of them would cost every
//! tick a reconcile for nothing. (A rate-limit module's `repos` count per code host therefore
//! counts the backlog, not the deployment.) The replayed sidecar ticks every `tick` of
//! simulated time ([`auto_tick`]: the deployment's `interval` unless the backlog is large):
//! between ticks it dispatches from the last tick's order as slots free up, as in
//! production, so a longer tick changes only how fresh the order is and how long a failed
//! repo whose backoff ended waits for the next order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::capture::{Capture, CapturedRepo};
use super::clone_time::CloneTime;
use super::{Milestone, PolicyRun, TopCloned, TopRepo, TOP_LISTED};
use crate::dispatch::{DispatchError, Outcome};
use crate::machine::{Command, Machine, Observation, Policies, Settings, ShardAnswer, ShardObservation, Snapshot};
use crate::model::{NameListBuilder, RepoName, ShardIdx, Timestamp};
use crate::reconcile::RepoState;
use crate::sources::repo_db::DesiredSet;

/// How a replay runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often the replayed sidecar ticks, in simulated time.
    pub tick: Duration,
    pub clone_time: CloneTime,
    /// Simulated time after which a replay stops, cloned or not.
    pub horizon: Duration,
    /// Seeds the clone-time draws.
    pub seed: u64,
    /// Indices into the capture's repos of the top-N listing, if one was asked for.
    pub top: Vec<u32>,
}

/// Replays `capture` with `policies` (built for its shard list). `label` names the policy in
/// the report.
pub fn replay(capture: &Capture, label: &str, policies: Policies, options: &Options) -> PolicyRun {
    let started = Instant::now();
    let mut world = World::new(capture);
    let settings = Settings {
        shards: capture.shards.clone(),
        limits: capture.limits,
        interval: capture.interval,
        backoff: capture.backoff,
        full_interval: capture.interval,
    };
    let attempts = world
        .members
        .iter()
        .filter_map(|&idx| {
            let repo = &capture.repos[idx as usize];
            repo.record.clone().map(|record| (repo.repo.name.clone(), record))
        })
        .collect();
    let mut machine = Machine::new(settings, policies, attempts);
    let start = capture.taken_at;
    let mut run = Recorder::new(label, world.backlog, options, start, capture);
    let end = start.saturating_add(options.horizon);
    let mut now = start;
    let mut next_tick = start;
    let mut last_tick: Option<Timestamp> = None;
    let mut last_due = usize::MAX;
    loop {
        // Outcomes due by now, in one batch, as the sidecar hands them over.
        let outcomes = world.finish_due(capture, now, &mut run);
        if !outcomes.is_empty() {
            machine.handle_outcomes(outcomes);
        }
        // A failed repo whose backoff ended waits for the next tick, as in the deployment.
        if now >= next_tick {
            let report = machine.handle_observation(world.observe(capture, last_tick), now);
            run.ticks += 1;
            run.fallbacks += report.fallbacks;
            last_due = report.due;
            last_tick = Some(now);
            next_tick = now.saturating_add(options.tick);
        }
        while let Some(command) = machine.poll_command(now) {
            if let Command::Dispatch { dispatch, record } = command {
                world.start(capture, dispatch.name, dispatch.shard, record.attempts, now, options, &mut run);
            }
        }
        if world.cloned == world.backlog || now >= end {
            break;
        }
        let idle = world.running.is_empty() && last_due == 0 && machine.poll_timeout().is_none();
        if idle && machine.plan().next_due_at.is_none() && last_tick == Some(now) {
            // Nothing in flight, nothing due, nothing waiting: the rest was given up.
            break;
        }
        let next = [Some(next_tick), world.next_finish(), machine.poll_timeout()]
            .into_iter()
            .flatten()
            .filter(|&at| at > now)
            .min()
            .unwrap_or(next_tick.max(now.saturating_add(capture.interval)));
        now = next.min(end);
    }
    run.gave_up = world
        .members
        .iter()
        .filter(|&&idx| world.cloned_at[idx as usize].is_none())
        .filter(|&&idx| {
            machine.attempts().get(&capture.repos[idx as usize].repo.name).is_some_and(|r| r.gave_up.is_some())
        })
        .count() as u64;
    run.finish(start, started)
}

/// The replayed deployment: which repos of the backlog are cloned, what is cloning where.
struct World {
    /// Repos not cloned at the snapshot, by index into the capture.
    backlog: u64,
    cloned: u64,
    /// When each repo of the capture was cloned in the replay (`None`: not (yet)).
    cloned_at: Vec<Option<Timestamp>>,
    /// The machine's desired set, by index into the capture, sorted by name.
    members: Vec<u32>,
    snapshot: Arc<Snapshot>,
    /// Members cloned and confirmed by a tick's list: dropped at the next rebuild.
    confirmed: usize,
    /// Clones running: finish time, capture index, the dispatch's fate.
    running: BinaryHeap<Reverse<(Timestamp, u32, bool, Timestamp)>>,
    /// Dispatches running per capture index, with the shard they went to.
    running_on: HashMap<u32, ShardIdx>,
}

impl World {
    fn new(capture: &Capture) -> World {
        let members: Vec<u32> = capture
            .repos
            .iter()
            .enumerate()
            .filter(|(_, repo)| repo.state != RepoState::Cloned)
            .map(|(idx, _)| idx as u32)
            .collect();
        World {
            backlog: members.len() as u64,
            cloned: 0,
            cloned_at: vec![None; capture.repos.len()],
            snapshot: Arc::new(snapshot_of(capture, &members)),
            members,
            confirmed: 0,
            running: BinaryHeap::new(),
            running_on: HashMap::new(),
        }
    }

    /// The observation a tick at `now` makes: the desired set (rebuilt without confirmed
    /// clones once they are a quarter of it) and every shard's lists.
    fn observe(&mut self, capture: &Capture, last_tick: Option<Timestamp>) -> Observation {
        if self.confirmed * 4 > self.members.len() {
            let cutoff = last_tick.unwrap_or(capture.taken_at);
            let cloned_at = &self.cloned_at;
            self.members.retain(|&idx| cloned_at[idx as usize].is_none_or(|at| at > cutoff));
            self.snapshot = Arc::new(snapshot_of(capture, &self.members));
        }
        let n = capture.shards.len();
        let mut answers: Vec<ShardAnswer> = (0..n).map(|_| ShardAnswer::default()).collect();
        let mut lists: Vec<NameListBuilder> = (0..n).map(|_| NameListBuilder::default()).collect();
        let mut listed = 0;
        for &idx in &self.members {
            let repo = &capture.repos[idx as usize];
            if self.cloned_at[idx as usize].is_some() {
                lists[usize::from(repo.shard) % n].push(repo.repo.name.as_str());
                listed += 1;
            }
        }
        for (answer, list) in answers.iter_mut().zip(lists) {
            answer.cloned = list.finish();
        }
        // The clones running (a few dozen) are what the shards say they are cloning.
        for (&idx, &shard) in &self.running_on {
            if self.cloned_at[idx as usize].is_none() {
                answers[usize::from(shard) % n].cloning.push(capture.repos[idx as usize].repo.name.clone());
            }
        }
        self.confirmed = listed;
        Observation {
            snapshot: Ok(Arc::clone(&self.snapshot)),
            shards: answers.into_iter().map(ShardObservation::Answered).collect(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        capture: &Capture,
        name: RepoName,
        shard: ShardIdx,
        attempt: u32,
        now: Timestamp,
        options: &Options,
        run: &mut Recorder,
    ) {
        let Ok(idx) = capture.repos.binary_search_by(|r| r.repo.name.cmp(&name)) else { return };
        let repo: &CapturedRepo = &capture.repos[idx];
        let draw = options.clone_time.draw(options.seed, &name, attempt);
        let idx = idx as u32;
        self.running.push(Reverse((now.saturating_add(draw.took), idx, draw.succeeds, now)));
        self.running_on.insert(idx, shard);
        run.dispatched(now, repo.repo.code_host(), capture.shards.addr(shard), attempt);
    }

    fn next_finish(&self) -> Option<Timestamp> {
        self.running.peek().map(|Reverse((at, ..))| *at)
    }

    /// Clones finishing by `now`: the shard holds the repo (or not), the dispatch answers.
    fn finish_due(&mut self, capture: &Capture, now: Timestamp, run: &mut Recorder) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        while self.running.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
            let Some(Reverse((at, idx, succeeds, started_at))) = self.running.pop() else { break };
            let Some(shard) = self.running_on.remove(&idx) else { continue };
            if succeeds && self.cloned_at[idx as usize].is_none() {
                self.cloned_at[idx as usize] = Some(at);
                self.cloned += 1;
                run.cloned(at, idx, self.cloned);
            }
            let result = if succeeds {
                Ok(())
            } else {
                Err(DispatchError { message: "git clone failed (replayed failure)".to_string(), shard_down: false })
            };
            let name = capture.repos[idx as usize].repo.name.clone();
            outcomes.push(Outcome { name, shard, started_at, finished_at: at, result });
        }
        outcomes
    }
}

fn snapshot_of(capture: &Capture, members: &[u32]) -> Snapshot {
    let repos = members.iter().map(|&idx| capture.repos[idx as usize].repo.clone()).collect();
    let routes = members.iter().map(|&idx| capture.repos[idx as usize].shard).collect();
    Snapshot { desired: DesiredSet { repos, problems: Vec::new(), recorded_shards: Vec::new() }, routes }
}

/// What the report needs, gathered as the replay goes.
struct Recorder {
    label: String,
    backlog: u64,
    curve: Vec<(f64, u64)>,
    start: Timestamp,
    /// Rank in the top-N listing by capture index.
    top_rank: HashMap<u32, usize>,
    /// The names of the first [`TOP_LISTED`] of the listing.
    top_names: Vec<String>,
    top_cloned: Vec<Option<Timestamp>>,
    by_host: BTreeMap<String, Vec<u32>>,
    by_shard: BTreeMap<String, Vec<u32>>,
    dispatches: u64,
    retries: u64,
    gave_up: u64,
    ticks: u64,
    fallbacks: u64,
}

impl Recorder {
    fn new(label: &str, backlog: u64, options: &Options, start: Timestamp, capture: &Capture) -> Recorder {
        Recorder {
            label: label.to_string(),
            backlog,
            curve: vec![(0.0, 0)],
            start,
            top_rank: options.top.iter().enumerate().map(|(rank, &idx)| (idx, rank)).collect(),
            top_names: options
                .top
                .iter()
                .take(TOP_LISTED)
                .map(|&idx| capture.repos[idx as usize].repo.name.to_string())
                .collect(),
            top_cloned: vec![None; options.top.len()],
            by_host: BTreeMap::new(),
            by_shard: BTreeMap::new(),
            dispatches: 0,
            retries: 0,
            gave_up: 0,
            ticks: 0,
            fallbacks: 0,
        }
    }

    fn secs(&self, at: Timestamp) -> f64 {
        at.since(self.start).as_secs_f64()
    }

    fn dispatched(&mut self, at: Timestamp, host: &str, shard: &str, attempt: u32) {
        let minute = (self.secs(at) / 60.0) as usize;
        for (map, key) in [(&mut self.by_host, host), (&mut self.by_shard, shard)] {
            let minutes = match map.get_mut(key) {
                Some(minutes) => minutes,
                None => map.entry(key.to_string()).or_default(),
            };
            if minutes.len() <= minute {
                minutes.resize(minute + 1, 0);
            }
            minutes[minute] += 1;
        }
        self.dispatches += 1;
        if attempt > 1 {
            self.retries += 1;
        }
    }

    fn cloned(&mut self, at: Timestamp, idx: u32, cloned: u64) {
        self.curve.push((self.secs(at), cloned));
        if let Some(&rank) = self.top_rank.get(&idx) {
            self.top_cloned[rank] = Some(at);
        }
    }

    fn finish(self, start: Timestamp, started: Instant) -> PolicyRun {
        let at_share = |share: f64| -> Option<f64> {
            let needed = ((self.backlog as f64) * share).ceil() as u64;
            if needed == 0 {
                return Some(0.0);
            }
            self.curve.iter().find(|(_, cloned)| *cloned >= needed).map(|(at, _)| *at)
        };
        let milestones =
            [50u8, 90, 99, 100].map(|percent| Milestone { percent, at_secs: at_share(f64::from(percent) / 100.0) });
        let top = (!self.top_cloned.is_empty()).then(|| {
            let mut times: Vec<Option<f64>> =
                self.top_cloned.iter().map(|at| at.map(|at| at.since(start).as_secs_f64())).collect();
            times.sort_by(|a, b| match (a, b) {
                (Some(a), Some(b)) => a.total_cmp(b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
            let n = times.len();
            TopCloned { n: n as u64, half_at_secs: times[n.div_ceil(2) - 1], all_at_secs: times[n - 1] }
        });
        let top_repos = self
            .top_names
            .iter()
            .zip(&self.top_cloned)
            .map(|(name, at)| TopRepo {
                name: name.clone(),
                cloned_at_secs: at.map(|at| at.since(start).as_secs_f64()),
                why: None,
            })
            .collect();
        PolicyRun {
            top_repos,
            label: self.label,
            cloned: self.curve,
            milestones,
            top,
            per_minute_by_host: self.by_host,
            per_minute_by_shard: self.by_shard,
            dispatches: self.dispatches,
            retries: self.retries,
            gave_up: self.gave_up,
            ticks: self.ticks,
            fallbacks: self.fallbacks,
            wall_secs: started.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests;

/// The tick a replay uses when none is given: the deployment's interval, or longer so that
/// the replay makes at most 200 ticks over the run the backlog projects to (backlog × mean
/// clone time ÷ the slots the caps allow) and re-orders at most [`REORDER_BUDGET`] repo
/// entries in all (each tick reconciles and orders what is left of the backlog, half of it
/// on average): a backlog of 100,000 gets 200 ticks, one of a million about 100.
pub fn auto_tick(capture: &Capture, clone_time: &CloneTime) -> Duration {
    let backlog = capture.repos.iter().filter(|r| r.state != RepoState::Cloned).count() as f64;
    let per_shard = u64::from(capture.limits.max_in_flight_per_shard) * capture.shards.len() as u64;
    let slots = per_shard.min(u64::from(capture.limits.max_in_flight)).max(1) as f64;
    let projected = backlog * clone_time.mean().as_secs_f64() / slots;
    let ticks = (REORDER_BUDGET / (backlog / 2.0).max(1.0)).clamp(1.0, 200.0);
    let tick = Duration::from_secs_f64((projected / ticks).clamp(0.0, 86_400.0));
    // Whole seconds read better in the report.
    Duration::from_secs(tick.as_secs()).max(capture.interval)
}

/// Repo entries an automatic replay re-orders in all, over all its ticks.
pub const REORDER_BUDGET: f64 = 50_000_000.0;

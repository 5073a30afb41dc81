//! What-if replay: a snapshot of what a running sidecar knows ([`capture`]), replayed in
//! simulated time through the production machine with one policy after another
//! ([`engine`]), and what each policy did, side by side ([`report`]).
//!
//! The replay drives the same [`crate::machine::Machine`] the sidecar and the simulator run
//! (reconcile, scheduler, caps, rate limiters, retry handling, and the real policy host for
//! Wasm modules), so what it shows is what the module would do in production, under the
//! snapshot's caps, against a model of how long clones take.

pub mod capture;
pub mod clone_time;
pub mod engine;
pub mod policies;
pub mod report;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::RepoName;
use crate::reconcile::RepoState;
use capture::Capture;
use policies::Choice;

/// A replay of one snapshot with one or more policies: the input to [`report`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Replay {
    /// The snapshot file, as given.
    pub source: String,
    /// When the snapshot was taken (RFC 3339).
    pub taken_at: String,
    /// Desired repos in the snapshot.
    pub repos: u64,
    /// Desired repos not cloned when the snapshot was taken: what the replay clones.
    pub backlog: u64,
    /// Shard addresses, in routing order.
    pub shards: Vec<String>,
    /// How often the replayed sidecar ticks (re-reads, re-orders), in simulated seconds.
    pub tick_secs: f64,
    /// The clone-time model, in words (e.g. "observed: 1,200 clones, median 4.1 s").
    pub clone_time: String,
    /// The column and size of the top-N listing, e.g. "top 100 by stars".
    pub top: Option<String>,
    pub runs: Vec<PolicyRun>,
}

/// What one policy did in a replay.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicyRun {
    /// The policy's label: the module's file name, or `built-in`.
    pub label: String,
    /// Repos of the backlog cloned over simulated time: `(seconds since the start, cloned)` at
    /// every change, from `(0, 0)` to the last clone, non-decreasing in both.
    pub cloned: Vec<(f64, u64)>,
    /// Seconds from the start until 50, 90, 99 and 100% of the backlog was cloned; `None`
    /// when the replay's horizon ended first.
    pub milestones: [Milestone; 4],
    /// When the top-N repos (see [`Replay::top`]) were cloned.
    pub top: Option<TopCloned>,
    /// Dispatches started in each simulated minute, per code host (`github.com`): index
    /// `m` counts minute `m` from the start.
    pub per_minute_by_host: BTreeMap<String, Vec<u32>>,
    /// The same per shard address.
    pub per_minute_by_shard: BTreeMap<String, Vec<u32>>,
    /// Dispatches made (first attempts and retries).
    pub dispatches: u64,
    /// Dispatches that were a repo's second or later attempt.
    pub retries: u64,
    /// Repos the retry policy gave up on (still uncloned at the end).
    pub gave_up: u64,
    /// Ticks the replay made, and prioritizer batches answered by the built-in order instead
    /// of the module (a module that failed, timed out or answered badly).
    pub ticks: u64,
    pub fallbacks: u64,
    /// Wall-clock seconds the replay of this policy took.
    pub wall_secs: f64,
    /// The first [`TOP_LISTED`] repos of the top-N listing: when each was cloned, and why the
    /// policy placed it where it did, in its own words (contract 0.2.1 `explain`, or the
    /// built-in order's), at the snapshot.
    #[serde(default)]
    pub top_repos: Vec<TopRepo>,
}

/// How many repos of the top-N listing the report names.
pub const TOP_LISTED: usize = 10;

/// One repo of the top-N listing, as one policy treated it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TopRepo {
    pub name: String,
    /// Simulated seconds until it was cloned; `None`: not within the replay.
    pub cloned_at_secs: Option<f64>,
    /// The policy's sentence; `None` for a module that cannot explain (contract 0.2.0).
    pub why: Option<String>,
}

/// When a share of the backlog was cloned.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Milestone {
    /// 50, 90, 99 or 100.
    pub percent: u8,
    /// Simulated seconds since the start.
    pub at_secs: Option<f64>,
}

/// When the top-N repos of the backlog by the chosen column were cloned.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct TopCloned {
    /// How many repos of the backlog the top-N listing holds (N, or fewer when the backlog is
    /// smaller).
    pub n: u64,
    /// Simulated seconds until half of them, and all of them, were cloned.
    pub half_at_secs: Option<f64>,
    pub all_at_secs: Option<f64>,
}

impl PolicyRun {
    /// The largest count of dispatches in any one minute, per key, highest first.
    pub fn peaks(per_minute: &BTreeMap<String, Vec<u32>>) -> Vec<(&str, u32)> {
        let mut peaks: Vec<(&str, u32)> = per_minute
            .iter()
            .map(|(key, minutes)| (key.as_str(), minutes.iter().copied().max().unwrap_or(0)))
            .collect();
        peaks.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        peaks
    }
}

/// Which repos the top-N listing follows.
#[derive(Clone, Debug)]
pub enum TopBy {
    Stars,
    UpdatedAt,
    CreatedAt,
    /// These names, in this order (e.g. the repos a team searches most).
    Names(Vec<String>),
}

/// The top-N listing asked for.
#[derive(Clone, Debug)]
pub struct Top {
    pub n: usize,
    pub by: TopBy,
}

/// How [`run`] replays.
#[derive(Clone, Debug)]
pub struct Options {
    pub tick: Duration,
    pub clone_time: clone_time::CloneTime,
    pub horizon: Duration,
    pub seed: u64,
    pub top: Option<Top>,
}

/// Replays `capture` once per policy, side by side (the policies run in parallel; each run
/// is a function of the capture, the options and the module). `source` names the file.
pub fn run(capture: &Capture, choices: &[Choice], options: &Options, source: &str) -> Result<Replay, String> {
    let top = options.top.as_ref().map(|top| top_of(capture, top)).transpose()?;
    let engine_options = engine::Options {
        tick: options.tick,
        clone_time: options.clone_time.clone(),
        horizon: options.horizon,
        seed: options.seed,
        top: top.clone().unwrap_or_default(),
    };
    let loaded = choices
        .iter()
        .map(|choice| policies::load(choice, capture.shards.addrs(), capture.backoff, capture.taken_at))
        .collect::<Result<Vec<_>, String>>()?;
    let runs = std::thread::scope(|scope| {
        let handles: Vec<_> = choices
            .iter()
            .zip(&loaded)
            .map(|(choice, loaded)| {
                let policies = loaded.policies.clone();
                let engine_options = &engine_options;
                scope.spawn(move || engine::replay(capture, &choice.label(), policies, engine_options))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().map_err(|_| "a replay thread panicked".to_string()))
            .collect::<Result<Vec<_>, String>>()
    })?;
    let mut runs = runs;
    for (run, loaded) in runs.iter_mut().zip(&loaded) {
        for listed in &mut run.top_repos {
            listed.why = explain_at_snapshot(capture, loaded, &listed.name);
        }
    }
    let backlog = capture.repos.iter().filter(|r| r.state != RepoState::Cloned).count() as u64;
    Ok(Replay {
        source: source.to_string(),
        taken_at: capture.header.taken_at.clone(),
        repos: capture.repos.len() as u64,
        backlog,
        shards: capture.shards.addrs().to_vec(),
        tick_secs: options.tick.as_secs_f64(),
        clone_time: options.clone_time.describe(),
        top: options.top.as_ref().zip(top.as_ref()).map(|(asked, found)| {
            let by = match &asked.by {
                TopBy::Stars => "stars".to_string(),
                TopBy::UpdatedAt => "updated-at".to_string(),
                TopBy::CreatedAt => "created-at".to_string(),
                TopBy::Names(_) => "the given names".to_string(),
            };
            format!("top {} by {by}", found.len())
        }),
        runs,
    })
}

/// Why `loaded`'s policy places `name` where it does, at the snapshot: the built-in order's
/// sentence, or the module's own (asked here, off any hot path, as `clonekeeper explain` does).
fn explain_at_snapshot(capture: &Capture, loaded: &policies::Loaded, name: &str) -> Option<String> {
    let idx = capture.repos.binary_search_by(|r| r.repo.name.as_str().cmp(name)).ok()?;
    let c = &capture.repos[idx];
    match &loaded.host {
        None => Some(crate::schedule::Candidate::of_record(
            &c.repo,
            c.shard,
            c.state,
            c.record.as_ref(),
            crate::schedule::BuiltinOrder::explain,
        )),
        Some(host) => {
            let digest = host.serving_digest(crate::policy::Interface::Prioritize);
            let view = crate::policy::RepoView::from_repo(
                &c.repo,
                c.state,
                c.shard,
                capture.shards.addr(c.shard),
                c.record.as_ref(),
            );
            host.explain_priority(&digest, &view, capture.taken_at)
        }
    }
}

/// The capture indices of the backlog's top-N repos by the chosen column (highest first;
/// repos without the column last, then by name).
fn top_of(capture: &Capture, top: &Top) -> Result<Vec<u32>, String> {
    let backlog = || capture.repos.iter().enumerate().filter(|(_, r)| r.state != RepoState::Cloned);
    let mut ranked: Vec<u32> = match &top.by {
        TopBy::Names(names) => {
            let mut found = Vec::with_capacity(names.len());
            for raw in names {
                let name = RepoName::normalize(raw).ok_or_else(|| format!("top names: {raw:?} is not a repo name"))?;
                if let Ok(idx) = capture.repos.binary_search_by(|r| r.repo.name.cmp(&name)) {
                    if capture.repos[idx].state != RepoState::Cloned {
                        found.push(idx as u32);
                    }
                }
            }
            found
        }
        by => {
            let key = |idx: usize| -> Option<i64> {
                let repo = &capture.repos[idx].repo;
                match by {
                    TopBy::Stars => repo.stars.map(i64::from),
                    TopBy::UpdatedAt => repo.updated_at.map(|t| t.as_millis()),
                    TopBy::CreatedAt => repo.created_at.map(|t| t.as_millis()),
                    TopBy::Names(_) => None,
                }
            };
            let mut all: Vec<(Option<i64>, u32)> = backlog().map(|(idx, _)| (key(idx), idx as u32)).collect();
            // Highest first, unknown last; equal keys keep name order (the capture's).
            all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            all.into_iter().map(|(_, idx)| idx).collect()
        }
    };
    ranked.truncate(top.n);
    if ranked.is_empty() {
        return Err(
            "the top-N listing holds no repo of the backlog (every named repo is cloned or unknown)".to_string()
        );
    }
    Ok(ranked)
}

//! What-if replay at a deployment's size: a synthetic snapshot file of N repos on 8 shards
//! (a tenth of them uncloned, then all of them), replayed with the built-in order and with a
//! Wasm prioritizer through the production machine and policy host. The baseline is what
//! every replay must do first: read the snapshot file (gunzip and parse every line).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clonekeeper::machine::{ObservedClone, Settings, Snapshot};
use clonekeeper::model::{DesiredRepo, RepoName, Timestamp};
use clonekeeper::reconcile::RepoState;
use clonekeeper::replay::capture::{self, Parts};
use clonekeeper::replay::clone_time::CloneTime;
use clonekeeper::replay::policies::Choice;
use clonekeeper::replay::{self, engine, Top, TopBy};
use clonekeeper::routing::{Routing, ShardMap};
use clonekeeper::schedule::{Backoff, Limits};
use clonekeeper::sources::repo_db::DesiredSet;

use crate::report::Section;

const SHARDS: usize = 8;

pub fn run(repos: usize, module: Option<&Path>) -> anyhow::Result<Section> {
    let mut section = Section::new(format!("What-if replay: {repos} repos on {SHARDS} shards"));
    let dir = tempfile::tempdir()?;
    let mut choices = vec![Choice::Builtin];
    choices.extend(module.map(|m| Choice::Module(m.to_path_buf())));
    for share in [10, 100] {
        let file = dir.path().join(format!("snapshot-{share}.ndjson.gz"));
        let parts = parts(repos, share);
        let written = Instant::now();
        capture::write(&parts, std::io::BufWriter::new(std::fs::File::create(&file)?))?;
        drop(parts);
        let write_secs = written.elapsed().as_secs_f64();
        let size = std::fs::metadata(&file)?.len();
        let read = Instant::now();
        let snapshot = capture::read(&file).map_err(anyhow::Error::msg)?;
        let read_secs = read.elapsed().as_secs_f64();
        let clone_time = CloneTime::observed(&snapshot.clones).ok_or_else(|| anyhow::anyhow!("no clones"))?;
        let tick = engine::auto_tick(&snapshot, &clone_time);
        let options = replay::Options {
            tick,
            clone_time,
            horizon: Duration::from_secs(365 * 86_400),
            seed: 1,
            top: Some(Top { n: 1000, by: TopBy::Stars }),
        };
        let started = Instant::now();
        let result = replay::run(&snapshot, &choices, &options, "bench").map_err(anyhow::Error::msg)?;
        let all_secs = started.elapsed().as_secs_f64();
        let backlog = result.backlog;
        if share == 10 {
            section.row(
                "snapshot file: write / read (the floor) / size",
                format!("{write_secs:.1} s / {read_secs:.1} s / {:.0} MB", size as f64 / 1e6),
                "",
            );
        }
        for run in &result.runs {
            let done =
                run.milestones[3].at_secs.map_or("not reached".to_string(), |s| format!("{:.1} days", s / 86_400.0));
            section.row(
                &format!("{share}% uncloned ({backlog} repos), {}: replay / read", run.label),
                format!(
                    "{:.1} s = {:.1}× ({} ticks of {}, 100% after {done} simulated, {} dispatches)",
                    run.wall_secs,
                    run.wall_secs / read_secs,
                    run.ticks,
                    humantime::format_duration(tick),
                    run.dispatches
                ),
                if run.label == "built-in" { "" } else { "< 30 s" },
            );
        }
        section.row(
            &format!("{share}% uncloned: read + every policy in parallel"),
            format!("{:.1} s", read_secs + all_secs),
            "",
        );
    }
    section.notes.push(format!(
        "Synthetic snapshot: stars skewed (a few thousand popular repos), caps 5 per shard and 40 in all, interval 10 s, \
         clone times drawn from 10,000 observed dispatches (1–120 s, 2% failures). Each policy replays on its own \
         thread; the tick is `--tick auto` (at most 200 ticks and 50 million re-ordered entries over the projected run). {}",
        if module.is_some() { "The Wasm module is the popular-first example." } else { "No Wasm module given: pass --policy-module." }
    ));
    Ok(section)
}

/// A deployment of `repos` repos with `uncloned_percent` of them not cloned.
fn parts(repos: usize, uncloned_percent: usize) -> Parts {
    let shards =
        ShardMap::new((0..SHARDS).map(|i| format!("gitserver-{i}:3178")).collect(), Routing::Md5).expect("8 shards");
    let now = Timestamp::from_millis(1_767_225_600_000);
    let mut list: Vec<DesiredRepo> = (0..repos)
        .map(|i| {
            let name = RepoName::from_normalized(format!("github.com/org{}/repo-{i:07}", i % 5_000));
            let mut repo = DesiredRepo::new(i as i64 + 1, name.clone(), &format!("https://{name}"));
            let spread = (i as u64).wrapping_mul(2_654_435_761) % 1_000;
            repo.stars = Some(if spread < 5 { 10_000 + spread as u32 * 1_000 } else { (spread % 200) as u32 });
            repo.updated_at = Some(Timestamp::from_millis(now.as_millis() - (i as i64 % 10_000) * 60_000));
            repo
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let states: Vec<RepoState> = (0..repos)
        .map(|i| if (i * 7919) % 100 < uncloned_percent { RepoState::Uncloned } else { RepoState::Cloned })
        .collect();
    let clones = (0..10_000u64)
        .map(|i| ObservedClone {
            name: list[i as usize % list.len()].name.clone(),
            shard: (i % SHARDS as u64) as u16,
            finished_at: now,
            took: Duration::from_secs(1 + (i * i) % 120),
            succeeded: i % 50 != 0,
        })
        .collect();
    Parts {
        settings: Settings {
            limits: Limits { max_in_flight_per_shard: 5, max_in_flight: 40 },
            interval: Duration::from_secs(10),
            backoff: Backoff { base: Duration::from_secs(10), max: Duration::from_secs(3_600) },
            full_interval: Duration::from_secs(300),
            shards: shards.clone(),
        },
        snapshot: Arc::new(Snapshot::routed(DesiredSet { repos: list.into(), ..DesiredSet::default() }, &shards)),
        states,
        attempts: HashMap::new(),
        clones,
        taken_at: now,
    }
}

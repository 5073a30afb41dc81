//! The deterministic simulator's throughput: seeded runs of the production decision machine
//! against simulated shards, repo DB and crashes. The baseline is real time: how many seconds
//! of simulated operation one second of this machine covers.

use std::time::Instant;

use clonekeeper::sim::{run_seeds, Options};

use crate::report::Section;

pub fn run(seeds: u64) -> anyhow::Result<Section> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let totals = run_seeds(0, seeds, threads, &Options::default());
    let took = started.elapsed().as_secs_f64();
    anyhow::ensure!(totals.violations.is_empty(), "{} seeds broke an invariant", totals.violations.len());
    let mut section = Section::new(format!("Simulator: {seeds} seeds of the production loop under faults"));
    section.row("wall time", format!("{took:.1} s on {threads} threads"), "");
    section.row("seeds per second", format!("{:.0}", totals.runs as f64 / took), "CI: ≥ 2,000 seeds in < 2 min");
    section.row(
        "simulated time per wall second (baseline: real time)",
        format!("{:.0}×", totals.simulated_secs / took),
        "",
    );
    section.row("simulated repo-hours per second", format!("{:.0}", totals.repo_seconds / 3600.0 / took), "");
    section.row(
        "faults, crashes, dispatches simulated",
        format!("{}, {}, {}", totals.faults, totals.crashes, totals.dispatches),
        "",
    );
    section.row(
        "slowest settle after the last fault",
        format!("{:.0} s simulated", totals.slowest_settle_secs),
        "bound: 600 s",
    );
    section.notes.push(
        "Each seed is a run of a few simulated minutes: 5–60 repos on 1–4 shards, faults for 120 s, then until every \
         repo is cloned on its owner; the invariants are checked after every step. The harness counts every \
         allocation (its global allocator), which slows this allocation-heavy loop; `clonekeeper-sim --seeds N` \
         without it runs faster on the same machine."
            .to_string(),
    );
    Ok(section)
}

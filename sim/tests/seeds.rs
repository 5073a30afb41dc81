//! The simulator in the suite: thousands of seeded fault schedules against the production
//! machine, and the determinism every replay relies on.

use std::time::Duration;

use clonekeeper::sim::{run_seed, run_seeds, Options};

/// Seeds the suite runs; `CLONEKEEPER_SIM_SEEDS` raises it for a longer run.
fn seeds() -> u64 {
    std::env::var("CLONEKEEPER_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000)
}

#[test]
fn every_seed_keeps_every_invariant_and_settles() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let totals = run_seeds(0, seeds(), threads, &Options::default());
    let report: Vec<String> = totals.violations.iter().take(3).map(ToString::to_string).collect();
    assert!(
        totals.violations.is_empty(),
        "{} of {} seeds broke an invariant:\n\n{}",
        totals.violations.len(),
        totals.runs,
        report.join("\n\n")
    );
    assert_eq!(totals.runs, seeds());
    // The schedules must actually hurt: a simulator whose faults never fire proves nothing.
    assert!(totals.crashes > totals.runs / 2, "{totals:?}");
    assert!(totals.faults > totals.runs * 10, "{totals:?}");
}

#[test]
fn a_seed_replays_exactly() {
    let options = Options { full_trace: true, ..Options::default() };
    for seed in [7, 1_234, 99_999] {
        let first = run_seed(seed, &options).map_err(|v| v.to_string()).unwrap();
        let second = run_seed(seed, &options).map_err(|v| v.to_string()).unwrap();
        assert_eq!(first.trace, second.trace, "seed {seed}");
        assert_eq!(first.digest, second.digest, "seed {seed}");
        assert!(first.dispatches > 0 && first.ticks > 0, "seed {seed} did something");
    }
    // Every 40th seed runs the real policy host (wasmtime components), and replays exactly too.
    let wasm = run_seed(99_999, &options).map_err(|v| v.to_string()).unwrap();
    assert!(wasm.trace.iter().any(|line| line.contains("wasm policies")), "seed 99999 runs the real host");
    let a = run_seed(1, &options).map_err(|v| v.to_string()).unwrap();
    let b = run_seed(2, &options).map_err(|v| v.to_string()).unwrap();
    assert_ne!(a.digest, b.digest, "different seeds make different runs");
}

/// Without faults nothing is wasted: every repo is dispatched exactly once, however long its
/// clone takes compared with the tick interval.
#[test]
fn without_faults_every_repo_is_dispatched_exactly_once() {
    let options = Options { fault_window: Duration::ZERO, ..Options::default() };
    for seed in 0..100 {
        let summary = run_seed(seed, &options).map_err(|v| v.to_string()).unwrap();
        assert_eq!((summary.faults, summary.crashes), (0, 0));
        assert_eq!(summary.dispatches, summary.repos as u64, "seed {seed}: {summary:?}");
    }
}

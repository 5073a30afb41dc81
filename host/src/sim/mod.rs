//! A deterministic simulator of clonekeeper: the production decision machine
//! ([`crate::machine::Machine`], with the real reconcile, scheduler, rate limiters and
//! retry handling) driven on simulated time against simulated shards, a simulated repo DB and
//! state DB, misbehaving policies and sidecar crashes. A run is a function of its seed: any
//! failure replays from the seed alone (`cargo run -p clonekeeper-sim -- --seed N --trace`).
//!
//! It lives in the library, not only in the `clonekeeper-sim` crate (`sim/`, its command
//! line and the suite's seeds), beside the machine it drives. The what-if replay
//! ([`crate::replay`]) drives the same machine on simulated time too, against a world that
//! follows a snapshot instead of a fault schedule.

mod faults;
mod invariants;
mod leases;
mod policies;
mod repo_db;
mod run;
mod shards;
mod wasm;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub use faults::Fault;
pub use invariants::Violation;
pub use leases::{run_lease_seed, LeaseSummary, LeaseViolation};
pub use run::{run_seed, Options, Summary};

/// What a batch of seeds did.
#[derive(Debug, Default)]
pub struct Totals {
    pub runs: u64,
    pub simulated_secs: f64,
    pub repo_seconds: f64,
    pub dispatches: u64,
    pub crashes: u64,
    pub faults: u64,
    /// The longest time from the last fault to every repo cloned.
    pub slowest_settle_secs: f64,
    /// The violations found, by seed.
    pub violations: Vec<Violation>,
}

/// Runs seeds `first..first + count` on `threads` threads; each seed is independent, so the
/// result does not depend on the thread count.
pub fn run_seeds(first: u64, count: u64, threads: usize, options: &Options) -> Totals {
    let next = AtomicU64::new(first);
    let kit = wasm::SharedKit::new();
    let totals = Mutex::new(Totals::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first + count {
                    break;
                }
                let result = run::run_seed_in(seed, options, &kit);
                let mut totals = totals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                totals.runs += 1;
                match result {
                    Ok(summary) => {
                        totals.simulated_secs += summary.simulated.as_secs_f64();
                        totals.repo_seconds += summary.repo_seconds;
                        totals.dispatches += summary.dispatches;
                        totals.crashes += u64::from(summary.crashes);
                        totals.faults += summary.faults as u64;
                        totals.slowest_settle_secs = totals.slowest_settle_secs.max(summary.settled_in.as_secs_f64());
                    }
                    Err(violation) => totals.violations.push(*violation),
                }
            });
        }
    });
    let mut totals = totals.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    totals.violations.sort_by_key(|v| v.seed);
    totals
}

//! `clonekeeper-sim`: runs seeded simulations of clonekeeper's loop and reports any broken
//! invariant with the command that replays it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use clonekeeper::sim::{run_seed, run_seeds, Options};

/// Deterministic simulation of clonekeeper under seeded fault schedules.
#[derive(Parser)]
#[command(name = "clonekeeper-sim")]
struct Args {
    /// Replay one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// How many seeds to run.
    #[arg(long, default_value_t = 2_000)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// With --seed: print every event of the run.
    #[arg(long)]
    trace: bool,
    /// Seconds of faults at the start of each run.
    #[arg(long, default_value_t = 120)]
    fault_window: u64,
    /// Threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options =
        Options { fault_window: Duration::from_secs(args.fault_window), full_trace: args.trace, ..Options::default() };
    if let Some(seed) = args.seed {
        return match run_seed(seed, &options) {
            Ok(summary) => {
                summary.trace.iter().for_each(|line| println!("{line}"));
                println!(
                    "seed {seed}: ok; {} repos, {} ticks, {} dispatches, {} faults, {} crashes; settled {:.1}s after the last fault; {:.0}s simulated; digest {:016x}",
                    summary.repos,
                    summary.ticks,
                    summary.dispatches,
                    summary.faults,
                    summary.crashes,
                    summary.settled_in.as_secs_f64(),
                    summary.simulated.as_secs_f64(),
                    summary.digest
                );
                ExitCode::SUCCESS
            }
            Err(violation) => {
                eprintln!("{violation}");
                ExitCode::FAILURE
            }
        };
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let totals = run_seeds(args.start, args.seeds, threads, &options);
    let took = started.elapsed().as_secs_f64();
    for violation in &totals.violations {
        eprintln!("{violation}\n");
    }
    println!(
        "{} seeds from {} in {took:.1}s ({:.0} seeds/s, {threads} threads): {} violations; {:.0} simulated hours ({:.0}× real time); {:.0} simulated repo-hours ({:.0} per second); {} dispatches, {} faults, {} crashes; slowest settle {:.0}s after the last fault",
        totals.runs,
        args.start,
        totals.runs as f64 / took,
        totals.violations.len(),
        totals.simulated_secs / 3600.0,
        totals.simulated_secs / took,
        totals.repo_seconds / 3600.0,
        totals.repo_seconds / 3600.0 / took,
        totals.dispatches,
        totals.faults,
        totals.crashes,
        totals.slowest_settle_secs,
    );
    if totals.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

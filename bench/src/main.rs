//! clonekeeper's benchmark harness. Every figure is measured beside a baseline in the same
//! run and reported as a ratio in BENCHMARKS.md; tests never time anything.
//!
//! `cargo run --release -p clonekeeper-bench -- --out BENCHMARKS.md`

mod alloc;
mod plans;
mod policy;
mod reconcile;
mod replay;
mod repo_db;
mod report;
mod scale;
mod sim;
mod tick;

use std::path::PathBuf;

use clap::Parser;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[derive(Debug, Parser)]
struct Args {
    /// Repos per benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    repos: usize,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Postgres admin URL for the repo DB benchmark.
    #[arg(long, env = "CLONEKEEPER_TEST_PG", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg: String,
    /// Skip the Postgres benchmark.
    #[arg(long)]
    no_pg: bool,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// A Rust-built prioritizer component (e.g. target/policies/popular-first.wasm from
    /// scripts/build-policies.sh) for the policy engine benchmark; without it, it is skipped.
    #[arg(long)]
    policy_module: Option<PathBuf>,
    /// Repos for the Rego comparison (regorus interprets; 1M takes minutes).
    #[arg(long, default_value_t = 100_000)]
    policy_rego_repos: usize,
    /// Seeds for the simulator's throughput (0: skip).
    #[arg(long, default_value_t = 20_000)]
    sim_seeds: u64,
    /// Repos of the second size of the one-process-at-scale section, on 100 shards (0: skip
    /// the section).
    #[arg(long, default_value_t = 10_000_000)]
    scale_repos: usize,
    /// Only these sections (comma-separated: reconcile, repo-db, plans, tick, scale, sim,
    /// policy, replay); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wanted = |section: &str| args.only.is_empty() || args.only.iter().any(|s| s == section);
    let mut sections = Vec::new();
    if wanted("reconcile") {
        sections.push(reconcile::run(args.repos, args.runs));
    }
    if !args.no_pg && (wanted("repo-db") || wanted("plans") || wanted("tick")) {
        let (section, db_url) = repo_db::run(&args.pg, args.repos, args.runs.min(3)).await?;
        if wanted("repo-db") {
            sections.push(section);
        }
        if wanted("plans") {
            sections.push(plans::run(&args.pg, args.repos, &db_url).await?);
        }
        if wanted("tick") {
            sections.push(tick::run(&db_url, args.repos).await?);
        }
    }
    if args.scale_repos > 0 && wanted("scale") {
        let (repos, runs) = (args.scale_repos, args.runs.min(3));
        sections.push(tokio::task::spawn_blocking(move || scale::run(repos, runs)).await?);
    }
    if args.sim_seeds > 0 && wanted("sim") {
        let seeds = args.sim_seeds;
        sections.push(tokio::task::spawn_blocking(move || sim::run(seeds)).await??);
    }
    if let Some(module) = args.policy_module.as_ref().filter(|_| wanted("policy")) {
        let (module, repos, rego, runs) = (module.clone(), args.repos, args.policy_rego_repos, args.runs);
        sections.push(tokio::task::spawn_blocking(move || policy::run(&module, repos, rego, runs)).await??);
    }
    if wanted("replay") {
        let (module, repos) = (args.policy_module.clone(), args.repos);
        sections.push(tokio::task::spawn_blocking(move || replay::run(repos, module.as_deref())).await??);
    }
    let mut out = String::from("# Benchmarks\n\n");
    out.push_str(&format!(
        "Measured by `cargo run --release -p clonekeeper-bench{} -- {}` on {} ({}, {} cores), {}.\n\
         Each figure is the median of its runs; every ratio compares against a baseline measured in the same run.\n\n",
        if cfg!(feature = "rego") { " --features rego" } else { "" },
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        std::env::consts::ARCH,
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        chrono_free_date(),
    ));
    for section in &sections {
        section.render(&mut out);
    }
    std::fs::write(&args.out, &out)?;
    print!("{out}");
    Ok(())
}

/// The CPU's model name, as the kernel reports it: figures depend on it.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

fn chrono_free_date() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

//! The `clonekeeper` command line.
//!
//! Exit status: 0 on a clean stop, 1 when running failed, 2 for a bad configuration or bad
//! arguments.

mod chaos;
mod demo;
mod explain;
mod logging;
mod policy;
mod replay;
mod run;
mod snapshot;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps a code-search deployment's git mirrors complete: every tick it compares the repos
/// the repo DB wants with what every gitserver shard holds, and dispatches the missing clones,
/// in order, under limits, with retries.
#[derive(Debug, Parser)]
#[command(name = "clonekeeper", version, about, long_about = None)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar next to a real deployment.
    ///
    /// Every key of the file can be overridden by an environment variable named
    /// CLONEKEEPER_<SECTION>_<KEY>, e.g. CLONEKEEPER_REPO_DB_URL or CLONEKEEPER_GITSERVER_ADDRS
    /// (comma-separated). See the README for the full reference.
    Run {
        /// The TOML config file. Without it, the environment alone must configure clonekeeper.
        #[arg(long, short, env = "CLONEKEEPER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show the whole thing working on this machine: ~200 generated git repositories, an
    /// embedded SQLite repo DB, two dev gitserver shards, one of which is killed midway and
    /// restarted with an empty queue. Needs only `git`.
    Demo {
        /// How many repositories to generate.
        #[arg(long, default_value_t = 200)]
        repos: usize,
        /// How many gitserver shards to run.
        #[arg(long, default_value_t = 2)]
        shards: usize,
        /// Artificial time each clone takes on the dev shards, so the kill lands mid-clone.
        #[arg(long, default_value = "150ms", value_parser = humantime::parse_duration)]
        clone_delay: std::time::Duration,
        /// Keep the generated files in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// No progress bar; one line per second instead (for logs and CI).
        #[arg(long)]
        plain: bool,
        /// Chaos mode: run the sidecar as a child process and, for this long, kill it
        /// (SIGKILL) and the shards at random; end with every repo cloned and an invariant
        /// report checked from the shards' own records.
        #[arg(long, value_parser = humantime::parse_duration)]
        chaos: Option<std::time::Duration>,
        /// Chaos mode: the seed of the kill schedule (random if not given; printed either way).
        #[arg(long, requires = "chaos")]
        seed: Option<u64>,
    },
    /// Write, check and test policy modules locally, without a running sidecar.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Ask a running sidecar why one repo is (not) cloned: state, owning shard, attempts,
    /// last error, next attempt, place in the queue and the last policy decision.
    Explain {
        /// The repo name, in any spelling the repo DB might use.
        name: String,
        /// The sidecar's admin address.
        #[arg(long, default_value = "127.0.0.1:9187", env = "CLONEKEEPER_ADMIN_LISTEN")]
        admin: String,
        /// Print the raw JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Save what a running sidecar knows (desired repos with the columns policies read, each
    /// repo's state and attempt record, shard addresses, recent clone durations) as a
    /// gzip-compressed JSON-lines file, for `clonekeeper replay` and for jq, DuckDB or pandas.
    Snapshot {
        /// The sidecar's admin address.
        #[arg(long, default_value = "127.0.0.1:9187", env = "CLONEKEEPER_ADMIN_LISTEN")]
        admin: String,
        /// A file holding the admin token (else CLONEKEEPER_ADMIN_TOKEN): repo names can be
        /// private, so the snapshot takes the token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Where to write it (default: clonekeeper-snapshot-TIME.ndjson.gz here).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// What would these policies do to this clone queue? Replays a snapshot in simulated
    /// time through the production scheduler, caps, rate limiters and policy host, once per
    /// policy, until every repo is cloned; prints the comparison and writes an HTML report.
    Replay(replay::ReplayArgs),
    /// Print a running sidecar's status, one line per shard.
    Status {
        /// The sidecar's admin address.
        #[arg(long, default_value = "127.0.0.1:9187", env = "CLONEKEEPER_ADMIN_LISTEN")]
        admin: String,
        /// Print the raw JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("clonekeeper: starting the async runtime failed: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        match args.command {
            Command::Run { config } => run::main(config.as_deref()).await,
            Command::Demo { repos, shards, clone_delay, dir, plain, chaos: Some(window), seed } => {
                chaos::main(demo::Options { repos, shards, clone_delay, dir, plain }, window, seed).await
            }
            Command::Demo { repos, shards, clone_delay, dir, plain, chaos: None, .. } => {
                demo::main(demo::Options { repos, shards, clone_delay, dir, plain }).await
            }
            Command::Status { admin, json } => status::main(&admin, json).await,
            Command::Explain { name, admin, json } => explain::main(&admin, &name, json).await,
            Command::Policy(command) => policy::main(command).await,
            Command::Snapshot { admin, token_file, out } => {
                let token = match token_file {
                    Some(path) => match std::fs::read_to_string(&path) {
                        Ok(token) => Some(token),
                        Err(error) => {
                            eprintln!("clonekeeper snapshot: {}: {error}", path.display());
                            return ExitCode::from(2);
                        }
                    },
                    None => std::env::var("CLONEKEEPER_ADMIN_TOKEN").ok(),
                };
                snapshot::main(&admin, token.as_deref(), out).await
            }
            Command::Replay(args) => replay::main(args),
        }
    })
}

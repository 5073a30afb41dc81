//! `clonekeeper policy …`: the policy authoring commands. They load a module exactly as the
//! sidecar does (same validation, limits and answer checks) and need no running sidecar.
//!
//! Exit status: 0 when everything passed, 1 when the module or a fixture failed, 2 for bad
//! arguments or unreadable input files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};

use crate::model::Timestamp;
use crate::policy::fixtures::{self, Time};
use crate::policy::{
    componentize, scaffold, CallLimits, Interface, KeyLoad, LimitKey, Module, PolicyEngine, RepoView, Retry,
    RetryFailure, Source, ViewState,
};
use crate::schedule::Priority;

mod bench;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a module against the contract and list the interfaces it implements.
    Check {
        /// The component (`.wasm`, or `.wat` text).
        module: PathBuf,
        /// With --snapshot: warn when a tick of its due repos would not fit --tick-budget.
        #[command(flatten)]
        cost: CostArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Run a module on a list of repos and print its decisions.
    Eval {
        module: PathBuf,
        /// A JSON list of repos (fixture repo syntax: only `name` is required).
        #[arg(long)]
        repos: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The `now` passed to the module (Unix millis or RFC 3339); default: the clock.
        #[arg(long)]
        now: Option<String>,
        /// Only this interface (default: every decision interface the module implements).
        #[arg(long, value_enum)]
        interface: Option<InterfaceArg>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Run fixture files against a module: one PASS/FAIL line per case, a diff on mismatch.
    Test {
        module: PathBuf,
        /// Fixture files or folders of them; default: NAME.fixtures.json and NAME.fixtures/
        /// beside the module.
        fixtures: Vec<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// What `prioritize` costs at a deployment's size: time per call and per repo, peak
    /// memory, and their share of `call_timeout` and of the tick's policy budget (exit 1 when
    /// it does not fit under half of each).
    Bench {
        module: PathBuf,
        /// Due repos to order, as in one tick of a deployment this size.
        #[arg(long, default_value_t = 100_000, conflicts_with = "snapshot")]
        repos: usize,
        /// With --snapshot: its due repos instead of synthetic ones.
        #[command(flatten)]
        cost: CostArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Write a new policy project that builds on this machine and passes its sample fixture.
    New {
        /// The policy's name (lower-case letters, digits and dashes).
        name: String,
        #[arg(long, value_enum)]
        lang: scaffold::Lang,
        /// Where to create the project folder (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Turn a core WebAssembly module into a policy component (like `wasm-tools component new`).
    Componentize {
        /// The core module (built with wit-bindgen, or any module using the canonical ABI).
        core: PathBuf,
        /// The component to write.
        #[arg(long, short)]
        output: PathBuf,
        /// The world, when the module does not name one itself (wit-bindgen output does).
        #[arg(long)]
        world: Option<String>,
    },
}

/// What a module's cost is measured on and against, for `check` and `bench`.
#[derive(Debug, clap::Args)]
pub struct CostArgs {
    /// A snapshot (`clonekeeper snapshot`) whose due repos `prioritize` orders: the
    /// deployment's own columns, states and attempt records.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// The tick's policy budget (as `policy.tick_budget`).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    tick_budget: Duration,
}

/// How a module is loaded: as the sidecar would, with its config.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// The config passed to `init` (default: NAME.toml beside the module, if any).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Budget of one call (as `policy.call_timeout`).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    call_timeout: Duration,
    /// Memory cap of one call in MiB, all its memories together (as `policy.memory_limit_mb`).
    #[arg(long, default_value_t = 256)]
    memory_limit_mb: usize,
    /// Where compiled code is cached (default: $XDG_CACHE_HOME/clonekeeper/policies or
    /// ~/.cache/clonekeeper/policies), so checking a large module twice compiles it once.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile every time; cache nothing.
    #[arg(long)]
    no_cache: bool,
}

impl LoadArgs {
    fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
            Some(base.join("clonekeeper").join("policies"))
        })
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum InterfaceArg {
    Prioritize,
    RateLimits,
    Reenqueue,
}

impl InterfaceArg {
    fn interface(self) -> Interface {
        match self {
            InterfaceArg::Prioritize => Interface::Prioritize,
            InterfaceArg::RateLimits => Interface::RateLimits,
            InterfaceArg::Reenqueue => Interface::Reenqueue,
        }
    }
}

pub async fn main(command: PolicyCommand) -> ExitCode {
    let result = tokio::task::spawn_blocking(move || {
        let mut out = std::io::stdout().lock();
        run(command, &mut out)
    })
    .await;
    match result {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(error)) => {
            eprintln!("clonekeeper policy: {error}");
            ExitCode::from(error.code())
        }
        Err(error) => {
            eprintln!("clonekeeper policy: {error}");
            ExitCode::from(1)
        }
    }
}

/// Why a command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The module (or a fixture) failed: exit 1.
    #[error("{0}")]
    Failed(String),
    /// Bad arguments or input files: exit 2.
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    fn code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
        }
    }
}

/// Runs a command, writing its report to `out`; returns the exit status.
pub fn run(command: PolicyCommand, out: &mut dyn Write) -> Result<u8, CliError> {
    match command {
        PolicyCommand::Check { module, cost, load } => check(&module, &load, &cost, out),
        PolicyCommand::Eval { module, repos, json, now, interface, load } => {
            eval(&module, &repos, json, now.as_deref(), interface, &load, out)
        }
        PolicyCommand::Test { module, fixtures, load } => test(&module, &fixtures, &load, out),
        PolicyCommand::Bench { module, repos, cost, load } => {
            let repos = match cost.snapshot {
                Some(file) => bench::Repos::Snapshot(file),
                None => bench::Repos::Synthetic(repos),
            };
            bench::bench(&module, &repos, cost.tick_budget, &load, out)
        }
        PolicyCommand::New { name, lang, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let files = scaffold::write(&name, lang, &dir).map_err(CliError::Usage)?;
            let _ = writeln!(out, "Created {} ({} files):", dir.display(), files.len());
            for file in files {
                let _ = writeln!(out, "  {}", file.display());
            }
            let _ = writeln!(out, "\nNext: cd {} && ./build.sh && ./test.sh (see README.md)", dir.display());
            Ok(0)
        }
        PolicyCommand::Componentize { core, output, world } => {
            let bytes = std::fs::read(&core).map_err(|e| CliError::Usage(format!("{}: {e}", core.display())))?;
            let component = componentize::componentize(&bytes, world.as_deref())
                .map_err(|e| CliError::Failed(format!("{}: {e}", core.display())))?;
            std::fs::write(&output, &component)
                .map_err(|e| CliError::Usage(format!("writing {}: {e}", output.display())))?;
            let _ = writeln!(out, "{}: {} bytes", output.display(), component.len());
            Ok(0)
        }
    }
}

/// Reads and validates a module the way the sidecar's loader does.
fn load(path: &Path, args: &LoadArgs) -> Result<Module, CliError> {
    let bytes = std::fs::read(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    let name = module_name(path);
    let config = match &args.config {
        Some(config) => std::fs::read_to_string(config)
            .map_err(|e| CliError::Usage(format!("--config {}: {e}", config.display())))?,
        None => {
            let beside = path.with_file_name(format!("{name}.toml"));
            std::fs::read_to_string(beside).unwrap_or_default()
        }
    };
    let limits = CallLimits { call_timeout: args.call_timeout, memory_limit_bytes: args.memory_limit_mb << 20 };
    let engine = PolicyEngine::new(limits, args.cache_dir()).map_err(|e| CliError::Failed(e.to_string()))?;
    let source = Source { name, path: path.to_path_buf(), bytes, config };
    Module::load(&engine, &source, None, Timestamp::now()).map_err(|e| CliError::Failed(e.to_string()))
}

fn module_name(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("policy").to_string()
}

/// The world of the contract a module's exports match.
fn world_of(module: &Module) -> &'static str {
    let has = |i| module.implements(i);
    match (has(Interface::Prioritize), has(Interface::RateLimits), has(Interface::Reenqueue)) {
        (true, false, false) => "prioritizer",
        (false, true, false) => "limiter",
        (false, false, true) => "retrier",
        (true, true, false) => "prioritizer-limiter",
        (true, false, true) => "prioritizer-retrier",
        (false, true, true) => "limiter-retrier",
        _ => "full",
    }
}

fn check(path: &Path, args: &LoadArgs, cost: &CostArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let started = Instant::now();
    let module = load(path, args)?;
    let took = started.elapsed();
    let interfaces: Vec<&str> = module.interfaces.iter().map(|&i| module.exported_name(i)).collect();
    let _ = writeln!(out, "{}: ok", path.display());
    let _ = writeln!(out, "  digest      sha256:{}", module.digest);
    let _ = writeln!(out, "  world       {}", world_of(&module));
    let mut says = Vec::new();
    for (decides, explains, what) in [
        (Interface::Prioritize, Interface::Explain, "priorities"),
        (Interface::RateLimits, Interface::ExplainLimits, "limits"),
    ] {
        if module.implements(explains) {
            says.push(format!("explains its {what}"));
        } else if module.implements(decides) {
            says.push(format!("cannot explain its {what}: rebuild against wit/policy.wit (0.2.1 adds explain)"));
        }
    }
    if module.exported_name(Interface::Prioritize) == "prioritize" {
        says.push("answers through prioritize's list of variants: rebuild against wit/policy.wit for rank (0.2.2), whose scores cross in one copy".to_string());
    }
    let explains = if says.is_empty() { "nothing to explain".to_string() } else { says.join("; ") };
    let _ = writeln!(out, "  contract    clonekeeper:policy@{} ({explains})", module.contract);
    let _ = writeln!(out, "  interfaces  {}", interfaces.join(", "));
    if module.implements(Interface::Prioritize) {
        let columns = module.columns.names();
        let columns = if columns.is_empty() { "none (only the batch length)".to_string() } else { columns.join(", ") };
        let _ = writeln!(out, "  columns     {columns} (what {} reads)", module.exported_name(Interface::Prioritize));
    }
    let config = match &args.config {
        Some(config) => format!("{} (accepted by init)", config.display()),
        None if module.config.is_empty() => "none (init got an empty string)".to_string(),
        None => format!("{}.toml beside it (accepted by init)", module.name),
    };
    let _ = writeln!(out, "  config      {config}");
    let shipped = fixtures::shipped_with(&crate::policy::reload::dir_of(path), &module.name);
    if !shipped.is_empty() {
        let _ = writeln!(
            out,
            "  fixtures    {} file(s) beside it: run `clonekeeper policy test {}`",
            shipped.len(),
            path.display()
        );
    }
    let _ = writeln!(out, "  loaded in   {} ms (compile, link, type-check, init)", took.as_millis());
    if let Some(snapshot) = &cost.snapshot {
        bench::warn_if_over_budget(&module, snapshot, cost.tick_budget, out)?;
    }
    Ok(0)
}

fn eval(
    path: &Path,
    repos_file: &Path,
    json: bool,
    now: Option<&str>,
    only: Option<InterfaceArg>,
    args: &LoadArgs,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let text =
        std::fs::read_to_string(repos_file).map_err(|e| CliError::Usage(format!("{}: {e}", repos_file.display())))?;
    let repos = fixtures::parse_repos(&text).map_err(|e| CliError::Usage(format!("{}: {e}", repos_file.display())))?;
    let now = match now {
        Some(text) => {
            let time = text.parse::<i64>().map(Time::Millis).unwrap_or_else(|_| Time::Text(text.to_string()));
            Timestamp::from_millis(time.millis().map_err(|e| CliError::Usage(format!("--now: {e}")))?)
        }
        None => Timestamp::now(),
    };
    let module = load(path, args)?;
    let interfaces: Vec<Interface> = match only {
        Some(only) if module.implements(only.interface()) => vec![only.interface()],
        Some(only) => {
            return Err(CliError::Failed(format!("{}: does not implement {}", path.display(), only.interface())))
        }
        None => Interface::DECISIONS.into_iter().filter(|&i| module.implements(i)).collect(),
    };
    let mut documents = Vec::new();
    for interface in interfaces {
        let started = Instant::now();
        let failed = |e: crate::policy::CallFailure| CliError::Failed(format!("{}: {interface} {e}", path.display()));
        let document = match interface {
            Interface::Prioritize => {
                let answers = module.prioritize(&repos, now).map_err(failed)?;
                prioritize_report(&repos, &answers, json, out)
            }
            Interface::Reenqueue => {
                let failures: Vec<RetryFailure> = repos
                    .iter()
                    .map(|repo| RetryFailure {
                        error: repo.last_error.clone().unwrap_or_default(),
                        repo: RepoView { state: ViewState::Failed, ..repo.clone() },
                    })
                    .collect();
                let answers = module.reenqueue(&failures, now).map_err(failed)?;
                reenqueue_report(&repos, &answers, json, out)
            }
            Interface::RateLimits => {
                let seen = loads_of(&repos);
                let answers = module.rate_limits(&seen, now).map_err(failed)?;
                if json {
                    serde_json::json!({"seen": seen, "limits": answers})
                } else {
                    let _ = writeln!(out, "rate-limits ({} keys seen)", seen.len());
                    let _ = writeln!(out, "  {:<36} {:>10} {:>7} {:>13}", "key", "per hour", "burst", "max in flight");
                    for limit in &answers {
                        let in_flight = limit.max_in_flight.map_or("-".to_string(), |n| n.to_string());
                        let _ = writeln!(
                            out,
                            "  {:<36} {:>10} {:>7} {:>13}",
                            limit.key.to_string(),
                            limit.per_hour,
                            limit.burst,
                            in_flight
                        );
                    }
                    serde_json::Value::Null
                }
            }
            Interface::Lifecycle | Interface::Explain | Interface::ExplainLimits => continue,
        };
        let took = started.elapsed();
        if json {
            documents.push(serde_json::json!({
                "interface": interface.as_str(),
                "took_ms": took.as_secs_f64() * 1000.0,
                "result": document,
            }));
        } else {
            let _ = writeln!(
                out,
                "  decided by {} (sha256:{}) in {:.2} ms\n",
                module.name,
                crate::policy::short_digest(&module.digest),
                took.as_secs_f64() * 1000.0
            );
        }
    }
    if json {
        let document = serde_json::json!({
            "module": &*module.name,
            "digest": &*module.digest,
            "now": now.as_millis(),
            "decisions": documents,
        });
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&document).unwrap_or_default());
    }
    Ok(0)
}

fn prioritize_report(repos: &[RepoView], answers: &[Priority], json: bool, out: &mut dyn Write) -> serde_json::Value {
    let (order, not_now) = fixtures::dispatch_order(repos, answers);
    let score_of = |repo: &RepoView| {
        repos.iter().position(|r| std::ptr::eq(r, repo)).and_then(|idx| match answers[idx] {
            Priority::Score(score) => Some(score),
            Priority::NotNow => None,
        })
    };
    if json {
        let mut rows: Vec<serde_json::Value> = order
            .iter()
            .enumerate()
            .map(|(rank, repo)| serde_json::json!({"rank": rank + 1, "repo": repo.name, "id": repo.id, "score": score_of(repo)}))
            .collect();
        rows.extend(
            not_now
                .iter()
                .map(|repo| serde_json::json!({"rank": null, "repo": repo.name, "id": repo.id, "not_now": true})),
        );
        return serde_json::Value::Array(rows);
    }
    let _ = writeln!(out, "prioritize ({} repos, {} not now)", repos.len(), not_now.len());
    let _ = writeln!(out, "  {:>5}  {:>14}  repo", "rank", "score");
    for (rank, repo) in order.iter().enumerate() {
        let score = score_of(repo).map_or_else(String::new, |s| format!("{s}"));
        let _ = writeln!(out, "  {:>5}  {:>14}  {}", rank + 1, score, repo.name);
    }
    for repo in &not_now {
        let _ = writeln!(out, "  {:>5}  {:>14}  {}", "-", "not now", repo.name);
    }
    serde_json::Value::Null
}

fn reenqueue_report(repos: &[RepoView], answers: &[Retry], json: bool, out: &mut dyn Write) -> serde_json::Value {
    let describe = |retry: &Retry| match retry {
        Retry::Now => serde_json::json!("now"),
        Retry::After(delay) => serde_json::json!({"after_ms": delay.as_millis() as u64}),
        Retry::GiveUp(reason) => serde_json::json!({"give_up": reason}),
    };
    if json {
        return serde_json::Value::Array(
            repos
                .iter()
                .zip(answers)
                .map(|(repo, retry)| serde_json::json!({"repo": repo.name, "decision": describe(retry)}))
                .collect(),
        );
    }
    let _ = writeln!(out, "reenqueue ({} repos treated as failed with their last_error)", repos.len());
    for (repo, retry) in repos.iter().zip(answers) {
        let decision = match retry {
            Retry::Now => "retry now".to_string(),
            Retry::After(delay) => format!("retry after {}", humantime::format_duration(*delay)),
            Retry::GiveUp(reason) => format!("give up: {reason}"),
        };
        let _ = writeln!(out, "  {:<50} {}", repo.name, decision);
    }
    serde_json::Value::Null
}

/// The load per code host and per shard that `repos` make (not cloned counts as queued,
/// cloning as in flight); a code host's service type is its first repo's.
fn loads_of(repos: &[RepoView]) -> Vec<KeyLoad> {
    let mut loads: Vec<KeyLoad> = Vec::new();
    for repo in repos {
        for key in [LimitKey::CodeHost(repo.code_host.clone()), LimitKey::Shard(repo.shard_addr.clone())] {
            let idx = match loads.iter().position(|l| l.key == key) {
                Some(idx) => idx,
                None => {
                    let service_type = match key {
                        LimitKey::CodeHost(_) => repo.service_type.clone(),
                        LimitKey::Shard(_) => String::new(),
                    };
                    loads.push(KeyLoad { key, service_type, repos: 0, queued: 0, in_flight: 0 });
                    loads.len() - 1
                }
            };
            let load = &mut loads[idx];
            load.repos += 1;
            match repo.state {
                ViewState::Cloning => load.in_flight += 1,
                ViewState::Cloned => {}
                _ => load.queued += 1,
            }
        }
    }
    loads
}

fn test(path: &Path, given: &[PathBuf], args: &LoadArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let module = Arc::new(load(path, args)?);
    let mut files = Vec::new();
    for item in given {
        if item.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(item)
                .map_err(|e| CliError::Usage(format!("{}: {e}", item.display())))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(item.clone());
        }
    }
    if given.is_empty() {
        files = fixtures::shipped_with(&crate::policy::reload::dir_of(path), &module.name);
    }
    if files.is_empty() {
        return Err(CliError::Usage(format!(
            "no fixture files: pass some, or ship {0}.fixtures.json or {0}.fixtures/*.json beside {1}",
            module.name,
            path.display()
        )));
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let label = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().to_string());
        let results = match fixtures::run_file(&module, file) {
            Ok(results) => results,
            Err(error) => {
                failed += 1;
                let _ = writeln!(out, "FAIL {label}: {error}");
                continue;
            }
        };
        for result in results {
            match &result.failure {
                None => {
                    passed += 1;
                    let _ = writeln!(out, "PASS {label}: {} ({})", result.name, result.interface);
                }
                Some(failure) => {
                    failed += 1;
                    let _ = writeln!(out, "FAIL {label}: {} ({})", result.name, result.interface);
                    for line in failure.lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "--------------------------------------------------------------------------------");
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    Ok(if failed == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests;

//! `clonekeeper policy bench MODULE --repos N`: what a prioritizer costs at a deployment's size,
//! before it serves (as `opa bench` does for Rego). The module runs on the live path (the
//! columns it reads built from the host's own repo records, a fresh instance per call, answers
//! checked) over N synthetic repos in the sidecar's batches, and the report sets the figures
//! against the limits that will bound it: `policy.call_timeout` per call, `policy.tick_budget`
//! per tick.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{load, CliError, LoadArgs};
use crate::model::{DesiredRepo, DesiredRepos, RepoName, ServiceType, Timestamp};
use crate::policy::{Interface, Module};
use crate::reconcile::RepoState;
use crate::replay::capture::{Capture, CapturedRepo};
use crate::schedule::Candidate;

/// Repos per call, as the sidecar batches them.
pub const BATCH: usize = 10_000;

/// What one run measured.
#[derive(Debug)]
pub struct Measured {
    pub repos: usize,
    pub calls: usize,
    pub median_call: Duration,
    pub max_call: Duration,
    pub total: Duration,
    /// The most linear memory any call held, all its memories together.
    pub peak_memory: usize,
}

/// The repos a bench orders.
#[derive(Clone, Debug)]
pub enum Repos {
    /// This many synthetic repos.
    Synthetic(usize),
    /// A snapshot's due repos (those not cloned, with their records); every repo when none
    /// is due.
    Snapshot(PathBuf),
}

/// Runs `module`'s `prioritize` over `repos` synthetic repos, in [`BATCH`]es.
pub fn measure(module: &Module, repos: usize, now: Timestamp) -> Result<Measured, CliError> {
    let desired: DesiredRepos = (0..repos).map(|idx| synthetic(idx, now)).collect();
    let candidates: Vec<Candidate<'_>> =
        desired.iter().map(|repo| Candidate { repo, shard: 0, state: RepoState::Uncloned, record: None }).collect();
    measure_candidates(module, &candidates, &["gitserver-0:3178".to_string()], now)
}

/// A snapshot's due repos (every repo when none is due), held as the rows its candidates read.
struct SnapshotDue<'c> {
    rows: DesiredRepos,
    /// By row: the captured repo (its shard, state and record).
    captured: Vec<&'c CapturedRepo>,
}

impl<'c> SnapshotDue<'c> {
    /// Fails only when the due repos' names pass the 4 GiB one set holds.
    fn of(capture: &'c Capture, file: &Path) -> Result<SnapshotDue<'c>, CliError> {
        let due = |r: &&CapturedRepo| r.state != RepoState::Cloned;
        let all = !capture.repos.iter().any(|r| due(&r));
        let captured: Vec<&CapturedRepo> = capture.repos.iter().filter(|r| all || due(r)).collect();
        // The capture is sorted by name, so row i is captured[i].
        let rows = DesiredRepos::try_from_records(captured.iter().map(|r| r.repo.clone()).collect()).map_err(|_| {
            CliError::Usage(format!("{}: the due repos' names pass 4 GiB, more than one set holds", file.display()))
        })?;
        Ok(SnapshotDue { rows, captured })
    }

    fn candidates(&self) -> Vec<Candidate<'_>> {
        self.rows
            .iter()
            .zip(&self.captured)
            .map(|(repo, r)| Candidate { repo, shard: r.shard, state: r.state, record: r.record.as_ref() })
            .collect()
    }
}

/// Runs `prioritize` over `candidates` in [`BATCH`]es, as the sidecar does.
fn measure_candidates(
    module: &Module,
    candidates: &[Candidate<'_>],
    shard_addrs: &[String],
    now: Timestamp,
) -> Result<Measured, CliError> {
    let repos = candidates.len();
    let mut calls = Vec::with_capacity(repos.div_ceil(BATCH));
    let mut peak_memory = 0;
    for batch in candidates.chunks(BATCH) {
        let started = Instant::now();
        let (answers, peak) = module
            .prioritize_candidates_measured(batch, shard_addrs, now)
            .map_err(|e| CliError::Failed(format!("{}: prioritize {e}", module.path.display())))?;
        calls.push(started.elapsed());
        peak_memory = peak_memory.max(peak);
        debug_assert_eq!(answers.len(), batch.len());
    }
    let total = calls.iter().sum();
    let max_call = calls.iter().copied().max().unwrap_or_default();
    let count = calls.len();
    calls.sort();
    let median_call = calls.get(count / 2).copied().unwrap_or_default();
    Ok(Measured { repos, calls: count, median_call, max_call, total, peak_memory })
}

/// A repo with every column a prioritizer may read filled, varied the way a GitHub
/// deployment's are (stars spread over orders of magnitude, some forks and archives, some
/// columns unknown).
fn synthetic(idx: usize, now: Timestamp) -> DesiredRepo {
    let mix = (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let day = 86_400_000;
    let name = format!("github.com/org-{}/repo-{idx}", idx % 1000);
    let mut repo =
        DesiredRepo::new(idx as i64 + 1, RepoName::from_normalized(name.as_str()), &format!("https://{name}"));
    repo.service_type = Some(ServiceType::new("github"));
    repo.created_at = Some(Timestamp::from_millis(now.as_millis() - (mix % 2000) as i64 * day));
    repo.updated_at =
        (!mix.is_multiple_of(7)).then(|| Timestamp::from_millis(now.as_millis() - (mix % 365) as i64 * day));
    repo.stars = (!mix.is_multiple_of(5)).then_some((mix % 50_000) as u32);
    repo.fork = mix.is_multiple_of(10);
    repo.archived = mix % 20 == 1;
    repo
}

/// The command: measure, report, and fail (exit 1) when the module does not fit its limits.
pub fn bench(
    path: &Path,
    repos: &Repos,
    tick_budget: Duration,
    args: &LoadArgs,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    if matches!(repos, Repos::Synthetic(0)) {
        return Err(CliError::Usage("--repos: at least 1".to_string()));
    }
    let module = load_prioritizer(path, args)?;
    let m = match repos {
        Repos::Synthetic(n) => measure(&module, *n, Timestamp::now())?,
        Repos::Snapshot(file) => {
            let capture = read_snapshot(file)?;
            let _ =
                writeln!(out, "{}: {} repos, taken {}", file.display(), capture.repos.len(), capture.header.taken_at);
            measure_candidates(
                &module,
                &SnapshotDue::of(&capture, file)?.candidates(),
                capture.shards.addrs(),
                capture.taken_at,
            )?
        }
    };
    let share = |part: Duration, whole: Duration| 100.0 * part.as_secs_f64() / whole.as_secs_f64().max(1e-9);
    let mib = |bytes: usize| bytes as f64 / f64::from(1 << 20);
    let _ = writeln!(
        out,
        "{}: prioritize over {} repos in {} calls of up to {BATCH} (columns: {})",
        path.display(),
        m.repos,
        m.calls,
        module.columns.names().join(", ")
    );
    let _ = writeln!(
        out,
        "  per call    median {}, max {} ({:.1}% of call_timeout {})",
        fmt(m.median_call),
        fmt(m.max_call),
        share(m.max_call, args.call_timeout),
        humantime::format_duration(args.call_timeout)
    );
    let _ = writeln!(out, "  per repo    {:.0} ns", m.total.as_nanos() as f64 / m.repos as f64);
    let _ = writeln!(
        out,
        "  per tick    {} for {} due repos ({:.1}% of tick_budget {})",
        fmt(m.total),
        m.repos,
        share(m.total, tick_budget),
        humantime::format_duration(tick_budget)
    );
    let _ = writeln!(out, "  memory      peak {:.1} MiB of {} MiB per call", mib(m.peak_memory), args.memory_limit_mb);
    let mut problems = Vec::new();
    if m.max_call > args.call_timeout / 2 {
        problems.push(format!(
            "a call took {}, over half of call_timeout: on a busier machine calls would time out and fall back",
            fmt(m.max_call)
        ));
    }
    if m.total > tick_budget {
        problems.push(format!(
            "a tick with {} due repos needs {}, more than tick_budget: the batches past it would get the built-in order",
            m.repos,
            fmt(m.total)
        ));
    }
    if m.peak_memory > (args.memory_limit_mb << 20) / 2 {
        problems.push(format!("a call held {:.1} MiB, over half of the memory cap", mib(m.peak_memory)));
    }
    if problems.is_empty() {
        let _ = writeln!(out, "  verdict     fits: under half of every limit");
        Ok(0)
    } else {
        for problem in &problems {
            let _ = writeln!(out, "  verdict     does not fit: {problem}");
        }
        Ok(1)
    }
}

/// `policy check --snapshot`: warns (without failing the check) when a tick of the snapshot's
/// due repos would spend more than `tick_budget` in the module.
pub fn warn_if_over_budget(
    module: &Module,
    snapshot: &Path,
    tick_budget: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if !module.implements(Interface::Prioritize) {
        return Ok(());
    }
    let capture = read_snapshot(snapshot)?;
    let due = SnapshotDue::of(&capture, snapshot)?;
    let m = measure_candidates(module, &due.candidates(), capture.shards.addrs(), capture.taken_at)?;
    let line = format!(
        "{} for the {} due repos of {} ({:.0}% of tick_budget {})",
        fmt(m.total),
        m.repos,
        snapshot.display(),
        100.0 * m.total.as_secs_f64() / tick_budget.as_secs_f64().max(1e-9),
        humantime::format_duration(tick_budget)
    );
    if m.total > tick_budget {
        let _ = writeln!(
            out,
            "  warning     a tick would need {line}: the batches past the budget would get the built-in order"
        );
    } else {
        let _ = writeln!(out, "  tick cost   {line}");
    }
    Ok(())
}

fn load_prioritizer(path: &Path, args: &LoadArgs) -> Result<Module, CliError> {
    let module = load(path, args)?;
    if !module.implements(Interface::Prioritize) {
        return Err(CliError::Failed(format!(
            "{}: does not implement prioritize, the only interface called per repo",
            path.display()
        )));
    }
    Ok(module)
}

fn read_snapshot(file: &Path) -> Result<Capture, CliError> {
    crate::replay::capture::read(file).map_err(CliError::Usage)
}

fn fmt(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    }
}

//! The whole sidecar at scale: the release `clonekeeper` binary against the 1M-repo Postgres
//! repo DB of the repo DB section and 8 loopback gitserver shards, each listing 90% of the
//! repos it owns (md5 routing) plus 1,000 orphans; no policy, `interval = "5s"`.
//!
//! Baseline (the I/O floor, measured in the same run): `psql COPY` of only what a tick needs
//! (id, name, clone URL) while the 8 lists are fetched in parallel. Figures: the first tick and
//! the following ones (`clonekeeper_tick_duration_seconds`: from the start of a tick's reads to the dispatches its decisions start), the process's peak RSS
//! (`VmHWM`) per desired repo, and the names asked about in progress calls per tick.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use clonekeeper::model::RepoName;
use clonekeeper::routing::{Routing, ShardMap};
use gitserver_api::{CloneProgress, CloneProgressResponse, RepoUpdateResponse, ReposRequest};

use crate::reconcile::fmt_duration;
use crate::report::{median, Section};

const SHARDS: usize = 8;
const NOTE: &str = "The first tick is a full read of the repo DB (the columns a sidecar without policy modules and write-back reads: id, name, clone URL, created_at), a progress sweep of every repo the lists lack (100,000 names, 20 calls) and the first reconcile and order of 100,000 due repos; later ticks read only the rows changed since the last read (before each of the next four, 1,000 rows whose `updated_at` repo-updater rewrote, a column this sidecar does not read: the snapshot is kept as it is; before the sixth, 100 renamed repos, which the tick applies; the seventh is the full read `[sync] full_interval` brings, set to 28 s here), ask progress only about the repos whose answer can change a decision (in flight, awaiting confirmation, the head of each shard's queue), and reconcile against lists shared rather than copied. The fake shards hold each `/repo-update` open, as gitserver does while it clones, so 40 dispatches stay in flight. Each of the three sidecars starts from a clean state; the peak differs from run to run with how the shards' answers interleave. Peak RSS is the whole process (tokio, wasmtime's engine, the admin API, the binary's pages) at its highest: the desired set (column by column: each name's bytes and 21 B per repo), each shard's list as one text buffer with a 4-byte end per name, and, while a tick reads the next lists, the answers' bytes and the new lists beside the last ones. Applying a real change builds the next desired set beside the old one, which the last tick's observations still hold (the second peak figure), and a full read does the same while it decodes a million rows (the third).";
const TICKS: usize = 7;
/// `[sync] full_interval`: between the sixth tick (25 s after the first) and the seventh (30 s),
/// so the seventh reads the repo DB in full again beside the set at hand. The harness checks
/// from the read counter that it did, and that no earlier tick did.
const FULL_INTERVAL: &str = "28s";
/// Sidecars started one after another: the peak RSS depends on how the shards' answers
/// interleave, so one run is not a figure.
const SIDECAR_RUNS: usize = 3;

/// What the shards were asked, for the progress figure.
#[derive(Default)]
struct Asked {
    progress_calls: AtomicU64,
    progress_names: AtomicU64,
    dispatches: AtomicU64,
}

#[derive(Clone)]
struct ShardState {
    list: Bytes,
    asked: Arc<Asked>,
}

pub async fn run(db_url: &str, n_repos: usize) -> anyhow::Result<Section> {
    let live = n_repos - n_repos / 50;
    let shard_map =
        ShardMap::new((0..SHARDS).map(|i| format!("shard-{i}")).collect(), Routing::Md5).context("eight shards")?;
    let mut lists: Vec<Vec<String>> = vec![Vec::new(); SHARDS];
    for i in 1..=n_repos {
        if i % 50 == 0 || i % 10 == 1 {
            continue; // soft-deleted, or one of the ~10% not cloned
        }
        let name = format!("github.com/org-{}/repo-{i}", i % 5000);
        let shard = shard_map.shard_for(&RepoName::from_normalized(name.as_str()));
        lists[usize::from(shard)].push(name);
    }
    let asked = Arc::new(Asked::default());
    let mut addrs = Vec::new();
    for (idx, mut list) in lists.into_iter().enumerate() {
        list.extend((0..1000).map(|o| format!("github.com/gone/{idx}-{o}")));
        let state = ShardState { list: Bytes::from(serde_json::to_vec(&list)?), asked: Arc::clone(&asked) };
        addrs.push(serve_shard(state).await?);
    }

    // The floor: COPY of what a tick needs while the lists are fetched in parallel.
    let mut floors = Vec::new();
    for _ in 0..3 {
        floors.push(floor(db_url, &addrs).await?);
    }
    let floor = median(&mut floors);

    let binary = sidecar_binary()?;
    let mut runs = Vec::new();
    for _ in 0..SIDECAR_RUNS {
        runs.push(run_sidecar(&binary, db_url, &addrs, &asked).await?);
    }
    let mut firsts: Vec<Duration> = runs.iter().map(|m| m.ticks[0]).collect();
    let mut steadies: Vec<Duration> =
        runs.iter().map(|m| m.ticks[1..TICKS - 1].iter().sum::<Duration>() / (TICKS - 2) as u32).collect();
    let mut fulls: Vec<Duration> = runs.iter().map(|m| m.ticks[TICKS - 1]).collect();
    let sorted = |peaks: fn(&Measured) -> u64| {
        let mut peaks: Vec<u64> = runs.iter().map(peaks).collect();
        peaks.sort_unstable();
        peaks
    };
    let peaks_before = sorted(|m| m.peak_before_renames);
    let peaks_renamed = sorted(|m| m.peak_after_renames);
    let peaks = sorted(|m| m.peak_rss);
    let m = &runs[0];

    let mut reads: Vec<Duration> = runs.iter().map(|m| m.first_read).collect();
    let first = median(&mut firsts);
    let first_read = median(&mut reads);
    let steady = median(&mut steadies);
    let full_again = median(&mut fulls);
    let per_repo = |bytes: u64| bytes as f64 / live as f64;
    let mut section = Section::new(format!(
        "The sidecar at scale: {live} desired repos, {SHARDS} shards (90% listed, 1,000 orphans each), no policy, interval 5s"
    ));
    section.row(
        "I/O floor: psql COPY (id, name, clone_url) while the 8 lists are fetched in parallel",
        fmt_duration(floor),
        "",
    );
    section.row(
        &format!("first tick (clonekeeper_tick_duration_seconds), median of {SIDECAR_RUNS} sidecar runs"),
        fmt_duration(first),
        "",
    );
    section.row(
        "ratio first tick / floor",
        format!("{:.2}×", first.as_secs_f64() / floor.as_secs_f64()),
        "goal ≤ 1.3×",
    );
    section.row(
        "  of which the full read of the repo DB (clonekeeper_repo_db_read_duration_seconds), median of the runs",
        format!("{} = {:.2}× the floor", fmt_duration(first_read), first_read.as_secs_f64() / floor.as_secs_f64()),
        "",
    );
    section.row(
        "  the rest (the medians' difference): the progress sweep, which waits for the read, any list still arriving, and the decisions (reconcile, order, schedule)",
        fmt_duration(first.saturating_sub(first_read)),
        "",
    );
    section.row(
        &format!("later incremental ticks, mean of {} per run, median of the runs", TICKS - 2),
        fmt_duration(steady),
        "",
    );
    section.row(
        "ratio later ticks / floor",
        format!("{:.2}×", steady.as_secs_f64() / floor.as_secs_f64()),
        "goal: well below 1×",
    );
    section.row(
        "the seventh tick, a full read again (full_interval), median of the runs",
        format!("{} = {:.2}× the floor", fmt_duration(full_again), full_again.as_secs_f64() / floor.as_secs_f64()),
        "",
    );
    let peak_row = |peaks: &[u64]| {
        let peak = peaks[peaks.len() / 2];
        format!(
            "{:.0} MB ({:.0} bytes/desired repo; runs {:.0}–{:.0})",
            peak as f64 / 1e6,
            per_repo(peak),
            per_repo(peaks[0]),
            per_repo(peaks[peaks.len() - 1])
        )
    };
    section.row(
        &format!(
            "peak RSS of the process (VmHWM) through {} ticks, 1,000 rows rewritten before each later one, \
             median of {SIDECAR_RUNS} sidecar runs",
            TICKS - 2
        ),
        peak_row(&peaks_before),
        "goal ≤ 300 bytes/repo",
    );
    section.row(
        "the same after the sixth tick, which applies 100 renamed repos",
        peak_row(&peaks_renamed),
        "goal ≤ 300 bytes/repo",
    );
    section.row(
        "the same after the seventh, which reads the repo DB in full beside the set at hand",
        peak_row(&peaks),
        "goal ≤ 300 bytes/repo",
    );
    section.row(
        "names asked in progress calls, per tick after the first (calls)",
        format!("{:.0} ({:.1})", m.progress_names_per_tick, m.progress_calls_per_tick),
        "only what needs asking",
    );
    section.row("names asked in the first tick's sweep", format!("{}", m.first_sweep_names), "every repo a list lacks");
    section.notes.push(NOTE.to_string());
    Ok(section)
}

struct Measured {
    ticks: Vec<Duration>,
    /// The first tick's full read of the repo DB (`clonekeeper_repo_db_read_duration_seconds`).
    first_read: Duration,
    /// VmHWM before the sixth tick, which applies the renames.
    peak_before_renames: u64,
    /// VmHWM after it.
    peak_after_renames: u64,
    /// VmHWM after the seventh, a full read.
    peak_rss: u64,
    first_sweep_names: u64,
    progress_names_per_tick: f64,
    progress_calls_per_tick: f64,
}

async fn serve_shard(state: ShardState) -> anyhow::Result<String> {
    let app = Router::new()
        .route("/list", get(|State(s): State<ShardState>| async move { s.list.clone() }))
        .route("/repo-clone-progress", post(progress))
        .route("/repo-update", post(update))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn progress(State(s): State<ShardState>, Json(request): Json<ReposRequest>) -> Json<CloneProgressResponse> {
    s.asked.progress_calls.fetch_add(1, Ordering::Relaxed);
    s.asked.progress_names.fetch_add(request.repos.len() as u64, Ordering::Relaxed);
    let results = request.repos.into_iter().map(|name| (name, CloneProgress::default())).collect();
    Json(CloneProgressResponse { results })
}

/// `/repo-update` blocks while gitserver clones; these clones outlast the measurement, so the
/// sidecar holds its in-flight caps' worth of dispatches, as against a busy deployment.
async fn update(State(s): State<ShardState>) -> Json<RepoUpdateResponse> {
    s.asked.dispatches.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Json(RepoUpdateResponse { clone_in_progress: true, ..RepoUpdateResponse::default() })
}

async fn floor(db_url: &str, addrs: &[String]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let sql = "SELECT repo.id, repo.name, esr.clone_url FROM repo \
                 JOIN external_service_repos AS esr ON esr.repo_id = repo.id WHERE repo.deleted_at IS NULL";
    let mut copy = tokio::process::Command::new("psql")
        .args(["-X", "-q", "-d", db_url, "-c", &format!("COPY ({sql}) TO STDOUT")])
        .stdout(Stdio::null())
        .spawn()
        .context("running psql")?;
    let client = reqwest::Client::new();
    let fetches = addrs.iter().map(|addr| {
        let client = client.clone();
        let url = format!("http://{addr}/list?cloned");
        async move { client.get(url).send().await?.bytes().await.map(|b| b.len()) }
    });
    let (status, lists) = tokio::join!(copy.wait(), futures::future::join_all(fetches));
    anyhow::ensure!(status?.success(), "psql COPY failed");
    for list in lists {
        anyhow::ensure!(list? > 0, "an empty list");
    }
    Ok(started.elapsed())
}

/// One sidecar from a clean state against the repo DB and the shards, watched for [`TICKS`]
/// ticks.
async fn run_sidecar(binary: &Path, db_url: &str, addrs: &[String], asked: &Asked) -> anyhow::Result<Measured> {
    asked.progress_calls.store(0, Ordering::Relaxed);
    asked.progress_names.store(0, Ordering::Relaxed);
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("clonekeeper.toml");
    // A free port for the admin API (taken back from the OS a moment before the sidecar binds it).
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    let shard_list = addrs.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    std::fs::write(
        &config,
        format!(
            "[repo_db]\nurl = \"{db_url}\"\n[state]\nurl = \"sqlite:{}\"\n[gitserver]\naddrs = [{shard_list}]\n\
             [sync]\ninterval = \"5s\"\nfull_interval = \"{FULL_INTERVAL}\"\n[admin]\nlisten = \"{admin}\"\n[log]\nlevel = \"error\"\n",
            dir.path().join("state.db").display()
        ),
    )?;
    // Undone before the sidecar starts: the scan of `repo` this costs must not run beside the
    // first tick, which the floor measures alone.
    let repo_db = sqlx::PgPool::connect(db_url).await.context("connecting to the repo DB to change rows")?;
    restore_renamed(&repo_db).await?;
    let mut child = Command::new(binary)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let measured = watch_ticks(&mut child, &admin, asked, &repo_db).await;
    let _ = child.kill();
    let _ = child.wait();
    restore_renamed(&repo_db).await?;
    measured
}

/// Appended to the names of the repos renamed before the last tick.
const RENAMED: &str = "-bench-renamed";

/// Between ticks, what a deployment's repo DB sees between reads: repo-updater rewriting rows
/// (1,000 per tick, `updated_at` only, which a sidecar without policies does not read), and
/// before the sixth tick a real change (100 repos renamed); nothing before the seventh.
async fn change_rows(repo_db: &sqlx::PgPool, after_tick: usize) -> anyhow::Result<()> {
    let sql = if after_tick + 2 < TICKS {
        format!("UPDATE repo SET updated_at = now() WHERE id % 1000 = {after_tick}")
    } else if after_tick + 2 == TICKS {
        format!("UPDATE repo SET name = name || '{RENAMED}' WHERE id % 10000 = 7 AND deleted_at IS NULL")
    } else {
        return Ok(());
    };
    sqlx::query(&sql).execute(repo_db).await.with_context(|| format!("changing rows: {sql}"))?;
    Ok(())
}

/// Undoes the renames (also those of a run that was interrupted).
async fn restore_renamed(repo_db: &sqlx::PgPool) -> anyhow::Result<()> {
    let sql = format!("UPDATE repo SET name = left(name, -{}) WHERE name LIKE '%{RENAMED}'", RENAMED.len());
    sqlx::query(&sql).execute(repo_db).await.context("restoring renamed repos")?;
    Ok(())
}

/// Polls the sidecar's metrics until [`TICKS`] ticks completed; each tick's duration from the
/// histogram's sum, the peak RSS from `/proc`.
async fn watch_ticks(
    child: &mut Child,
    admin: &str,
    asked: &Asked,
    repo_db: &sqlx::PgPool,
) -> anyhow::Result<Measured> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut last_count, mut last_sum) = (0u64, 0.0f64);
    let mut ticks = Vec::new();
    let mut asked_at = Vec::new();
    let mut peak_before_renames = 0;
    let mut peak_after_renames = 0;
    let mut first_read = Duration::ZERO;
    while ticks.len() < TICKS {
        anyhow::ensure!(Instant::now() < deadline, "the sidecar completed {} ticks in 10 minutes", ticks.len());
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the sidecar exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(response) = client.get(format!("http://{admin}/metrics")).send().await else { continue };
        let text = response.text().await?;
        let (Some(count), Some(sum)) = (
            metric(&text, "clonekeeper_tick_duration_seconds_count"),
            metric(&text, "clonekeeper_tick_duration_seconds_sum"),
        ) else {
            continue;
        };
        let count = count as u64;
        if count > last_count {
            if ticks.is_empty() {
                let read = metric(&text, "clonekeeper_repo_db_read_duration_seconds_sum{kind=\"full\"}");
                first_read = Duration::from_secs_f64(read.context("the first tick's full read is timed")?);
            }
            ticks.push(Duration::from_secs_f64((sum - last_sum) / (count - last_count) as f64));
            asked_at.push((asked.progress_names.load(Ordering::Relaxed), asked.progress_calls.load(Ordering::Relaxed)));
            (last_count, last_sum) = (count, sum);
            // Only the first tick and the last read in full.
            let full_reads = metric(&text, "clonekeeper_repo_db_reads_total{kind=\"full\"}").unwrap_or(0.0);
            let expected = if ticks.len() == TICKS { 2.0 } else { 1.0 };
            anyhow::ensure!(
                full_reads == expected,
                "after tick {} the sidecar had made {full_reads} full reads, not {expected}: the ticks drifted \
                 against full_interval = {FULL_INTERVAL}",
                ticks.len()
            );
            if ticks.len() == TICKS - 2 {
                peak_before_renames = vm_hwm(child.id())?;
            }
            if ticks.len() == TICKS - 1 {
                peak_after_renames = vm_hwm(child.id())?;
            }
            if ticks.len() < TICKS {
                change_rows(repo_db, ticks.len()).await?;
            }
        }
    }
    let peak_rss = vm_hwm(child.id())?;
    let first_sweep_names = asked_at[0].0;
    // The incremental ticks only: the seventh sweeps again, as the first did.
    let last_incremental = TICKS - 2;
    let later = last_incremental as f64;
    let names = (asked_at[last_incremental].0 - asked_at[0].0) as f64 / later;
    let calls = (asked_at[last_incremental].1 - asked_at[0].1) as f64 / later;
    Ok(Measured {
        ticks,
        first_read,
        peak_before_renames,
        peak_after_renames,
        peak_rss,
        first_sweep_names,
        progress_names_per_tick: names,
        progress_calls_per_tick: calls,
    })
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.trim().split(' ').next()?.parse().ok())
}

fn vm_hwm(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmHWM in /proc/PID/status")?;
    Ok(kb * 1024)
}

/// The release `clonekeeper` beside this harness, built (or brought up to date) first, with the
/// features this harness was built with, so no dependency is built again.
fn sidecar_binary() -> anyhow::Result<PathBuf> {
    let features = if cfg!(feature = "rego") { "clonekeeper-bench/rego" } else { "" };
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--locked", "-p", "clonekeeper-bench", "-p", "clonekeeper", "--bins"])
        .args(["--features", features])
        .status()
        .context("building the clonekeeper binary")?;
    anyhow::ensure!(status.success(), "cargo build of clonekeeper failed");
    let exe = std::env::current_exe()?;
    Ok(exe.parent().unwrap_or(Path::new(".")).join("clonekeeper"))
}

//! `clonekeeper demo`: the seed failure and its cure, on one machine, with nothing but git.
//!
//! Generates bare git repositories, an embedded SQLite repo DB (late-2020 shape) that wants
//! them, and dev gitserver shards; runs the real sidecar against them with a live progress
//! bar. Midway it kills one shard and restarts it with an empty queue, as the original
//! gitserver lost its queue on restart, and shows every repo cloned all the same.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};

use super::logging;
use crate::admin::AdminState;
use crate::config::{Config, LogFormat};
use crate::db::Database;
use crate::schedule::{BuiltinOrder, BuiltinRetry};
use crate::sidecar::{self, Parts, Shared};
use crate::sources::gitserver::{ClientConfig, GitserverClient};
use crate::sources::repo_db::{RepoDb, SQLITE_SCHEMA_2020_10};
use crate::state::StateStore;
use crate::status::Status;

/// What `clonekeeper demo` was asked for.
pub struct Options {
    pub repos: usize,
    pub shards: usize,
    pub clone_delay: Duration,
    pub dir: Option<PathBuf>,
    pub plain: bool,
}

/// How long the demo waits for every repo before it declares failure.
const DEADLINE: Duration = Duration::from_secs(300);

pub async fn main(options: Options) -> ExitCode {
    // The progress bar tells the story; RUST_LOG=info shows every dispatch.
    logging::init(LogFormat::Human, "off");
    match run(options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("clonekeeper demo: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(options: Options) -> anyhow::Result<bool> {
    anyhow::ensure!(options.repos > 0 && options.shards > 0, "--repos and --shards must be at least 1");
    let (dir, _tempdir) = work_dir(options.dir.as_deref(), "clonekeeper-demo-")?;
    println!("clonekeeper demo in {}", dir.display());

    let started = Instant::now();
    let sources = generate_repos(&dir.join("sources"), options.repos).await?;
    println!("  generated {} git repositories in {:.1}s", sources.len(), started.elapsed().as_secs_f64());

    let db_path = dir.join("repos.db");
    let db_url = format!("sqlite://{}", db_path.display());
    write_repo_db(&db_url, &sources).await?;
    println!("  wrote the repo DB {} (late-2020 schema, {} repos)", db_path.display(), sources.len());

    let mut shards = Vec::new();
    for idx in 0..options.shards {
        let config = gitserver_dev::Config {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            repos_dir: dir.join(format!("gitserver-{idx}")),
            max_concurrent_clones: 4,
            clone_delay: options.clone_delay,
        };
        let server = gitserver_dev::Server::start(config.clone()).context("starting a dev gitserver")?;
        println!("  dev gitserver shard {idx} on {}", server.addr());
        shards.push((config, Some(server)));
    }
    let addrs: Vec<String> = shards.iter().filter_map(|(_, s)| s.as_ref()).map(|s| s.addr().to_string()).collect();

    let vars = [
        ("CLONEKEEPER_REPO_DB_URL", db_url.clone()),
        ("CLONEKEEPER_GITSERVER_ADDRS", addrs.join(",")),
        ("CLONEKEEPER_SYNC_INTERVAL", "500ms".to_string()),
        ("CLONEKEEPER_DISPATCH_BACKOFF_BASE", "1s".to_string()),
        ("CLONEKEEPER_DISPATCH_BACKOFF_MAX", "5s".to_string()),
        ("CLONEKEEPER_ADMIN_LISTEN", "127.0.0.1:0".to_string()),
    ];
    let config = Config::load_from(None, vars.map(|(k, v)| (k.to_string(), v))).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shared = Shared::new(config.stall_after);
    let status = Arc::clone(&shared.status);
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(64);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let admin_state = AdminState {
        status: Arc::clone(&shared.status),
        metrics: Arc::clone(&shared.metrics),
        liveness: Arc::clone(&shared.liveness),
        control: control_tx.clone(),
        probes: Vec::new(),
        reload: None,
        token: None,
    };
    tokio::spawn(crate::admin::serve(config.admin_listen, admin_state, bound_tx, stopped(stop_rx.clone())));
    let admin = bound_rx.await.context("starting the admin API")?;
    println!("  sidecar admin API on http://{admin}  (try: clonekeeper status --admin {admin})");

    let parts = Parts {
        repo_db: RepoDb::open(Database::connect(&db_url).await?).await?,
        state: StateStore::open(Database::connect(&db_url).await?).await?,
        client: GitserverClient::new(ClientConfig::default())?,
        prioritizer: Arc::new(BuiltinOrder),
        retry: Arc::new(BuiltinRetry { backoff: config.backoff, max_attempts: None }),
        rate_limits: Arc::new(crate::schedule::NoLimits),
        policy: None,
        config,
    };
    let sidecar = tokio::spawn(sidecar::run(parts, shared, control_rx, stopped(stop_rx.clone())));

    let total = sources.len() as u64;
    let bar = progress_bar(total, options.plain);
    let victim = shards.len() - 1;
    let mut killed_at: Option<Instant> = None;
    // What the sidecar knew when the shard was killed, left behind for `clonekeeper replay`.
    let snapshot_path = match &options.dir {
        Some(dir) => dir.join("snapshot.ndjson.gz"),
        None => std::env::temp_dir().join("clonekeeper-demo-snapshot.ndjson.gz"),
    };
    let mut snapshot = None;
    let mut restarted = false;
    let mut last_plain = Instant::now();
    let done = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = status.load_full();
        bar.set_position(now.totals.cloned);
        bar.set_message(progress_message(&now));
        if options.plain && last_plain.elapsed() >= Duration::from_secs(1) {
            println!("  {} / {} cloned  {}", now.totals.cloned, total, progress_message(&now));
            last_plain = Instant::now();
        }
        if killed_at.is_none() && now.totals.cloned * 5 >= total * 2 {
            if let Some(server) = shards[victim].1.take() {
                server.kill();
            }
            bar.println(format!(
                "  killed gitserver shard {victim} mid-clone at {} / {total} cloned: its in-memory queue is gone",
                now.totals.cloned
            ));
            killed_at = Some(Instant::now());
            snapshot = Some(tokio::spawn(take_snapshot(control_tx.clone(), snapshot_path.clone())));
        }
        if !restarted && killed_at.is_some_and(|at| at.elapsed() >= Duration::from_secs(2)) {
            let mut config = shards[victim].0.clone();
            config.listen = addrs[victim].parse().context("shard address")?;
            shards[victim].1 = Some(gitserver_dev::Server::start(config).context("restarting the killed shard")?);
            bar.println(format!(
                "  restarted gitserver shard {victim} with an empty queue; clonekeeper re-dispatches what it lost"
            ));
            restarted = true;
        }
        if restarted && now.totals.cloned == total && now.totals.desired == total {
            break true;
        }
        if started.elapsed() > DEADLINE {
            break false;
        }
    };
    bar.finish_and_clear();
    let snapshot = match snapshot {
        Some(task) => task.await.map_err(|e| e.to_string()).and_then(|written| written),
        None => Err("the shard was never killed".to_string()),
    };
    let last = status.load_full();
    let _ = stop_tx.send(true);
    let _ = sidecar.await;
    for (_, server) in shards {
        if let Some(server) = server {
            server.kill();
        }
    }

    println!();
    println!(
        "{}",
        if done { "Every repository is cloned." } else { "Gave up waiting: not every repository is cloned." }
    );
    println!("  repos:          {total}");
    println!("  cloned:         {}", last.totals.cloned);
    println!("  elapsed:        {:.1}s", started.elapsed().as_secs_f64());
    println!("  dispatches:     {}", last.dispatches.started);
    println!("  re-dispatches:  {}", last.dispatches.redispatched);
    println!("  errors:         {} (dispatches that failed, e.g. to the killed shard)", last.dispatches.failed);
    for shard in &last.shards {
        println!("  shard {}: {} of {} cloned", shard.addr, shard.counts.cloned, shard.counts.desired);
    }
    println!();
    match snapshot {
        Ok(()) => {
            println!("A snapshot of what clonekeeper knew when the shard was killed: {}", snapshot_path.display());
            println!("See what the example policies would have done from there, side by side:");
            println!("  {}", replay_command(&snapshot_path));
        }
        Err(error) => println!("No snapshot was left behind: {error}"),
    }
    Ok(done)
}

/// Asks the tick loop for a snapshot and writes it to `path`.
async fn take_snapshot(
    control: tokio::sync::mpsc::Sender<crate::sidecar::ControlRequest>,
    path: PathBuf,
) -> Result<(), String> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = crate::sidecar::ControlRequest::Snapshot { reply };
    control.send(request).await.map_err(|_| "the sidecar has stopped".to_string())?;
    let parts = tokio::time::timeout(Duration::from_secs(60), answer)
        .await
        .map_err(|_| "the sidecar did not answer within 60s".to_string())?
        .map_err(|_| "the sidecar has stopped".to_string())??;
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        crate::replay::capture::write(&parts, file).map_err(|e| format!("{}: {e}", path.display()))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The replay command for the demo's snapshot, with the example policies where they are
/// built (`scripts/build-policies.sh` puts them in `target/policies/`).
fn replay_command(snapshot: &Path) -> String {
    let mut command = format!("clonekeeper replay {} --top 10 --policy builtin", snapshot.display());
    let built: Vec<String> = ["popular-first", "org-tiers"]
        .iter()
        .map(|name| format!("target/policies/{name}.wasm"))
        .filter(|path| Path::new(path).is_file())
        .collect();
    if built.is_empty() {
        command.push_str(" --policy target/policies/popular-first.wasm   (scripts/build-policies.sh builds it)");
    }
    for path in built {
        command.push_str(&format!(" --policy {path}"));
    }
    command
}

fn progress_bar(total: u64, plain: bool) -> ProgressBar {
    if plain {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("  [{elapsed_precise}] {bar:40.green/white} {pos:>4}/{len} cloned  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

pub(super) fn progress_message(status: &Status) -> String {
    let shards: Vec<String> = status
        .shards
        .iter()
        .enumerate()
        .map(|(idx, s)| {
            let mark = if s.reachable { "" } else { " DOWN" };
            format!("s{idx} {}/{}{mark}", s.counts.cloned, s.counts.desired)
        })
        .collect();
    format!(
        "{} | in flight {} | retries {} | errors {}",
        shards.join(" "),
        status.totals.in_flight,
        status.dispatches.redispatched,
        status.dispatches.failed
    )
}

/// The demo's folder: `dir` (created if missing), or a temporary one removed when the returned
/// guard is dropped.
pub(super) fn work_dir(dir: Option<&Path>, prefix: &str) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok((dir.to_path_buf(), None))
        }
        None => {
            let temp = tempfile::Builder::new().prefix(prefix).tempdir().context("creating a temporary directory")?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

/// A generated repository: its name in the repo DB and the path it clones from.
pub(super) struct Source {
    pub name: String,
    pub path: PathBuf,
}

/// Creates `count` bare repositories with one commit each, a few at a time.
pub(super) async fn generate_repos(dir: &Path, count: usize) -> anyhow::Result<Vec<Source>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let sources: Vec<Source> = (0..count)
        .map(|i| {
            let org = ["acme", "globex", "initech", "umbrella"][i % 4];
            let name = format!("github.com/{org}/service-{i:04}");
            Source { path: dir.join(format!("{org}-service-{i:04}.git")), name }
        })
        .collect();
    let made = futures::stream::iter(sources.iter().map(|s| {
        let (path, name) = (s.path.clone(), s.name.clone());
        tokio::task::spawn_blocking(move || gitserver_dev::fixture::source_repo(&path, &name))
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    for result in made {
        result.context("a repository generator task failed")??;
    }
    Ok(sources)
}

/// Creates the embedded repo DB and fills it with the generated repos.
pub(super) async fn write_repo_db(url: &str, sources: &[Source]) -> anyhow::Result<()> {
    let Database::Sqlite(pool) = Database::connect(url).await? else {
        anyhow::bail!("the demo's repo DB must be SQLite");
    };
    sqlx::raw_sql(SQLITE_SCHEMA_2020_10).execute(&pool).await.context("creating the repo DB schema")?;
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT OR IGNORE INTO external_services (id, kind, display_name, config) VALUES (1, 'GITHUB', 'Demo GitHub', '{}')")
        .execute(&mut *tx)
        .await?;
    for (idx, source) in sources.iter().enumerate() {
        let id = idx as i64 + 1;
        sqlx::query("INSERT OR IGNORE INTO repo (id, name, external_service_type, external_service_id, external_id, created_at, metadata) VALUES (?, ?, 'github', '1', ?, ?, ?)")
            .bind(id)
            .bind(&source.name)
            .bind(format!("R_{id}"))
            .bind(1_600_000_000_000i64 + id * 60_000)
            .bind(format!("{{\"stargazerCount\": {}}}", demo_stars(idx)))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT OR IGNORE INTO external_service_repos (external_service_id, repo_id, clone_url) VALUES (1, ?, ?)",
        )
        .bind(id)
        .bind(source.path.to_string_lossy().as_ref())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    pool.close().await;
    Ok(())
}

/// Stars of the demo's `idx`-th repo: a few popular ones among many with few, scattered
/// over the list, so ordering by stars differs from the built-in oldest-first order.
fn demo_stars(idx: usize) -> u64 {
    let spread = (idx as u64).wrapping_mul(2_654_435_761) % 1_000;
    if spread < 50 {
        5_000 + spread * 97
    } else {
        spread % 40
    }
}

//! `clonekeeper demo --chaos DURATION`: the demo's repositories, repo DB and dev shards, with
//! the sidecar as a real child process (`clonekeeper run`), while shards and the sidecar are
//! killed at random (SIGKILL for the sidecar; the shards lose their clone queue) for the given
//! time. It ends once every repository is cloned, with an invariant report checked from the
//! outside: each shard's own list, its record of concurrent `/repo-update` calls, and the
//! sidecar's readiness.
//!
//! The seeded simulator (`clonekeeper-sim`) checks the same invariants over thousands of fault
//! schedules; this shows them on real processes, git and HTTP.

use std::collections::BTreeMap;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::{Rng, SeedableRng};

use super::demo::{self, Options};
use crate::model::RepoName;
use crate::routing::{Routing, ShardMap};
use crate::sources::gitserver::{ClientConfig, GitserverClient};
use crate::status::Status;

/// After the storm, how long every repository has to be cloned.
const SETTLE: Duration = Duration::from_secs(180);

pub async fn main(options: Options, window: Duration, seed: Option<u64>) -> ExitCode {
    match run(options, window, seed).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("clonekeeper demo --chaos: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// A dev shard that can be killed and brought back on the same address.
struct Shard {
    config: gitserver_dev::Config,
    server: Option<gitserver_dev::Server>,
    back_at: Option<Instant>,
}

/// The sidecar child process.
struct Sidecar {
    command: tokio::process::Command,
    child: Option<tokio::process::Child>,
    back_at: Option<Instant>,
}

impl Sidecar {
    fn start(&mut self) -> anyhow::Result<()> {
        self.child = Some(self.command.spawn().context("starting `clonekeeper run`")?);
        self.back_at = None;
        Ok(())
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: no shutdown path runs, as when a node dies.
            let _ = child.kill().await;
        }
    }
}

/// What the shards recorded of `/repo-update` calls, kept across their restarts.
#[derive(Default)]
struct Dispatches {
    clones_started: usize,
    max_concurrent: BTreeMap<String, usize>,
}

impl Dispatches {
    async fn collect(&mut self, http: &reqwest::Client, addr: &str) {
        let url = format!("http://{addr}/debug/dispatches");
        let Ok(answer) = http.get(url).send().await else { return };
        let Ok(log) = answer.json::<gitserver_dev::DispatchLog>().await else { return };
        self.clones_started += log.total;
        for (repo, n) in log.max_concurrent {
            let max = self.max_concurrent.entry(repo).or_default();
            *max = (*max).max(n);
        }
    }
}

async fn run(mut options: Options, window: Duration, seed: Option<u64>) -> anyhow::Result<bool> {
    anyhow::ensure!(options.repos > 0 && options.shards > 0, "--repos and --shards must be at least 1");
    let seed = seed.unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Clones slow enough that the storm lands on work in progress: the whole set takes about
    // the storm's length at the shards' 4 concurrent clones each.
    let spread = window.mul_f64(options.shards as f64 * 4.0 * 0.8 / options.repos as f64);
    options.clone_delay = options.clone_delay.max(spread).min(Duration::from_secs(10));

    let (dir, _tempdir) = demo::work_dir(options.dir.as_deref(), "clonekeeper-chaos-")?;
    println!(
        "clonekeeper demo --chaos {} in {} (chaos seed {seed})",
        humantime::format_duration(window),
        dir.display()
    );
    let started = Instant::now();
    let sources = demo::generate_repos(&dir.join("sources"), options.repos).await?;
    let db_path = dir.join("repos.db");
    let db_url = format!("sqlite://{}", db_path.display());
    demo::write_repo_db(&db_url, &sources).await?;
    println!("  {} git repositories and a SQLite repo DB at {}", sources.len(), db_path.display());

    let mut shards = Vec::new();
    for idx in 0..options.shards {
        let mut config = gitserver_dev::Config {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            repos_dir: dir.join(format!("gitserver-{idx}")),
            max_concurrent_clones: 4,
            clone_delay: options.clone_delay,
        };
        let server = gitserver_dev::Server::start(config.clone()).context("starting a dev gitserver")?;
        config.listen = server.addr();
        shards.push(Shard { config, server: Some(server), back_at: None });
    }
    let addrs: Vec<String> = shards.iter().map(|s| s.config.listen.to_string()).collect();
    println!("  dev gitserver shards on {} (each clone takes {:?} more)", addrs.join(", "), options.clone_delay);

    let admin = free_port().context("finding a free port for the admin API")?;
    let log_path = dir.join("sidecar.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = tokio::process::Command::new(std::env::current_exe().context("finding this executable")?);
    command
        .arg("run")
        .env("CLONEKEEPER_REPO_DB_URL", &db_url)
        .env("CLONEKEEPER_GITSERVER_ADDRS", addrs.join(","))
        .env("CLONEKEEPER_SYNC_INTERVAL", "500ms")
        .env("CLONEKEEPER_DISPATCH_BACKOFF_BASE", "1s")
        .env("CLONEKEEPER_DISPATCH_BACKOFF_MAX", "5s")
        .env("CLONEKEEPER_ADMIN_LISTEN", admin.clone())
        .env("CLONEKEEPER_LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let mut sidecar = Sidecar { command, child: None, back_at: None };
    sidecar.start()?;
    println!(
        "  sidecar: `clonekeeper run` as pid {:?}, admin API http://{admin}, log {}",
        sidecar.child.as_ref().and_then(|c| c.id()),
        log_path.display()
    );

    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let total = sources.len() as u64;
    let mut dispatches = Dispatches::default();
    let (mut sidecar_kills, mut shard_kills) = (0u32, 0u32);
    let storm_started = Instant::now();
    let mut next_fault = storm_started + Duration::from_millis(rng.random_range(1_000..3_000));
    let mut last: Status = Status::default();
    let mut last_line = Instant::now();
    let done = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        let storming = now.duration_since(storm_started) < window;
        if storming && now >= next_fault {
            next_fault = now + Duration::from_millis(rng.random_range(1_500..5_000));
            if rng.random_bool(0.4) && sidecar.child.is_some() {
                sidecar.kill().await;
                sidecar_kills += 1;
                sidecar.back_at = Some(now + Duration::from_millis(rng.random_range(300..2_000)));
                println!("  [{:>5.1}s] SIGKILL the sidecar", started.elapsed().as_secs_f64());
            } else {
                let idx = rng.random_range(0..shards.len());
                if let Some(server) = shards[idx].server.take() {
                    dispatches.collect(&http, &addrs[idx]).await;
                    server.kill();
                    shard_kills += 1;
                    shards[idx].back_at = Some(now + Duration::from_millis(rng.random_range(500..3_000)));
                    println!(
                        "  [{:>5.1}s] killed shard {idx}: its clone queue is gone",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
        if sidecar.back_at.is_some_and(|at| now >= at) {
            sidecar.start()?;
            println!("  [{:>5.1}s] sidecar restarted", started.elapsed().as_secs_f64());
        }
        for (idx, shard) in shards.iter_mut().enumerate() {
            if shard.back_at.is_some_and(|at| now >= at) {
                shard.server = Some(gitserver_dev::Server::start(shard.config.clone()).context("restarting a shard")?);
                shard.back_at = None;
                println!("  [{:>5.1}s] shard {idx} restarted with an empty queue", started.elapsed().as_secs_f64());
            }
        }
        if let Ok(answer) = http.get(format!("http://{admin}/v1/status")).send().await {
            if let Ok(status) = answer.json::<Status>().await {
                last = status;
            }
        }
        if last_line.elapsed() >= Duration::from_secs(2) {
            println!(
                "  [{:>5.1}s] {} / {total} cloned  {}",
                started.elapsed().as_secs_f64(),
                last.totals.cloned,
                demo::progress_message(&last)
            );
            last_line = Instant::now();
        }
        let calm = !storming && sidecar.child.is_some() && shards.iter().all(|s| s.server.is_some());
        if calm && last.totals.cloned == total && last.totals.desired == total {
            break true;
        }
        if now.duration_since(storm_started) > window + SETTLE {
            break false;
        }
    };
    println!();
    println!(
        "{} after {:.1}s: {sidecar_kills} sidecar kills, {shard_kills} shard kills.",
        if done { "Every repository is cloned" } else { "Gave up waiting" },
        started.elapsed().as_secs_f64()
    );

    // The invariant report, checked from the outside.
    for addr in &addrs {
        dispatches.collect(&http, addr).await;
    }
    let routes = ShardMap::new(addrs.clone(), Routing::Md5).context("the shard map")?;
    let client = GitserverClient::new(ClientConfig::default())?;
    let mut lists = Vec::new();
    for addr in &addrs {
        lists.push(client.list_cloned(addr).await.with_context(|| format!("listing shard {addr}"))?);
    }
    let on_owner = sources
        .iter()
        .filter(|s| {
            RepoName::normalize(&s.name)
                .is_some_and(|name| lists[usize::from(routes.shard_for(&name))].contains(name.as_str()))
        })
        .count();
    let overlapping: Vec<(&String, &usize)> = dispatches.max_concurrent.iter().filter(|(_, &n)| n > 1).collect();
    // The loop forgets the records of confirmed clones on the tick that confirms them; the
    // writer stores that a moment later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let records = attempt_records(&db_url).await;
    let ready = http.get(format!("http://{admin}/readyz")).send().await.map(|a| a.status().as_u16()).unwrap_or(0);
    let checks = [
        (
            on_owner == sources.len(),
            format!(
                "every repository cloned on its owning shard ({on_owner}/{}, from each shard's own list)",
                sources.len()
            ),
        ),
        (
            overlapping.is_empty(),
            format!(
                "no repository dispatched twice at once ({} clones started; repos overlapping: {overlapping:?})",
                dispatches.clones_started
            ),
        ),
        (ready == 200, format!("the sidecar is ready after the storm (GET /readyz: {ready})")),
        (
            records == Some(0),
            format!("every attempt record retired once its repo is cloned (state DB records left: {records:?})"),
        ),
    ];
    println!("Invariants:");
    for (ok, line) in &checks {
        println!("  {} {line}", if *ok { "ok    " } else { "FAILED" });
    }
    println!("Replay the kill schedule: clonekeeper demo --chaos {} --seed {seed}", humantime::format_duration(window));
    println!("The same invariants over thousands of seeded schedules: cargo run -p clonekeeper-sim -- --seeds 2000");
    sidecar.kill().await;
    drop(shards);
    Ok(done && checks.iter().all(|(ok, _)| *ok))
}

/// How many attempt records the sidecar's state DB (the demo's SQLite file) holds.
async fn attempt_records(url: &str) -> Option<i64> {
    let crate::db::Database::Sqlite(pool) = crate::db::Database::connect(url).await.ok()? else { return None };
    let count = sqlx::query_scalar("SELECT count(*) FROM clonekeeper_attempts").fetch_one(&pool).await.ok();
    pool.close().await;
    count
}

/// A port nothing listens on right now, for the sidecar's admin API across its restarts.
fn free_port() -> std::io::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

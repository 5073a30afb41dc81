//! Helpers shared by the end-to-end tests: a Postgres repo DB per test ([`db`]), dev gitserver
//! shards as child processes ([`shard`]), the sidecar as a child process ([`sidecar`]), source
//! repositories, an independent implementation of the routing schemes ([`routing`]) and
//! bounded polling.
//!
//! Nothing here sleeps to synchronise: every wait polls an observable condition until a
//! generous deadline, and the deadline only bounds a failure, it is never a timing assertion.

pub mod browser;
pub mod db;
pub mod hostile;
pub mod postgres;
pub mod routing;
pub mod shard;
pub mod sidecar;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use gitserver_dev::DispatchLog;

/// How long any wait may take before the test fails. Generous: the tests run on small
/// machines, several at once; the deadline bounds a hang, it measures nothing.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(50);

/// Serves `router` as a stub gitserver shard on a loopback port; returns its address and the
/// server task (aborting it stops the shard).
pub async fn serve_stub_shard(router: axum::Router) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the stub shard");
    let addr = listener.local_addr().expect("a bound address").to_string();
    (addr, tokio::spawn(async move { axum::serve(listener, router).await }))
}

/// Polls `probe` until it returns `Ok`, at most [`DEADLINE`]; panics naming `what` and the last
/// reason the probe gave.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last observation: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Creates one bare source repository per name under `dir` (a few git processes at once) and
/// returns their clone URLs (absolute paths), in the order of `names`.
pub async fn source_repos(dir: &Path, names: &[String]) -> Vec<String> {
    let dir = dir.to_path_buf();
    let names = names.to_vec();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).expect("creating the source directory");
        let paths: Vec<PathBuf> = (0..names.len()).map(|i| dir.join(format!("{i}.git"))).collect();
        let jobs: Vec<(&PathBuf, &String)> = paths.iter().zip(&names).collect();
        std::thread::scope(|scope| {
            for chunk in jobs.chunks(jobs.len().div_ceil(4).max(1)) {
                scope.spawn(move || {
                    for (path, name) in chunk {
                        gitserver_dev::fixture::source_repo(path, name).expect("making a source repository");
                    }
                });
            }
        });
        paths.iter().map(|p| p.to_str().expect("temporary paths are UTF-8").to_owned()).collect()
    })
    .await
    .expect("the source generator panicked")
}

/// A repo DB (2021 shape) that wants `names`, each with a source repository under `dir`:
/// repo `i` was created `i` minutes after the first and has `stars(i)` stars, so the built-in
/// order (oldest first) takes them in index order.
pub async fn aged_repo_db(dir: &Path, names: &[String], stars: impl Fn(usize) -> i32) -> db::PgDb {
    let urls = source_repos(&dir.join("sources"), names).await;
    let db = db::PgDb::create(db::Shape::GitserverRepos2021).await;
    let rows: Vec<db::NewRepo> = names
        .iter()
        .zip(&urls)
        .enumerate()
        .map(|(i, (name, url))| db::NewRepo::new(name, url).created(i as i64).stars(stars(i)))
        .collect();
    db.insert_repos(&rows).await;
    db
}

/// An example policy module built by `scripts/build-policies.sh` (which `scripts/test.sh` runs).
pub fn example_policy(name: &str) -> PathBuf {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/policies/{name}.wasm"));
    assert!(module.is_file(), "{} is missing: scripts/build-policies.sh builds it", module.display());
    module
}

/// Runs `command` (stdout piped) to its end, at most `limit`; on timeout kills its process
/// group and fails showing `log`. Returns the exit status and what it printed.
pub async fn run_to_end(
    mut command: std::process::Command,
    limit: Duration,
    log: &Path,
) -> (std::process::ExitStatus, String) {
    let mut child = command.stdout(std::process::Stdio::piped()).spawn().expect("starting the command");
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling the command") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            kill_process_group(&mut child);
            panic!("did not end in {limit:?}; log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        tokio::time::sleep(POLL).await;
    };
    let stdout = std::io::read_to_string(child.stdout.take().expect("piped")).unwrap_or_default();
    (status, stdout)
}

/// A clone URL that git cannot clone: an absolute path that does not exist.
pub fn broken_url(dir: &Path) -> String {
    dir.join("does-not-exist").join("broken.git").to_str().expect("temporary paths are UTF-8").to_owned()
}

/// Kills a child process and every process of its group (the child is started as a group
/// leader, so this also takes its git children, as a pod kill would), then reaps it.
pub fn kill_process_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let pid = libc::pid_t::try_from(child.id()).expect("pids fit pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the group is our child's own,
        // and the child is not reaped yet, so its pid (and group id) cannot have been reused.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `lines` lines of a log file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// Number of clone starts per repo over several dispatch logs.
pub fn starts_per_repo<'a>(logs: impl IntoIterator<Item = &'a DispatchLog>) -> BTreeMap<String, usize> {
    let mut starts = BTreeMap::new();
    for log in logs {
        for event in &log.events {
            *starts.entry(event.repo.clone()).or_default() += 1;
        }
    }
    starts
}

/// Asserts that no `/repo-update` for one repo ever overlapped another for the same repo.
pub fn assert_never_concurrent(label: &str, log: &DispatchLog) {
    let overlapping: Vec<_> = log.max_concurrent.iter().filter(|(_, &n)| n > 1).collect();
    assert!(overlapping.is_empty(), "{label}: repos dispatched more than once at a time: {overlapping:?}");
}

/// Starts `n` dev shards under `dir/shard-<i>`.
pub fn start_shards(dir: &Path, n: usize, clone_delay: Duration) -> Vec<shard::DevShard> {
    (0..n).map(|i| shard::DevShard::start(&dir.join(format!("shard-{i}")), clone_delay)).collect()
}

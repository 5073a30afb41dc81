//! The sidecar as a child process (`clonekeeper-under-test run --config FILE`), with its
//! config and log in a temporary directory, its status read over its admin API.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clonekeeper::status::Status;

use super::{kill_process_group, tail, DEADLINE, POLL};

pub const BIN: &str = env!("CARGO_BIN_EXE_clonekeeper-under-test");

/// What the tests vary in the sidecar's config; the rest is fixed for fast ticks.
#[derive(Clone, Debug)]
pub struct SidecarConfig {
    pub repo_db_url: String,
    pub addrs: Vec<String>,
    pub routing: &'static str,
    pub interval: &'static str,
    pub backoff_base: &'static str,
    pub backoff_max: &'static str,
    pub max_in_flight_per_shard: u32,
    pub writeback: bool,
    /// `[admin] token`, needed by the mutating admin calls.
    pub admin_token: Option<&'static str>,
    /// `[policy] dir`: the watched folder of policy modules.
    pub policy_dir: Option<std::path::PathBuf>,
    /// Further settings as `CLONEKEEPER_<SECTION>_<KEY>` variables, e.g.
    /// `("CLONEKEEPER_SYNC_STALL_AFTER", "2s")`.
    pub env: Vec<(&'static str, String)>,
    /// `[policy] cache_dir`: where precompiled policy code is cached (with `policy_dir`).
    pub policy_cache_dir: Option<std::path::PathBuf>,
}

impl SidecarConfig {
    pub fn new(repo_db_url: &str, addrs: Vec<String>) -> SidecarConfig {
        SidecarConfig {
            repo_db_url: repo_db_url.to_owned(),
            addrs,
            routing: "md5",
            interval: "200ms",
            backoff_base: "500ms",
            backoff_max: "3s",
            max_in_flight_per_shard: 5,
            writeback: false,
            admin_token: None,
            policy_dir: None,
            env: Vec::new(),
            policy_cache_dir: None,
        }
    }

    /// The TOML file, listening for admin requests on `admin_port`.
    pub fn render(&self, admin_port: u16) -> String {
        let quote = |s: &str| serde_json::to_string(s).expect("strings serialise");
        let token = self.admin_token.map(|t| format!("token = {}\n", quote(t))).unwrap_or_default();
        let addrs: Vec<String> = self.addrs.iter().map(|a| quote(a)).collect();
        format!(
            "[repo_db]\nurl = {url}\n\n\
             [gitserver]\naddrs = [{addrs}]\nrouting = {routing}\n\n\
             [sync]\ninterval = {interval}\n\n\
             [dispatch]\nmax_in_flight_per_shard = {per_shard}\nbackoff_base = {base}\nbackoff_max = {max}\n\n\
             [writeback]\nenabled = {writeback}\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n{token}\n\
             [log]\nlevel = \"info\"\n{policy}",
            url = quote(&self.repo_db_url),
            addrs = addrs.join(", "),
            routing = quote(self.routing),
            interval = quote(self.interval),
            per_shard = self.max_in_flight_per_shard,
            base = quote(self.backoff_base),
            max = quote(self.backoff_max),
            writeback = self.writeback,
            policy = self
                .policy_dir
                .as_ref()
                .map(|dir| {
                    let cache = self
                        .policy_cache_dir
                        .as_ref()
                        .map(|cache| format!("cache_dir = {}\n", quote(&cache.to_string_lossy())));
                    format!("\n[policy]\ndir = {}\n{}", quote(&dir.to_string_lossy()), cache.unwrap_or_default())
                })
                .unwrap_or_default(),
        )
    }
}

/// A free loopback port: bound, read and released (the sidecar binds it a moment later).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("a bound address").port()
}

/// A `clonekeeper-under-test run` command with no `CLONEKEEPER_*` variable inherited from the
/// test's environment, logging to `log`.
pub fn command(log: &std::path::Path) -> Command {
    let stderr = OpenOptions::new().create(true).append(true).open(log).expect("opening the sidecar log");
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CLONEKEEPER_") {
            command.env_remove(name);
        }
    }
    command
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0);
    command
}

pub struct Sidecar {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    admin_port: u16,
    child: Mutex<Option<Child>>,
    http: reqwest::Client,
    env: Vec<(&'static str, String)>,
}

impl Sidecar {
    pub fn start(config: &SidecarConfig) -> Sidecar {
        let dir = tempfile::Builder::new().prefix("ck-sidecar-").tempdir().expect("a temporary directory");
        let admin_port = free_port();
        let config_path = dir.path().join("clonekeeper.toml");
        std::fs::write(&config_path, config.render(admin_port)).expect("writing the config");
        let log_path = dir.path().join("clonekeeper.log");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client");
        let env = config.env.clone();
        let sidecar = Sidecar { dir, config_path, log_path, admin_port, child: Mutex::new(None), http, env };
        sidecar.spawn();
        sidecar
    }

    fn spawn(&self) {
        let child = command(&self.log_path)
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .current_dir(self.dir.path())
            .spawn()
            .expect("starting clonekeeper-under-test");
        *self.child.lock().expect("not poisoned") = Some(child);
    }

    /// SIGKILL; returns once the process is reaped.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().expect("not poisoned").take() {
            kill_process_group(&mut child);
        }
    }

    /// A new process with the same config file (same DB, shards and admin port).
    pub fn restart(&self) {
        self.kill();
        self.spawn();
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the sidecar process.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.lock().expect("not poisoned");
        let child = child.as_ref().expect("the sidecar is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pids fit pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the child is not reaped yet
        // (we hold it), so its pid cannot have been reused.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
    }

    /// Waits for the process to exit by itself, at most `limit`; `None` if it is still running
    /// then (it is left running; dropping the `Sidecar` kills it).
    pub async fn wait_exit(&self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let mut child = self.child.lock().expect("not poisoned");
                let process = child.as_mut().expect("the sidecar was started");
                if let Some(exit) = process.try_wait().expect("polling the sidecar") {
                    child.take();
                    return Some(exit);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// `GET path` on the admin API: the status code and the body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        let url = self.url(path);
        let response = self.http.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        let code = response.status().as_u16();
        let body = response.text().await.map_err(|e| format!("GET {url}: reading the body: {e}"))?;
        Ok((code, body))
    }

    /// The raw `/v1/status` document.
    pub async fn status_json(&self) -> Result<serde_json::Value, String> {
        let url = self.url("/v1/status");
        let response = self.http.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        response.json().await.map_err(|e| format!("GET {url}: not JSON: {e}"))
    }

    /// `GET /v1/repos/{name}`: explain one repo.
    pub async fn explain(&self, name: &str) -> Result<clonekeeper::explain::Explain, String> {
        let url = self.url(&format!("/v1/repos/{name}"));
        let response = self.http.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        response.json().await.map_err(|e| format!("GET {url}: not an Explain: {e}"))
    }

    pub async fn status(&self) -> Result<Status, String> {
        let json = self.status_json().await?;
        serde_json::from_value(json).map_err(|e| format!("/v1/status is not a Status: {e}"))
    }

    /// Fails if the process has exited: a crashed sidecar should fail the test at once, with
    /// its log, rather than at the deadline.
    fn check_running(&self) {
        let mut child = self.child.lock().expect("not poisoned");
        if let Some(process) = child.as_mut() {
            if let Ok(Some(exit)) = process.try_wait() {
                child.take();
                panic!("the sidecar exited ({exit}); log tail:\n{}", self.log_tail(60));
            }
        }
    }

    /// Polls the status until `done` holds, at most [`DEADLINE`]; panics with the last status
    /// and the log tail otherwise.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Status) -> bool) -> Status {
        let deadline = Instant::now() + DEADLINE;
        let mut last_status: Option<Status> = None;
        let mut last_error: Option<String> = None;
        loop {
            self.check_running();
            match self.status().await {
                Ok(status) if done(&status) => return status,
                Ok(status) => last_status = Some(status),
                Err(error) => last_error = Some(error),
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}; last status: {last_status:#?}\n\
                     last status error: {last_error:?}\nsidecar log tail:\n{}",
                    self.log_tail(60)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path, lines)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- sidecar log (tail) ---\n{}", self.log_tail(60));
        }
    }
}

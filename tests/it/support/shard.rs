//! A dev gitserver shard as a child process (`gitserver-dev-under-test`), killable with
//! SIGKILL and restartable on the same port with the same repos directory, as a pod restart
//! would: the mirrors on disk stay, the in-memory clone queue is lost.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use gitserver_api::{RepoUpdateRequest, RepoUpdateResponse};
use gitserver_dev::DispatchLog;

use super::{kill_process_group, tail};

const BIN: &str = env!("CARGO_BIN_EXE_gitserver-dev-under-test");

pub struct DevShard {
    process: Option<(Child, BufReader<ChildStdout>)>,
    addr: SocketAddr,
    repos_dir: PathBuf,
    log: PathBuf,
    clone_delay: Duration,
    http: reqwest::Client,
}

impl DevShard {
    /// Starts a shard on a free loopback port, keeping its mirrors in `dir/repos` and its log
    /// in `dir/gitserver.log`.
    pub fn start(dir: &Path, clone_delay: Duration) -> DevShard {
        std::fs::create_dir_all(dir).expect("creating the shard directory");
        let repos_dir = dir.join("repos");
        let log = dir.join("gitserver.log");
        let any_port: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        let (child, stdout, addr) = spawn(any_port, &repos_dir, &log, clone_delay);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
        DevShard { process: Some((child, stdout)), addr, repos_dir, log, clone_delay, http }
    }

    /// `host:port`, as the sidecar is configured with it.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn repos_dir(&self) -> &Path {
        &self.repos_dir
    }

    /// Whether `<repos dir>/<normalised name>/.git` exists.
    pub fn has_mirror(&self, normalised: &str) -> bool {
        self.repos_dir.join(normalised).join(".git").is_dir()
    }

    /// SIGKILL to the server and its git children; returns once the process is reaped.
    pub fn kill(&mut self) {
        if let Some((mut child, _)) = self.process.take() {
            kill_process_group(&mut child);
        }
    }

    /// Starts the server again on the same port with the same repos directory; its clone
    /// queue and dispatch log start empty.
    pub fn restart(&mut self) {
        self.kill();
        let (child, stdout, addr) = spawn(self.addr, &self.repos_dir, &self.log, self.clone_delay);
        assert_eq!(addr, self.addr, "the restarted shard must listen on its old address");
        self.process = Some((child, stdout));
    }

    /// `GET /debug/dispatches`: the clones this server process started.
    pub async fn dispatches(&self) -> DispatchLog {
        let url = format!("http://{}/debug/dispatches", self.addr);
        let response = self.http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(response.status().is_success(), "GET {url}: {}", response.status());
        response.json().await.unwrap_or_else(|e| panic!("GET {url}: not a DispatchLog: {e}"))
    }

    /// `POST /debug/repo-update-error`: from now on `/repo-update` of `repo` answers `error`
    /// (empty clears it).
    pub async fn fail_repo_update(&self, repo: &str, error: &str) {
        let url = format!("http://{}/debug/repo-update-error", self.addr);
        let fault = gitserver_dev::RepoUpdateFault { repo: repo.to_owned(), error: error.to_owned() };
        let response = self.http.post(&url).json(&fault).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert!(response.status().is_success(), "POST {url}: {}", response.status());
    }

    /// `POST /repo-update` directly, bypassing the sidecar; blocks until the clone ends.
    pub async fn repo_update(&self, repo: &str, url: &str) -> RepoUpdateResponse {
        let body = RepoUpdateRequest { repo: repo.to_owned(), url: url.to_owned(), since: 0 };
        let endpoint = format!("http://{}/repo-update", self.addr);
        let response = self.http.post(&endpoint).json(&body).send().await.unwrap_or_else(|e| panic!("{endpoint}: {e}"));
        assert!(response.status().is_success(), "POST {endpoint}: {}", response.status());
        response.json().await.expect("a RepoUpdateResponse")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for DevShard {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- dev gitserver {} log (tail) ---\n{}", self.addr, self.log_tail(15));
        }
    }
}

/// Runs the binary and reads the "listening on ADDR" line it prints once bound.
fn spawn(
    listen: SocketAddr,
    repos_dir: &Path,
    log: &Path,
    clone_delay: Duration,
) -> (Child, BufReader<ChildStdout>, SocketAddr) {
    let stderr = OpenOptions::new().create(true).append(true).open(log).expect("opening the shard log");
    let mut child = Command::new(BIN)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--repos-dir")
        .arg(repos_dir)
        .arg("--clone-delay")
        .arg(format!("{}ms", clone_delay.as_millis()))
        .arg("--max-concurrent-clones")
        .arg("4")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        // Its own process group, so a kill takes its git children too.
        .process_group(0)
        .spawn()
        .expect("starting gitserver-dev-under-test");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut line = String::new();
    let read = stdout.read_line(&mut line);
    let addr = line.trim().strip_prefix("listening on ").and_then(|addr| addr.parse::<SocketAddr>().ok());
    match (read, addr) {
        (Ok(_), Some(addr)) => (child, stdout, addr),
        (read, _) => {
            kill_process_group(&mut child);
            panic!("gitserver-dev did not announce its address (read {read:?}, line {line:?}); log:\n{}", tail(log, 20))
        }
    }
}

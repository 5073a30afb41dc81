//! Shared test helpers: source repositories made with real git, an HTTP client for the dev
//! server, and bounded polling.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// How long any polled condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Creates a bare repository at `dir/<name>.git` holding one commit on `main`, and returns
/// its absolute path (a clone URL).
pub fn source_repo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.git"));
    git(&["init", "--quiet", "--bare"], &path, None);
    let stream = "commit refs/heads/main\n\
                  committer Test <test@example.com> 1600000000 +0000\n\
                  data 5\ninit\n\
                  M 644 inline README\n\
                  data 6\nhello\n\n";
    git(&["fast-import", "--quiet"], &path, Some(stream));
    git(&["symbolic-ref", "HEAD", "refs/heads/main"], &path, None);
    path
}

/// Runs git on the bare repository `git_dir` (created if missing for `init`), optionally
/// feeding `stdin`, and panics with git's stderr if it fails.
pub fn git(args: &[&str], git_dir: &Path, stdin: Option<&str>) -> String {
    let mut command = Command::new("git");
    if args.first() == Some(&"init") {
        command.args(args).arg(git_dir);
    } else {
        command.arg("--git-dir").arg(git_dir).args(args);
    }
    let mut child = command
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git runs");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin is piped").write_all(input.as_bytes()).expect("git reads stdin");
    }
    let output = child.wait_with_output().expect("git finishes");
    assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A client for one dev server address.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Api {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder().timeout(DEADLINE).build().expect("a reqwest client"),
        }
    }

    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> R {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.expect("GET is answered");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("a JSON answer")
    }

    pub async fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> R {
        let response = self.try_post(path, body).await.expect("POST is answered");
        assert!(response.status().is_success(), "POST {path}: {}", response.status());
        response.json().await.expect("a JSON answer")
    }

    pub async fn try_post<B: Serialize>(&self, path: &str, body: &B) -> reqwest::Result<reqwest::Response> {
        self.http.post(format!("{}{path}", self.base)).json(body).send().await
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, String) {
        let response =
            self.http.post(format!("{}{path}", self.base)).body(body).send().await.expect("POST is answered");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a text answer"))
    }

    pub async fn list(&self) -> Vec<String> {
        self.get("/list?cloned").await
    }

    pub async fn dispatches(&self) -> gitserver_dev::DispatchLog {
        self.get("/debug/dispatches").await
    }

    pub async fn repo_update(&self, repo: &str, url: &str) -> gitserver_api::RepoUpdateResponse {
        let request = gitserver_api::RepoUpdateRequest { repo: repo.to_owned(), url: url.to_owned(), since: 0 };
        self.post("/repo-update", &request).await
    }

    pub async fn repos(&self, names: &[&str]) -> gitserver_api::ReposResponse {
        let request = gitserver_api::ReposRequest { repos: names.iter().map(|n| (*n).to_owned()).collect() };
        self.post("/repos", &request).await
    }

    pub async fn clone_progress(&self, names: &[&str]) -> gitserver_api::CloneProgressResponse {
        let request = gitserver_api::ReposRequest { repos: names.iter().map(|n| (*n).to_owned()).collect() };
        self.post("/repo-clone-progress", &request).await
    }
}

/// Polls `check` every few milliseconds until it returns `Some`, failing the test after
/// [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The entries of a directory, sorted; empty if it does not exist.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.expect("a dir entry").file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

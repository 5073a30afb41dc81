//! The dev server's HTTP API against real git and real HTTP on 127.0.0.1.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gitserver_api::{DeleteRequest, IsRepoCloneableRequest, IsRepoCloneableResponse, RepoUpdateResponse};
use gitserver_dev::{Config, Server};
use support::{dir_entries, eventually, source_repo, Api};

fn start(repos_dir: &Path, max_concurrent_clones: usize, clone_delay: Duration) -> Server {
    start_on(SocketAddr::from(([127, 0, 0, 1], 0)), repos_dir, max_concurrent_clones, clone_delay)
}

fn start_on(listen: SocketAddr, repos_dir: &Path, max_concurrent_clones: usize, clone_delay: Duration) -> Server {
    Server::start(Config { listen, repos_dir: repos_dir.to_owned(), max_concurrent_clones, clone_delay })
        .expect("the server starts")
}

fn url(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

#[tokio::test]
async fn clones_a_repo_and_lists_it_under_its_normalised_name() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let source = url(&source_repo(tmp.path(), "repo"));
    let repos_dir = tmp.path().join("repos");
    let server = start(&repos_dir, 4, Duration::ZERO);
    let api = Api::new(server.addr());
    assert!(api.list().await.is_empty());

    let answer = api.repo_update("GitHub.com/Org/Repo.git", &source).await;
    assert_eq!(
        answer,
        RepoUpdateResponse {
            cloned: false,
            clone_in_progress: true,
            error: String::new(),
            ..RepoUpdateResponse::default()
        }
    );
    assert_eq!(api.list().await, ["github.com/org/repo"]);
    let mirror = repos_dir.join("github.com/org/repo/.git");
    let head = support::git(&["rev-parse", "refs/heads/main"], &mirror, None);
    assert_eq!(head.trim().len(), 40, "the mirror holds the commit");
    assert!(dir_entries(&repos_dir.join(".tmp")).is_empty());

    // Cloned now: answered at once, no second clone.
    let again = api.repo_update("github.com/org/repo", &source).await;
    assert!(again.cloned && !again.clone_in_progress && again.error.is_empty());
    let repos = api.repos(&["GitHub.com/Org/Repo.git", "github.com/other/x"]).await;
    let info = &repos.results["GitHub.com/Org/Repo.git"];
    assert!(info.cloned && !info.clone_in_progress);
    assert_eq!(info.url, source);
    assert!(!repos.results["github.com/other/x"].cloned);
    let log = api.dispatches().await;
    assert_eq!(log.total, 1);
    assert_eq!(log.events[0].repo, "github.com/org/repo");
    assert_eq!(log.max_concurrent["github.com/org/repo"], 1);
}

#[tokio::test]
async fn a_failed_clone_returns_gits_error() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let repos_dir = tmp.path().join("repos");
    let server = start(&repos_dir, 4, Duration::ZERO);
    let api = Api::new(server.addr());
    let missing = url(&tmp.path().join("missing.git"));

    let answer = api.repo_update("github.com/a/missing", &missing).await;
    assert!(!answer.cloned && !answer.clone_in_progress);
    assert!(answer.error.starts_with("fatal:"), "{:?}", answer.error);
    assert!(answer.error.contains("does not exist"), "{:?}", answer.error);
    assert_eq!(answer.error, answer.error.trim());
    assert!(api.list().await.is_empty());
    assert!(dir_entries(&repos_dir.join(".tmp")).is_empty());

    let no_url = api.repo_update("github.com/a/b", "").await;
    assert_eq!(no_url.error, "no clone URL");
}

#[tokio::test]
async fn concurrent_updates_of_one_repo_start_one_clone() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let source = url(&source_repo(tmp.path(), "repo"));
    let server = start(&tmp.path().join("repos"), 4, Duration::from_millis(300));
    let api = Api::new(server.addr());

    let first = tokio::spawn({
        let api = api.clone();
        let source = source.clone();
        async move { api.repo_update("github.com/a/b", &source).await }
    });
    eventually("the first clone to start", || async { (api.dispatches().await.total == 1).then_some(()) }).await;
    let second = api.repo_update("GitHub.com/A/B", &source).await;
    assert!(second.clone_in_progress && !second.cloned && second.error.is_empty());
    let first = first.await.expect("the first request completes");
    assert!(first.clone_in_progress && first.error.is_empty(), "{first:?}");

    let log = api.dispatches().await;
    assert_eq!(log.total, 1, "{log:?}");
    assert_eq!(log.max_concurrent["github.com/a/b"], 2);
    assert_eq!(api.list().await, ["github.com/a/b"]);
}

#[tokio::test]
async fn reports_a_delayed_clone_as_in_progress() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let source = url(&source_repo(tmp.path(), "repo"));
    let server = start(&tmp.path().join("repos"), 4, Duration::from_millis(400));
    let api = Api::new(server.addr());

    let update = tokio::spawn({
        let api = api.clone();
        let source = source.clone();
        async move { api.repo_update("github.com/a/b", &source).await }
    });
    let info = eventually("/repos to report the clone", || async {
        let mut repos = api.repos(&["github.com/a/b"]).await;
        repos.results.remove("github.com/a/b").filter(|i| i.clone_in_progress)
    })
    .await;
    assert!(!info.cloned);
    assert_eq!(info.url, source);
    let progress = api.clone_progress(&["GitHub.com/a/b.git"]).await;
    let progress = &progress.results["GitHub.com/a/b.git"];
    assert!(progress.clone_in_progress && !progress.cloned);

    assert!(update.await.expect("the update completes").error.is_empty());
    let progress = api.clone_progress(&["github.com/a/b"]).await;
    let progress = &progress.results["github.com/a/b"];
    assert!(progress.cloned && !progress.clone_in_progress);
}

#[tokio::test]
async fn clones_beyond_the_limit_wait_in_order() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let first_source = url(&source_repo(tmp.path(), "one"));
    let second_source = url(&source_repo(tmp.path(), "two"));
    let server = start(&tmp.path().join("repos"), 1, Duration::from_millis(300));
    let api = Api::new(server.addr());

    let mut updates = Vec::new();
    for (n, (name, source)) in [("x/one", &first_source), ("x/two", &second_source)].into_iter().enumerate() {
        updates.push(tokio::spawn({
            let api = api.clone();
            let source = source.clone();
            async move { api.repo_update(name, &source).await }
        }));
        eventually("the clone to be queued", || async { (api.dispatches().await.total == n + 1).then_some(()) }).await;
    }
    let progress = api.clone_progress(&["x/one", "x/two"]).await;
    assert!(progress.results["x/one"].clone_progress.starts_with("cloning"));
    assert_eq!(progress.results["x/two"].clone_progress, "waiting for a clone slot");
    for update in updates {
        assert!(update.await.expect("the update completes").error.is_empty());
    }
    assert_eq!(api.list().await, ["x/one", "x/two"]);
    let order: Vec<_> = api.dispatches().await.events.into_iter().map(|e| e.repo).collect();
    assert_eq!(order, ["x/one", "x/two"]);
}

#[tokio::test]
async fn a_kill_mid_clone_loses_the_queue_and_the_partial_clones() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let source = url(&source_repo(tmp.path(), "repo"));
    let repos_dir = tmp.path().join("repos");
    let server = start(&repos_dir, 1, Duration::from_secs(60));
    let addr = server.addr();
    let api = Api::new(addr);

    let mut updates = Vec::new();
    for name in ["github.com/a/running", "github.com/a/queued"] {
        updates.push(tokio::spawn({
            let api = api.clone();
            let source = source.clone();
            async move { api.try_post("/repo-update", &serde_json::json!({"repo": name, "url": source})).await }
        }));
    }
    eventually("both clones to be in progress", || async {
        let repos = api.repos(&["github.com/a/running", "github.com/a/queued"]).await;
        repos.results.values().all(|i| i.clone_in_progress).then_some(())
    })
    .await;
    // What a clone killed half-way through leaves behind.
    std::fs::create_dir_all(repos_dir.join(".tmp/clone-0/objects/pack")).expect("mkdir");
    std::fs::write(repos_dir.join(".tmp/clone-0/objects/pack/tmp_pack_x"), "partial").expect("write");

    server.kill();
    for update in updates {
        let outcome = update.await.expect("the request task ends");
        assert!(outcome.is_err(), "a killed server answered: {outcome:?}");
    }

    let server = start_on(addr, &repos_dir, 1, Duration::ZERO);
    assert_eq!(server.addr(), addr);
    assert!(api.list().await.is_empty());
    let repos = api.repos(&["github.com/a/running", "github.com/a/queued"]).await;
    for info in repos.results.values() {
        assert!(!info.cloned && !info.clone_in_progress, "{info:?}");
    }
    assert!(dir_entries(&repos_dir.join(".tmp")).is_empty());
    assert_eq!(api.dispatches().await.total, 0);

    // The restarted server works; only the client can bring the repository back.
    assert!(api.repo_update("github.com/a/running", &source).await.error.is_empty());
    assert_eq!(api.list().await, ["github.com/a/running"]);
    drop(server);
}

#[tokio::test]
async fn deletes_mirrors_and_checks_cloneability() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let source = url(&source_repo(tmp.path(), "repo"));
    let repos_dir = tmp.path().join("repos");
    let server = start(&repos_dir, 4, Duration::ZERO);
    let api = Api::new(server.addr());

    let check = |url: String| IsRepoCloneableRequest { repo: "github.com/a/b".to_owned(), url };
    let good: IsRepoCloneableResponse = api.post("/is-repo-cloneable", &check(source.clone())).await;
    assert!(good.cloneable && good.reason.is_empty(), "{good:?}");
    let missing = url(&tmp.path().join("missing.git"));
    let bad: IsRepoCloneableResponse = api.post("/is-repo-cloneable", &check(missing)).await;
    assert!(!bad.cloneable && bad.reason.contains("fatal:"), "{bad:?}");

    assert!(api.repo_update("github.com/a/b", &source).await.error.is_empty());
    assert!(api.repo_update("github.com/a/c", &source).await.error.is_empty());
    let delete = DeleteRequest { repo: "GitHub.com/A/B".to_owned() };
    let response = api.try_post("/delete", &delete).await.expect("answered");
    assert!(response.status().is_success());
    assert_eq!(api.list().await, ["github.com/a/c"]);
    assert_eq!(dir_entries(&repos_dir.join("github.com/a")), ["c"]);
    let again = api.try_post("/delete", &delete).await.expect("answered");
    assert!(again.status().is_success(), "deleting twice is fine");
}

#[tokio::test]
async fn refuses_malformed_requests_with_400() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let server = start(&tmp.path().join("repos"), 4, Duration::ZERO);
    let api = Api::new(server.addr());
    for path in ["/repo-update", "/repos", "/repo-clone-progress", "/delete", "/is-repo-cloneable"] {
        let (status, body) = api.post_raw(path, "{not json").await;
        assert_eq!(status, 400, "{path}");
        assert!(body.starts_with("malformed request body"), "{path}: {body}");
    }
    let (status, _) = api.post_raw("/repo-update", r#"{"url": "x"}"#).await;
    assert_eq!(status, 400, "a missing field is malformed too");
    let (status, _) = api.post_raw("/delete", r#"{"Repo": ".tmp/x"}"#).await;
    assert_eq!(status, 400, "names that cannot be directories are refused");
    let invalid = api.repo_update("..", "/x").await;
    assert!(invalid.error.starts_with("invalid repo name"), "{invalid:?}");
}

#[test]
fn start_refuses_zero_clone_slots() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let config = Config { max_concurrent_clones: 0, ..Config::new(SocketAddr::from(([127, 0, 0, 1], 0)), tmp.path()) };
    assert!(Server::start(config).is_err());
}

/// Command lines of live processes mentioning `needle` (zombies have empty command lines).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(needle))
        .collect()
}

#[tokio::test]
async fn a_kill_stops_running_git_and_the_restart_removes_its_clone() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let repos_dir = tmp.path().join("repos");
    // Accepts connections and never answers: git waits forever, like a huge clone.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let stuck_url = format!("git://{}/stuck", silent.local_addr().expect("addr"));
    let server = start(&repos_dir, 4, Duration::ZERO);
    let addr = server.addr();
    let api = Api::new(addr);

    let update = tokio::spawn({
        let api = api.clone();
        async move { api.try_post("/repo-update", &serde_json::json!({"repo": "a/stuck", "url": stuck_url})).await }
    });
    let needle = url(&repos_dir.join(".tmp"));
    eventually("git to be cloning", || async { (!processes_mentioning(&needle).is_empty()).then_some(()) }).await;

    server.kill();
    assert!(update.await.expect("the request task ends").is_err());
    eventually("git to be killed", || async { processes_mentioning(&needle).is_empty().then_some(()) }).await;
    let server = start_on(addr, &repos_dir, 4, Duration::ZERO);
    assert!(dir_entries(&repos_dir.join(".tmp")).is_empty());
    assert!(api.list().await.is_empty());
    drop(server);
}

#[test]
fn start_reports_a_port_in_use() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = Server::start(Config::new(addr, tmp.path())).expect_err("the port is taken");
    assert!(format!("{err:#}").contains("cannot bind"), "{err:#}");
}

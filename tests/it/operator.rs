//! The operator surface: explain in every state, the admin token, readiness that follows
//! Postgres, and promtool on the real metrics and the shipped alert rules.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use clonekeeper::explain::Explain;
use reqwest::StatusCode;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::postgres::PrivatePostgres;
use crate::support::routing::md5_shard;
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig, BIN};
use crate::support::{broken_url, eventually, source_repos};

const TOKEN: &str = "s3cret-admin-token";

/// The first `prefix-N` name that md5 routing puts on `shard` of `n_shards`.
fn name_on(prefix: &str, shard: usize, n_shards: usize) -> String {
    (0..).map(|i| format!("{prefix}-{i}")).find(|n| md5_shard(n, n_shards) == shard).expect("some name routes there")
}

async fn explain(sidecar: &Sidecar, name: &str) -> Explain {
    let url = sidecar.url(&format!("/v1/repos/{name}"));
    let response = reqwest::get(&url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    response.json().await.unwrap_or_else(|e| panic!("GET {url}: not an Explain: {e}"))
}

async fn post(url: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
    let mut request = reqwest::Client::new().post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or_else(|e| panic!("POST {url}: error body is not JSON: {e}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_answers_each_state_and_the_token_guards_mutations() {
    let work = tempfile::tempdir().expect("a temporary directory");
    // Shard 0 clones at once; shard 1 takes a minute per clone and may run one at a time, so
    // its first repo stays cloning and its second stays queued for the whole test.
    let cloned = name_on("github.com/explain/cloned", 0, 2);
    let broken = name_on("github.com/explain/broken", 0, 2);
    let no_url = name_on("github.com/explain/no-url", 0, 2);
    let gone = name_on("github.com/explain/gone", 0, 2);
    let first = name_on("github.com/explain/first", 1, 2);
    let second = name_on("github.com/explain/second", 1, 2);
    let good = vec![cloned.clone(), first.clone(), second.clone(), gone.clone()];
    let urls = source_repos(&work.path().join("sources"), &good).await;
    let db = PgDb::create(Shape::Cloned2020_10).await;
    db.insert_repos(&[
        NewRepo::new(&cloned, &urls[0]).created(0),
        NewRepo::new(&first, &urls[1]).created(1),
        NewRepo::new(&second, &urls[2]).created(2),
        NewRepo::new(&gone, &urls[3]).created(3).deleted(),
        NewRepo::new(&broken, broken_url(work.path())).created(4),
        NewRepo::new(&no_url, "").created(5),
    ])
    .await;
    let shards = [
        DevShard::start(&work.path().join("shard-0"), Duration::ZERO),
        DevShard::start(&work.path().join("shard-1"), Duration::from_secs(60)),
    ];
    let addrs: Vec<String> = shards.iter().map(DevShard::addr).collect();
    let mut config = SidecarConfig::new(db.url(), addrs.clone());
    config.backoff_base = "60s";
    config.backoff_max = "10m";
    config.max_in_flight_per_shard = 1;
    config.admin_token = Some(TOKEN);
    let sidecar = Sidecar::start(&config);
    sidecar
        .wait_for("one repo cloned, two failed, one cloning", |s| {
            s.totals.cloned == 1 && s.totals.failed == 2 && s.totals.cloning == 1 && s.totals.queued == 1
        })
        .await;

    let e = explain(&sidecar, &cloned).await;
    assert!(e.desired && e.state.as_deref() == Some("cloned"), "{e:#?}");
    assert_eq!(e.shard.as_deref(), Some(addrs[0].as_str()), "{e:#?}");
    assert_eq!(e.listed_on, vec![addrs[0].clone()], "{e:#?}");

    let e = explain(&sidecar, &first).await;
    assert_eq!(e.state.as_deref(), Some("cloning"), "{e:#?}");
    assert!(e.in_flight && e.attempts == 1, "{e:#?}");
    assert_eq!(e.shard.as_deref(), Some(addrs[1].as_str()), "{e:#?}");

    let e = explain(&sidecar, &second).await;
    assert_eq!(e.state.as_deref(), Some("uncloned"), "{e:#?}");
    assert_eq!((e.attempts, e.in_flight, e.queue_position), (0, false, Some(0)), "{e:#?}");
    let decision = e.last_decision.clone().unwrap_or_else(|| panic!("no decision: {e:#?}"));
    assert_eq!((decision.interface.as_str(), decision.module.as_str()), ("prioritize", "builtin"), "{e:#?}");

    let e = explain(&sidecar, &broken).await;
    assert_eq!(e.state.as_deref(), Some("failed"), "{e:#?}");
    assert!(e.backing_off && e.next_attempt_at.is_some() && e.attempts == 1, "backing off: {e:#?}");
    let error = e.last_error.clone().unwrap_or_default();
    assert!(error.contains("does not exist") || error.contains("fatal"), "git's error: {e:#?}");

    let e = explain(&sidecar, &no_url).await;
    assert_eq!(e.state.as_deref(), Some("failed"), "{e:#?}");
    assert!(e.problem.as_deref().is_some_and(|p| p.contains("clone URL")), "{e:#?}");
    assert_eq!(e.attempts, 0, "never dispatched: {e:#?}");

    let e = explain(&sidecar, &gone).await;
    assert!(!e.desired && e.state.is_none() && e.shard.is_none(), "not desired: {e:#?}");

    // Another spelling of the same repo explains the same repo.
    let e = explain(&sidecar, &format!("GitHub.com/{}.git", cloned.trim_start_matches("github.com/"))).await;
    assert_eq!((e.name.as_str(), e.state.as_deref()), (cloned.as_str(), Some("cloned")), "{e:#?}");

    // The queue lists the waiting repo first.
    let queue: serde_json::Value =
        reqwest::get(sidecar.url("/v1/queue?limit=5")).await.expect("GET /v1/queue").json().await.expect("JSON");
    assert_eq!(queue[0]["name"], second.as_str(), "{queue:#}");

    // The CLI renders the same answer for a person.
    let admin = sidecar.url("").trim_start_matches("http://").to_string();
    let output = Command::new(BIN).args(["explain", &broken, "--admin", &admin]).output().expect("running explain");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "explain failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("backing off") && text.contains("failed"), "{text}");

    // Mutations need the token; reads never do.
    let enqueue = sidecar.url(&format!("/v1/repos/{broken}/enqueue"));
    let (status, body) = post(&enqueue, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["error"].as_str().is_some_and(|m| m.contains("Bearer")), "{body}");
    let (status, _) = post(&enqueue, Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(&sidecar.url("/v1/policies/reload"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = post(&sidecar.url("/v1/repos/github.com/explain/nobody/enqueue"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // With the token, "clone now" overrides the minute-long backoff: a second attempt follows.
    let (status, body) = post(&enqueue, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    eventually("the broken repo dispatched again at once", || async {
        let e = explain(&sidecar, &broken).await;
        if e.attempts >= 2 {
            Ok(())
        } else {
            Err(format!("{e:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_calls_are_refused_without_a_configured_token() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let urls = source_repos(&work.path().join("sources"), &["github.com/notoken/a".to_string()]).await;
    let db = PgDb::create(Shape::Cloned2020_10).await;
    db.insert_repos(&[NewRepo::new("github.com/notoken/a", &urls[0])]).await;
    let shard = DevShard::start(&work.path().join("shard"), Duration::ZERO);
    let sidecar = Sidecar::start(&SidecarConfig::new(db.url(), vec![shard.addr()]));
    sidecar.wait_for("the repo cloned", |s| s.totals.cloned == 1).await;
    let (status, body) = post(&sidecar.url("/v1/repos/github.com/notoken/a/enqueue"), Some("anything")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(explain(&sidecar, "github.com/notoken/a").await.desired);
}

/// promtool must accept the real `/metrics` output and the shipped alert rules, whose unit
/// tests must pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_metrics_and_alert_rules() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let names = vec!["github.com/prom/a".to_string(), "github.com/prom/b".to_string()];
    let urls = source_repos(&work.path().join("sources"), &names).await;
    let db = PgDb::create(Shape::GitserverRepos2021).await;
    db.insert_repos(&[
        NewRepo::new(&names[0], &urls[0]),
        NewRepo::new(&names[1], &urls[1]),
        NewRepo::new("github.com/prom/broken", broken_url(work.path())),
    ])
    .await;
    let shards = [
        DevShard::start(&work.path().join("shard-0"), Duration::ZERO),
        DevShard::start(&work.path().join("shard-1"), Duration::ZERO),
    ];
    let sidecar = Sidecar::start(&SidecarConfig::new(db.url(), shards.iter().map(DevShard::addr).collect()));
    sidecar.wait_for("both good repos cloned and one failure", |s| s.totals.cloned == 2 && s.totals.failed == 1).await;

    let metrics = reqwest::get(sidecar.url("/metrics")).await.expect("GET /metrics").text().await.expect("text");
    for needle in ["clonekeeper_cloned{", "clonekeeper_dispatches_total{", "clonekeeper_clone_duration_seconds_bucket{"]
    {
        assert!(metrics.contains(needle), "{needle} missing from:\n{metrics}");
    }
    assert!(metrics.contains("result=\"failed\""), "the failed dispatch is counted:\n{metrics}");
    promtool(&["check", "metrics"], Some(&metrics), None);

    let openmetrics = reqwest::Client::new()
        .get(sidecar.url("/metrics"))
        .header("Accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    assert!(openmetrics.trim_end().ends_with("# EOF"), "OpenMetrics when asked for");

    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    promtool(&["check", "rules", "alerts.yml"], None, Some(&deploy));
    promtool(&["test", "rules", "alerts.test.yml"], None, Some(&deploy));
}

fn promtool(args: &[&str], stdin: Option<&str>, dir: Option<&Path>) {
    let mut command = Command::new("promtool");
    command.args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/test.sh installs Debian's prometheus package)");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::io::Write::write_all(&mut pipe, text.as_bytes()).expect("feeding promtool");
    }
    let output = child.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn readyz(sidecar: &Sidecar) -> Result<(StatusCode, String), String> {
    let response = reqwest::get(sidecar.url("/readyz")).await.map_err(|e| e.to_string())?;
    let status = response.status();
    Ok((status, response.text().await.map_err(|e| e.to_string())?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_postgres_without_a_restart() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let cluster = PrivatePostgres::create();
    let urls = source_repos(&work.path().join("sources"), &["github.com/ready/a".to_string()]).await;
    {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.url()).await.expect("connect");
        sqlx::raw_sql(clonekeeper::sources::repo_db::POSTGRES_SCHEMA_2020_10).execute(&mut conn).await.expect("schema");
        sqlx::raw_sql(&format!(
            "INSERT INTO external_services (id, kind, display_name, config) VALUES (1, 'GITHUB', 'gh', '{{}}');
             INSERT INTO repo (id, name) VALUES (1, 'github.com/ready/a');
             INSERT INTO external_service_repos VALUES (1, 1, '{}');",
            urls[0]
        ))
        .execute(&mut conn)
        .await
        .expect("rows");
    }
    let shard = DevShard::start(&work.path().join("shard"), Duration::ZERO);
    let sidecar = Sidecar::start(&SidecarConfig::new(&cluster.url(), vec![shard.addr()]));
    sidecar.wait_for("the repo cloned", |s| s.totals.cloned == 1).await;
    let ready = |want: StatusCode| {
        let sidecar = &sidecar;
        async move {
            match readyz(sidecar).await? {
                (status, body) if status == want => Ok(body),
                (status, body) => Err(format!("{status}: {body}")),
            }
        }
    };
    eventually("ready while Postgres runs", || ready(StatusCode::OK)).await;

    cluster.stop();
    let body = eventually("unready once Postgres stops", || ready(StatusCode::SERVICE_UNAVAILABLE)).await;
    assert!(body.contains("repo DB"), "the reason names the repo DB: {body}");
    // The sidecar itself keeps running on its last good state.
    let status = sidecar.status().await.expect("status while Postgres is down");
    assert_eq!(status.totals.cloned, 1, "{status:#?}");

    cluster.start();
    eventually("ready again once Postgres is back", || ready(StatusCode::OK)).await;
}

/// The shipped Kubernetes manifests carry no credential (no `Secret` object, no token value)
/// and fence the admin port: every file that runs clonekeeper has a NetworkPolicy that selects
/// the same pods and admits port 9187 only from a namespace selector.
#[test]
fn shipped_manifests_carry_no_secret_and_fence_the_admin_port() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("manifest");
        let documents: Vec<&str> = text.split("\n---\n").collect();
        let kind = |doc: &str| doc.lines().find_map(|l| l.strip_prefix("kind: ")).map(str::trim).map(str::to_owned);
        let name = path.display();
        assert!(documents.iter().all(|d| kind(d).as_deref() != Some("Secret")), "{name} ships a Secret");
        assert!(!text.contains("CHANGE-ME") && !text.contains("admin_token ="), "{name} ships a token value");
        let Some(deployment) = documents.iter().find(|d| kind(d).as_deref() == Some("Deployment")) else {
            continue;
        };
        let app = deployment
            .lines()
            .find_map(|l| l.trim().strip_prefix("labels: { app: "))
            .and_then(|rest| rest.split([' ', '}', ',']).next())
            .expect("the deployment's pods carry an app label");
        let policy = documents
            .iter()
            .find(|d| kind(d).as_deref() == Some("NetworkPolicy"))
            .unwrap_or_else(|| panic!("{name} runs clonekeeper without a NetworkPolicy"));
        let selects = policy.split("podSelector:").nth(1).and_then(|s| s.lines().nth(1)).unwrap_or("");
        assert!(
            selects.contains(&format!("app: {app}")),
            "{name}: the NetworkPolicy selects {selects:?}, not app {app}"
        );
        let admin = policy.split("- from:").nth(1).unwrap_or_else(|| panic!("{name}: no ingress rule with a source"));
        assert!(
            admin.contains("namespaceSelector") && admin.contains("port: 9187"),
            "{name}: port 9187 is not limited to a namespace"
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "both manifests (sidecar and HA) were checked");
}

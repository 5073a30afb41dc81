//! Snapshot and replay end to end: a running sidecar's snapshot through the admin API (with
//! the token, and refused without it), what it holds (stars read for it although no policy
//! reads them, states, observed clones), and `clonekeeper replay` on it with the built-in
//! order and the popular-first example, whose report a browser shows with both curves.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clonekeeper::reconcile::RepoState;
use clonekeeper::replay::capture;
use clonekeeper::replay::report::POLICY_COLOURS;

use crate::support::browser::{screenshot, Image};
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig, BIN};
use crate::support::{aged_repo_db, example_policy, start_shards};

const REPOS: usize = 24;
const TOKEN: &str = "replay-test-token-0123456789abcdef";

fn cli(args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CLONEKEEPER_") {
            command.env_remove(name);
        }
    }
    if let Some(token) = token {
        command.env("CLONEKEEPER_ADMIN_TOKEN", token);
    }
    command.args(args).output().expect("running clonekeeper")
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_replays_with_two_policies_into_a_report_a_browser_shows() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = (0..REPOS).map(|i| format!("github.com/replay/repo-{i:02}")).collect();
    // The newest repos are the popular ones: the built-in order (oldest first) reaches them last.
    let db = aged_repo_db(work.path(), &names, |i| i as i32 * 100).await;
    // Slow clones, one at a time per shard: the snapshot finds a backlog.
    let shards = start_shards(work.path(), 2, Duration::from_millis(1_500));
    let addrs: Vec<String> = shards.iter().map(DevShard::addr).collect();
    let mut config = SidecarConfig::new(db.url(), addrs);
    config.admin_token = Some(TOKEN);
    config.max_in_flight_per_shard = 1;
    let sidecar = Sidecar::start(&config);
    sidecar.wait_for("two repos cloned", |s| s.totals.cloned >= 2).await;

    let admin = sidecar.url("");
    let file = work.path().join("snap.ndjson.gz");
    let file_arg = file.to_string_lossy().into_owned();
    let denied = cli(&["snapshot", "--admin", &admin, "-o", &file_arg], None);
    assert_eq!(denied.status.code(), Some(1), "{}", text(&denied));
    assert!(text(&denied).contains("no admin token"), "{}", text(&denied));
    let wrong = cli(&["snapshot", "--admin", &admin, "-o", &file_arg], Some("not-the-token-at-all-0123456789"));
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(text(&wrong).contains("401"), "{}", text(&wrong));
    assert!(!file.exists(), "a refused snapshot left a file behind");

    let taken = cli(&["snapshot", "--admin", &admin, "-o", &file_arg], Some(TOKEN));
    assert!(taken.status.success(), "{}", text(&taken));
    assert!(text(&taken).contains("clonekeeper replay"), "{}", text(&taken));
    let snap = capture::read(&file).expect("the snapshot reads back");
    assert_eq!(snap.repos.len(), REPOS);
    assert_eq!(snap.shards.addrs(), config.addrs.as_slice());
    // No policy reads stars, yet the snapshot has them: it asked for a read with stars.
    let starred = snap.repos.iter().filter(|r| r.repo.stars.is_some_and(|s| s > 0)).count();
    assert_eq!(starred, REPOS - 1, "stars missing from the snapshot");
    let cloned = snap.repos.iter().filter(|r| r.state == RepoState::Cloned).count();
    assert!((2..REPOS).contains(&cloned), "{cloned} cloned of {REPOS}: no backlog to replay");
    assert!(snap.clones.iter().any(|c| c.succeeded && c.took >= Duration::from_millis(1_400)), "{:?}", snap.clones);

    // The README's DuckDB query reads the file as it is: the most starred repos not cloned.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README");
    let query = readme
        .lines()
        .find_map(|line| line.strip_prefix("duckdb -c \"").and_then(|rest| rest.split_once('"')).map(|(sql, _)| sql))
        .expect("the README shows a duckdb query")
        .replace("now.ndjson.gz", &file_arg);
    let script = format!("import duckdb\nfor row in duckdb.sql({query:?}).fetchall(): print(row[0])");
    let duck = Command::new("python3").args(["-c", &script]).output().expect("python3");
    assert!(duck.status.success(), "the README's query failed: {}", text(&duck));
    let listed: Vec<String> = String::from_utf8_lossy(&duck.stdout).lines().map(str::to_string).collect();
    let mut uncloned: Vec<&capture::CapturedRepo> =
        snap.repos.iter().filter(|r| r.state != RepoState::Cloned).collect();
    uncloned.sort_by_key(|r| std::cmp::Reverse(r.repo.stars));
    assert_eq!(listed.first().map(String::as_str), uncloned.first().map(|r| r.repo.name.as_str()), "{listed:?}");
    assert_eq!(listed.len(), uncloned.len().min(20));

    let out = work.path().join("report");
    let module = example_policy("popular-first");
    let module_arg = module.to_string_lossy().into_owned();
    let out_arg = out.to_string_lossy().into_owned();
    let args = [
        "replay",
        &file_arg,
        "--policy",
        "builtin",
        "--policy",
        &module_arg,
        "--clone-time",
        "10s",
        "--top",
        "3",
        "--out",
        &out_arg,
    ];
    let replayed = cli(&args, None);
    let printed = text(&replayed);
    assert!(replayed.status.success(), "{printed}");
    assert!(printed.contains("built-in") && printed.contains("popular-first.wasm"), "{printed}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("replay.json")).expect("replay.json")).expect("JSON");
    let backlog = json["backlog"].as_u64().expect("backlog");
    assert_eq!(backlog, (REPOS - cloned) as u64);
    let runs = json["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    let top_all = |run: &serde_json::Value| run["top"]["all_at_secs"].as_f64().expect("top 3 cloned");
    // Popular-first clones the three most starred first; the built-in order reaches them last.
    assert!(
        top_all(&runs[1]) < top_all(&runs[0]),
        "popular-first {} vs built-in {}",
        top_all(&runs[1]),
        top_all(&runs[0])
    );
    for run in runs {
        assert_eq!(run["cloned"].as_array().and_then(|c| c.last()).and_then(|p| p[1].as_u64()), Some(backlog), "{run}");
    }
    // The top repos come with each policy's reason, in its own words (contract 0.2.1 explain).
    let why = |run: &serde_json::Value| run["top_repos"][0]["why"].as_str().unwrap_or_default().to_string();
    assert!(
        why(&runs[0]).contains("never-attempted repos go first") || why(&runs[0]).starts_with("failed "),
        "{}",
        why(&runs[0])
    );
    assert!(why(&runs[1]).starts_with("score ") && why(&runs[1]).contains(" stars"), "{}", why(&runs[1]));
    assert!(printed.contains("Top repos: why, in each policy's words"), "{printed}");
    assert!(out.join("chart.svg").is_file());
    // What the operator opens: both policies' curves are on the page, each in its colour.
    let png = work.path().join("report.png");
    screenshot(&out.join("report.html"), &png);
    let image = Image::open(&png);
    for (idx, label) in ["built-in", "popular-first.wasm"].iter().enumerate() {
        let pixels = image.count_colour(POLICY_COLOURS[idx], 12);
        assert!(pixels > 500, "{label}'s colour {} covers {pixels} pixels of {}", POLICY_COLOURS[idx], png.display());
    }
    sidecar.kill();
}

//! Tests of the policy authoring commands on real components.

use clap::Parser as _;

use super::*;

const STARS: &str = include_str!("../../policy/testdata/stars.wat");
const PRELUDE: &str = include_str!("../../policy/testdata/prelude.wat");

/// Writes the stars prioritizer as a binary component into `dir`.
fn module(dir: &Path) -> PathBuf {
    let core = STARS.replace(";; @prelude", PRELUDE);
    let bytes = componentize::componentize(core.as_bytes(), Some("prioritizer")).expect("encodes");
    let path = dir.join("stars.wasm");
    std::fs::write(&path, bytes).expect("write");
    path
}

/// Parses `args` as the real CLI would and runs the command.
fn cli(args: &[&str]) -> (Result<u8, CliError>, String) {
    let args = ["clonekeeper", "policy"].iter().chain(args).chain(&["--no-cache"]);
    let parsed = crate::cli::Args::try_parse_from(args).expect("parses");
    let crate::cli::Command::Policy(command) = parsed.command else { panic!("not a policy command") };
    let mut out = Vec::new();
    let code = run(command, &mut out);
    (code, String::from_utf8(out).expect("utf-8"))
}

#[test]
fn check_lists_the_interfaces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = module(dir.path());
    let (code, out) = cli(&["check", path.to_str().expect("utf-8")]);
    assert_eq!(code.expect("ok"), 0);
    assert!(out.contains("stars.wasm: ok"), "{out}");
    assert!(out.contains("interfaces  prioritize, lifecycle"), "{out}");
    assert!(out.contains("world       prioritizer"), "{out}");
    assert!(out.contains("columns     stars (what prioritize reads)"), "{out}");
    // Built against the 0.2.0 contract (before explain): it still loads, and check says so.
    assert!(out.contains("contract    clonekeeper:policy@0.2.0 (cannot explain its priorities"), "{out}");

    std::fs::write(dir.path().join("junk.wasm"), b"\x00asm\x0d\x00\x01\x00xx").expect("write");
    let (code, _) = cli(&["check", dir.path().join("junk.wasm").to_str().expect("utf-8")]);
    let error = code.unwrap_err();
    assert_eq!(error.code(), 1);
    assert!(error.to_string().contains("junk.wasm"), "{error}");
}

#[test]
fn eval_prints_the_order_as_a_table_or_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = module(dir.path());
    let repos = dir.path().join("repos.json");
    std::fs::write(
        &repos,
        r#"[{"name": "github.com/a/few", "stars": 3}, {"name": "github.com/a/many", "stars": 300}]"#,
    )
    .expect("write");
    let (module, repos) = (path.to_str().expect("utf-8"), repos.to_str().expect("utf-8"));
    let (code, out) = cli(&["eval", module, "--repos", repos, "--now", "2024-01-01T00:00:00Z"]);
    assert_eq!(code.expect("ok"), 0);
    let many = out.find("github.com/a/many").expect("listed");
    let few = out.find("github.com/a/few").expect("listed");
    assert!(many < few, "most stars first:\n{out}");
    assert!(out.contains("decided by stars"), "{out}");

    let (code, out) = cli(&["eval", module, "--repos", repos, "--json"]);
    assert_eq!(code.expect("ok"), 0);
    let document: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let rows = &document["decisions"][0]["result"];
    assert_eq!(rows[0]["repo"], "github.com/a/many");
    assert_eq!(rows[0]["score"], 300.0);
    assert_eq!(document["digest"].as_str().map(str::len), Some(64));
}

#[test]
fn test_reports_pass_fail_with_a_diff_and_fails_the_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = module(dir.path());
    let fixture = dir.path().join("cases.json");
    std::fs::write(
        &fixture,
        r#"{"now": 0, "cases": [
            {"name": "stars first", "interface": "prioritize",
             "repos": [{"name": "github.com/a/few", "stars": 3}, {"name": "github.com/a/many", "stars": 300}],
             "expect": {"order": ["github.com/a/many", "github.com/a/few"], "not_now": []}},
            {"name": "wrong on purpose", "interface": "prioritize",
             "repos": [{"name": "github.com/a/few", "stars": 3}, {"name": "github.com/a/many", "stars": 300}],
             "expect": {"order": ["github.com/a/few", "github.com/a/many"]}},
            {"name": "init accepts anything", "interface": "init", "config": "x = 1", "expect": {"ok": true}}
        ]}"#,
    )
    .expect("write");
    let (code, out) = cli(&["test", path.to_str().expect("utf-8"), fixture.to_str().expect("utf-8")]);
    assert_eq!(code.expect("ran"), 1, "{out}");
    assert!(out.contains("PASS cases.json: stars first (prioritize)"), "{out}");
    assert!(out.contains("FAIL cases.json: wrong on purpose (prioritize)"), "{out}");
    assert!(out.contains("  - github.com/a/many") && out.contains("  + github.com/a/many"), "a diff:\n{out}");
    assert!(out.contains("PASS cases.json: init accepts anything (init)"), "{out}");
    assert!(out.trim_end().ends_with("2 passed, 1 failed"), "{out}");

    // Shipped beside the module, found without arguments; all pass: exit 0.
    let good = r#"{"cases": [{"interface": "prioritize", "repos": [{"name": "x/a", "stars": 1}, {"name": "x/b", "stars": 2}],
                   "expect": {"top": ["x/b"]}}]}"#;
    std::fs::write(dir.path().join("stars.fixtures.json"), good).expect("write");
    let (code, out) = cli(&["test", path.to_str().expect("utf-8")]);
    assert_eq!(code.expect("ran"), 0, "{out}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
}

#[test]
fn check_reports_a_long_multibyte_init_refusal_without_panicking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let message = format!("x{}", "é".repeat(1000));
    let core = include_str!("../../policy/testdata/bad_init.wat")
        .replace("\"max_stars must be a number\"", &format!("{message:?}"))
        .replace("(i32.const 26)", &format!("(i32.const {})", message.len()));
    let bytes = componentize::componentize(core.as_bytes(), Some("prioritizer")).expect("encodes");
    let path = dir.path().join("refuses.wasm");
    std::fs::write(&path, bytes).expect("write");
    let (code, _) = cli(&["check", path.to_str().expect("utf-8")]);
    let error = code.unwrap_err();
    assert_eq!(error.code(), 1);
    let text = error.to_string();
    assert!(text.contains("refuses.wasm") && text.contains("init rejected its config: xéé"), "{text}");
    assert!(text.len() < 1200, "the refusal is cut: {} bytes", text.len());
}

#[test]
fn bench_reports_the_cost_against_the_limits_and_fails_what_does_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = module(dir.path());
    let path = path.to_str().expect("utf-8");
    let (code, out) = cli(&["bench", path, "--repos", "25000", "--tick-budget", "60s", "--call-timeout", "30s"]);
    assert_eq!(code.expect("runs"), 0, "{out}");
    assert!(out.contains("prioritize over 25000 repos in 3 calls of up to 10000 (columns: stars)"), "{out}");
    for line in
        ["per call    median", "per repo", "per tick", "of tick_budget 1m", "memory      peak", "verdict     fits"]
    {
        assert!(out.contains(line), "{line}: {out}");
    }
    // A budget no module can meet: the verdict says so and the exit status fails.
    let (code, out) = cli(&["bench", path, "--repos", "25000", "--tick-budget", "1ns"]);
    assert_eq!(code.expect("runs"), 1, "{out}");
    assert!(out.contains("does not fit: a tick with 25000 due repos needs"), "{out}");
    let (code, _) = cli(&["bench", path, "--repos", "0"]);
    assert_eq!(code.unwrap_err().code(), 2);
}

/// A snapshot file of `repos` repos, `due` of them not cloned.
fn snapshot(dir: &Path, repos: usize, due: usize) -> PathBuf {
    use crate::replay::capture::{write, Parts};
    let shards = crate::routing::ShardMap::new(vec!["gs-0:3178".into()], crate::routing::Routing::Md5).expect("shard");
    let list: Vec<crate::model::DesiredRepo> = (0..repos)
        .map(|i| {
            let name = crate::model::RepoName::from_normalized(format!("github.com/o/r{i:06}"));
            let mut repo = crate::model::DesiredRepo::new(i as i64, name.clone(), &format!("https://{name}"));
            repo.stars = Some(i as u32);
            repo
        })
        .collect();
    let states = (0..repos)
        .map(|i| if i < due { crate::reconcile::RepoState::Uncloned } else { crate::reconcile::RepoState::Cloned })
        .collect();
    let desired = crate::sources::repo_db::DesiredSet { repos: list.into(), ..Default::default() };
    let parts = Parts {
        settings: crate::machine::Settings {
            shards: shards.clone(),
            limits: crate::schedule::Limits { max_in_flight_per_shard: 5, max_in_flight: 5 },
            interval: Duration::from_secs(10),
            backoff: crate::schedule::Backoff::default(),
            full_interval: Duration::from_secs(300),
        },
        snapshot: std::sync::Arc::new(crate::machine::Snapshot::routed(desired, &shards)),
        states,
        attempts: Default::default(),
        clones: Vec::new(),
        taken_at: crate::model::Timestamp::now(),
    };
    let path = dir.join("snap.ndjson.gz");
    write(&parts, std::fs::File::create(&path).expect("create")).expect("write");
    path
}

#[test]
fn bench_and_check_measure_a_snapshots_due_repos() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = module(dir.path());
    let path = path.to_str().expect("utf-8");
    let snap = snapshot(dir.path(), 12_000, 7_000);
    let snap = snap.to_str().expect("utf-8");
    let (code, out) = cli(&["bench", path, "--snapshot", snap, "--tick-budget", "60s", "--call-timeout", "30s"]);
    assert_eq!(code.expect("runs"), 0, "{out}");
    assert!(out.contains("12000 repos, taken"), "{out}");
    assert!(out.contains("prioritize over 7000 repos in 1 calls"), "{out}");
    let (code, out) = cli(&["check", path, "--snapshot", snap, "--tick-budget", "60s"]);
    assert_eq!(code.expect("runs"), 0, "{out}");
    assert!(out.contains("tick cost") && out.contains("for the 7000 due repos of"), "{out}");
    // Over the budget: a warning, and the check still passes.
    let (code, out) = cli(&["check", path, "--snapshot", snap, "--tick-budget", "1ns"]);
    assert_eq!(code.expect("runs"), 0, "{out}");
    assert!(out.contains("warning     a tick would need"), "{out}");
    let (code, _) = cli(&["bench", path, "--snapshot", "/nonexistent/snap.ndjson.gz"]);
    assert_eq!(code.unwrap_err().code(), 2);
}

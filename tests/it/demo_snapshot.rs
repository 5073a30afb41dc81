//! `clonekeeper demo` leaves a snapshot taken when it kills the shard, and its last lines say
//! how to replay it: a newcomer sees the what-if replay within the first minutes.

use std::time::Duration;

use clonekeeper::reconcile::RepoState;
use clonekeeper::replay::capture;

use crate::support::run_to_end;
use crate::support::sidecar::command;

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_leaves_a_snapshot_and_the_replay_command_for_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("demo.log");
    let demo_dir = dir.path().join("demo");
    let mut demo = command(&log);
    demo.args(["demo", "--repos", "40", "--plain", "--dir"]).arg(&demo_dir);
    let (status, stdout) = run_to_end(demo, Duration::from_secs(180), &log).await;
    assert!(status.success(), "{status}\n{stdout}");
    assert!(stdout.contains("Every repository is cloned."), "{stdout}");

    let snapshot = demo_dir.join("snapshot.ndjson.gz");
    let last: Vec<&str> = stdout.lines().rev().take(3).collect();
    let command = format!("clonekeeper replay {} --top 10 --policy builtin", snapshot.display());
    assert!(
        last.iter().any(|l| l.trim_start().starts_with(&command)),
        "the last lines show no replay command:\n{stdout}"
    );

    // Taken when the shard was killed: a backlog, the stars the demo gives its repos, and
    // the clone durations seen so far.
    let snap = capture::read(&snapshot).expect("the demo's snapshot reads");
    assert_eq!(snap.repos.len(), 40);
    let backlog = snap.repos.iter().filter(|r| r.state != RepoState::Cloned).count();
    assert!(backlog > 0 && backlog < 40, "{backlog} of 40 not cloned at the kill");
    assert!(snap.repos.iter().any(|r| r.repo.stars.is_some_and(|s| s >= 5_000)), "no popular repo in the snapshot");
    assert!(snap.clones.iter().any(|c| c.succeeded), "no clone observed before the kill");

    // The command it shows runs (with the built-in order: the examples live elsewhere here).
    let out = dir.path().join("report");
    let replayed = std::process::Command::new(crate::support::sidecar::BIN)
        .args(["replay", &snapshot.to_string_lossy(), "--top", "10", "--policy", "builtin", "--out"])
        .arg(&out)
        .output()
        .expect("running replay");
    assert!(replayed.status.success(), "{}", String::from_utf8_lossy(&replayed.stderr));
    assert!(out.join("report.html").is_file());
}

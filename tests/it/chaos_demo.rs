//! `clonekeeper demo --chaos`: the sidecar as a child process and the dev shards are killed at
//! random during the storm; the demo must end with every repo cloned and every invariant of
//! its report holding, checked from the shards' own records.

use std::time::Duration;

use crate::support::run_to_end;
use crate::support::sidecar::command;

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_kills_ends_with_every_repo_cloned_and_every_invariant_holding() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("demo.log");
    let mut demo = command(&log);
    demo.args(["demo", "--chaos", "12s", "--repos", "30", "--shards", "2", "--seed", "11", "--plain", "--dir"])
        .arg(dir.path().join("demo"));
    let (status, stdout) = run_to_end(demo, Duration::from_secs(240), &log).await;
    assert!(status.success(), "{status}\n{stdout}\n{}", std::fs::read_to_string(&log).unwrap_or_default());

    let kills = |what: &str| stdout.lines().filter(|l| l.contains(what)).count();
    assert!(kills("SIGKILL the sidecar") >= 1 && kills("killed shard") >= 1, "the storm hit nothing:\n{stdout}");
    let report: Vec<&str> = stdout.lines().skip_while(|l| !l.starts_with("Invariants:")).skip(1).take(4).collect();
    assert_eq!(report.len(), 4, "{stdout}");
    assert!(report.iter().all(|l| l.trim_start().starts_with("ok ")), "{stdout}");
    assert!(stdout.contains("every repository cloned on its owning shard (30/30"), "{stdout}");
    assert!(stdout.contains("--seed 11"), "the report says how to replay the schedule:\n{stdout}");
}

//! The sidecar is SIGKILLed while dispatches are in flight. Its durable state carries over to
//! the next process: a backoff deadline survives (no needless retry), and clones the shards
//! are still running are recognised rather than started again.

use std::time::Duration;

use crate::support::db::{AttemptRow, NewRepo, PgDb, Shape};
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{assert_never_concurrent, broken_url, eventually, source_repos, start_shards, starts_per_repo};

const GOOD: usize = 40;
const BROKEN: &str = "github.com/restart/broken";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_sigkill_mid_dispatch() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let good: Vec<String> = (0..GOOD).map(|i| format!("github.com/restart/good-{i:02}")).collect();
    let urls = source_repos(&work.path().join("sources"), &good).await;
    let db = PgDb::create(Shape::Cloned2020_10).await;
    // The broken repo is the oldest, so the built-in order dispatches it first.
    let mut rows = vec![NewRepo::new(BROKEN, broken_url(work.path())).created(0)];
    rows.extend(
        good.iter().zip(&urls).enumerate().map(|(i, (name, url))| NewRepo::new(name, url).created(1 + i as i64)),
    );
    db.insert_repos(&rows).await;

    let shards = start_shards(work.path(), 2, Duration::from_millis(300));
    let mut config = SidecarConfig::new(db.url(), shards.iter().map(DevShard::addr).collect());
    // Long enough that the broken repo is not retried while the test runs.
    config.backoff_base = "120s";
    config.backoff_max = "10m";
    let sidecar = Sidecar::start(&config);

    let failed_once: AttemptRow =
        eventually("the broken repo's first failure stored, with dispatches in flight", || async {
            let row = db.attempt(BROKEN).await?.ok_or("no attempt record for the broken repo yet")?;
            let status = sidecar.status().await?;
            let stored =
                row.attempts == 1 && row.last_error.is_some() && row.next_attempt_at.is_some() && !row.in_flight;
            if stored && status.totals.in_flight > 0 {
                Ok(row)
            } else {
                Err(format!("{row:?}; in flight: {}", status.totals.in_flight))
            }
        })
        .await;
    sidecar.kill();

    let at_kill = db.attempt(BROKEN).await.expect("reading the state").expect("the broken repo's record");
    assert_eq!(at_kill, failed_once, "the broken repo's record changed between the poll and the kill");
    let interrupted: Vec<String> = db
        .attempt_names()
        .await
        .expect("reading the state")
        .into_iter()
        .filter_map(|(name, in_flight)| in_flight.then_some(name))
        .collect();
    assert!(!interrupted.is_empty(), "attempts are stored before their call, so the kill must leave some in flight");

    sidecar.restart();
    let done = sidecar
        .wait_for("every good repo cloned after the restart", |s| {
            s.totals.cloned == GOOD as u64 && s.totals.desired == GOOD as u64 + 1
        })
        .await;
    // A few more ticks, in which a needless retry would happen.
    sidecar.wait_for("five more ticks", |s| s.ticks >= done.ticks + 5).await;

    let after = db.attempt(BROKEN).await.expect("reading the state").expect("the broken repo's record");
    assert_eq!(after.attempts, 1, "the broken repo was retried despite its stored backoff: {after:?}");
    assert_eq!(after.next_attempt_at, at_kill.next_attempt_at, "the backoff deadline changed: {after:?}");
    assert_eq!(after.last_error, at_kill.last_error);
    let status = sidecar.status().await.expect("status");
    assert_eq!(status.totals.failed, 1, "{status:#?}");
    assert_eq!(status.totals.backing_off, 1, "{status:#?}");

    // Nothing was started twice: each good repo's clone was started exactly once over both
    // shards, across the kill; the broken one once.
    let logs = [shards[0].dispatches().await, shards[1].dispatches().await];
    for (idx, log) in logs.iter().enumerate() {
        assert_never_concurrent(&format!("shard {idx}"), log);
    }
    let starts = starts_per_repo(&logs);
    let repeated: Vec<_> = starts.iter().filter(|(_, &n)| n != 1).collect();
    assert!(repeated.is_empty(), "clones started more than once: {repeated:?}");
    for name in good.iter().map(String::as_str).chain([BROKEN]) {
        assert_eq!(starts.get(name), Some(&1), "clone starts of {name}");
    }

    // Records of the repos confirmed cloned are dropped, including the interrupted ones.
    eventually("only the broken repo's record left", || async {
        let names = db.attempt_names().await?;
        if names == [(BROKEN.to_owned(), false)] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
}

//! A repo whose clone URL git cannot clone fails, is retried with backoff, keeps git's message,
//! and does not hold up the other repos.

use std::time::Duration;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{assert_never_concurrent, broken_url, eventually, source_repos, starts_per_repo};

const GOOD: usize = 15;
const BROKEN: &str = "github.com/broken-url/nowhere";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_clone_url_fails_with_backoff_without_blocking_others() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let good: Vec<String> = (0..GOOD).map(|i| format!("github.com/broken-url/good-{i:02}")).collect();
    let urls = source_repos(&work.path().join("sources"), &good).await;
    let db = PgDb::create(Shape::Sources2020_06).await;
    let mut rows = vec![NewRepo::new(BROKEN, broken_url(work.path())).created(0)];
    rows.extend(
        good.iter().zip(&urls).enumerate().map(|(i, (name, url))| NewRepo::new(name, url).created(1 + i as i64)),
    );
    db.insert_repos(&rows).await;

    let shard = DevShard::start(&work.path().join("shard-0"), Duration::from_millis(100));
    let mut config = SidecarConfig::new(db.url(), vec![shard.addr()]);
    config.backoff_base = "300ms";
    config.backoff_max = "2s";
    config.env.push(("CLONEKEEPER_LOG_DECISION_SAMPLE", "1.0".to_string()));
    let sidecar = Sidecar::start(&config);

    // The row is read before the status, so the status has seen every outcome the row has.
    let (status, row) = eventually("the good repos cloned and the broken one retried", || async {
        let row = db.attempt(BROKEN).await?.ok_or("no attempt record for the broken repo yet")?;
        let status = sidecar.status().await?;
        let settled = row.attempts >= 2
            && !row.in_flight
            && status.totals.cloned == GOOD as u64
            && status.totals.desired == GOOD as u64 + 1
            && status.totals.failed == 1
            && status.totals.in_flight == 0
            && status.dispatches.failed >= 2;
        if settled {
            Ok((status, row))
        } else {
            Err(format!(
                "cloned {} failed {} in flight {} dispatch failures {}; {row:?}",
                status.totals.cloned, status.totals.failed, status.totals.in_flight, status.dispatches.failed
            ))
        }
    })
    .await;

    assert_eq!(status.totals.failed, 1, "{status:#?}");
    assert_eq!(status.shards[0].counts.failed, 1, "{status:#?}");
    assert_eq!(status.totals.cloned, GOOD as u64);
    assert_eq!(status.totals.uncloned, 0, "{status:#?}");

    let error = row.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("does not exist") || error.contains("fatal"),
        "the stored error should carry git's message: {error:?}"
    );
    assert_eq!(row.gave_up, None);
    let (last, next) = (row.last_attempt_at.expect("last_attempt_at"), row.next_attempt_at.expect("next_attempt_at"));
    assert!(next > last, "next_attempt_at {next} must be after last_attempt_at {last}");
    // The stored deadline honours the configured base delay (a stored value, not a timing).
    assert!(next - last >= 300, "backoff of {} ms is below backoff_base", next - last);

    // The broken repo was retried (one clone start per attempt so far); each good repo cloned once.
    let log = shard.dispatches().await;
    assert_never_concurrent("shard 0", &log);
    let starts = starts_per_repo([&log]);
    assert!(starts.get(BROKEN).copied().unwrap_or(0) >= 2, "{starts:?}");
    for name in &good {
        assert_eq!(starts.get(name.as_str()), Some(&1), "clone starts of {name}");
        assert!(shard.has_mirror(name), "{name} is not cloned");
    }
    assert!(!shard.has_mirror(BROKEN));

    // The decision log (every decision sampled) carries the retry with git's message as its
    // reason, and the order with why each repo was due.
    let log = sidecar.log_tail(100_000);
    let retry = log
        .lines()
        .find(|l| l.contains("clonekeeper::decision") && l.contains("reenqueue") && l.contains(BROKEN))
        .unwrap_or_else(|| panic!("no retry decision for {BROKEN} in the log"));
    assert!(retry.contains("retry at"), "{retry}");
    assert!(retry.contains("dispatch 1 to") && retry.contains("failed:"), "the failure is the reason: {retry}");
    let order = log
        .lines()
        .find(|l| l.contains("clonekeeper::decision") && l.contains("prioritize") && l.contains("never dispatched"))
        .unwrap_or_else(|| panic!("no order decision with its reason in the log"));
    assert!(order.contains("builtin"), "{order}");
    // The first sampled decisions of a tick say why in the policy's terms (here the built-in order's).
    assert!(
        log.lines().any(|l| l.contains("clonekeeper::decision") && l.contains("never attempted, created")),
        "no explained order decision in the log"
    );
}

//! gitserver answers `/repo-update` of one repo with an error holding a NUL byte (which
//! Postgres refuses in text) and control characters. The error is stored made storable, in
//! the state DB and by write-back, and explained; every other repo's attempt records are
//! still written and the other repos cloned: one bad string blocks nothing.

use std::time::Duration;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{broken_url, eventually, source_repos};

const GOOD: usize = 10;
const NUL_REPO: &str = "github.com/nul-error/poisoned";
const BROKEN: &str = "github.com/nul-error/broken";
const ERROR: &str = "fatal: remote said \0 and then \x1b[31mbye";
const STORED: &str = "fatal: remote said \u{FFFD} and then  [31mbye";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_byte_in_a_clone_error_is_stored_and_blocks_nothing() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut names: Vec<String> = (0..GOOD).map(|i| format!("github.com/nul-error/good-{i:02}")).collect();
    names.push(NUL_REPO.to_owned());
    let urls = source_repos(&work.path().join("sources"), &names).await;
    let db = PgDb::create(Shape::GitserverRepos2021).await;
    // The two failing repos are the oldest, so they are dispatched (and their records written)
    // first, before and among the good ones.
    let mut rows =
        vec![NewRepo::new(NUL_REPO, &urls[GOOD]).created(0), NewRepo::new(BROKEN, broken_url(work.path())).created(1)];
    rows.extend(
        names[..GOOD].iter().zip(&urls).enumerate().map(|(i, (n, u))| NewRepo::new(n, u).created(2 + i as i64)),
    );
    let ids = db.insert_repos(&rows).await;

    let shard = DevShard::start(&work.path().join("shard-0"), Duration::from_millis(50));
    shard.fail_repo_update(NUL_REPO, ERROR).await;
    let mut config = SidecarConfig::new(db.url(), vec![shard.addr()]);
    config.writeback = true;
    config.backoff_base = "300ms";
    config.backoff_max = "1s";
    let sidecar = Sidecar::start(&config);

    let (nul_row, broken_row) = eventually("both failures stored, retried, and the good repos cloned", || async {
        let nul_row = db.attempt(NUL_REPO).await?.ok_or("no record of the NUL repo yet")?;
        let broken_row = db.attempt(BROKEN).await?.ok_or("no record of the broken repo yet")?;
        let status = sidecar.status().await?;
        let settled = nul_row.attempts >= 2
            && broken_row.attempts >= 2
            && !nul_row.in_flight
            && status.totals.cloned == GOOD as u64
            && status.totals.failed == 2;
        if settled {
            Ok((nul_row, broken_row))
        } else {
            Err(format!("cloned {}; {nul_row:?}; {broken_row:?}", status.totals.cloned))
        }
    })
    .await;
    assert_eq!(nul_row.last_error.as_deref(), Some(format!("gitserver {}: {STORED}", shard.addr()).as_str()));
    let broken_error = broken_row.last_error.unwrap_or_default();
    assert!(broken_error.contains("does not exist") || broken_error.contains("fatal"), "{broken_error:?}");

    // Explain shows git's message.
    let explained = sidecar.explain(NUL_REPO).await.expect("explain");
    let shown = explained.last_error.unwrap_or_default();
    assert!(shown.contains("fatal: remote said") && shown.contains("bye"), "{shown:?}");
    assert_eq!(explained.state.as_deref(), Some("failed"));

    // Write-back stored it too, and nothing was refused or failed.
    let written_back: String = eventually("the NUL repo's error written back", || async {
        let row: Option<Option<String>> =
            sqlx::query_scalar("SELECT last_error FROM gitserver_repos WHERE repo_id = $1")
                .bind(ids[0] as i32)
                .fetch_optional(db.pool())
                .await
                .map_err(|e| format!("reading gitserver_repos: {e}"))?;
        row.flatten().ok_or_else(|| "no last_error written back yet".to_owned())
    })
    .await;
    assert!(written_back.ends_with(STORED), "{written_back:?}");
    let status = sidecar.status().await.expect("status");
    assert_eq!(status.writeback_error, None, "{status:#?}");
    assert_eq!(status.state_refused.total, 0, "{status:#?}");
    assert_eq!(status.writeback_refused.total, 0, "{status:#?}");
    for name in &names[..GOOD] {
        assert!(shard.has_mirror(name), "{name} is not cloned");
    }
    assert!(!shard.has_mirror(NUL_REPO), "the fault keeps the NUL repo from cloning");
}

//! Shards that misbehave at the HTTP level, beside healthy ones: a shard that accepts the
//! connection and never answers, one that cuts its JSON mid-body, one that streams an answer
//! past the size cap without a `Content-Length`. Each is reported by name; none holds the
//! healthy shard's healing.

use std::time::Duration;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::hostile::{Fault, HostileShard};
use crate::support::routing::md5_shard;
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::source_repos;

/// `count` names that md5-route to shard `healthy` of `n_shards`.
fn names_on(prefix: &str, healthy: usize, n_shards: usize, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("github.com/{prefix}/repo-{i}"))
        .filter(|name| md5_shard(name, n_shards) == healthy)
        .take(count)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_never_answers_does_not_hold_the_others() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let hung = HostileShard::start(Fault::Hang).await;
    let healthy = DevShard::start(work.path(), Duration::ZERO);
    // Shard 0 hangs, shard 1 is healthy.
    let names = names_on("hung", 1, 2, 4);
    let urls = source_repos(&work.path().join("sources"), &names).await;
    let db = PgDb::create(Shape::GitserverRepos2021).await;
    let rows: Vec<NewRepo> = names.iter().zip(&urls).take(3).map(|(n, u)| NewRepo::new(n, u)).collect();
    db.insert_repos(&rows).await;

    let mut config = SidecarConfig::new(db.url(), vec![hung.addr(), healthy.addr()]);
    config.interval = "500ms";
    // The hung shard's calls time out only after the test's own deadline: anything healed
    // before then was healed without waiting for it.
    config.env.push(("CLONEKEEPER_GITSERVER_TIMEOUT", "10m".to_string()));
    let sidecar = Sidecar::start(&config);

    let first = sidecar
        .wait_for("the healthy shard's repos cloned while the other hangs", |s| {
            s.shards.len() == 2 && s.shards[1].counts.cloned == 3
        })
        .await;
    assert!(first.shards[0].late_since.is_some(), "the hung shard is reported late: {first:#?}");
    assert!(first.shards[0].error.is_none(), "its calls have not timed out yet: {first:#?}");
    assert_eq!(first.shards[0].counts.unknown, first.shards[0].counts.desired, "never answered: unknown");

    // A repo added later on the healthy shard is healed at the healthy shard's pace.
    db.insert_repos(&[NewRepo::new(&names[3], &urls[3])]).await;
    let later = sidecar.wait_for("the repo added later cloned", |s| s.shards[1].counts.cloned == 4).await;
    assert!(later.shards[0].late_since.is_some() && later.shards[0].error.is_none(), "{later:#?}");
    assert!(healthy.has_mirror(&names[3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_oversized_answers_name_the_shard_and_spare_the_others() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let cut = HostileShard::start(Fault::CutMidJson).await;
    let endless = HostileShard::start(Fault::EndlessNoLength).await;
    let healthy = DevShard::start(work.path(), Duration::ZERO);
    let names = names_on("hostile", 2, 3, 3);
    let urls = source_repos(&work.path().join("sources"), &names).await;
    let db = PgDb::create(Shape::Cloned2020_10).await;
    let rows: Vec<NewRepo> = names.iter().zip(&urls).map(|(n, u)| NewRepo::new(n, u)).collect();
    db.insert_repos(&rows).await;

    let mut config = SidecarConfig::new(db.url(), vec![cut.addr(), endless.addr(), healthy.addr()]);
    config.env.push(("CLONEKEEPER_GITSERVER_MAX_RESPONSE_MB", "1".to_string()));
    let sidecar = Sidecar::start(&config);

    let status = sidecar
        .wait_for("both hostile shards reported, the healthy one done", |s| {
            s.shards.len() == 3
                && s.shards[0].error.is_some()
                && s.shards[1].error.is_some()
                && s.shards[2].counts.cloned == 3
        })
        .await;
    let cut_error = status.shards[0].error.as_deref().unwrap_or_default();
    assert!(cut_error.contains(&cut.addr()) && cut_error.contains("GET /list?cloned"), "{cut_error}");
    let endless_error = status.shards[1].error.as_deref().unwrap_or_default();
    assert!(endless_error.contains(&endless.addr()) && endless_error.contains("GET /list?cloned"), "{endless_error}");
    assert!(endless_error.contains("larger than 1048576 bytes"), "the size cap is named: {endless_error}");
    assert!(status.shards[..2].iter().all(|s| !s.reachable), "{status:#?}");
}

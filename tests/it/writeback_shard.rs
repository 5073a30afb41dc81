//! Write-back keeps `gitserver_repos.shard_id` true: a row naming another configured shard
//! (as after a reshard, with the clone status unchanged) is corrected, while a row naming an
//! address clonekeeper does not know is left alone, so clonekeeper never takes turns with a
//! gitserver that spells its own address differently.

use std::time::Duration;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::eventually;
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::source_repos;

const FOREIGN: &str = "gitserver-0.gitserver.svc:3178";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writeback_corrects_a_shard_id_naming_another_shard_and_leaves_unknown_ones() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = (0..6).map(|i| format!("github.com/reshard/repo-{i}")).collect();
    let urls = source_repos(&work.path().join("sources"), &names).await;
    let db = PgDb::create(Shape::GitserverRepos2021).await;
    let rows: Vec<NewRepo> = names.iter().zip(&urls).map(|(name, url)| NewRepo::new(name, url)).collect();
    db.insert_repos(&rows).await;

    let shards = [0, 1].map(|i| DevShard::start(&work.path().join(format!("shard-{i}")), Duration::from_millis(50)));
    let addrs: Vec<String> = shards.iter().map(DevShard::addr).collect();
    let mut config = SidecarConfig::new(db.url(), addrs.clone());
    config.writeback = true;
    let sidecar = Sidecar::start(&config);
    sidecar.wait_for("every repo cloned", |s| s.totals.cloned == names.len() as u64).await;

    // Every row written back as cloned on its owner (one of the two shards).
    let recorded = || async {
        let rows: Vec<(i64, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT repo.id::bigint, gr.clone_status, gr.shard_id FROM repo \
               LEFT JOIN gitserver_repos gr ON gr.repo_id = repo.id ORDER BY repo.id",
        )
        .fetch_all(db.pool())
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(rows)
    };
    let owners = eventually("gitserver_repos written back", || async {
        let rows = recorded().await?;
        let done = rows.iter().all(|(_, status, shard)| {
            status.as_deref() == Some("cloned") && shard.as_deref().is_some_and(|s| addrs.iter().any(|a| a == s))
        });
        if done {
            Ok(rows)
        } else {
            Err(format!("not yet: {rows:?}"))
        }
    })
    .await;

    // Repo A now claims the other shard; repo B an address clonekeeper does not know.
    let (a_id, a_owner) = (owners[0].0, owners[0].2.clone().expect("written"));
    let a_other = addrs.iter().find(|addr| **addr != a_owner).expect("two shards").clone();
    let b_id = owners[1].0;
    for (id, shard_id) in [(a_id, a_other.as_str()), (b_id, FOREIGN)] {
        sqlx::query("UPDATE gitserver_repos SET shard_id = $1 WHERE repo_id = $2")
            .bind(shard_id)
            .bind(id)
            .execute(db.pool())
            .await
            .expect("rewriting shard_id");
    }

    eventually("the shard_id naming the other shard corrected", || async {
        let rows = recorded().await?;
        match rows.iter().find(|(id, _, _)| *id == a_id) {
            Some((_, _, Some(shard))) if *shard == a_owner => Ok(()),
            other => Err(format!("repo {a_id}: {other:?}")),
        }
    })
    .await;
    let now = sidecar.status().await.expect("status");
    sidecar.wait_for("three more ticks", |s| s.ticks >= now.ticks + 3).await;
    let rows = recorded().await.expect("reading gitserver_repos");
    let b = rows.iter().find(|(id, _, _)| *id == b_id).expect("repo B's row");
    assert_eq!(b.2.as_deref(), Some(FOREIGN), "an unknown address is left alone");
}

//! The admin API: `/healthz`, and the shape of `/v1/status` as raw JSON (what dashboards and
//! scripts parse), with an orphan (a mirror no repo row wants) reported and left alone.

use std::time::Duration;

use serde_json::Value;

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::routing::md5_shard;
use crate::support::shard::DevShard;
use crate::support::sidecar::{Sidecar, SidecarConfig};
use crate::support::{source_repos, start_shards, starts_per_repo};

const REPOS: usize = 8;
const ORPHAN: &str = "github.com/status/orphan";
const COUNT_KEYS: &[&str] = &["desired", "cloned", "cloning", "uncloned", "failed", "orphaned", "queued", "in_flight"];

fn assert_counts(what: &str, object: &Value) {
    for key in COUNT_KEYS {
        assert!(object.get(key).is_some_and(Value::is_u64), "{what}: `{key}` is not a count: {object:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_endpoint_shape() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut names: Vec<String> = (0..REPOS).map(|i| format!("github.com/status/repo-{i}")).collect();
    names.push(ORPHAN.to_owned());
    let mut urls = source_repos(&work.path().join("sources"), &names).await;
    let orphan_url = urls.pop().expect("the orphan's source");
    names.pop();
    let db = PgDb::create(Shape::GitserverRepos2021).await;
    let rows: Vec<NewRepo> = names.iter().zip(&urls).map(|(name, url)| NewRepo::new(name, url)).collect();
    db.insert_repos(&rows).await;

    let shards = start_shards(work.path(), 2, Duration::from_millis(20));
    let addrs: Vec<String> = shards.iter().map(DevShard::addr).collect();
    // The orphan: cloned on a shard before the sidecar starts, wanted by no repo row.
    let orphan_shard = md5_shard(ORPHAN, 2);
    let answer = shards[orphan_shard].repo_update(ORPHAN, &orphan_url).await;
    assert!(answer.error.is_empty(), "cloning the orphan directly failed: {answer:?}");
    assert!(shards[orphan_shard].has_mirror(ORPHAN));

    let sidecar = Sidecar::start(&SidecarConfig::new(db.url(), addrs.clone()));
    let health = reqwest::get(sidecar.url("/healthz")).await;
    let done = sidecar
        .wait_for("every repo cloned and the orphan found", |s| {
            s.totals.cloned == REPOS as u64 && s.totals.desired == REPOS as u64 && s.totals.orphaned == 1
        })
        .await;
    let health = match health {
        Ok(response) => response,
        // The admin API may not have been up yet at the first try; it is now.
        Err(_) => reqwest::get(sidecar.url("/healthz")).await.expect("GET /healthz"),
    };
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    let json = sidecar.status_json().await.expect("GET /v1/status");
    assert_counts("top level", &json);
    assert_eq!(json["orphaned"], 1, "{json:#}");
    assert_eq!(json["cloned"], REPOS as u64, "{json:#}");
    assert_eq!(json["desired"], REPOS as u64, "{json:#}");
    let shard_lines = json["shards"].as_array().unwrap_or_else(|| panic!("`shards` is not an array: {json:#}"));
    assert_eq!(shard_lines.len(), 2, "{json:#}");
    for (idx, line) in shard_lines.iter().enumerate() {
        assert_counts(&format!("shards[{idx}]"), line);
        assert_eq!(line["addr"], addrs[idx].as_str(), "{line:#}");
        assert_eq!(line["reachable"], true, "{line:#}");
        let expected_orphans = u64::from(idx == orphan_shard);
        assert_eq!(line["orphaned"], expected_orphans, "shards[{idx}]: {line:#}");
    }
    let orphans: Vec<&str> = json["orphans"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert_eq!(orphans, [format!("{}: {ORPHAN}", addrs[orphan_shard])], "{json:#}");

    // Reported, never deleted, nor cloned again: a few more ticks change nothing.
    sidecar.wait_for("five more ticks", |s| s.ticks >= done.ticks + 5).await;
    let later = sidecar.status().await.expect("status");
    assert_eq!(later.totals.orphaned, 1, "{later:#?}");
    assert!(shards[orphan_shard].has_mirror(ORPHAN), "the orphan's mirror was deleted");
    let starts = starts_per_repo([&shards[orphan_shard].dispatches().await]);
    assert_eq!(starts.get(ORPHAN), Some(&1), "only the test's own request cloned the orphan");
}

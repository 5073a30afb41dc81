//! A shard whose list calls start failing while gitserver clones one of its repos: the repo
//! stays *cloning* (the last answer is kept) and is not dispatched again. Before, a failed read
//! dropped the shard's cloning list, the repo looked uncloned, and it was dispatched a second
//! time about a second later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use gitserver_api::{CloneProgress, CloneProgressResponse, RepoUpdateRequest, RepoUpdateResponse, ReposRequest};

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::sidecar::{Sidecar, SidecarConfig};

const REPO: &str = "github.com/stub/cloning-elsewhere";

#[derive(Default)]
struct Stub {
    failing: AtomicBool,
    updates: Mutex<Vec<String>>,
}

/// Nothing cloned yet; once `failing`, every list call is a 500.
async fn list(State(stub): State<Arc<Stub>>) -> Result<Json<Vec<String>>, StatusCode> {
    if stub.failing.load(Ordering::SeqCst) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    Ok(Json(Vec::new()))
}

/// gitserver is cloning the repo (started by another client, or by an earlier sidecar).
async fn progress(Json(request): Json<ReposRequest>) -> Json<CloneProgressResponse> {
    let cloning = CloneProgress { clone_in_progress: true, clone_progress: "Receiving objects".into(), cloned: false };
    Json(CloneProgressResponse { results: request.repos.into_iter().map(|name| (name, cloning.clone())).collect() })
}

async fn repo_update(
    State(stub): State<Arc<Stub>>,
    Json(request): Json<RepoUpdateRequest>,
) -> Json<RepoUpdateResponse> {
    stub.updates.lock().expect("not poisoned").push(request.repo);
    Json(RepoUpdateResponse { clone_in_progress: true, ..RepoUpdateResponse::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_does_not_redispatch_a_clone_in_progress() {
    let db = PgDb::create(Shape::Cloned2020_10).await;
    db.insert_repos(&[NewRepo::new(REPO, "/nonexistent/cloned-by-someone-else.git")]).await;
    let stub = Arc::new(Stub::default());
    let router = Router::new()
        .route("/list", get(list))
        .route("/repo-clone-progress", post(progress))
        .route("/repo-update", post(repo_update))
        .with_state(Arc::clone(&stub));
    let (addr, _server) = crate::support::serve_stub_shard(router).await;

    let sidecar = Sidecar::start(&SidecarConfig::new(db.url(), vec![addr]));
    sidecar.wait_for("the repo seen cloning on its shard", |s| s.totals.cloning == 1 && s.ticks >= 2).await;
    stub.failing.store(true, Ordering::SeqCst);
    let failed = sidecar.wait_for("the shard's list failing", |s| s.shards[0].error.is_some()).await;
    // The shard's dispatch pause after a failure starts at 1 s; 20 ticks of 200 ms are well past it.
    let after = sidecar.wait_for("twenty more ticks", |s| s.ticks >= failed.ticks + 20).await;
    assert_eq!(after.totals.cloning, 1, "the last cloning list is kept through failed reads: {after:#?}");
    let updates = stub.updates.lock().expect("not poisoned").clone();
    assert!(updates.is_empty(), "a failed read re-dispatched a clone in progress: {updates:?}");
}

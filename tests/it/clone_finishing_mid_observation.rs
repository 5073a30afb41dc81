//! A clone that finishes between a shard's `/list?cloned` and its `/repo-clone-progress`
//! answer: the list does not have it yet, the progress call says `Cloned: true`. The repo is
//! cloned and must not be dispatched again.
//!
//! With the dev gitserver this happens by chance (a clone started by another client, or by a
//! previous sidecar process, completing in that window) and the server dedups the extra
//! request, so nothing shows. A stub shard answering as the shard does in that window makes it
//! deterministic and observable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use gitserver_api::{CloneProgress, CloneProgressResponse, RepoUpdateRequest, RepoUpdateResponse, ReposRequest};

use crate::support::db::{NewRepo, PgDb, Shape};
use crate::support::sidecar::{Sidecar, SidecarConfig};

const REPO: &str = "github.com/stub/just-cloned";

#[derive(Default)]
struct Stub {
    lists: AtomicUsize,
    progress_calls: AtomicUsize,
    updates: Mutex<Vec<String>>,
}

/// The first list predates the clone's end; every later one has the mirror.
async fn list(State(stub): State<Arc<Stub>>) -> Json<Vec<String>> {
    let first = stub.lists.fetch_add(1, Ordering::SeqCst) == 0;
    Json(if first { Vec::new() } else { vec![REPO.to_owned()] })
}

/// Asked right after that first list: the clone has just finished.
async fn progress(State(stub): State<Arc<Stub>>, Json(request): Json<ReposRequest>) -> Json<CloneProgressResponse> {
    stub.progress_calls.fetch_add(1, Ordering::SeqCst);
    let cloned = CloneProgress { clone_in_progress: false, clone_progress: String::new(), cloned: true };
    Json(CloneProgressResponse { results: request.repos.into_iter().map(|name| (name, cloned.clone())).collect() })
}

/// Records the dispatch; answers as gitserver does for a repo it has.
async fn repo_update(
    State(stub): State<Arc<Stub>>,
    Json(request): Json<RepoUpdateRequest>,
) -> Json<RepoUpdateResponse> {
    stub.updates.lock().expect("not poisoned").push(request.repo);
    Json(RepoUpdateResponse { cloned: true, ..RepoUpdateResponse::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_finished_between_list_and_progress_is_not_dispatched_again() {
    let db = PgDb::create(Shape::Cloned2020_10).await;
    db.insert_repos(&[NewRepo::new(REPO, "/nonexistent/never-cloned-by-this-test.git")]).await;

    let stub = Arc::new(Stub::default());
    let router = Router::new()
        .route("/list", get(list))
        .route("/repo-clone-progress", post(progress))
        .route("/repo-update", post(repo_update))
        .with_state(Arc::clone(&stub));
    let (addr, server) = crate::support::serve_stub_shard(router).await;

    let sidecar = Sidecar::start(&SidecarConfig::new(db.url(), vec![addr]));
    let first = sidecar.wait_for("a first tick", |s| s.ticks >= 1).await;
    assert_eq!(
        stub.progress_calls.load(Ordering::SeqCst),
        1,
        "the first tick should have asked about the repo missing from the first list"
    );
    // Every later tick lists the repo; give the sidecar a few in which a dispatch would land.
    let done = sidecar.wait_for("five more ticks", |s| s.ticks >= first.ticks + 5 && s.totals.cloned == 1).await;
    let updates = stub.updates.lock().expect("not poisoned").clone();
    assert!(
        updates.is_empty(),
        "the shard answered `Cloned: true` for {REPO}, yet it was dispatched {} time(s); first tick's status: \
         {first:#?}",
        updates.len()
    );
    assert_eq!(done.totals.failed, 0);
    server.abort();
}

//! The HTTP API: one handler per gitserver endpoint, plus the `/debug/dispatches` test
//! instrumentation. Handlers translate between wire types and [`Clones`]; they hold no state
//! of their own.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gitserver_api::{
    normalize_repo_name, CloneProgress, CloneProgressResponse, DeleteRequest, IsRepoCloneableRequest,
    IsRepoCloneableResponse, RepoInfo, RepoUpdateRequest, RepoUpdateResponse, ReposRequest, ReposResponse,
};

use crate::clones::{Claim, CloneError, Clones};
use crate::debug::Dispatches;
use crate::faults::{Faults, RepoUpdateFault};
use crate::git;
use crate::json_body::JsonBody;
use crate::layout::Layout;
use crate::listing;

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) layout: Layout,
    pub(crate) clones: Arc<Clones>,
    pub(crate) dispatches: Arc<Dispatches>,
    pub(crate) faults: Faults,
}

/// The server's routes.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/list", get(list))
        .route("/repos", post(repos))
        .route("/repo-clone-progress", post(repo_clone_progress))
        .route("/repo-update", post(repo_update))
        .route("/is-repo-cloneable", post(is_repo_cloneable))
        .route("/delete", post(delete))
        .route("/debug/dispatches", get(debug_dispatches))
        .route("/debug/repo-update-error", post(debug_repo_update_error))
        .with_state(state)
}

/// `GET /list?cloned`: the normalised names of all mirrors, sorted. Other queries are
/// refused, as gitserver refused them.
async fn list(State(state): State<Arc<AppState>>, Query(query): Query<HashMap<String, String>>) -> Response {
    if !query.contains_key("cloned") {
        return (StatusCode::BAD_REQUEST, "unknown list query; use ?cloned").into_response();
    }
    let root = state.layout.root().to_owned();
    match tokio::task::spawn_blocking(move || listing::list_cloned(&root)).await {
        Ok(Ok(names)) => Json(names).into_response(),
        Ok(Err(err)) => {
            tracing::error!("Listing the mirrors failed: {err}.");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot list repos: {err}")).into_response()
        }
        Err(err) => {
            tracing::error!("The listing task failed: {err}.");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot list repos").into_response()
        }
    }
}

/// `POST /repos`: status per requested name, keyed by the name as requested.
async fn repos(State(state): State<Arc<AppState>>, JsonBody(request): JsonBody<ReposRequest>) -> Json<ReposResponse> {
    let results = request
        .repos
        .into_iter()
        .map(|requested| {
            let status = state.clones.status(&normalize_repo_name(&requested));
            let info = RepoInfo {
                url: status.url,
                clone_in_progress: status.in_progress,
                clone_progress: status.progress,
                cloned: status.cloned,
                ..RepoInfo::default()
            };
            (requested, info)
        })
        .collect();
    Json(ReposResponse { results })
}

/// `POST /repo-clone-progress`: like `/repos`, reduced to the clone's progress.
async fn repo_clone_progress(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<ReposRequest>,
) -> Json<CloneProgressResponse> {
    let results = request
        .repos
        .into_iter()
        .map(|requested| {
            let status = state.clones.status(&normalize_repo_name(&requested));
            let progress = CloneProgress {
                clone_in_progress: status.in_progress,
                clone_progress: status.progress,
                cloned: status.cloned,
            };
            (requested, progress)
        })
        .collect();
    Json(CloneProgressResponse { results })
}

/// `POST /repo-update`: answers at once when the repository is cloned or being cloned;
/// otherwise starts a clone and blocks until it ends. Success is answered the way gitserver
/// answered it, `Cloned: false, CloneInProgress: true`: only the next `/list` confirms.
/// Failures carry git's message in `Error`, with HTTP 200.
async fn repo_update(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<RepoUpdateRequest>,
) -> Json<RepoUpdateResponse> {
    let name = normalize_repo_name(&request.repo);
    let _in_flight = state.dispatches.enter(&name);
    if let Some(error) = state.faults.error_for(&name) {
        return Json(RepoUpdateResponse { error, ..RepoUpdateResponse::default() });
    }
    let outcome = match state.clones.claim(&name, &request.url) {
        Ok(Claim::AlreadyCloned) => return Json(RepoUpdateResponse { cloned: true, ..RepoUpdateResponse::default() }),
        Ok(Claim::InProgress) => {
            return Json(RepoUpdateResponse { clone_in_progress: true, ..RepoUpdateResponse::default() })
        }
        Ok(Claim::Started(outcome)) => {
            state.dispatches.record_clone_start(&name);
            outcome.await.unwrap_or(Err(CloneError::Lost))
        }
        Err(err) => Err(err),
    };
    Json(match outcome {
        Ok(()) => RepoUpdateResponse { cloned: false, clone_in_progress: true, ..RepoUpdateResponse::default() },
        Err(err) => RepoUpdateResponse { error: err.to_string(), ..RepoUpdateResponse::default() },
    })
}

/// `POST /is-repo-cloneable`: whether `git ls-remote URL HEAD` succeeds, and git's message
/// when it does not.
async fn is_repo_cloneable(JsonBody(request): JsonBody<IsRepoCloneableRequest>) -> Json<IsRepoCloneableResponse> {
    if request.url.is_empty() {
        return Json(IsRepoCloneableResponse { cloneable: false, reason: CloneError::NoUrl.to_string() });
    }
    Json(match git::ls_remote_head(&request.url).await {
        Ok(()) => IsRepoCloneableResponse { cloneable: true, reason: String::new() },
        Err(err) => IsRepoCloneableResponse { cloneable: false, reason: err.to_string() },
    })
}

/// `POST /delete`: removes a mirror and the parent directories it leaves empty. Deleting a
/// repository that is not cloned succeeds.
async fn delete(State(state): State<Arc<AppState>>, JsonBody(request): JsonBody<DeleteRequest>) -> Response {
    let name = normalize_repo_name(&request.repo);
    let mirror = match state.layout.mirror_dir(&name) {
        Ok(mirror) => mirror,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    match tokio::fs::remove_dir_all(&mirror).await {
        Ok(()) => tracing::info!("Deleted {name}."),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::error!("Deleting {name} failed: {err}.");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot delete {name}: {err}")).into_response();
        }
    }
    // Prune now-empty parents so that the listing walk stays short; `remove_dir` refuses
    // non-empty directories, which ends the pruning.
    let root = state.layout.root();
    let mut dir = mirror.parent();
    while let Some(current) = dir.filter(|d| *d != root && d.starts_with(root)) {
        if tokio::fs::remove_dir(current).await.is_err() {
            break;
        }
        dir = current.parent();
    }
    StatusCode::OK.into_response()
}

/// `GET /debug/dispatches`: see [`crate::DispatchLog`].
async fn debug_dispatches(State(state): State<Arc<AppState>>) -> Json<crate::DispatchLog> {
    Json(state.dispatches.snapshot())
}

/// `POST /debug/repo-update-error`: see [`RepoUpdateFault`].
async fn debug_repo_update_error(
    State(state): State<Arc<AppState>>,
    JsonBody(fault): JsonBody<RepoUpdateFault>,
) -> StatusCode {
    tracing::info!("Fault set: /repo-update of {} answers {:?}.", fault.repo, fault.error);
    state.faults.set(fault);
    StatusCode::OK
}

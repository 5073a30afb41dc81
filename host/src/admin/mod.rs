//! The admin HTTP server.
//!
//! Read calls (no token needed):
//! - `GET /healthz`: 200 while the process serves requests and its tick loop runs; 503 once
//!   the loop task has ended (a restart helps then, and only then).
//! - `GET /readyz`: 200 when the repo DB answers, at least one shard answered its last list
//!   call, a first tick is done (the first tick waits for the policy folder's first load,
//!   so policies are loaded too), and the loop is not stalled ([`crate::liveness`]: a tick
//!   completed and the repo DB was read within `[sync] stall_after`, and the state DB takes
//!   attempt records); 503 with the reasons otherwise, naming the step a stall is stuck in.
//!   The body names the replica's role (`single`, `leader`, `follower`); a `[ha]` follower is
//!   ready when its database probes answer.
//! - `GET /metrics`: Prometheus text format.
//! - `GET /v1/status`: the status document.
//! - `GET /v1/repos/{name}`: explain one repo.
//! - `GET /v1/queue?limit=N`: the next dispatches, in order.
//! - `GET /v1/policies`: the policy modules.
//!
//! Mutating calls (`Authorization: Bearer <admin.token>`; refused when no token is set):
//! - `POST /v1/repos/{name}/enqueue`: clear backoff and give-up; dispatch on the next tick.
//! - `POST /v1/policies/reload`: rescan the policy folder now.
//! - `GET /v1/snapshot`: what the sidecar knows, as a snapshot file (`replay::capture`):
//!   repo names can be private, so it takes the token too.
//!
//! Errors are JSON: `{"error": "…"}`. Binds to loopback unless configured otherwise: it
//! reveals repo names.

mod auth;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::model::Timestamp;
use crate::sidecar::{ControlRequest, StatusCell};

/// A readiness probe of a dependency: `Err` names what is not ready.
pub type Probe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A command the admin API forwards to the policy engine (reload).
pub type Reload = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub status: StatusCell,
    pub metrics: Arc<Metrics>,
    pub liveness: Arc<Liveness>,
    pub control: mpsc::Sender<ControlRequest>,
    /// Checks run by `/readyz` besides the status document (e.g. a repo DB ping).
    pub probes: Vec<(String, Probe)>,
    pub reload: Option<Reload>,
    pub token: Option<String>,
}

/// Builds the router; separate from [`serve`] so tests can drive it directly.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status_json))
        .route("/v1/queue", get(queue))
        .route("/v1/policies", get(policies))
        .route("/v1/policies/reload", post(reload))
        .route("/v1/repos/{*name}", get(explain).post(enqueue))
        .route("/v1/snapshot", get(snapshot))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

/// Serves the admin API on `listen` until `shutdown` resolves. Sends the bound address
/// through `bound` once listening (for `:0`).
pub async fn serve(
    listen: SocketAddr,
    state: AdminState,
    bound: oneshot::Sender<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let _ = bound.send(listener.local_addr()?);
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

async fn status_json(State(state): State<AdminState>) -> Response {
    Json(state.status.load_full().as_ref().clone()).into_response()
}

async fn policies(State(state): State<AdminState>) -> Response {
    Json(state.status.load_full().policies.clone()).into_response()
}

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text format
/// otherwise.
async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if wants_openmetrics {
        let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        ([(axum::http::header::CONTENT_TYPE, content_type)], state.metrics.encode()).into_response()
    } else {
        let content_type = "text/plain; version=0.0.4; charset=utf-8";
        ([(axum::http::header::CONTENT_TYPE, content_type)], state.metrics.encode_classic()).into_response()
    }
}

async fn healthz(State(state): State<AdminState>) -> Response {
    if state.liveness.loop_ended() {
        (StatusCode::SERVICE_UNAVAILABLE, "the tick loop has ended\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let report = state.liveness.report();
    let role = report.role.as_str();
    let mut problems = report.problems(Timestamp::now());
    for (what, probe) in &state.probes {
        match tokio::time::timeout(Duration::from_secs(2), probe()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => problems.push(format!("{what}: {error}")),
            Err(_) => problems.push(format!("{what}: no answer within 2s")),
        }
    }
    // A follower is ready to take over when its databases answer; it makes no ticks.
    let status = state.status.load_full();
    if report.role != crate::liveness::Role::Follower {
        if status.ticks == 0 {
            problems.push("no tick completed yet".to_string());
        }
        if !status.shards.iter().any(|s| s.reachable) {
            problems.push("no gitserver shard answered its last list call".to_string());
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, Json(serde_json::json!({ "ready": true, "role": role }))).into_response()
    } else {
        let body = serde_json::json!({ "ready": false, "role": role, "problems": problems });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

#[derive(Debug, Deserialize)]
struct QueueParams {
    limit: Option<usize>,
}

async fn queue(State(state): State<AdminState>, Query(params): Query<QueueParams>) -> Response {
    let limit = params.limit.unwrap_or(50).min(10_000);
    ask(&state, |reply| ControlRequest::Queue { limit, reply }).await.map_or_else(|e| e, |q| Json(q).into_response())
}

async fn explain(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match ask(&state, |reply| ControlRequest::Explain { name, reply }).await {
        Ok(Ok(explain)) => Json(explain).into_response(),
        Ok(Err(message)) => error(StatusCode::BAD_REQUEST, &message),
        Err(response) => response,
    }
}

async fn enqueue(State(state): State<AdminState>, headers: HeaderMap, Path(path): Path<String>) -> Response {
    if let Err(denied) = auth::check(&headers, state.token.as_deref()) {
        return denied.into_response();
    }
    let Some(name) = path.strip_suffix("/enqueue") else {
        return error(StatusCode::NOT_FOUND, "POST /v1/repos/{name}/enqueue is the only POST on repos");
    };
    let name = name.to_string();
    match ask(&state, |reply| ControlRequest::Enqueue { name, reply }).await {
        Ok(Ok(explain)) => (StatusCode::ACCEPTED, Json(explain)).into_response(),
        Ok(Err(message)) => error(StatusCode::NOT_FOUND, &message),
        Err(response) => response,
    }
}

async fn reload(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(denied) = auth::check(&headers, state.token.as_deref()) {
        return denied.into_response();
    }
    let Some(reload) = &state.reload else {
        return error(StatusCode::CONFLICT, "no policy folder is configured ([policy] dir)");
    };
    match reload().await {
        Ok(summary) => Json(serde_json::json!({ "reloaded": true, "summary": summary })).into_response(),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

/// Streams the snapshot file: the loop hands over its parts, a blocking task compresses them
/// into the response as it goes (a million repos make ~150 MB of JSON before compression).
async fn snapshot(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(denied) = auth::check(&headers, state.token.as_deref()) {
        return denied.into_response();
    }
    // The loop answers after its next read when it must read stars first: a full read.
    let parts = match ask_within(&state, |reply| ControlRequest::Snapshot { reply }, SNAPSHOT_WAIT).await {
        Ok(Ok(parts)) => parts,
        Ok(Err(message)) => return error(StatusCode::CONFLICT, &message),
        Err(response) => return response,
    };
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkSender { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
        let written = crate::replay::capture::write(&parts, &mut out).and_then(|()| out.send_rest());
        if let Err(error) = written {
            tracing::warn!(%error, "Writing a snapshot failed.");
            let _ = tx.blocking_send(Err(error));
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let file =
        format!("attachment; filename=\"clonekeeper-snapshot-{}.ndjson.gz\"", Timestamp::now().as_millis() / 1000);
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/gzip".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, file),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// How long a snapshot request waits for the tick loop (a full read of a large repo DB).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(300);

/// Bytes per response chunk of a snapshot.
const CHUNK: usize = 1 << 16;

/// A `Write` that hands full chunks to the response; it blocks while the client is slower
/// than the compression, and fails once the client has gone.
struct ChunkSender {
    tx: mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send_rest(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::other("the client went away"))
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_rest()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends a request to the tick loop and waits (bounded) for its answer.
async fn ask<T>(state: &AdminState, request: impl FnOnce(oneshot::Sender<T>) -> ControlRequest) -> Result<T, Response> {
    ask_within(state, request, Duration::from_secs(10)).await
}

/// [`ask`], waiting at most `wait` for the answer.
async fn ask_within<T>(
    state: &AdminState,
    request: impl FnOnce(oneshot::Sender<T>) -> ControlRequest,
    wait: Duration,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    let busy = || error(StatusCode::SERVICE_UNAVAILABLE, "the tick loop did not answer; try again");
    if state.control.send_timeout(request(tx), Duration::from_secs(5)).await.is_err() {
        return Err(busy());
    }
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(busy()),
    }
}

/// Errors are JSON with a message.
pub(crate) fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

//! The admin HTTP server.
//!
//! Endpoints:
//! - `GET /healthz`: 200 while the process serves requests.
//! - `GET /v1/status`: the [`Status`](crate::status::Status) document as JSON.
//!
//! Binds to loopback unless configured otherwise: it reveals repo names.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::sidecar::StatusCell;

/// Builds the router; separate from [`serve`] so tests can drive it directly.
pub fn router(status: StatusCell) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/status", get(status_json))
        .fallback(not_found)
        .with_state(status)
}

/// Serves the admin API on `listen` until `shutdown` resolves. Returns the bound address
/// through `bound` once listening (for `:0`).
pub async fn serve(
    listen: SocketAddr,
    status: StatusCell,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let _ = bound.send(listener.local_addr()?);
    axum::serve(listener, router(status)).with_graceful_shutdown(shutdown).await
}

async fn status_json(State(status): State<StatusCell>) -> Response {
    Json(status.load_full().as_ref().clone()).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// Errors are JSON with a message.
fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

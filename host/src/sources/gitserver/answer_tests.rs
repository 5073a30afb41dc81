//! Bad answers from a shard: each becomes an error naming the shard and the call, never a
//! panic and never an empty list.

use axum::routing::{get, post};
use axum::Router;

use super::*;

/// Serves `router` on a loopback port and returns its address.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr.to_string()
}

fn client(max_response_bytes: usize) -> GitserverClient {
    GitserverClient::new(ClientConfig { max_response_bytes, ..ClientConfig::default() }).unwrap()
}

#[tokio::test]
async fn malformed_list_names_the_shard_and_call() {
    let addr = serve(Router::new().route("/list", get(|| async { "<html>oops</html>" }))).await;
    let error = client(1 << 20).list_cloned(&addr).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&addr) && text.contains("GET /list?cloned") && text.contains("not the expected JSON"),
        "{text}"
    );
    assert!(!error.kind.is_shard_down());
}

#[tokio::test]
async fn oversized_answer_is_refused_not_buffered() {
    let big = format!("[{}]", vec!["\"github.com/a/b\""; 10_000].join(","));
    let addr = serve(Router::new().route("/list", get(move || async move { big }))).await;
    let text = client(1_000).list_cloned(&addr).await.unwrap_err().to_string();
    assert!(text.contains("larger than 1000 bytes"), "{text}");
}

#[tokio::test]
async fn server_error_marks_the_shard_down_and_keeps_the_body() {
    let addr = serve(
        Router::new()
            .route("/repo-update", post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "disk full") })),
    )
    .await;
    let name = RepoName::normalize("github.com/a/b").unwrap();
    let error = client(1 << 20).repo_update(&addr, &name, "https://github.com/a/b").await.unwrap_err();
    assert!(error.kind.is_shard_down());
    assert!(error.to_string().contains("HTTP 500: disk full"), "{error}");
}

#[tokio::test]
async fn refused_connection_marks_the_shard_down() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let error = client(1 << 20).list_cloned(&addr).await.unwrap_err();
    assert!(error.kind.is_shard_down(), "{error}");
    assert!(error.to_string().contains(&addr), "{error}");
}

#[tokio::test]
async fn progress_separates_cloning_from_just_cloned() {
    let addr = serve(Router::new().route(
        "/repo-clone-progress",
        post(|| async {
            axum::Json(serde_json::json!({"Results": {
                "github.com/a/cloning": {"CloneInProgress": true},
                "github.com/a/done": {"Cloned": true},
                "github.com/a/idle": {}
            }}))
        }),
    ))
    .await;
    let names: Vec<RepoName> = ["github.com/a/cloning", "github.com/a/done", "github.com/a/idle"]
        .iter()
        .map(|n| RepoName::normalize(n).unwrap())
        .collect();
    let refs: Vec<&RepoName> = names.iter().collect();
    let progress = client(1 << 20).clone_progress(&addr, &refs).await.unwrap();
    assert_eq!(progress.cloning, vec![names[0].clone()]);
    assert_eq!(progress.cloned, vec![names[1].clone()]);
}

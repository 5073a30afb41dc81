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
    let refs: Vec<&str> = names.iter().map(RepoName::as_str).collect();
    let progress = client(1 << 20).clone_progress(&addr, &refs).await.unwrap();
    assert_eq!(progress.cloning, vec![names[0].clone()]);
    assert_eq!(progress.cloned, vec![names[1].clone()]);
}

/// Serves `/list` as the given pieces, without a length (chunked transfer), as a shard
/// streaming a large list does.
async fn serve_list_in_pieces(pieces: Vec<Vec<u8>>) -> String {
    let handler = move || {
        let pieces = pieces.clone();
        async move {
            axum::body::Body::from_stream(futures::stream::iter(
                pieces.into_iter().map(|piece| Ok::<_, std::io::Error>(axum::body::Bytes::from(piece))),
            ))
        }
    };
    serve(Router::new().route("/list", get(handler))).await
}

/// A list streamed in pieces that cut names, escapes and multi-byte characters in two is the
/// list the shard meant, name for name.
#[tokio::test]
async fn a_list_streamed_in_small_pieces_decodes_whole() {
    let names: Vec<String> = (0..2_000).map(|i| format!("github.com/ü-{i}/x\"y\\z\u{e9}")).collect();
    let body = serde_json::to_string(&names).unwrap().replace('é', "\\u00e9");
    let addr = serve_list_in_pieces(body.as_bytes().chunks(7).map(<[u8]>::to_vec).collect()).await;
    let list = client(1 << 20).list_cloned(&addr).await.expect("a list");
    assert_eq!(list.iter().collect::<Vec<_>>(), names.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Without a length to refuse it by, a streamed list is cut off at the cap, never held whole.
#[tokio::test]
async fn a_streamed_list_past_the_cap_is_refused() {
    let piece = format!("{},", vec!["\"github.com/a/b\""; 100].join(","));
    let mut pieces = vec![b"[".to_vec()];
    pieces.extend(std::iter::repeat_n(piece.into_bytes(), 50));
    pieces.push(b"\"github.com/a/c\"]".to_vec());
    let addr = serve_list_in_pieces(pieces).await;
    let text = client(10_000).list_cloned(&addr).await.unwrap_err().to_string();
    assert!(text.contains("larger than 10000 bytes") && text.contains("GET /list?cloned"), "{text}");
}

/// A list that turns out not to be a list halfway is an error, never the names before it.
#[tokio::test]
async fn a_streamed_list_broken_halfway_is_an_error() {
    let addr = serve_list_in_pieces(vec![b"[\"github.com/a/b\",".to_vec(), b"{\"oops\": 1}]".to_vec()]).await;
    let text = client(1 << 20).list_cloned(&addr).await.unwrap_err().to_string();
    assert!(text.contains(&addr) && text.contains("GET /list?cloned"), "{text}");
}

//! A JSON body extractor that answers malformed bodies with HTTP 400 and a plain-text
//! message, as gitserver did, instead of axum's 415/422 split. It does not require a
//! `Content-Type` header either, because the Go clients did not always send one.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// A request body parsed as JSON into `T`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|err| (StatusCode::BAD_REQUEST, format!("malformed request body: {err}")).into_response())
    }
}

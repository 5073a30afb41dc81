//! Bearer-token check of mutating admin calls.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error;

/// Why a mutating call was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    code: StatusCode,
    message: &'static str,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        error(self.code, self.message)
    }
}

/// `Ok` when the request carries the configured token. Without a configured token every
/// mutating call is refused: an unprotected "clone now" button is not a default.
pub fn check(headers: &HeaderMap, token: Option<&str>) -> Result<(), Denied> {
    let Some(expected) = token else {
        return Err(Denied {
            code: StatusCode::FORBIDDEN,
            message: "mutating calls are disabled: set [admin] token to enable them",
        });
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        // Compare digests so the time taken does not depend on how much of the token matched.
        Some(given) if Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes()) => Ok(()),
        Some(_) => Err(Denied { code: StatusCode::UNAUTHORIZED, message: "wrong bearer token" }),
        None => {
            Err(Denied { code: StatusCode::UNAUTHORIZED, message: "this call needs Authorization: Bearer <token>" })
        }
    }
}

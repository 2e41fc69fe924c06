//! JSON in and out of every HTTP route (native, Docker, node API): Go-encoder-shaped
//! responses, Go-decoder-shaped parse errors, and Docker's `{"message"}` for every
//! [`ApiError`].
//!
//! Owns: the bytes of request and response bodies. Touches: nothing but the core's error
//! type; every layer that answers HTTP may use it.
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ApiError;

type Result<T> = std::result::Result<T, ApiError>;

/// The largest request body any route accepts: the Docker API's, a 1 MB secret in base64
/// plus its spec. The accept loop reads no more than this; routes may set less.
pub(crate) const BODY_LIMIT: usize = 1_400_000 + 64 * 1024;

/// A JSON body ending in a newline, as Go's encoder writes it.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, v: &T) -> Response {
    let mut body = serde_json::to_vec(v).expect("serialisable");
    body.push(b'\n');
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A 200 in the media type of Docker's plugin protocols (secret and volume drivers).
pub(crate) fn plugin_json<T: Serialize>(v: &T) -> Response {
    let mut r = json_response(StatusCode::OK, v);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.docker.plugins.v1.2+json"),
    );
    r
}

/// A 200 with `body` (one JSON document, or a stream of JSON lines) typed as JSON.
pub(crate) fn json_body(body: axum::body::Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Parses a JSON body with Go-decoder-like messages; an empty body is an empty object
/// (Engine 23+ behaviour).
pub(crate) fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(lockbox_store::validate::go_json_error(&e)))
}

pub(crate) fn parse_required<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(lockbox_store::validate::go_json_error(&e)))
}

//! What a Docker API request says beyond its route, read as today's Engine reads it: the API
//! version it asks for (Engine 26's minimum, Docker 28's maximum) and its JSON body (Go's
//! case-insensitive field matching, Engine 23+'s `invalid JSON:` wording, version-dependent
//! fields).
use axum::body::Bytes;
use lockbox_proto::{Spec, go_json};
use lockbox_store::Kind;

use crate::ApiError;

/// The newest API version lockbox speaks: Docker 28's, so no current client is told it is
/// "too new". Every Docker-API behaviour lockbox has is the same from 1.37 up.
pub(crate) const API_VERSION: &str = "1.51";
/// Engine 26's (and 28's) minimum; older clients get Docker's "too old" answer.
pub(crate) const MIN_API_VERSION: &str = "1.24";
/// The first API version with secret and config templating.
const TEMPLATING_VERSION: &str = "1.37";

/// The API version a request asked for (its `/vX.Y` prefix), or the server's own when it
/// had none, as Docker's router does.
#[derive(Debug, Clone)]
pub(crate) struct RequestedVersion(pub(crate) String);

/// Docker's version comparison: dot-separated integers, a missing part is 0.
pub(crate) fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let (x, y) = (
            pa.get(i).copied().unwrap_or(0),
            pb.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x.cmp(&y);
        }
    }
    std::cmp::Ordering::Equal
}

/// Docker's answer to a version outside [`MIN_API_VERSION`, `API_VERSION`], if it is.
pub(crate) fn check_version(v: &str) -> Result<(), ApiError> {
    if version_cmp(v, MIN_API_VERSION).is_lt() {
        return Err(ApiError::bad_request(format!(
            "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if version_cmp(v, API_VERSION).is_gt() {
        return Err(ApiError::bad_request(format!(
            "client version {v} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    Ok(())
}

/// A spec from a body, decoded as Docker's Go decoder does: keys matched case-insensitively,
/// `Data` checked as base64 (Go decodes `[]byte` while it decodes the JSON), every decoding
/// error worded `invalid JSON: …` (Engine 23+). An empty body is an empty spec.
pub(crate) fn parse_spec(body: &Bytes) -> Result<Spec, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Spec::default());
    }
    let invalid = |msg: String| ApiError::bad_request(format!("invalid JSON: {msg}"));
    let spec: Spec = go_json::from_slice(body, go_json::SPEC).map_err(|e| {
        invalid(if e.classify() == serde_json::error::Category::Eof {
            // Docker's streaming decoder's word for a body cut short.
            "unexpected EOF".to_owned()
        } else {
            lockbox_store::validate::go_json_error(&e)
        })
    })?;
    if let Some(data) = &spec.data {
        lockbox_core::decode_data(data).map_err(|e| invalid(e.message))?;
    }
    Ok(spec)
}

/// Templating is refused below API 1.37, in Docker's words.
pub(crate) fn check_create(kind: Kind, version: &str, spec: &Spec) -> Result<(), ApiError> {
    if spec.templating.is_some() && version_cmp(version, TEMPLATING_VERSION).is_lt() {
        return Err(ApiError::bad_request(format!(
            "{} templating is not supported on the specified API version: {version}",
            kind.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_compare_like_docker() {
        assert_eq!(version_cmp("1.11", "1.12"), Less);
        assert_eq!(version_cmp("1", "1.12"), Less);
        assert_eq!(version_cmp("1.41", "1.41"), Equal);
        assert_eq!(version_cmp("1.41.0", "1.41"), Equal);
        assert_eq!(version_cmp("1.100", "1.41"), Greater);
        assert_eq!(version_cmp("2", "1.41"), Greater);
    }

    #[test]
    fn version_range_is_engine_26_up_to_docker_28() {
        assert!(check_version("1.24").is_ok());
        assert!(check_version("1.45").is_ok());
        assert!(check_version("1.51").is_ok());
        assert_eq!(
            check_version("1.52").unwrap_err().message,
            "client version 1.52 is too new. Maximum supported API version is 1.51"
        );
        assert_eq!(
            check_version("1.23").unwrap_err().message,
            "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
        );
    }

    #[test]
    fn templating_needs_1_37() {
        let spec = parse_spec(&Bytes::from_static(
            br#"{"name":"t","data":"eA==","templating":{"name":"golang"}}"#,
        ))
        .unwrap();
        assert_eq!(
            check_create(Kind::Config, "1.36", &spec)
                .unwrap_err()
                .message,
            "config templating is not supported on the specified API version: 1.36"
        );
        assert!(check_create(Kind::Secret, "1.37", &spec).is_ok());
    }

    #[test]
    fn decoding_errors_are_engine_26s() {
        let msg = |b: &'static [u8]| parse_spec(&Bytes::from_static(b)).unwrap_err().message;
        assert_eq!(msg(b"nul"), "invalid JSON: unexpected EOF");
        assert_eq!(
            msg(br#"{"Name":"x","data":"!!!"}"#),
            "invalid JSON: illegal base64 data at input byte 0"
        );
    }
}

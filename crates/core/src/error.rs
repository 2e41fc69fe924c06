//! [`ApiError`]: what a request gets, as Docker answers it (an HTTP status and
//! `{"message"}`). The core knows the status of its refusals because they are part of the
//! API contract (Docker's codes and words); it knows no route, socket or transport.
use lockbox_keyring::KeyringError;
use lockbox_replication::ReplicationError;
use lockbox_store::StoreError;

/// A refusal or failure of one request: an HTTP status and Docker's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    /// The 503 a locked daemon answers on every data route, in Docker's words.
    pub fn locked() -> Self {
        Self::new(
            503,
            "lockbox is encrypted and needs to be unlocked before it can be used. Please use \"lockbox unlock\" to unlock it.",
        )
    }
    /// The 503 a worker answers for cluster state, in Docker's words (lockbox's names).
    pub fn not_a_manager() -> Self {
        Self::new(
            503,
            "This node is not a lockbox manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::new(e.status(), e.to_string())
    }
}

impl From<KeyringError> for ApiError {
    fn from(e: KeyringError) -> Self {
        match e {
            KeyringError::BadUnlockKey => Self::new(400, "invalid key string"),
            KeyringError::WrongUnlockKey => {
                Self::new(401, "lockbox could not be unlocked: invalid key provided")
            }
            KeyringError::Locked => Self::locked(),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<ReplicationError> for ApiError {
    fn from(e: ReplicationError) -> Self {
        Self::new(503, format!("lockbox store unavailable: {e}"))
    }
}

impl axum_core::response::IntoResponse for ApiError {
    fn into_response(self) -> axum_core::response::Response {
        let status = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        // Go's encoder ends a document with a newline; clients compare bodies byte for byte.
        let mut body = serde_json::to_vec(&lockbox_proto::ErrorBody {
            message: self.message,
        })
        .unwrap_or_default();
        body.push(b'\n');
        let mut r = axum_core::response::Response::new(axum_core::body::Body::from(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }
}

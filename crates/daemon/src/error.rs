//! [`DaemonError`]: what stops the daemon from starting. (What a request gets is the
//! core's [`lockbox_core::ApiError`].)
use lockbox_keyring::KeyringError;
use lockbox_replication::ReplicationError;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "another lockbox daemon is using {0} (its lock is held); stop it first or pass a different --data-dir"
    )]
    AlreadyRunning(String),
    #[error("socket {path}: {reason}")]
    Socket { path: String, reason: String },
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error(transparent)]
    Audit(#[from] lockbox_audit::AuditError),
    #[error("{0}")]
    Other(String),
}

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while delivering secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not on tmpfs (filesystem magic {magic:#x}); refusing to write plaintext there"
    )]
    NotTmpfs { path: PathBuf, magic: u64 },
    #[error("invalid secret target {target:?}: {reason}")]
    BadTarget {
        target: PathBuf,
        reason: &'static str,
    },
    #[error("duplicate secret target {0:?}")]
    DuplicateTarget(PathBuf),
    #[error("invalid workload id {0:?}: use letters, digits, '_', '-' and '.', not leading '.'")]
    BadWorkloadId(String),
    #[error("invalid --user {0:?}: expected numeric UID[:GID]")]
    BadUser(String),
    #[error("secret delivery failed in the shim: {0}")]
    Shim(String),
    #[error("shim protocol error: {0}")]
    Protocol(String),
    #[error(
        "the shim must run single-threaded, found {0} threads: call shim_main before starting any runtime"
    )]
    NotSingleThreaded(usize),
    #[error(
        "the new secrets ({set} bytes on tmpfs) do not fit beside the current ones in the workload's tmpfs of {size} bytes, and growing it to {wanted} bytes failed: {reason}; the workload keeps the previous version"
    )]
    TmpfsTooSmall {
        set: u64,
        size: u64,
        wanted: u64,
        reason: String,
    },
    #[error("the command exited before the request completed")]
    ChildGone,
}

/// Attaches a human context to I/O errors (both std's and rustix's).
pub(crate) trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for rustix::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error::Io {
            context: context(),
            source: e.into(),
        })
    }
}

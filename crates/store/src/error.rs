//! Store errors, worded byte for byte as Docker's daemon words them (see
//! `docker-secrets-api.md` §1.3), with the HTTP status Docker uses for each.
use serde::{Deserialize, Serialize};

use crate::Kind;

/// A refusal of the store. Serialisable because it travels back through the raft log's
/// response path; carries names and IDs only, never data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("rpc error: code = InvalidArgument desc = name must be provided")]
    NameRequired,
    #[error(
        "rpc error: code = InvalidArgument desc = invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]"
    )]
    InvalidName,
    #[error("rpc error: code = InvalidArgument desc = {} data must be larger than 0 and less than {} bytes", .0.as_str(), .0.max_size())]
    DataSize(Kind),
    #[error("rpc error: code = InvalidArgument desc = secret driver must have a name")]
    DriverName,
    #[error("rpc error: code = AlreadyExists desc = {} {} already exists", .0.as_str(), .1)]
    AlreadyExists(Kind, String),
    #[error("{} {} not found", .0.as_str(), .1)]
    NotFound(Kind, String),
    #[error("{} {} is ambiguous ({} matches found)", .0.as_str(), .1, .2)]
    Ambiguous(Kind, String, usize),
    #[error("rpc error: code = InvalidArgument desc = {} '{}' is in use by the following service{}: {}", .0.as_str(), .1, if .2.len() > 1 { "s" } else { "" }, .2.join(", "))]
    InUse(Kind, String, Vec<String>),
    #[error("invalid {} version", .0.as_str())]
    InvalidVersion(Kind),
    #[error("rpc error: code = Unknown desc = update out of sequence")]
    OutOfSequence,
    #[error("rpc error: code = InvalidArgument desc = only updates to Labels are allowed")]
    OnlyLabels,
    #[error("invalid filter '{0}'")]
    InvalidFilter(String),
    #[error("{} {} has no version {}", .0.as_str(), .1, .2)]
    NoSuchVersion(Kind, String, u64),
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Internal(String),
}

impl StoreError {
    /// The HTTP status Docker answers with.
    pub fn status(&self) -> u16 {
        match self {
            StoreError::NotFound(..) | StoreError::NoSuchVersion(..) => 404,
            StoreError::AlreadyExists(..) => 409,
            StoreError::OutOfSequence | StoreError::Internal(_) => 500,
            _ => 400,
        }
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Internal(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Internal(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError
);

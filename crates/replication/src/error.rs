//! The replication layer's error type.

use std::path::PathBuf;

use crate::types::NodeId;

/// Why a replication call failed. Each variant says what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// This node is not the leader; writes and linearizable reads must go to `leader_id`
    /// (at `leader_addr`) when known. The cluster work turns this into forwarding.
    #[error("this node is not the raft leader{}", match (.leader_id, .leader_addr) {
        (Some(id), Some(addr)) => format!("; forward to node {id} at {addr}"),
        (Some(id), None) => format!("; forward to node {id}"),
        _ => "; no leader is known yet, retry later".to_string(),
    })]
    NotLeader {
        /// The current leader, if this node knows it.
        leader_id: Option<NodeId>,
        /// The current leader's advertised address, if known.
        leader_addr: Option<String>,
    },

    /// The proposal may or may not have been committed: its log entry was discarded when
    /// another leader took over, or a leader appended it but no quorum confirmed it within
    /// `write_timeout`, or the connection to the leader broke after it was sent. Retrying is
    /// only safe if the command is idempotent.
    #[error(
        "proposal outcome unknown: it was not confirmed (leader change, lost quorum or a broken connection to the leader) and may or may not have been committed"
    )]
    OutcomeUnknown,

    /// The leader committed the entry at `index`, but this node did not apply it in time,
    /// so a read here may not see it yet. The write itself succeeded: do not retry it.
    #[error("committed at index {index}, but not yet applied on this node: {reason}")]
    NotApplied {
        /// The entry's log index.
        index: u64,
        /// Why the wait ended.
        reason: String,
    },

    /// No quorum answered (a linearizable read or a write could not be confirmed).
    #[error("no raft quorum is reachable: {0}")]
    NoQuorum(String),

    /// Another `Replica` (in this or another process) has the store file open.
    #[error("store file {} is already open by another lockbox process (or replica in this process)", .path.display())]
    AlreadyOpen {
        /// The store file.
        path: PathBuf,
    },

    /// The store file failed its integrity check or is truncated (or, with
    /// `allow_torn_commit_rollback` off, redb would have to roll back its newest commit).
    /// lockbox refuses to serve it rather than risk silently losing acknowledged writes;
    /// restore from a backup or a peer.
    #[error("store file {} is corrupt: {reason}", .path.display())]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },

    /// The store file is a redb database but not one lockbox wrote, or was written by an
    /// incompatible version of lockbox.
    #[error("store file {} has an unsupported format: {reason}", .path.display())]
    UnsupportedFormat {
        /// The store file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },

    /// An I/O or redb error outside the raft core (opening, creating, reading the file).
    #[error("storage error on {}: {source}", .path.display())]
    Storage {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The raft core stopped (a storage error inside raft, a panic, or a shutdown). The
    /// replica cannot serve any more; reopen it (restart the daemon).
    #[error("raft stopped: {0}")]
    Fatal(String),

    /// The replica did not become leader of its one-voter cluster in time.
    #[error("replica did not become ready within {timeout_ms} ms: {reason}")]
    NotReady {
        /// How long it waited.
        timeout_ms: u128,
        /// What it was waiting for.
        reason: String,
    },

    /// The configuration is invalid (e.g. election timeouts out of order).
    #[error("invalid replication config: {0}")]
    Config(String),

    /// A raft-level rejection not covered above (membership change conflicts and the like).
    #[error("raft rejected the request: {0}")]
    Raft(String),
}

impl ReplicationError {
    /// True when the request may succeed if retried later or sent to another node.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::NotLeader { .. } | Self::NoQuorum(_))
    }
}

//! The openraft type configuration and the few wrapper types it needs.
//!
//! Every openraft type used by lockbox is named here (or in `storage` / `network`), so an
//! openraft alpha bump touches this crate only.

use std::fmt;

use lockbox_store::{Command, Response};
use serde::{Deserialize, Serialize};

/// A raft node id. Single-node mode uses [`crate::DEFAULT_NODE_ID`].
pub type NodeId = u64;

/// What a node advertises in the membership: its raft address. The cluster work will extend
/// this (certificate fingerprint); that is an on-disk format change (`DataChange:`).
pub type Node = openraft::BasicNode;

/// A command as it travels through the raft log.
///
/// openraft requires `Display` of its payload and the orphan rule forbids implementing it for
/// the store's `Command` here, hence this newtype. `#[serde(transparent)]` keeps the log
/// encoding identical to the store's own `Command` encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Proposal(pub Command);

impl fmt::Display for Proposal {
    /// Prints the variant name only: commands carry ciphertexts and labels, which have no
    /// place in log lines. The name is the start of the `Debug` output; the writer below
    /// stops the formatting after a few bytes, so a 500 KiB secret costs nothing here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut head = Head(String::new());
        // Err means "stopped early", which is the point.
        let _ = fmt::write(&mut head, format_args!("{:?}", self.0));
        let name = head
            .0
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("Command");
        f.write_str(name)
    }
}

/// A `fmt::Write` that keeps the first few bytes and then makes the formatter stop.
struct Head(String);

impl fmt::Write for Head {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        const KEEP: usize = 48;
        let room = KEEP.saturating_sub(self.0.len());
        let take = s
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .take_while(|&end| end <= room)
            .last()
            .unwrap_or(0);
        self.0.push_str(&s[..take]);
        if self.0.len() >= KEEP || take < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// What applying an entry returned. `None` for the entries raft itself writes (blank
/// leader entries, membership changes), which do not reach the store.
pub type Applied = Option<Response>;

openraft::declare_raft_types!(
    /// lockbox's raft type configuration.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = Node,
);

/// The raft handle with lockbox's types.
pub type Raft = openraft::Raft<TypeConfig, crate::storage::StateMachine>;
/// A raft log id (leader id + index).
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A raft log entry.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A saved vote.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// A membership config with the log id it was written at.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: metadata plus the bytes of `Store::export`.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_display_names_the_variant_only() {
        assert_eq!(Proposal(Command::Noop).to_string(), "Noop");
        let cmd = Command::RemoveService {
            name: "a-service-name-that-must-not-be-logged".to_string(),
        };
        assert_eq!(Proposal(cmd).to_string(), "RemoveService");
    }
}

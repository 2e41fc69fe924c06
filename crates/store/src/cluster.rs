//! The cluster's own state, replicated like everything else: the root CA, the join tokens,
//! the unlock key of an autolocked cluster, and one record per node.
//!
//! Every secret here (the CA's private key, the token secrets, the unlock key) is held
//! [`Sealed`] under the cluster KEK, so the raft log and snapshots never carry it in the
//! clear; a manager needs the KEK (it is unlocked) to issue certificates or check tokens.
use std::collections::BTreeMap;

use lockbox_keyring::Sealed;
use serde::{Deserialize, Serialize};

/// Sealed-object IDs (the AEAD associated data) of the cluster's own secrets.
pub const CA_KEY_OBJECT: &str = "cluster/ca-key";
pub const WORKER_TOKEN_OBJECT: &str = "cluster/token/worker";
pub const MANAGER_TOKEN_OBJECT: &str = "cluster/token/manager";
pub const UNLOCK_KEY_OBJECT: &str = "cluster/unlock-key";
pub const KEK_OBJECT: &str = "cluster/kek";

/// A node's role. Managers are raft voters and hold every secret; workers run the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeRole {
    Manager,
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        }
    }
}

/// The cluster as a whole. Exists once `lockbox cluster init` ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub cluster_id: String,
    pub created_ns: i64,
    pub updated_ns: i64,
    /// The root CA certificate (DER) and its private key sealed under the KEK (object
    /// [`CA_KEY_OBJECT`], version `ca_version`).
    pub ca_cert: Vec<u8>,
    pub ca_key: Sealed,
    pub ca_version: u64,
    /// The 16-byte secrets of the join tokens, sealed (objects `*_TOKEN_OBJECT`, version
    /// `token_version`). The CA digest half of a token is derived from `ca_cert`.
    pub worker_token: Sealed,
    pub manager_token: Sealed,
    pub token_version: u64,
    /// With autolock, the unlock key sealed under the KEK (object [`UNLOCK_KEY_OBJECT`],
    /// version `unlock_version`): how a rotation reaches every manager, each of which then
    /// re-seals its own key ring file with it.
    pub unlock_key: Option<Sealed>,
    pub unlock_version: u64,
    /// KEKs added by a cluster KEK rotation: (new KEK id, the KEK sealed under its
    /// predecessor as object [`KEK_OBJECT`], version = the id), so managers that were not the
    /// proposer can add it to their rings.
    pub keks: Vec<(u32, Sealed)>,
    /// Node certificate lifetime in seconds.
    pub cert_validity_s: u64,
    /// SHA-256 fingerprints of certificates that must be refused (removed nodes).
    pub revoked: Vec<Vec<u8>>,
}

/// A root CA rotation in progress (`lockbox cluster ca --rotate`), kept apart from
/// [`ClusterRecord`] (key `ca-rotation`) so that records and log entries written before
/// rotations existed still decode (postcard is not self-describing: a new field would be a
/// format change). [`crate::Command::FinishCaRotation`] moves the new root into the cluster
/// record once every node's current certificate is from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRotation {
    /// The new root (DER) and its private key sealed under the KEK (object
    /// [`CA_KEY_OBJECT`], version = the cluster's `ca_version` + 1: the version it will have).
    pub new_cert: Vec<u8>,
    pub new_key: Sealed,
    /// The new root's subject and key signed by the current root: the intermediate nodes
    /// present so that a peer trusting only the current root accepts their new certificates.
    pub cross_cert: Vec<u8>,
    /// When the rotation started; also its identity (a second `--rotate` replaces it).
    pub started_ns: i64,
    /// Nodes whose certificate the new root issued: node ID → that certificate's SHA-256. A
    /// node counts as rotated while this is still its record's `cert_fingerprint`.
    pub rotated: BTreeMap<u64, Vec<u8>>,
}

impl CaRotation {
    /// Whether `node`'s current certificate is from the new root.
    pub fn has_rotated(&self, node: &NodeRecord) -> bool {
        self.rotated
            .get(&node.id)
            .is_some_and(|fp| !fp.is_empty() && *fp == node.cert_fingerprint)
    }
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The raft node ID (also the certificate's CN).
    pub id: u64,
    pub role: NodeRole,
    /// Where peers reach this node (`host:port`).
    pub addr: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// SHA-256 of the node's current certificate, and of the one it replaced (accepted until
    /// it expires, so a renewal never cuts a node off mid-flight).
    pub cert_fingerprint: Vec<u8>,
    pub prev_fingerprint: Vec<u8>,
    pub cert_not_after_ns: i64,
    pub created_ns: i64,
    pub updated_ns: i64,
    /// The raft index of the last change (Docker's `Version.Index`).
    pub index: u64,
}

/// Node IDs as users type them: lowercase base36 of the raft ID.
pub fn node_id_text(id: u64) -> String {
    if id == 0 {
        return "0".into();
    }
    let mut n = id;
    let mut out = Vec::new();
    while n > 0 {
        let d = (n % 36) as u8;
        out.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// The inverse of [`node_id_text`].
pub fn parse_node_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 13 {
        return None;
    }
    let mut n: u64 = 0;
    for c in s.bytes() {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            _ => return None,
        };
        n = n.checked_mul(36)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip() {
        for id in [1u64, 35, 36, 1 << 40, u64::MAX] {
            assert_eq!(parse_node_id(&node_id_text(id)), Some(id));
        }
        assert_eq!(node_id_text(1), "1");
        assert_eq!(parse_node_id("Z"), None);
        assert_eq!(parse_node_id(""), None);
    }
}

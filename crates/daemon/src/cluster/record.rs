//! The replicated cluster record as the rest of the cluster code reads it: the record and
//! a CA rotation in progress, the issuing CA, cluster secrets sealed under the KEK (CA key,
//! join tokens, unlock key), and small helpers for new node records.
//!
//! Owns: sealing and opening cluster secrets. Touches: the core's reader and keys only.
use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;
use std::time::SystemTime;

use lockbox_cluster::Role;
use lockbox_cluster::pki::{ClusterCa, PeerIdentity};
use lockbox_cluster::token::JoinToken;
use lockbox_keyring::{Sealed, Zeroizing};
use lockbox_store::cluster::{CA_KEY_OBJECT, MANAGER_TOKEN_OBJECT, WORKER_TOKEN_OBJECT};
use lockbox_store::{CaRotation, ClusterRecord, Command, NodeRecord, NodeRole};

use crate::ApiError;
use lockbox_core::{Daemon, Keys, NodeStore};

#[allow(unused_imports)]
use super::*;

/// The replicated cluster record and its sealed secrets, read and written through the core.
pub(crate) trait ClusterRecords {
    fn cluster(&self) -> Option<Arc<Cluster>>;
    fn cluster_or_err(&self) -> Result<Arc<Cluster>>;
    fn cluster_record(&self) -> Result<ClusterRecord>;
    /// The cluster record with the CA rotation in progress, if any.
    fn cluster_and_rotation(&self) -> Result<(ClusterRecord, Option<CaRotation>)>;
    /// The CA that issues node certificates now: the new root while a rotation is in
    /// progress (its key is sealed for the CA version it will have), else the cluster's.
    fn issuing_ca(&self, c: &ClusterRecord, rotation: Option<&CaRotation>) -> Result<ClusterCa>;
    /// Records a node whose certificate [`Daemon::issuing_ca`] just issued from `c` and
    /// `rotation`; during a rotation the same entry counts it as rotated. Refused if the
    /// cluster's CA changed meanwhile (this node's tables may lag the leader's).
    async fn put_issued(
        &self,
        node: NodeRecord,
        c: &ClusterRecord,
        rotation: Option<&CaRotation>,
    ) -> Result<()>;
    fn open_cluster_secret(
        &self,
        sealed: &Sealed,
        object: &str,
        version: u64,
    ) -> Result<Zeroizing<Vec<u8>>>;
    fn seal_cluster_secret(&self, data: &[u8], object: &str, version: u64) -> Result<Sealed>;
    /// The leader's address when this manager is not the leader (for a 421 redirect).
    fn require_leader(&self) -> Result<Arc<NodeStore>>;
    fn join_token(&self, c: &ClusterRecord, role: NodeRole) -> Result<JoinToken>;
}

impl ClusterRecords for Daemon {
    fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster_slot().0.read().ok().and_then(|c| c.clone())
    }

    fn cluster_or_err(&self) -> Result<Arc<Cluster>> {
        self.cluster()
            .ok_or_else(|| ApiError::new(503, NOT_IN_CLUSTER))
    }

    fn cluster_record(&self) -> Result<ClusterRecord> {
        self.reader()?
            .cluster()?
            .ok_or_else(|| ApiError::new(503, NOT_IN_CLUSTER))
    }

    /// The cluster record with the CA rotation in progress, if any.
    fn cluster_and_rotation(&self) -> Result<(ClusterRecord, Option<CaRotation>)> {
        self.reader()?
            .cluster_and_rotation()?
            .ok_or_else(|| ApiError::new(503, NOT_IN_CLUSTER))
    }

    /// The CA that issues node certificates now: the new root while a rotation is in
    /// progress (its key is sealed for the CA version it will have), else the cluster's.
    fn issuing_ca(&self, c: &ClusterRecord, rotation: Option<&CaRotation>) -> Result<ClusterCa> {
        let (cert, key) = match rotation {
            Some(r) => (
                &r.new_cert,
                self.open_cluster_secret(&r.new_key, CA_KEY_OBJECT, c.ca_version + 1)?,
            ),
            None => (
                &c.ca_cert,
                self.open_cluster_secret(&c.ca_key, CA_KEY_OBJECT, c.ca_version)?,
            ),
        };
        ClusterCa::from_parts(cert.clone(), key).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Records a node whose certificate [`Daemon::issuing_ca`] just issued from `c` and
    /// `rotation`; during a rotation the same entry counts it as rotated. Refused if the
    /// cluster's CA changed meanwhile (this node's tables may lag the leader's).
    async fn put_issued(
        &self,
        node: NodeRecord,
        c: &ClusterRecord,
        rotation: Option<&CaRotation>,
    ) -> Result<()> {
        self.propose(Command::PutIssuedNode {
            node,
            ca_version: c.ca_version,
            rotation_started_ns: rotation.map(|r| r.started_ns),
        })
        .await?;
        Ok(())
    }

    fn open_cluster_secret(
        &self,
        sealed: &Sealed,
        object: &str,
        version: u64,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let keys = self
            .keys
            .read()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        match &*keys {
            Keys::Unlocked { ring, .. } => {
                Ok(sealed.open(ring.get(sealed.kek_id)?, object, version)?)
            }
            Keys::Locked { .. } => Err(ApiError::locked()),
        }
    }

    fn seal_cluster_secret(&self, data: &[u8], object: &str, version: u64) -> Result<Sealed> {
        let keys = self
            .keys
            .read()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        match &*keys {
            Keys::Unlocked { ring, .. } => Ok(Sealed::seal(ring.current(), object, version, data)?),
            Keys::Locked { .. } => Err(ApiError::locked()),
        }
    }

    /// The leader's address when this manager is not the leader (for a 421 redirect).
    fn require_leader(&self) -> Result<Arc<NodeStore>> {
        let store = self.store()?;
        match store.replica.leader() {
            Some((id, _)) if id == store.replica.node_id() => Ok(store),
            Some((_, addr)) => Err(ApiError::new(
                421,
                format!("not the leader; the leader is at {addr}"),
            )),
            None => Err(ApiError::new(
                503,
                "the cluster has no leader right now (no quorum of managers?); try again",
            )),
        }
    }

    fn join_token(&self, c: &ClusterRecord, role: NodeRole) -> Result<JoinToken> {
        let (sealed, object) = match role {
            NodeRole::Worker => (&c.worker_token, WORKER_TOKEN_OBJECT),
            NodeRole::Manager => (&c.manager_token, MANAGER_TOKEN_OBJECT),
        };
        let secret = self.open_cluster_secret(sealed, object, c.token_version)?;
        let secret: [u8; 16] = secret[..]
            .try_into()
            .map_err(|_| ApiError::internal("a sealed join token has the wrong size"))?;
        Ok(JoinToken {
            digest: lockbox_cluster::pki::cert_digest(&c.ca_cert),
            secret,
        })
    }
}

pub(super) fn system_time_ns(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub(super) fn random_secret16() -> Result<Zeroizing<[u8; 16]>> {
    Ok(lockbox_keyring::random_bytes::<16>()?)
}

/// A node's first record, for the certificate just issued to it.
pub(super) fn new_node(
    id: u64,
    role: NodeRole,
    addr: &str,
    hostname: &str,
    cert: &PeerIdentity,
    t: i64,
) -> NodeRecord {
    NodeRecord {
        id,
        role,
        addr: addr.to_string(),
        hostname: hostname.to_string(),
        labels: BTreeMap::new(),
        availability: "active".into(),
        cert_fingerprint: cert.fingerprint.to_vec(),
        prev_fingerprint: Vec::new(),
        cert_not_after_ns: system_time_ns(cert.not_after),
        created_ns: t,
        updated_ns: t,
        index: 0,
    }
}

pub(super) fn to_role(r: NodeRole) -> Role {
    match r {
        NodeRole::Manager => Role::Manager,
        NodeRole::Worker => Role::Worker,
    }
}

pub(super) fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub(super) fn with_port(addr: &str) -> String {
    if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

//! JSON objects exactly as Docker's Engine API shapes them (field names, order, omitted
//! fields), plus lockbox's additions, which use the same conventions.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{"Index": N}`: the global store index at the object's last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    #[serde(rename = "Index")]
    pub index: u64,
}

/// A driver reference (`Driver` on secrets, `Templating` on both kinds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Driver {
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "Options", default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// `SecretSpec` / `ConfigSpec`, as sent by clients and returned by the daemon.
/// `Data` is base64 on the wire; for secrets the daemon never returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Spec {
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Always present in responses (`{}` when empty), as Docker does.
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Data", default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(rename = "Driver", default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<Driver>,
    #[serde(
        rename = "Templating",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub templating: Option<Driver>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A secret or config object (`Secret` / `Config` in Docker's API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Version")]
    pub version: ObjectVersion,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "Spec")]
    pub spec: Spec,
}

/// `{"ID": "..."}`, the answer to a create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdResponse {
    #[serde(rename = "ID")]
    pub id: String,
}

/// Docker's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

/// One version of a secret (lockbox's addition to Docker's model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "Version")]
    pub version: u64,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "Size")]
    pub size: u64,
    /// Who created it: `uid:N` for local callers, a node ID in a cluster.
    #[serde(rename = "CreatedBy")]
    pub created_by: String,
    #[serde(rename = "Current")]
    pub current: bool,
    /// Set when this version was made by `rollback`: the version it copies.
    #[serde(
        rename = "RollbackOf",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rollback_of: Option<u64>,
}

/// Body of `POST /v1/secrets/{id}/rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateRequest {
    /// base64 of the new value.
    #[serde(rename = "Data")]
    pub data: String,
    /// Old versions to keep besides the current one; the daemon's default when absent.
    #[serde(rename = "Keep", default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
}

/// Body of `POST /v1/secrets/{id}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    #[serde(rename = "Version")]
    pub version: u64,
}

/// The answer to rotate and rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Version")]
    pub version: u64,
}

/// `GET /v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "DataDir")]
    pub data_dir: String,
    #[serde(rename = "Socket")]
    pub socket: String,
    /// `unlocked` or `locked`.
    #[serde(rename = "LockState")]
    pub lock_state: String,
    /// `file` (KEK in a 0600 key file) or `autolock` (KEK sealed by the unlock key).
    #[serde(rename = "KeyMode")]
    pub key_mode: String,
    #[serde(
        rename = "KeyWarning",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub key_warning: Option<String>,
    #[serde(rename = "Secrets")]
    pub secrets: u64,
    #[serde(rename = "Configs")]
    pub configs: u64,
    #[serde(rename = "AuditRecords")]
    pub audit_records: u64,
    #[serde(rename = "RaftIndex")]
    pub raft_index: u64,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    #[serde(rename = "ClusterID")]
    pub cluster_id: String,
}

/// Body of `POST /v1/unlock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockRequest {
    #[serde(rename = "UnlockKey", default)]
    pub unlock_key: String,
    /// Shamir shares of the unlock key (`lockbox cluster unlock --shares`), instead of the key.
    #[serde(rename = "Shares", default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<String>,
}

/// `{"UnlockKey": "..."}` (as `GET /swarm/unlockkey`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockKeyResponse {
    #[serde(rename = "UnlockKey")]
    pub unlock_key: String,
}

/// One audit record, as listed by `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub time: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub actor: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
    pub prev: String,
    pub hash: String,
}

/// The answer of `GET /v1/audit/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerify {
    pub ok: bool,
    pub records: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

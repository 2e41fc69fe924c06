//! What the store keeps. Records are postcard-encoded; postcard is not self-describing, so
//! these types carry no `skip_serializing_if` and every change to them is a format change.
use std::collections::BTreeMap;

use lockbox_keyring::Sealed;
use serde::{Deserialize, Serialize};

/// The two object kinds Docker has: secrets (data never returned) and configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    /// `secret` or `config`, as Docker's messages say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    /// The exclusive upper bound on a value's size (Docker's: 500 KiB and 1000 KiB).
    pub fn max_size(self) -> usize {
        match self {
            Kind::Secret => 512_000,
            Kind::Config => 1_024_000,
        }
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            Kind::Secret => b's',
            Kind::Config => b'c',
        }
    }
}

/// `Driver` / `Templating`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverRec {
    pub name: String,
    pub options: Option<BTreeMap<String, String>>,
}

/// One version's metadata (its sealed value lives in the versions table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub number: u64,
    pub created_ns: i64,
    pub size: u64,
    pub created_by: String,
    pub rollback_of: Option<u64>,
}

/// A secret or config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub kind: Kind,
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub created_ns: i64,
    pub updated_ns: i64,
    /// The store (raft) index of the last write: Docker's `Version.Index`.
    pub index: u64,
    pub driver: Option<DriverRec>,
    pub templating: Option<DriverRec>,
    /// The current version's number; 0 for driver-backed secrets, which hold no value.
    pub current: u64,
    /// The number the next version will get.
    pub next: u64,
    /// Versions still held, oldest first.
    pub versions: Vec<VersionMeta>,
}

/// A new version as proposed: numbered and sealed before the proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVersion {
    pub number: u64,
    pub sealed: Sealed,
    pub size: u64,
    pub created_by: String,
    pub rollback_of: Option<u64>,
}

/// A named set of secret references with a rotation policy (the delivery work).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub created_ns: i64,
    pub updated_ns: i64,
    pub index: u64,
    /// (secret ID, secret name, reference in Docker's long syntax)
    pub secrets: Vec<ServiceSecret>,
    pub constraints: Vec<String>,
    pub on_rotate: String,
}

/// One reference of a service to a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSecret {
    pub secret_id: String,
    pub secret_name: String,
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub version: Option<u64>,
}

/// A volume of the lockbox volume driver: a name and the secret references its mounts get.
/// No value is ever held here; each mount reveals the values when it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub created_ns: i64,
    pub index: u64,
    /// The driver options as Docker passed them (`docker volume inspect` shows them).
    pub options: BTreeMap<String, String>,
    pub secrets: Vec<ServiceSecret>,
}

/// Who a grant is for: one Unix user, or every member of one group (primary or
/// supplementary), as the daemon resolves the caller from the kernel's peer credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GrantSubject {
    Uid(u32),
    Gid(u32),
    /// The volume driver's volumes (dockerd, root, is their one caller): once any grant
    /// names them, a volume may name only the secrets such grants cover.
    Volumes,
}

/// `lockbox policy grant`: the subject may have the secrets and configs whose names match
/// `pattern` (a glob where `*` stands for any run of name characters) delivered to its
/// workloads. Nothing else: no listing, no changes, no keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub subject: GrantSubject,
    pub pattern: String,
    pub created_ns: i64,
    /// Who granted it (`uid:N`).
    pub created_by: String,
    /// The store index of the write.
    pub index: u64,
}

impl GrantRecord {
    /// The row key: subject, then pattern, so one subject's grants sit together and a grant
    /// given twice is one row.
    pub fn key(subject: GrantSubject, pattern: &str) -> Vec<u8> {
        let mut k = match subject {
            GrantSubject::Uid(u) => format!("u/{u}/"),
            GrantSubject::Gid(g) => format!("g/{g}/"),
            GrantSubject::Volumes => "v/".to_owned(),
        }
        .into_bytes();
        k.extend_from_slice(pattern.as_bytes());
        k
    }
}

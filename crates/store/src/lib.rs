//! lockbox's state machine: secrets and configs with their versions, and services, kept in
//! redb tables next to the raft log.
//!
//! Architecture invariant: the store never sees plaintext. Values arrive already sealed
//! (see `lockbox-keyring`), so nothing this crate writes — tables, snapshots, errors — can
//! hold a secret. It has no HTTP and no Raft dependency: the replication crate drives
//! [`Store::apply`], the daemon reads through [`Reader`].
#![forbid(unsafe_code)]

pub mod cluster;
mod error;
mod index;
pub mod machine;
mod model;
mod read;
pub mod validate;

pub use cluster::{CaRotation, ClusterRecord, NodeRecord, NodeRole, node_id_text, parse_node_id};
pub use error::StoreError;
pub use machine::{Command, Response, Rewrapped, Store};
pub use model::{
    DriverRec, GrantRecord, GrantSubject, Kind, NewVersion, ObjectRecord, ServiceRecord,
    ServiceSecret, VersionMeta, VolumeRecord,
};
pub use read::Reader;
pub use validate::Filters;

/// A new object ID: 25 lowercase base36 characters from 128 random bits, as Swarm makes
/// them. `random` must be 16 bytes from a CSPRNG.
pub fn object_id(random: [u8; 16]) -> String {
    let mut n = u128::from_be_bytes(random);
    let mut out = [b'0'; 25];
    for slot in out.iter_mut().rev() {
        let d = (n % 36) as u8;
        *slot = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        n /= 36;
    }
    String::from_utf8(out.to_vec()).expect("ascii")
}

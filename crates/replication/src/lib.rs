//! lockbox's replication layer: every change to the store is a command in a raft log, applied
//! by the store's deterministic state machine.
//!
//! Single-node mode is a **one-voter raft cluster** (openraft), so the cluster work adds
//! voters and a transport ([`network`] is the placeholder it replaces), not a second code
//! path.
//!
//! # Layout
//!
//! * [`Replica`]: open a store file, [`Replica::propose`] commands, read through
//!   [`Replica::db`] (after [`Replica::ensure_linearizable`] when staleness matters).
//! * [`storage`]: openraft's log storage and state machine on redb. The raft log and the
//!   store's tables share one redb `Database`, so an applied entry, the store's changes and
//!   `last_applied` commit in one write transaction. Its module docs explain which commits
//!   are fsync'd and why one fsync per proposal is enough for durability.
//! * [`network`]: a raft network in which every peer is unreachable (single node).
//! * [`types`]: the openraft type configuration; all openraft types are named in this crate
//!   so an alpha bump of openraft stays here.
//!
//! # Use
//!
//! ```no_run
//! use std::path::Path;
//! use lockbox_replication::{Replica, ReplicaConfig};
//! use lockbox_store::{Command, Reader};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Inside a Tokio runtime (openraft spawns its tasks on it).
//! let replica = Replica::open(Path::new("/var/lib/lockbox/store.redb"), ReplicaConfig::default()).await?;
//! let response = replica.propose(Command::Noop).await?; // durable once this returns
//! replica.ensure_linearizable().await?;                 // only for reads that must not be stale
//! let reader = Reader::new(replica.db());
//! # let _ = (response, reader);
//! replica.shutdown().await?;                            // releases the file lock
//! # Ok(())
//! # }
//! ```
//!
//! # Invariants
//!
//! * An acknowledged [`Replica::propose`] survives `kill -9` and power loss: its log entry was
//!   committed with an fsync before the proposal could commit.
//! * A store file that fails its checksums or is truncated is refused at open
//!   ([`ReplicationError::Corrupt`]), never served. The one repair accepted is redb rolling
//!   back a commit that a crash interrupted (never acknowledged), and it is reported
//!   ([`Replica::rolled_back_torn_commit`]); see [`ReplicaConfig::allow_torn_commit_rollback`].
//! * One process, one replica per file: a second open fails ([`ReplicationError::AlreadyOpen`]).
#![forbid(unsafe_code)]

mod error;
pub mod network;
mod replica;
pub mod rpc;
pub mod storage;
pub mod types;
mod watch;

pub use error::ReplicationError;
pub use network::{Dialer, NoDialer, TcpDialer};
pub use replica::{
    Bootstrap, DEFAULT_NODE_ID, Member, NodeState, Replica, ReplicaConfig, SHUTDOWN_CLOSE_TIMEOUT,
    Status,
};
pub use rpc::{RpcHandler, serve_plain_tcp, serve_rpc};

//! lockbox's replication layer: every change to the store is a command in a raft log, applied
//! by the store's deterministic state machine.
//!
//! Single-node mode is a **one-voter raft cluster** (openraft); a cluster is the same code
//! with more voters and a transport, not a second code path.
//!
//! # Layout
//!
//! * [`Replica`]: open a store file ([`Replica::open`] single-node, [`Replica::open_with`]
//!   with a [`Dialer`] and a [`Bootstrap`] mode), [`Replica::propose`] commands on the
//!   leader or [`Replica::propose_forwarded`] from any node, read through [`Replica::db`]
//!   (after [`Replica::linearizable_read`] when staleness matters). Membership:
//!   [`Replica::add_learner`], [`Replica::promote`], [`Replica::demote`],
//!   [`Replica::remove_node`], [`Replica::set_node_addr`] / [`Replica::change_own_addr`];
//!   views: [`Replica::members`], [`Replica::leader`], [`Replica::status`].
//! * [`network`]: the client side of the raft transport. HTTP/1.1 (hyper) with postcard
//!   bodies over whatever stream a [`Dialer`] opens: the daemon's dialer does mTLS, this crate
//!   depends on no TLS. [`TcpDialer`] (plain TCP) is for tests and benchmarks, [`NoDialer`]
//!   for single-node mode. One persistent connection per raft client, re-dialed after any
//!   error; `RPCOption::hard_ttl` bounds every call. Its module docs list the paths.
//! * [`rpc`]: the server side, framework-agnostic: [`serve_rpc`] answers one request (the
//!   daemon mounts it behind mTLS and checks the caller first); [`serve_plain_tcp`] is a
//!   plain-TCP server for tests and benchmarks.
//! * [`storage`]: openraft's log storage and state machine. The raft log is a write-ahead
//!   log beside the redb file (`<store>.wal/`, the private `wal` module); the vote and the
//!   store's tables share one redb `Database`, so an applied entry, the store's changes and
//!   `last_applied` commit in one write transaction. Its module docs explain which writes
//!   are fsync'd and why one fsync per proposal is enough for durability.
//! * [`types`]: the openraft type configuration; all openraft types are named in this crate
//!   so an alpha bump of openraft stays here.
//!
//! # Forwarding and reads
//!
//! A write on a follower or learner is sent to the leader (`/raft/propose`); the leader
//! proposes it and answers with the log index, and the follower returns once it has applied
//! that index itself (read-your-writes). A linearizable read on a follower asks the leader for
//! a read index (`/raft/read-index`: the leader confirms its leadership with a quorum) and
//! waits until it has applied it. A leader that has not heard from a quorum for twice the
//! longest election timeout refuses writes and read indexes at once.
//!
//! # Cluster formation
//!
//! A single-node store is a one-voter cluster whose node advertises `"local"`. `cluster init`
//! is [`Replica::change_own_addr`] (a `SetNodes` membership entry giving node 1 its real
//! address; raft cannot be re-initialized). Each new manager opens an empty file with
//! [`Bootstrap::Join`] and waits; the leader runs [`Replica::add_learner`] (blocking: it
//! catches up from the log or, if that was purged, a snapshot) and then [`Replica::promote`].
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
//!   committed with an fsync before the proposal could commit. In a cluster, "committed"
//!   means fsync'd on a majority of voters.
//! * A write never hangs: [`Replica::propose_forwarded`] ends within about
//!   `ReplicaConfig::write_timeout` with [`ReplicationError::NoQuorum`] (nothing was written,
//!   retry is safe) or [`ReplicationError::OutcomeUnknown`] (handed to a leader that did not
//!   confirm it; it may commit). A leader cut off from its quorum never acknowledges a write
//!   (guarded by the partition test in `tests/cluster.rs`).
//! * After [`Replica::propose_forwarded`] or [`Replica::linearizable_read`] returns, a read
//!   through [`Replica::db`] on this node sees that write / everything committed before the
//!   read began.
//! * This crate authenticates no peer: whoever can call [`serve_rpc`] can rewrite the log.
//!   The daemon must check the caller's certificate (and that it matches the node id in
//!   [`network::NODE_HEADER`]) first.
//! * A store file that fails its checksums or is truncated, a raft log record that fails its
//!   CRC anywhere but at the very end, or a missing log directory is refused at open
//!   ([`ReplicationError::Corrupt`]), never served. The one repair accepted is dropping a
//!   write a crash interrupted (never acknowledged): redb rolling back its newest commit, or
//!   the log's torn final record being cut off; it is reported
//!   ([`Replica::rolled_back_torn_commit`]); see [`ReplicaConfig::allow_torn_commit_rollback`].
//! * One process, one replica per file: a second open fails ([`ReplicationError::AlreadyOpen`]).
#![forbid(unsafe_code)]

mod error;
pub mod network;
mod replica;
pub mod rpc;
pub mod storage;
pub mod types;
mod wal;
mod watch;

pub use error::ReplicationError;
pub use network::{Dialer, NoDialer, TcpDialer};
pub use replica::{
    Bootstrap, DEFAULT_CACHE_SIZE, DEFAULT_NODE_ID, Member, NodeState, Replica, ReplicaConfig,
    SHUTDOWN_CLOSE_TIMEOUT, STORAGE_FAILURE_EXIT_CODE, Status,
};
pub use rpc::{RpcHandler, serve_plain_tcp, serve_rpc};

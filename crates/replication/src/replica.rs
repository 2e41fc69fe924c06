//! [`Replica`]: one node's raft instance over one redb file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lockbox_store::{Command, Response, Store};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, Fatal, LinearizableReadError, RaftError};
use openraft::{ChangeMembers, LogIdOptionExt, ReadPolicy, ServerState, SnapshotPolicy};
use redb::{Database, DatabaseError, Durability, ReadableDatabase, StorageError};

use crate::error::ReplicationError;
use crate::network::{Dialer, Forwarder, Network, NoDialer, Pool};
use crate::rpc::RpcHandler;
use crate::storage::{self, LogStore, StateMachine};
use crate::types::{Node, NodeId, Proposal, Raft, TypeConfig};

/// How long [`Replica::shutdown`] waits for the last handle to the database to go.
pub const SHUTDOWN_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The node id a single-node replica uses.
pub const DEFAULT_NODE_ID: NodeId = 1;

/// The process's exit status when [`ReplicaConfig::exit_on_storage_failure`] ends it
/// (`EX_IOERR` from sysexits.h: an error doing I/O on a file).
pub const STORAGE_FAILURE_EXIT_CODE: i32 = 74;

/// How a replica runs. `Default` is right for single-node mode.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This node's raft id. Stable for the life of the store file; never reused for a node
    /// that starts from an empty log.
    pub node_id: NodeId,
    /// The address this node advertises in the membership (for peers, once there are any).
    pub advertise_addr: String,
    /// A name for log lines and metrics.
    pub cluster_name: String,
    /// How often a leader heartbeats its followers. Irrelevant with one voter; it bounds how
    /// fast followers notice a dead leader in a cluster.
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout. Must exceed `heartbeat_interval`.
    /// A one-voter replica elects itself at once on start and never waits for this.
    pub election_timeout_min: Duration,
    /// Upper bound of the randomized election timeout. Must exceed `election_timeout_min`.
    pub election_timeout_max: Duration,
    /// Build a snapshot once this many entries were applied since the last one.
    /// `0` disables automatic snapshots ([`Replica::snapshot`] still works).
    pub snapshot_every: u64,
    /// How many entries already covered by a snapshot stay in the log (for followers that
    /// lag a little). The rest is purged.
    pub logs_to_keep_after_snapshot: u64,
    /// How long [`Replica::open`] waits for a one-voter replica to become leader and catch
    /// its state machine up with the log.
    pub ready_timeout: Duration,
    /// After a crash (kill -9, power loss), let redb roll back a commit that was in flight
    /// when the process died, and cut off a raft log append that was (an incomplete or
    /// checksum-failing final record of the newest WAL segment). Default `true`.
    ///
    /// redb's default commit writes pages and header and then fsyncs once, so a process that
    /// dies *during* a commit can leave a newest commit that fails its checksum; redb then
    /// falls back to the previous commit. That torn commit's fsync never returned, so nothing
    /// in it was acknowledged: in a one-voter cluster the rollback loses no acknowledged
    /// write (the kill -9 test hits this case and checks exactly that). The file is not
    /// served silently: the rollback is logged and reported by
    /// [`Replica::rolled_back_torn_commit`]. A cleanly closed file never needs it (its last
    /// commit is redb's two-phase one), so damage there is always [`ReplicationError::Corrupt`].
    ///
    /// What lockbox cannot tell apart: media corruption confined to the newest commit's pages
    /// of a crashed file looks the same as a torn commit. Set this to `false` to refuse such a
    /// file instead ([`ReplicationError::Corrupt`]) and inspect it by hand.
    pub allow_torn_commit_rollback: bool,
    /// What a *new* store file starts as (an existing file ignores this: it resumes).
    pub bootstrap: Bootstrap,
    /// How long a write ([`Replica::propose_forwarded`], and a proposal forwarded to this
    /// node as leader) and a [`Replica::linearizable_read`] may take before failing with
    /// [`ReplicationError::NoQuorum`] (nothing written) or [`ReplicationError::OutcomeUnknown`]
    /// (proposed, not confirmed). Membership changes get `ready_timeout`.
    pub write_timeout: Duration,
    /// When a write to the raft log or the store file fails (ENOSPC, EROFS, EIO, a failed
    /// fsync), openraft stops this node's raft for good. With this set (the default), the
    /// replica then logs the files and the cause and exits the process with
    /// [`STORAGE_FAILURE_EXIT_CODE`], so that a service manager restarts it: the reopen cuts
    /// the failed append off and replays the durable log. Staying up cannot be made safe: a
    /// failed fsync may have dropped pages the kernel then reports clean, so the write is
    /// never retried as if it were on disk (PostgreSQL's 2018 "fsyncgate" lesson). Unset
    /// (tests, tools), every later call fails at once with [`ReplicationError::Fatal`]
    /// naming the cause.
    pub exit_on_storage_failure: bool,
    /// redb's page cache for the store file, in bytes ([`DEFAULT_CACHE_SIZE`] by default).
    /// It is what bounds the daemon's memory as the store grows: redb's own default (1 GiB)
    /// let the cache follow the file, and the daemon locks its memory (`mlockall`).
    pub cache_size: usize,
}

/// The store's page cache unless configured: at 100,000 secrets the hot part of the
/// B-trees (names, objects, the label index) fits, and lookups stay at one or two reads.
pub const DEFAULT_CACHE_SIZE: usize = 32 << 20;

/// How a new store file joins raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bootstrap {
    /// Initialize a one-voter cluster of this node (single-node mode, and the first manager
    /// of a cluster: it adds the others with [`Replica::add_learner`] and [`Replica::promote`]).
    #[default]
    SingleVoter,
    /// Do not initialize: this node waits (as a learner with an empty log) until a leader
    /// adds it and replicates the log or a snapshot to it.
    Join,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            node_id: DEFAULT_NODE_ID,
            advertise_addr: "local".to_string(),
            cluster_name: "lockbox".to_string(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            snapshot_every: 1024,
            logs_to_keep_after_snapshot: 128,
            ready_timeout: Duration::from_secs(10),
            allow_torn_commit_rollback: true,
            bootstrap: Bootstrap::SingleVoter,
            write_timeout: Duration::from_secs(5),
            exit_on_storage_failure: true,
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

impl ReplicaConfig {
    fn raft_config(&self) -> Result<openraft::Config, ReplicationError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = openraft::Config {
            cluster_name: self.cluster_name.clone(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            snapshot_policy: if self.snapshot_every == 0 {
                SnapshotPolicy::Never
            } else {
                SnapshotPolicy::LogsSinceLast(self.snapshot_every)
            },
            max_in_snapshot_log_to_keep: self.logs_to_keep_after_snapshot,
            // A snapshot transfer must outlast the export of a large store.
            install_snapshot_timeout: 10_000,
            // A restarted leader goes through a normal election (a new term, whose blank
            // entry commits and re-applies the durable log) instead of resuming leadership
            // from its saved vote: openraft documents that resuming is unsafe when, as here,
            // apply and `committed` are not fsync'd (see the `storage` module docs). For a
            // sole voter the election is immediate (`Replica::open` triggers it).
            enable_leader_restore: Some(false),
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ReplicationError::Config(e.to_string()))
    }
}

/// A node of the membership ([`Replica::members`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its raft id.
    pub id: NodeId,
    /// The address it advertises.
    pub addr: String,
    /// True for a voter, false for a learner.
    pub voter: bool,
}

/// A node's raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Accepts writes.
    Leader,
    /// A voter following a leader.
    Follower,
    /// A voter running an election.
    Candidate,
    /// Receives the log, does not vote (also a [`Bootstrap::Join`] node not added yet).
    Learner,
    /// Stopped.
    Shutdown,
}

/// One node's view of the cluster ([`Replica::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This node's id.
    pub node_id: NodeId,
    /// Its role.
    pub state: NodeState,
    /// The raft term it is in.
    pub term: u64,
    /// The index of its last log entry.
    pub last_log_index: Option<u64>,
    /// The index of the last entry applied to its store.
    pub applied: Option<u64>,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// That leader's address.
    pub leader_addr: Option<String>,
    /// The voters of the latest membership it knows.
    pub voters: Vec<NodeId>,
    /// The learners of that membership.
    pub learners: Vec<NodeId>,
}

/// One node's replica of the store: the raft log, the vote and the store's tables in one redb
/// file, driven by openraft. In single-node mode it is a one-voter cluster that is always its
/// own leader.
///
/// Writes go through [`Replica::propose`]; reads use [`Replica::db`] (`begin_read`), after
/// [`Replica::ensure_linearizable`] when they must not be stale.
pub struct Replica {
    raft: Raft,
    db: Arc<Database>,
    path: PathBuf,
    node_id: NodeId,
    /// What the RPC handler shares with the replica (the leader-side propose and read index).
    shared: Arc<Shared>,
    /// Calls to the leader for forwarded proposals and read indexes.
    forwarder: Arc<dyn Forwarder>,
    /// Bound on membership changes and on waiting for a learner to catch up.
    ready_timeout: Duration,
    /// Whether the open had redb roll back a torn (in-flight) commit after a crash.
    rolled_back_torn_commit: bool,
    /// Set by [`Replica::shutdown`] so that `Drop` does not stop raft a second time.
    shut_down: bool,
}

impl Drop for Replica {
    /// A replica dropped without [`Replica::shutdown`] still stops its raft tasks (which
    /// otherwise run on, holding the file open), in the background: the file is released
    /// shortly after, not when `drop` returns. Call `shutdown` to know when it is.
    fn drop(&mut self) {
        if self.shut_down {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let raft = self.raft.clone();
            handle.spawn(async move {
                raft.shutdown().await.ok();
            });
        }
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("path", &self.path)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens (or creates) the store file at `path` and starts raft on it.
    ///
    /// A new file gets its tables and a one-voter membership (`cfg.node_id`). An existing
    /// file resumes: no re-initialization, the vote and log are what they were, and entries
    /// the log holds beyond the state machine's `last_applied` (a crash can leave some, see
    /// the `storage` module docs) are re-applied before this returns. When the membership is
    /// this node alone, it returns once the node is leader and caught up.
    ///
    /// Fails with [`ReplicationError::AlreadyOpen`] if the file is open elsewhere,
    /// [`ReplicationError::Corrupt`] if it fails redb's integrity check or is truncated.
    ///
    /// Must run inside a Tokio runtime: openraft spawns its core, state-machine and tick tasks
    /// on it. The open reads the whole file once (redb's integrity check).
    pub async fn open(path: &Path, cfg: ReplicaConfig) -> Result<Replica, ReplicationError> {
        Self::open_with(path, cfg, NoDialer).await
    }

    /// [`Replica::open`] with a raft transport: peers are reached through `dialer` (the
    /// daemon's mTLS dialer; [`crate::network::TcpDialer`] in tests), and this node answers
    /// them once its [`Replica::rpc_handler`] is mounted in a server.
    ///
    /// A new file starts as `cfg.bootstrap` says: a one-voter cluster (and this returns once
    /// it is leader), or [`Bootstrap::Join`]: uninitialized, waiting to be added by a leader
    /// (this returns at once). An existing file resumes; if its membership has other voters,
    /// this returns without waiting for an election.
    pub async fn open_with<D: Dialer>(
        path: &Path,
        cfg: ReplicaConfig,
        dialer: D,
    ) -> Result<Replica, ReplicationError> {
        let raft_config = Arc::new(cfg.raft_config()?);
        let (db, rolled_back_torn_commit) =
            open_database(path, cfg.allow_torn_commit_rollback, cfg.cache_size)?;
        let db = Arc::new(db);
        // A file is one node's log and vote: opening it as another node would make it vote
        // and append under the wrong identity.
        let owner = storage::claim_node_id(&db, cfg.node_id).map_err(|source| {
            ReplicationError::Storage {
                path: path.to_path_buf(),
                source,
            }
        })?;
        if owner != cfg.node_id {
            return Err(ReplicationError::Config(format!(
                "store file {} belongs to raft node {owner}, not node {}",
                path.display(),
                cfg.node_id
            )));
        }
        if rolled_back_torn_commit {
            tracing::warn!(
                path = %path.display(),
                "store file was not closed cleanly and its newest commit was incomplete; \
                 redb rolled it back to the previous commit (nothing acknowledged is lost by \
                 rolling back a commit that never finished)"
            );
        }

        let log_dir = crate::wal::dir_for(path);
        let wal =
            storage::open_log(&db, &log_dir, cfg.allow_torn_commit_rollback).map_err(|source| {
                if source.kind() == io::ErrorKind::InvalidData {
                    ReplicationError::Corrupt {
                        path: log_dir.clone(),
                        reason: source.to_string(),
                    }
                } else {
                    ReplicationError::Storage {
                        path: log_dir.clone(),
                        source,
                    }
                }
            })?;
        // Applied entries come from the durable log, so the log must reach at least as far
        // as the state machine; if not, the log directory was lost or replaced.
        let applied = {
            let txn = db.begin_read().map_err(|e| ReplicationError::Storage {
                path: path.to_path_buf(),
                source: io::Error::other(e.to_string()),
            })?;
            storage::read_applied(&txn)
                .map_err(|source| ReplicationError::Storage {
                    path: path.to_path_buf(),
                    source,
                })?
                .0
        };
        let logged = wal.last_index();
        let rolled_back_torn_commit = rolled_back_torn_commit || wal.cut_torn_tail();
        if let Some(applied) = applied
            && logged.is_none_or(|l| l < applied.index())
        {
            return Err(ReplicationError::Corrupt {
                path: log_dir,
                reason: format!(
                    "the store file applied the raft log up to entry {}, but the log {}; \
                     was the log directory deleted or replaced?",
                    applied.index(),
                    match logged {
                        Some(l) => format!("ends at entry {l}"),
                        None => "is empty".to_string(),
                    }
                ),
            });
        }
        let state_machine = StateMachine::new(db.clone());
        let destructions = state_machine.destructions();
        let raft = Raft::new(
            cfg.node_id,
            raft_config,
            Network::new(cfg.node_id, dialer.clone()),
            LogStore::new(db.clone(), wal),
            state_machine,
        )
        .await
        .map_err(fatal)?;
        tokio::spawn(scrub_after_destruction(
            raft.clone(),
            Arc::downgrade(&db),
            destructions,
        ));
        let shared = Arc::new(Shared {
            raft: raft.clone(),
            node_id: cfg.node_id,
            write_timeout: cfg.write_timeout,
            stale_after: cfg.election_timeout_max * 2,
        });
        if cfg.exit_on_storage_failure {
            tokio::spawn(exit_on_storage_failure(raft.clone(), path.to_path_buf()));
        }
        let replica = Replica {
            raft,
            db,
            path: path.to_path_buf(),
            node_id: cfg.node_id,
            shared,
            forwarder: Pool::new(cfg.node_id, dialer),
            ready_timeout: cfg.ready_timeout,
            rolled_back_torn_commit,
            shut_down: false,
        };

        match replica.start(&cfg).await {
            Ok(()) => Ok(replica),
            Err(e) => {
                // Release the file before reporting, so the caller may retry the open.
                replica.shutdown().await.ok();
                Err(e)
            }
        }
    }

    async fn start(&self, cfg: &ReplicaConfig) -> Result<(), ReplicationError> {
        let initialized = self.raft.is_initialized().await.map_err(fatal)?;
        if !initialized && cfg.bootstrap == Bootstrap::Join {
            tracing::info!(path = %self.path.display(), node_id = cfg.node_id, "waiting to be added to a raft cluster");
            return Ok(());
        } else if !initialized {
            let members = BTreeMap::from([(cfg.node_id, Node::new(&cfg.advertise_addr))]);
            tracing::info!(path = %self.path.display(), node_id = cfg.node_id, "initializing a one-voter raft cluster");
            self.raft
                .initialize(members)
                .await
                .map_err(|e| ReplicationError::Raft(format!("cannot initialize: {e}")))?;
        } else if !self.is_sole_voter() {
            // A cluster member: leadership comes from an election among peers, which may
            // take a while (or need a quorum that is not up yet). Nothing to wait for here.
            tracing::info!(
                path = %self.path.display(),
                "membership has other voters (or this node is a learner); not waiting for leadership"
            );
            return Ok(());
        } else {
            // Alone in the membership: nobody else can win, so do not sit out an election
            // timeout. (openraft starts a restarted leader as follower.)
            self.raft.trigger().elect(false).await.map_err(fatal)?;
        }

        let timeout = cfg.ready_timeout;
        let not_ready = |what: &str, e: &dyn std::fmt::Display| ReplicationError::NotReady {
            timeout_ms: timeout.as_millis(),
            reason: format!("{what}: {e}"),
        };
        self.raft
            .wait(Some(timeout))
            .state(ServerState::Leader, "one-voter replica becomes leader")
            .await
            .map_err(|e| not_ready("becoming leader", &e))?;
        // Commit (through the new term's blank entry) and apply everything the durable log
        // holds, so that the first read after open sees every acknowledged write.
        self.raft
            .wait_for_recovery(Some(timeout))
            .await
            .map_err(|e| not_ready("re-applying the log", &e))?;
        Ok(())
    }

    fn is_sole_voter(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let voters: Vec<NodeId> = metrics.membership_config.voter_ids().collect();
        voters == [self.node_id]
    }

    /// A handle for the raft RPC server side ([`crate::rpc::serve_rpc`],
    /// [`crate::rpc::serve_plain_tcp`]).
    pub fn rpc_handler(&self) -> RpcHandler {
        RpcHandler {
            shared: self.shared.clone(),
        }
    }

    /// Proposes `cmd` wherever this node is: on the leader it is [`Replica::propose`] bounded
    /// by `write_timeout`; on a follower or learner the command is sent to the leader
    /// (`/raft/propose`), and once the leader answers this waits until this node has applied
    /// that entry too, so a read here right after sees the write.
    ///
    /// Fails within about `write_timeout` with [`ReplicationError::NoQuorum`] when no leader
    /// with a quorum can be reached (nothing was written: retrying is safe), or
    /// [`ReplicationError::OutcomeUnknown`] when the command was handed to a leader that
    /// did not confirm it in time (it may still commit).
    pub async fn propose_forwarded(&self, cmd: Command) -> Result<Response, ReplicationError> {
        self.propose_forwarded_indexed(cmd).await.map(|(_, r)| r)
    }

    /// [`Replica::propose_forwarded`], also returning the log index of the entry.
    pub async fn propose_forwarded_indexed(
        &self,
        cmd: Command,
    ) -> Result<(u64, Response), ReplicationError> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.shared.write_timeout;
        // Encoded only if a write is forwarded: on the leader (the common case) it is not.
        let mut body: Option<Vec<u8>> = None;
        let mut last_problem = "no leader is known".to_string();
        loop {
            self.check_running()?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(ReplicationError::NoQuorum(format!(
                    "no leader accepted the write within {} ms ({last_problem})",
                    self.shared.write_timeout.as_millis()
                )));
            }
            match self.leader() {
                Some((leader, _)) if leader == self.node_id => {
                    match self.shared.propose_local(cmd.clone(), remaining).await {
                        // Lost leadership before appending: find the new leader.
                        Err(ReplicationError::NotLeader { .. }) => {
                            last_problem = "leadership moved".to_string();
                        }
                        // openraft's own message lacks the files; name them.
                        Err(e @ ReplicationError::Fatal(_)) => {
                            return Err(self.check_running().err().unwrap_or(e));
                        }
                        other => return other,
                    }
                }
                Some((leader, addr)) => {
                    match self
                        .forwarder
                        .call(
                            leader,
                            &addr,
                            crate::rpc::PATH_PROPOSE,
                            body.get_or_insert_with(|| crate::network::encode_request(&cmd))
                                .clone(),
                            remaining,
                        )
                        .await
                    {
                        Ok(bytes) => {
                            match crate::network::decode_answer::<(u64, Response)>(&bytes) {
                                Ok(Ok((index, response))) => {
                                    self.wait_applied(index, started).await?;
                                    return Ok((index, response));
                                }
                                // The leader had stepped down before appending: retry.
                                Ok(Err(crate::rpc::WireError::NotLeader { .. })) => {
                                    last_problem = format!("node {leader} is no longer the leader");
                                }
                                Ok(Err(e)) => return Err(e.into()),
                                Err(e) => {
                                    return Err(ReplicationError::Raft(format!(
                                        "leader {leader} at {addr}: {e}"
                                    )));
                                }
                            }
                        }
                        // Refused before any processing (the peer has no such route).
                        Err(e @ crate::network::CallError::Status(..)) => {
                            return Err(ReplicationError::Raft(format!(
                                "leader {leader} at {addr}: {e}"
                            )));
                        }
                        Err(e) if e.not_sent() => {
                            last_problem = format!("leader {leader} at {addr}: {e}");
                        }
                        Err(e) => {
                            tracing::warn!(leader, %addr, error = %e, "forwarded proposal failed after it may have been sent");
                            return Err(ReplicationError::OutcomeUnknown);
                        }
                    }
                }
                None => {}
            }
            let pause = Duration::from_millis(50).min(remaining);
            tokio::time::sleep(pause).await;
        }
    }

    /// Makes the next read through [`Replica::db`] linearizable, on any node: the leader
    /// confirms its leadership with a quorum (read index); a follower or learner asks the
    /// leader for that index (`/raft/read-index`) and waits until it has applied it. Returns
    /// the read index.
    ///
    /// Fails with [`ReplicationError::NoQuorum`] within about `write_timeout` when no leader
    /// with a quorum can be reached.
    pub async fn linearizable_read(&self) -> Result<u64, ReplicationError> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.shared.write_timeout;
        let body = crate::network::encode_request(&());
        let mut last_problem = "no leader is known".to_string();
        loop {
            self.check_running()?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(ReplicationError::NoQuorum(format!(
                    "no leader confirmed a read index within {} ms ({last_problem})",
                    self.shared.write_timeout.as_millis()
                )));
            }
            match self.leader() {
                Some((leader, _)) if leader == self.node_id => {
                    match self.shared.read_index_local(remaining).await {
                        Ok(index) => {
                            self.wait_applied(index, started).await?;
                            return Ok(index);
                        }
                        Err(e @ ReplicationError::Fatal(_)) => return Err(e),
                        Err(e) => last_problem = e.to_string(),
                    }
                }
                Some((leader, addr)) => {
                    match self
                        .forwarder
                        .call(
                            leader,
                            &addr,
                            crate::rpc::PATH_READ_INDEX,
                            body.clone(),
                            remaining,
                        )
                        .await
                    {
                        Ok(bytes) => match crate::network::decode_answer::<u64>(&bytes) {
                            Ok(Ok(index)) => {
                                self.wait_applied(index, started).await?;
                                return Ok(index);
                            }
                            Ok(Err(e)) => last_problem = format!("leader {leader}: {e}"),
                            Err(e) => last_problem = format!("leader {leader}: {e}"),
                        },
                        // Reads are idempotent: every failure is worth a retry.
                        Err(e) => last_problem = format!("leader {leader} at {addr}: {e}"),
                    }
                }
                None => {}
            }
            let pause = Duration::from_millis(50).min(remaining);
            tokio::time::sleep(pause).await;
        }
    }

    /// Waits until this node has applied `index` (an entry the leader committed).
    async fn wait_applied(
        &self,
        index: u64,
        started: tokio::time::Instant,
    ) -> Result<(), ReplicationError> {
        // Committed entries reach a healthy follower within a heartbeat; allow the rest of
        // the write budget plus `ready_timeout` for a loaded machine.
        let budget =
            (self.shared.write_timeout + self.ready_timeout).saturating_sub(started.elapsed());
        self.raft
            .wait(Some(budget))
            .applied_index_at_least(Some(index), "apply what the leader committed")
            .await
            .map(|_| ())
            .map_err(|e| ReplicationError::NotApplied {
                index,
                reason: e.to_string(),
            })
    }

    /// The current leader and its advertised address, as this node knows them.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let leader = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .get_node(&leader)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some((leader, addr))
    }

    /// Every node in the (latest known) membership, voters and learners, by id.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = &metrics.membership_config;
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let mut members: Vec<Member> = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        members.sort_by_key(|m| m.id);
        members
    }

    /// This node's view of the cluster, for `lockbox node ls` and `info`.
    pub fn status(&self) -> Status {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = &metrics.membership_config;
        let leader = metrics.current_leader;
        Status {
            node_id: self.node_id,
            state: match metrics.state {
                ServerState::Leader => NodeState::Leader,
                ServerState::Follower => NodeState::Follower,
                ServerState::Candidate => NodeState::Candidate,
                ServerState::Learner => NodeState::Learner,
                ServerState::Shutdown => NodeState::Shutdown,
            },
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            applied: metrics.last_applied.index(),
            leader,
            leader_addr: leader
                .and_then(|l| membership.get_node(&l))
                .map(|n| n.addr.clone()),
            voters: membership.voter_ids().collect(),
            learners: membership.membership().learner_ids().collect(),
        }
    }

    /// Adds node `id` at `addr` as a learner (it receives the log but does not vote). With
    /// `blocking`, waits (up to `ready_timeout`) until the leader sees it caught up, which
    /// is when [`Replica::promote`] will not stall the cluster. Leader only
    /// ([`ReplicationError::NotLeader`] otherwise). Re-adding a known node changes nothing
    /// (not even its address: see [`Replica::set_node_addr`]).
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: &str,
        blocking: bool,
    ) -> Result<(), ReplicationError> {
        self.membership_call(
            "add a learner",
            self.raft.add_learner(id, Node::new(addr), false),
        )
        .await?;
        if !blocking {
            return Ok(());
        }
        // Caught up: the leader has replicated (log or snapshot) up to its own last entry.
        let timeout = self.ready_timeout;
        self.raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .map(|matched| Some(matched.index()) >= m.last_log_index)
                        .unwrap_or(false)
                },
                "the new learner catches up",
            )
            .await
            .map(|_| ())
            .map_err(|e| ReplicationError::NotReady {
                timeout_ms: timeout.as_millis(),
                reason: format!("node {id} was added as a learner but has not caught up: {e}"),
            })
    }

    /// Makes learner `id` a voter (joint consensus, two log entries). Leader only.
    pub async fn promote(&self, id: NodeId) -> Result<(), ReplicationError> {
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.membership_call("promote", self.raft.change_membership(change, true))
            .await
    }

    /// Makes voter `id` a learner. Leader only.
    pub async fn demote(&self, id: NodeId) -> Result<(), ReplicationError> {
        let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
        self.membership_call("demote", self.raft.change_membership(change, true))
            .await
    }

    /// Removes node `id` from the cluster (voter or learner). Leader only. A removed node
    /// must not come back with its old file: give a returning machine a new id.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), ReplicationError> {
        let is_voter = self.raft.voter_ids().any(|v| v == id);
        if is_voter {
            let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
            self.membership_call("remove a voter", self.raft.change_membership(change, false))
                .await?;
        }
        if self.raft.learner_ids().any(|l| l == id) {
            let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            self.membership_call(
                "remove a learner",
                self.raft.change_membership(change, false),
            )
            .await?;
        }
        Ok(())
    }

    /// Changes the address node `id` advertises in the membership (a membership entry with
    /// openraft's `SetNodes`; `add_learner` never replaces a known node). Leader only.
    ///
    /// Only the address changes, never who votes, so it cannot split the cluster; point it
    /// at the same machine (same store file), not at a different one.
    pub async fn set_node_addr(&self, id: NodeId, addr: &str) -> Result<(), ReplicationError> {
        let change = ChangeMembers::SetNodes(BTreeMap::from([(id, Node::new(addr))]));
        self.membership_call(
            "change a node's address",
            self.raft.change_membership(change, false),
        )
        .await
    }

    /// [`Replica::set_node_addr`] for this node: how a single-node store (created with
    /// address `"local"`) starts a cluster (`cluster init --advertise-addr`), after which
    /// peers can reach it and it can add them.
    pub async fn change_own_addr(&self, addr: &str) -> Result<(), ReplicationError> {
        self.set_node_addr(self.node_id, addr).await
    }

    async fn membership_call(
        &self,
        what: &str,
        call: impl Future<
            Output = Result<
                openraft::raft::ClientWriteResponse<TypeConfig>,
                RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
            >,
        >,
    ) -> Result<(), ReplicationError> {
        match tokio::time::timeout(self.ready_timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(map_write_error(e)),
            Err(_) => Err(ReplicationError::NoQuorum(format!(
                "cannot {what}: not committed within {} ms (it may still commit; check `members`)",
                self.ready_timeout.as_millis()
            ))),
        }
    }

    /// Proposes `cmd` and returns what the store answered once it is committed (durable in a
    /// quorum of logs) and applied here.
    pub async fn propose(&self, cmd: Command) -> Result<Response, ReplicationError> {
        self.propose_indexed(cmd)
            .await
            .map(|(_, response)| response)
    }

    /// Like [`Replica::propose`], and also returns the raft log index the command was
    /// committed at (the `index` `Store::apply` saw).
    pub async fn propose_indexed(&self, cmd: Command) -> Result<(u64, Response), ReplicationError> {
        let written = self
            .raft
            .client_write(Proposal(cmd))
            .await
            .map_err(map_write_error)?;
        let index = written.log_id.index();
        let response = written.data.ok_or_else(|| {
            ReplicationError::Raft(format!(
                "entry {index} was applied without a store response"
            ))
        })?;
        Ok((index, response))
    }

    /// Confirms this node is still the leader and waits until its state machine has applied
    /// everything committed before the call. A read through [`Replica::db`] after this
    /// returns is linearizable.
    pub async fn ensure_linearizable(&self) -> Result<(), ReplicationError> {
        self.raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(|_| ())
            .map_err(map_read_error)
    }

    /// The redb database holding the store's tables. Read with `begin_read()`; never write
    /// to it directly: every change goes through [`Replica::propose`].
    pub fn db(&self) -> Arc<Database> {
        self.db.clone()
    }

    /// The path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This node's raft id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// True if opening the file needed redb to roll back a commit that a crash left
    /// incomplete (see [`ReplicaConfig::allow_torn_commit_rollback`]). For the daemon's
    /// startup log and health report.
    pub fn rolled_back_torn_commit(&self) -> bool {
        self.rolled_back_torn_commit
    }

    /// The index of the last entry applied to the store, as recorded in the store file.
    pub fn applied_index(&self) -> Result<Option<u64>, ReplicationError> {
        let txn = self.db.begin_read().map_err(|e| self.storage_error(e))?;
        let (applied, _) = storage::read_applied(&txn).map_err(|e| self.storage_error(e))?;
        Ok(applied.map(|id| id.index()))
    }

    /// Builds a snapshot of everything applied so far, now, and waits until it exists (raft
    /// then purges the log up to it, keeping `logs_to_keep_after_snapshot` entries). Returns
    /// the index the newest snapshot covers.
    pub async fn snapshot(&self) -> Result<Option<u64>, ReplicationError> {
        let applied = self.raft.metrics().borrow_watched().last_applied.index();
        self.raft.trigger().snapshot().await.map_err(fatal)?;
        let timeout = Duration::from_secs(30);
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| m.snapshot.index() >= applied,
                "snapshot covers what was applied",
            )
            .await
            .map_err(|e| ReplicationError::NotReady {
                timeout_ms: timeout.as_millis(),
                reason: format!("building a snapshot: {e}"),
            })?;
        Ok(metrics.snapshot.index())
    }

    /// The log index up to which entries have been purged (covered by a snapshot), if any.
    pub fn purged_index(&self) -> Option<u64> {
        self.raft
            .metrics()
            .borrow_watched()
            .purged
            .as_ref()
            .map(|id| id.index())
    }

    /// The raft handle (metrics, tests); membership and the RPC server side have their own
    /// calls ([`Replica::add_learner`], [`Replica::rpc_handler`]).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Stops raft and closes the store file; once this returns the file can be reopened
    /// (by this or another process). Pending proposals fail with [`ReplicationError::Fatal`].
    ///
    /// Drop every clone of [`Replica::db`] first: the file stays open while one lives, and
    /// this gives up with an error after [`SHUTDOWN_CLOSE_TIMEOUT`].
    pub async fn shutdown(mut self) -> Result<(), ReplicationError> {
        let stopped = self.raft.shutdown().await;
        self.shut_down = true;
        let path = self.path.clone();
        let mut db = self.db.clone();
        drop(self);
        stopped.map_err(|e| ReplicationError::Fatal(format!("raft task failed to stop: {e}")))?;

        // raft's state-machine and snapshot tasks drop their handles to the database a moment
        // after the core task ends; the file is closed (and its lock released) when the last
        // one goes.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_CLOSE_TIMEOUT;
        loop {
            match Arc::try_unwrap(db) {
                Ok(database) => {
                    return database.close().map_err(|e| ReplicationError::Storage {
                        path,
                        source: io::Error::other(e.to_string()),
                    });
                }
                Err(shared) if tokio::time::Instant::now() < deadline => {
                    db = shared;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(shared) => {
                    return Err(ReplicationError::Storage {
                        path,
                        source: io::Error::other(format!(
                            "store file still in use by {} handle(s) after shutdown; drop every clone of Replica::db() first",
                            Arc::strong_count(&shared) - 1
                        )),
                    });
                }
            }
        }
    }

    /// `Err(Fatal)` naming the cause once raft has stopped (a storage failure): without it a
    /// stopped node looks like one that lost its leader, and every call would wait
    /// `write_timeout` and then blame the quorum.
    fn check_running(&self) -> Result<(), ReplicationError> {
        match &self.raft.metrics().borrow_watched().running_state {
            Ok(()) => Ok(()),
            Err(f) => Err(stopped(&self.path, f)),
        }
    }

    fn storage_error(&self, e: impl std::fmt::Display) -> ReplicationError {
        ReplicationError::Storage {
            path: self.path.clone(),
            source: io::Error::other(e.to_string()),
        }
    }
}

/// What a [`Replica`] and its [`RpcHandler`] share: the leader's side of proposals and
/// read indexes.
pub(crate) struct Shared {
    pub(crate) raft: Raft,
    pub(crate) node_id: NodeId,
    pub(crate) write_timeout: Duration,
    /// A leader that has not heard from a quorum for this long refuses writes at once
    /// (twice the longest election timeout: by then the others have elected a new leader).
    stale_after: Duration,
}

impl Shared {
    fn not_leader(&self) -> ReplicationError {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let leader_id = metrics.current_leader;
        ReplicationError::NotLeader {
            leader_id,
            leader_addr: leader_id
                .and_then(|l| metrics.membership_config.get_node(&l))
                .map(|n| n.addr.clone()),
        }
    }

    /// `Err(NoQuorum)` if this leader has not heard from a quorum lately; `Ok(true)` if it is
    /// its own quorum (sole voter).
    fn check_quorum(&self) -> Result<bool, ReplicationError> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let voters: Vec<NodeId> = metrics.membership_config.voter_ids().collect();
        if voters == [self.node_id] {
            return Ok(true);
        }
        let fresh = |t: &openraft::alias::SerdeInstantOf<TypeConfig>| {
            openraft::Instant::elapsed(&**t) < self.stale_after
        };
        if metrics.last_quorum_acked.as_ref().is_some_and(fresh) {
            return Ok(false);
        }
        let answered = 1 + metrics.heartbeat.as_ref().map_or(0, |hb| {
            hb.iter()
                .filter(|(id, acked)| {
                    **id != self.node_id && voters.contains(id) && acked.as_ref().is_some_and(fresh)
                })
                .count()
        });
        Err(ReplicationError::NoQuorum(format!(
            "leader {} heard from {answered} of {} voters (itself included) in the last {} ms; a majority is needed",
            self.node_id,
            voters.len(),
            self.stale_after.as_millis()
        )))
    }

    /// A proposal on this node as leader, bounded by `timeout` unless it is a sole voter
    /// (which cannot lose its quorum; only its disk can be slow).
    pub(crate) async fn propose_local(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> Result<(u64, Response), ReplicationError> {
        if !self.raft.is_leader() {
            return Err(self.not_leader());
        }
        let sole = self.check_quorum()?;
        let write = async {
            let written = self
                .raft
                .client_write(Proposal(cmd))
                .await
                .map_err(map_write_error)?;
            let index = written.log_id.index();
            let response = written.data.ok_or_else(|| {
                ReplicationError::Raft(format!(
                    "entry {index} was applied without a store response"
                ))
            })?;
            Ok((index, response))
        };
        if sole {
            return write.await;
        }
        match tokio::time::timeout(timeout, write).await {
            Ok(result) => result,
            // Appended here, not confirmed by a quorum: it may commit later or be
            // overwritten by another leader.
            Err(_) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis(),
                    "proposal not committed in time; its outcome is unknown"
                );
                Err(ReplicationError::OutcomeUnknown)
            }
        }
    }

    /// The read index on this node as leader: leadership confirmed with a quorum.
    pub(crate) async fn read_index_local(
        &self,
        timeout: Duration,
    ) -> Result<u64, ReplicationError> {
        if !self.raft.is_leader() {
            return Err(self.not_leader());
        }
        self.check_quorum()?;
        match tokio::time::timeout(
            timeout,
            self.raft.get_read_linearizer(ReadPolicy::ReadIndex),
        )
        .await
        {
            Ok(Ok(linearizer)) => Ok(linearizer.read_log_id().index()),
            Ok(Err(e)) => Err(map_read_error(e)),
            Err(_) => Err(ReplicationError::NoQuorum(format!(
                "leader {} could not confirm its leadership with a quorum within {} ms",
                self.node_id,
                timeout.as_millis()
            ))),
        }
    }
}

fn map_read_error(e: RaftError<TypeConfig, LinearizableReadError<TypeConfig>>) -> ReplicationError {
    match e {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => {
            ReplicationError::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.map(|n| n.addr),
            }
        }
        RaftError::APIError(LinearizableReadError::QuorumNotEnough(q)) => {
            ReplicationError::NoQuorum(q.to_string())
        }
        RaftError::Fatal(f) => fatal(f),
    }
}

/// How long a replica that hit a storage failure waits before it ends the process, so that
/// the requests that failed with it are answered.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How long removals are gathered before one snapshot and purge covers them all.
const SCRUB_GATHER: Duration = Duration::from_millis(100);
/// At most one overwrite of the store's free pages per this interval (it writes the free
/// space and holds the write lock while it does).
const SCRUB_INTERVAL: Duration = Duration::from_secs(5);

/// After an entry that destroyed sealed values (a secret removed, old versions pruned) is
/// applied, makes a snapshot that covers it and purges the log up to that snapshot, so the
/// removed values' copies in the raft log (the entries that created them) are deleted within
/// moments instead of living until the next routine snapshot; the WAL rewrites the segment
/// holding the purge point without the purged records (`Wal::purge`). A lagging follower then
/// catches up from a snapshot instead of the log. Ends when raft stops.
///
/// Then the store file's free pages, which still hold the removed rows, are overwritten
/// (`storage::overwrite_free_pages`), at most once per `SCRUB_INTERVAL`: destructions in the
/// meantime share the next pass. The database is held weakly, so that this task never keeps
/// the file open after the replica closes it.
async fn scrub_after_destruction(
    raft: Raft,
    db: std::sync::Weak<Database>,
    mut destructions: tokio::sync::watch::Receiver<u64>,
) {
    let mut last_pages_scrub: Option<tokio::time::Instant> = None;
    while destructions.changed().await.is_ok() {
        let wait = last_pages_scrub.map_or(SCRUB_GATHER, |t| {
            SCRUB_INTERVAL.saturating_sub(t.elapsed()).max(SCRUB_GATHER)
        });
        tokio::time::sleep(wait).await;
        let index = *destructions.borrow_and_update();
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
        let covered = raft
            .wait(Some(Duration::from_secs(30)))
            .metrics(
                |m| m.snapshot.index() >= Some(index),
                "snapshot covers the destroyed values",
            )
            .await;
        let Ok(metrics) = covered else {
            tracing::warn!(
                index,
                "no snapshot covered a removal within 30 s; its sealed values stay in the raft log until the next one"
            );
            continue;
        };
        let Some(upto) = metrics.snapshot.map(|s| s.index()) else {
            continue;
        };
        if raft.trigger().purge_log(upto).await.is_err() {
            return;
        }
        let Some(db) = db.upgrade() else {
            return;
        };
        match tokio::task::spawn_blocking(move || storage::overwrite_free_pages(&db)).await {
            Ok(Ok(pages)) => tracing::debug!(index, pages, "overwrote the store's free pages"),
            Ok(Err(e)) => tracing::warn!(
                index,
                "could not overwrite the store's free pages ({e}); removed values may stay in them until reused"
            ),
            Err(e) => tracing::warn!(index, "the free-page scrub failed: {e}"),
        }
        last_pages_scrub = Some(tokio::time::Instant::now());
    }
}

/// What a stopped raft means for the caller, with the store's files named.
fn stopped(path: &Path, f: &Fatal<TypeConfig>) -> ReplicationError {
    match f {
        Fatal::StorageError(e) => {
            // redb answers every call after its first I/O error with "Previous I/O error
            // occurred", which names no cause (the first one may have gone to a reader): ask
            // the file system what it is.
            let msg = e.to_string();
            let cause = if msg.contains("Previous I/O error") {
                probe_storage(path)
                    .map(|c| format!("; the file system now answers: {c}"))
                    .unwrap_or_default()
            } else {
                String::new()
            };
            ReplicationError::Fatal(format!(
                "a write to the store {} or its raft log {} failed ({msg}{cause}); this node \
                 stopped replicating and must be restarted once the cause is fixed",
                path.display(),
                crate::wal::dir_for(path).display()
            ))
        }
        other => ReplicationError::Fatal(other.to_string()),
    }
}

/// What a write to the store's file system fails with now, if it fails: an fsync of the
/// store file (a read-only or failed file system), then a small synced write beside it (a
/// full one). Only asked once raft has stopped on a storage error.
fn probe_storage(path: &Path) -> Option<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Err(e) = fs::File::open(path).and_then(|f| f.sync_all()) {
        return Some(e.to_string());
    }
    let probe = path.with_extension(format!("probe.{}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&probe)
        .and_then(|mut f| {
            f.write_all(&[0u8; 4096])?;
            f.sync_all()
        });
    let _ = fs::remove_file(&probe);
    written.err().map(|e| e.to_string())
}

/// Waits until raft stops; if a storage failure stopped it, logs it and ends the process
/// (see [`ReplicaConfig::exit_on_storage_failure`]). A shutdown ends the wait quietly.
async fn exit_on_storage_failure(raft: Raft, path: PathBuf) {
    let mut metrics = raft.metrics();
    drop(raft);
    loop {
        let failure = match &metrics.borrow_watched().running_state {
            Ok(()) => None,
            Err(f @ (Fatal::StorageError(_) | Fatal::Panicked)) => Some(stopped(&path, f)),
            Err(Fatal::Stopped) => return,
        };
        if let Some(e) = failure {
            tracing::error!(
                exit_code = STORAGE_FAILURE_EXIT_CODE,
                "{e}; exiting so that the service manager restarts lockbox (a failed write or \
                 fsync is never retried as if it were on disk)"
            );
            eprintln!(
                "lockbox: {e}; exiting with status {STORAGE_FAILURE_EXIT_CODE} so that the service manager restarts it"
            );
            // Requests in flight get their error answer first; nothing can commit meanwhile.
            tokio::time::sleep(EXIT_GRACE).await;
            std::process::exit(STORAGE_FAILURE_EXIT_CODE);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

fn fatal(e: Fatal<TypeConfig>) -> ReplicationError {
    ReplicationError::Fatal(e.to_string())
}

fn map_write_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ReplicationError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ReplicationError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
            ReplicationError::OutcomeUnknown
        }
        RaftError::APIError(other) => ReplicationError::Raft(other.to_string()),
        RaftError::Fatal(f) => fatal(f),
    }
}

/// Opens the store file, creating it first if it does not exist.
///
/// Creation is atomic (built under a temporary name, then linked into place), so an existing
/// file is always one lockbox finished creating: an empty or truncated file at `path` is
/// therefore damage and is reported, never re-initialized (redb's `create` would happily turn
/// an empty file into a fresh, empty database).
/// Returns the database and whether redb rolled back a torn commit to open it.
fn open_database(
    path: &Path,
    allow_torn_commit_rollback: bool,
    cache_size: usize,
) -> Result<(Database, bool), ReplicationError> {
    let storage_err = |source: io::Error| ReplicationError::Storage {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_database(path).map_err(storage_err)?
        }
        Err(e) => return Err(storage_err(e)),
    }

    let (db, rolled_back) = open_existing(path, allow_torn_commit_rollback, cache_size)?;

    match storage::read_format(&db).map_err(storage_err)? {
        // Format 1 had the raft log in redb; `storage::open_log` moves it to the WAL.
        Some(1 | storage::FORMAT_VERSION) => {}
        Some(other) => {
            return Err(ReplicationError::UnsupportedFormat {
                path: path.to_path_buf(),
                reason: format!(
                    "replication format {other}, this lockbox reads format {}",
                    storage::FORMAT_VERSION
                ),
            });
        }
        None => {
            return Err(ReplicationError::UnsupportedFormat {
                path: path.to_path_buf(),
                reason: "a redb database without lockbox's replication tables".to_string(),
            });
        }
    }
    // New versions may add tables (the store's, or ours); creating missing ones is idempotent.
    init_all_tables(&db).map_err(storage_err)?;
    Ok((db, rolled_back))
}

fn init_all_tables(db: &Database) -> io::Result<()> {
    let txn = db.begin_write().map_err(io::Error::other)?;
    storage::init_tables(&txn)?;
    Store::init_tables(&txn).map_err(io::Error::other)?;
    let mut txn = txn;
    txn.set_durability(Durability::Immediate)
        .map_err(io::Error::other)?;
    txn.commit().map_err(io::Error::other)
}

fn create_database(path: &Path) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "store path has no file name"))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{name}.creating.{}", std::process::id()));
    // A leftover from a crash during an earlier creation by this pid; never a live file.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = (|| {
        let db = Database::create(&tmp).map_err(io::Error::other)?;
        init_all_tables(&db)?;
        db.close().map_err(io::Error::other)?;
        fs::File::open(&tmp)?.sync_all()?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            // Another process created it first: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        fs::File::open(&dir)?.sync_all()
    })();
    fs::remove_file(&tmp).ok();
    result
}

fn open_existing(
    path: &Path,
    allow_torn_commit_rollback: bool,
    cache_size: usize,
) -> Result<(Database, bool), ReplicationError> {
    let corrupt = |reason: String| ReplicationError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let fell_back = Arc::new(AtomicBool::new(false));
    let mut builder = redb::Builder::new();
    builder.set_cache_size(cache_size);
    // Verify every page checksum on every open, not only after a crash: a plain open trusts
    // a cleanly closed file and may panic on one damaged since. Cost: one read of the file.
    builder.set_check_integrity_on_open(true);
    let flag = fell_back.clone();
    // redb reports repair progress 0.0 when it starts checking, then 0.3 *only* when the
    // newest commit fails its checksum and it is about to fall back to the previous commit,
    // then 0.6 and 0.9. (A test pins this: if redb changes it, the tests fail.)
    builder.set_repair_callback(move |session| {
        let p = session.progress();
        if p > 0.1 && p < 0.5 {
            flag.store(true, Ordering::SeqCst);
            if !allow_torn_commit_rollback {
                session.abort();
            }
        }
    });
    // redb documents that opening a damaged file may panic; turn that into an error too.
    let opened = catch_unwind(AssertUnwindSafe(|| builder.open(path)));
    match opened {
        Ok(Ok(db)) => Ok((db, fell_back.load(Ordering::SeqCst))),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(corrupt(format!("redb failed while reading it: {msg}")))
        }
        Ok(Err(DatabaseError::RepairAborted)) if fell_back.load(Ordering::SeqCst) => Err(corrupt(
            "its newest commit fails its checksum; opening it would roll back to the previous \
             commit (refused because allow_torn_commit_rollback is off)"
                .to_string(),
        )),
        Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => Err(ReplicationError::AlreadyOpen {
            path: path.to_path_buf(),
        }),
        Ok(Err(DatabaseError::Storage(StorageError::Corrupted(msg)))) => Err(corrupt(msg)),
        Ok(Err(DatabaseError::Storage(StorageError::Io(e))))
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            Err(corrupt(format!("cannot read it (truncated?): {e}")))
        }
        Ok(Err(DatabaseError::UpgradeRequired(v))) => Err(ReplicationError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: format!("redb file format version {v} needs an upgrade"),
        }),
        Ok(Err(e)) => Err(ReplicationError::Storage {
            path: path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        }),
    }
}

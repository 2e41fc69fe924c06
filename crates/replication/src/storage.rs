//! openraft storage on redb: the raft log, the vote, and the state machine, all in the one
//! redb `Database` that also holds the store's tables.
//!
//! # Tables
//!
//! | table                    | key                | value                                   |
//! |--------------------------|--------------------|-----------------------------------------|
//! | `replication.log`        | log index (`u64`)  | postcard [`Entry`]                      |
//! | `replication.meta`       | name               | postcard: vote, last purged, format, node id |
//! | `replication.sm`         | name               | postcard: last applied, membership      |
//! | `replication.snapshot`   | name               | postcard [`SnapshotMeta`], export bytes |
//!
//! redb's `u64` key type compares numerically, so the log table iterates in index order
//! without the big-endian byte trick a byte-ordered store (RocksDB) needs.
//!
//! # Durability: what is fsync'd, and why that is enough
//!
//! redb commits are totally ordered, and after a crash (kill -9 or power loss) the file
//! comes back as of the *last durable commit*, with every earlier commit, durable or not,
//! included. Only the writes raft needs on disk before it answers pay an fsync:
//!
//! * [`LogStore::append`] commits with `Durability::Immediate` and only then reports the
//!   entries flushed. In a one-voter cluster an entry is committed (and a `propose`
//!   acknowledged) only after that flush, so every acknowledged entry is in the durable log.
//! * [`LogStore::save_vote`] and [`LogStore::truncate_after`] are `Immediate`: raft's safety
//!   rests on a vote never going backwards and on a truncated (conflicting) entry never
//!   coming back.
//! * [`StateMachine::apply`] commits with `Durability::None`: the store's changes,
//!   `last_applied` and the membership go in one transaction, which the *next* durable
//!   append makes durable as a side effect. A crash can lose only a suffix of applies, and
//!   because state and `last_applied` live in one transaction the state machine then simply
//!   reports an older `last_applied`; on restart openraft re-applies the missing entries from
//!   the durable log (they are there, see above), and [`crate::Replica::open`] waits for that
//!   before it returns. `Store::apply` is deterministic, so re-applying gives the same bytes.
//!   This saves one fsync per proposal, the difference between ~1 and ~2 fsyncs per secret
//!   create.
//! * `purge` is `None` as well: losing it leaves entries that a snapshot already covers.
//! * Snapshots (built or installed) are `Immediate`: they are rare, and a purge must never
//!   become durable before the snapshot that justifies it (redb's ordering already
//!   guarantees that, the fsync just keeps `get_current_snapshot` simple to reason about).
//!
//! # Why `committed` is not saved
//!
//! openraft can persist the commit index so that a restarted node re-applies up to it before
//! any election. It would cost a third write transaction per proposal (measured: ~45 µs of a
//! ~260 µs non-fsync overhead) and buy nothing here: the state machine persists its own
//! `last_applied` atomically with its state, a restarted node always goes through an election
//! (`enable_leader_restore` is off), and [`crate::Replica::open`] waits until the new term's
//! blank entry is committed and everything before it applied (`Raft::wait_for_recovery`,
//! which openraft documents as the replacement for a saved `committed`).
//!
//! All redb calls here are synchronous and short; a write transaction is never held across
//! an `.await`, so two raft tasks cannot deadlock on redb's single-writer lock even on a
//! current-thread runtime.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use futures_util::{Stream, TryStreamExt};
use lockbox_store::Store;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Entry, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, Vote};

/// The raft log: index → entry.
pub(crate) const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("replication.log");
/// Raft's own small state: vote, last purged, format version.
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("replication.meta");
/// State-machine bookkeeping written in the same transaction as `Store::apply`.
pub(crate) const SM: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("replication.sm");
/// The current snapshot (metadata and `Store::export` bytes).
pub(crate) const SNAPSHOT: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("replication.snapshot");

pub(crate) const KEY_VOTE: &str = "vote";
/// The raft node id this file belongs to, stamped at the first open.
pub(crate) const KEY_NODE_ID: &str = "node_id";
pub(crate) const KEY_LAST_PURGED: &str = "last_purged";
/// On-disk format of this crate's tables. Bump it (and say `DataChange:` in the commit) when
/// the encoding of anything above changes; [`crate::Replica::open`] refuses other versions.
pub(crate) const KEY_FORMAT: &str = "format";
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const KEY_LAST_APPLIED: &str = "last_applied";
pub(crate) const KEY_MEMBERSHIP: &str = "membership";
const KEY_SNAPSHOT_META: &str = "meta";
const KEY_SNAPSHOT_DATA: &str = "data";

/// Converts anything displayable into the `io::Error` openraft's storage traits speak.
fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

pub(crate) fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot decode {what}: {e}"),
        )
    })
}

/// Reads one postcard value from a `&str`-keyed table, if the table and key exist.
fn read_value<T: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
) -> io::Result<Option<T>> {
    let table = match txn.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    match table.get(key).map_err(io_err)? {
        Some(v) => decode(key, v.value()).map(Some),
        None => Ok(None),
    }
}

fn write_value<T: Serialize>(
    txn: &redb::WriteTransaction,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
    value: &T,
) -> io::Result<()> {
    let bytes = encode(value)?;
    let mut t = txn.open_table(table).map_err(io_err)?;
    t.insert(key, bytes.as_slice()).map_err(io_err)?;
    Ok(())
}

fn commit(mut txn: redb::WriteTransaction, durability: Durability) -> io::Result<()> {
    txn.set_durability(durability).map_err(io_err)?;
    txn.commit().map_err(io_err)
}

/// Creates this crate's tables (and stamps the format version) if they are missing.
pub(crate) fn init_tables(txn: &redb::WriteTransaction) -> io::Result<()> {
    txn.open_table(LOG).map_err(io_err)?;
    txn.open_table(SM).map_err(io_err)?;
    txn.open_table(SNAPSHOT).map_err(io_err)?;
    let mut meta = txn.open_table(META).map_err(io_err)?;
    if meta.get(KEY_FORMAT).map_err(io_err)?.is_none() {
        let bytes = encode(&FORMAT_VERSION)?;
        meta.insert(KEY_FORMAT, bytes.as_slice()).map_err(io_err)?;
    }
    Ok(())
}

/// Creates every table (this crate's and the store's) in `db` if missing, and returns the
/// log store and state machine over it. [`crate::Replica::open`] does this itself; this is
/// for tests that drive the storage directly (openraft's conformance suite) and for the
/// cluster work.
pub fn new_storage(db: Arc<Database>) -> io::Result<(LogStore, StateMachine)> {
    let txn = db.begin_write().map_err(io_err)?;
    init_tables(&txn)?;
    Store::init_tables(&txn).map_err(io_err)?;
    commit(txn, Durability::Immediate)?;
    Ok((LogStore::new(db.clone()), StateMachine::new(db)))
}

/// Reads the format version stamped by [`init_tables`] (`None` for a file that is not ours).
pub(crate) fn read_format(db: &Database) -> io::Result<Option<u32>> {
    let txn = db.begin_read().map_err(io_err)?;
    read_value(&txn, META, KEY_FORMAT)
}

/// Returns the node id this file belongs to, stamping `node_id` if the file has none yet.
pub(crate) fn claim_node_id(db: &Database, node_id: crate::types::NodeId) -> io::Result<u64> {
    let txn = db.begin_read().map_err(io_err)?;
    if let Some(owner) = read_value::<u64>(&txn, META, KEY_NODE_ID)? {
        return Ok(owner);
    }
    drop(txn);
    let txn = db.begin_write().map_err(io_err)?;
    write_value(&txn, META, KEY_NODE_ID, &node_id)?;
    commit(txn, Durability::Immediate)?;
    Ok(node_id)
}

/// Reads `(last_applied, membership)` as the state machine recorded them.
pub(crate) fn read_applied(
    txn: &redb::ReadTransaction,
) -> io::Result<(Option<LogId>, StoredMembership)> {
    let last_applied = read_value::<LogId>(txn, SM, KEY_LAST_APPLIED)?;
    let membership = read_value::<StoredMembership>(txn, SM, KEY_MEMBERSHIP)?.unwrap_or_default();
    Ok((last_applied, membership))
}

/// The raft log and vote, on redb. Cheap to clone (it is an `Arc` to the database); the
/// clone is also the log reader the replication tasks use.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Wraps a database whose tables `init_tables` has created (see [`new_storage`]).
    pub(crate) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let txn = self.db.begin_read().map_err(io_err)?;
        read_value(&txn, META, key)
    }

    fn write_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> io::Result<()> {
        let txn = self.db.begin_write().map_err(io_err)?;
        write_value(&txn, META, key, value)?;
        commit(txn, durability)
    }
}

/// Turns any `RangeBounds<u64>` into a pair redb's `range` accepts.
fn bounds(range: &impl RangeBounds<u64>) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(LOG).map_err(io_err)?;
        let mut out = Vec::new();
        for item in table.range::<u64>(bounds(&range)).map_err(io_err)? {
            let (k, v) = item.map_err(io_err)?;
            let entry: Entry = decode("log entry", v.value())?;
            if entry.index() != k.value() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "log entry stored at index {} claims index {}",
                        k.value(),
                        entry.index()
                    ),
                ));
            }
            out.push(entry);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let last_purged: Option<LogId> = read_value(&txn, META, KEY_LAST_PURGED)?;
        let table = txn.open_table(LOG).map_err(io_err)?;
        let last = match table.last().map_err(io_err)? {
            Some((_, v)) => Some(decode::<Entry>("log entry", v.value())?.log_id()),
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(last_purged),
            last_purged_log_id: last_purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.write_meta(KEY_VOTE, vote, Durability::Immediate)
    }

    // `save_committed` / `read_committed` keep openraft's no-op defaults on purpose: see
    // "Why `committed` is not saved" in the module docs.

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let txn = self.db.begin_write().map_err(io_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(io_err)?;
            for entry in entries {
                let bytes = encode(&entry)?;
                table
                    .insert(entry.index(), bytes.as_slice())
                    .map_err(io_err)?;
            }
        }
        // The one fsync per proposal. The callback (which lets raft count this entry as
        // flushed, commit it and answer the proposer) runs only after it.
        commit(txn, Durability::Immediate)?;
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        let txn = self.db.begin_write().map_err(io_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(io_err)?;
            table.retain_in(from.., |_, _| false).map_err(io_err)?;
        }
        commit(txn, Durability::Immediate)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let txn = self.db.begin_write().map_err(io_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(io_err)?;
            table
                .retain_in(..=log_id.index(), |_, _| false)
                .map_err(io_err)?;
        }
        write_value(&txn, META, KEY_LAST_PURGED, &log_id)?;
        // Non-durable on purpose: see the module docs.
        commit(txn, Durability::None)
    }
}

/// The state machine: drives `lockbox_store::Store` inside redb write transactions and keeps
/// `last_applied`, the membership and the current snapshot beside the store's tables.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
}

impl Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").finish_non_exhaustive()
    }
}

impl StateMachine {
    /// Wraps a database whose tables `init_tables` and `Store::init_tables` have created
    /// (see [`new_storage`]).
    pub(crate) fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    fn read_snapshot(&self) -> io::Result<Option<Snapshot>> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let Some(meta) = read_value::<SnapshotMeta>(&txn, SNAPSHOT, KEY_SNAPSHOT_META)? else {
            return Ok(None);
        };
        let table = txn.open_table(SNAPSHOT).map_err(io_err)?;
        let data = table
            .get(KEY_SNAPSHOT_DATA)
            .map_err(io_err)?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "snapshot metadata present but its data is missing",
                )
            })?;
        Ok(Some(Snapshot {
            meta,
            snapshot: data,
        }))
    }
}

fn store_snapshot(
    txn: &redb::WriteTransaction,
    meta: &SnapshotMeta,
    data: &[u8],
) -> io::Result<()> {
    write_value(txn, SNAPSHOT, KEY_SNAPSHOT_META, meta)?;
    let mut t = txn.open_table(SNAPSHOT).map_err(io_err)?;
    t.insert(KEY_SNAPSHOT_DATA, data).map_err(io_err)?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // One read transaction: the export and the (last_applied, membership) it is labelled
        // with are the same point in time, even while apply keeps committing.
        let (meta, data) = {
            let txn = self.db.begin_read().map_err(io_err)?;
            let (last_log_id, last_membership) = read_applied(&txn)?;
            let data = Store::export(&txn).map_err(io_err)?;
            (
                SnapshotMeta {
                    last_log_id,
                    last_membership,
                },
                data,
            )
        };
        let txn = self.db.begin_write().map_err(io_err)?;
        store_snapshot(&txn, &meta, &data)?;
        commit(txn, Durability::Immediate)?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let txn = self.db.begin_read().map_err(io_err)?;
        read_applied(&txn)
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        // Drain the stream first: the write transaction below must not live across an
        // `.await` (see the module docs).
        let batch: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let Some(last) = batch.last().map(|(e, _)| e.log_id()) else {
            return Ok(());
        };

        let txn = self.db.begin_write().map_err(io_err)?;
        let mut replies = Vec::with_capacity(batch.len());
        let mut membership = None;
        for (entry, responder) in batch {
            let index = entry.index();
            let reply = match &entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(proposal) => Some(Store::apply(&txn, index, &proposal.0)),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id()), m.clone()));
                    None
                }
            };
            if let Some(responder) = responder {
                replies.push((responder, reply));
            }
        }
        write_value(&txn, SM, KEY_LAST_APPLIED, &last)?;
        if let Some(m) = &membership {
            write_value(&txn, SM, KEY_MEMBERSHIP, m)?;
        }
        // Non-durable on purpose: the entries are already durable in the log and are
        // re-applied after a crash. See the module docs.
        commit(txn, Durability::None)?;

        // Answer only after the commit, so a proposer that reads right after its propose
        // returns sees its own write.
        for (responder, reply) in replies {
            responder.send(reply);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let txn = self.db.begin_write().map_err(io_err)?;
        Store::import(&txn, &snapshot).map_err(io_err)?;
        {
            let mut sm = txn.open_table(SM).map_err(io_err)?;
            match &meta.last_log_id {
                Some(id) => {
                    let bytes = encode(id)?;
                    sm.insert(KEY_LAST_APPLIED, bytes.as_slice())
                        .map_err(io_err)?;
                }
                None => {
                    sm.remove(KEY_LAST_APPLIED).map_err(io_err)?;
                }
            }
            let bytes = encode(&meta.last_membership)?;
            sm.insert(KEY_MEMBERSHIP, bytes.as_slice())
                .map_err(io_err)?;
        }
        store_snapshot(&txn, meta, &snapshot)?;
        commit(txn, Durability::Immediate)?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = snapshot.len(), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        self.read_snapshot()
    }
}

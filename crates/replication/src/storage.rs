//! openraft storage: the raft log in a write-ahead log beside the redb file (`crate::wal`),
//! and the vote and the state machine in the one redb `Database` that also holds the store's
//! tables.
//!
//! # Tables
//!
//! | table                    | key                | value                                   |
//! |--------------------------|--------------------|-----------------------------------------|
//! | `replication.log`        | log index (`u64`)  | empty; the log before format 2 (moved to the WAL on open) |
//! | `replication.meta`       | name               | postcard: vote, format, node id         |
//! | `replication.sm`         | name               | postcard: last applied, membership      |
//! | `replication.snapshot`   | name               | postcard [`SnapshotMeta`] of the last snapshot point |
//!
//! # Durability: what is fsync'd, and why that is enough
//!
//! redb commits are totally ordered, and after a crash (kill -9 or power loss) the file
//! comes back as of the *last durable commit*, with every earlier commit, durable or not,
//! included. Only the writes raft needs on disk before it answers pay an fsync:
//!
//! * [`LogStore::append`] appends to the WAL and `fdatasync`s it, and only then reports the
//!   entries flushed. In a one-voter cluster an entry is committed (and a `propose`
//!   acknowledged) only after that flush, so every acknowledged entry is in the durable log.
//! * [`LogStore::save_vote`] is an `Immediate` redb commit and [`LogStore::truncate_after`]
//!   fsyncs the cut: raft's safety rests on a vote never going backwards and on a truncated
//!   (conflicting) entry never coming back.
//! * [`StateMachine::apply`] commits with `Durability::None`: the store's changes,
//!   `last_applied` and the membership go in one transaction, which the next durable redb
//!   commit (a snapshot, at least every `snapshot_every` entries, or a vote) makes durable as
//!   a side effect. A crash can lose only a suffix of applies, and
//!   because state and `last_applied` live in one transaction the state machine then simply
//!   reports an older `last_applied`; on restart openraft re-applies the missing entries from
//!   the durable log (they are there, see above), and [`crate::Replica::open`] waits for that
//!   before it returns. `Store::apply` is deterministic, so re-applying gives the same bytes.
//!   The log keeps every entry after the last snapshot, and a snapshot is an `Immediate`
//!   commit, so the entries to re-apply are always still there.
//! * Snapshots (built or installed) are `Immediate` and come before the purge they justify:
//!   openraft purges only up to a snapshot it has built or installed, which is durable by
//!   then, so the durable state machine never lags behind the start of the log.
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
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use futures_util::{Stream, TryStreamExt};
use lockbox_store::Store;
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Entry, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, Vote};
use crate::wal::{Entries, Wal};

/// The raft log before format 2 (index → entry); emptied when it moves to the WAL.
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
/// Set once the store's raft log directory exists: from then on, its absence is damage.
pub(crate) const KEY_HAS_WAL: &str = "has_wal";
/// Format 1 only: the last purged log id (the WAL keeps its own).
pub(crate) const KEY_LAST_PURGED: &str = "last_purged";
/// On-disk format of this crate's tables. Bump it (and say `DataChange:` in the commit) when
/// the encoding of anything above changes; [`crate::Replica::open`] refuses other versions.
pub(crate) const KEY_FORMAT: &str = "format";
/// Format 2 keeps the raft log in the WAL; format 1 (log in `replication.log`) is migrated.
pub(crate) const FORMAT_VERSION: u32 = 2;
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

/// Creates every table (this crate's and the store's) in `db` if missing, opens the raft log
/// in `log_dir`, and returns the log store and state machine over them. [`crate::Replica::open`] does this itself; this is
/// for tests that drive the storage directly (openraft's conformance suite) and for the
/// cluster work.
pub fn new_storage(db: Arc<Database>, log_dir: &Path) -> io::Result<(LogStore, StateMachine)> {
    let txn = db.begin_write().map_err(io_err)?;
    init_tables(&txn)?;
    Store::init_tables(&txn).map_err(io_err)?;
    commit(txn, Durability::Immediate)?;
    let wal = open_log(&db, log_dir, false)?;
    Ok((LogStore::new(db.clone(), wal), StateMachine::new(db)))
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

/// The raft log (in the WAL) and the vote (in redb). Cheap to clone; the clone is also the
/// log reader the replication tasks use, which reads the WAL's in-memory entries and so never
/// waits for an append's fsync.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    wal: Arc<Mutex<Wal>>,
    entries: Arc<RwLock<Entries>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Wraps a database whose tables `init_tables` has created, and the log opened by
    /// [`open_log`].
    pub(crate) fn new(db: Arc<Database>, wal: Wal) -> Self {
        let entries = wal.entries();
        Self {
            db,
            wal: Arc::new(Mutex::new(wal)),
            entries,
        }
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let txn = self.db.begin_read().map_err(io_err)?;
        read_value(&txn, META, key)
    }

    fn entries(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn wal(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens the raft log in `dir`. A store file of format 1 kept its log in the
/// `replication.log` table: that is moved into a new WAL first (built aside and renamed into
/// place, so a crash midway leaves the table as the only copy), then the table is emptied and
/// the file stamped format 2.
pub(crate) fn open_log(db: &Database, dir: &Path, allow_torn_tail: bool) -> io::Result<Wal> {
    let txn = db.begin_read().map_err(io_err)?;
    let format: Option<u32> = read_value(&txn, META, KEY_FORMAT)?;
    let has_log: Option<bool> = read_value(&txn, META, KEY_HAS_WAL)?;
    drop(txn);
    if has_log == Some(true) && !dir.exists() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "its raft log {} is missing (was the log directory deleted or replaced?)",
                dir.display()
            ),
        ));
    }
    if format == Some(1) && !dir.exists() {
        migrate_log(db, dir)?;
    }
    let wal = Wal::open(dir, allow_torn_tail).map_err(io::Error::from)?;
    if format == Some(1) || has_log != Some(true) {
        let txn = db.begin_write().map_err(io_err)?;
        {
            let mut log = txn.open_table(LOG).map_err(io_err)?;
            log.retain(|_, _| false).map_err(io_err)?;
            let mut meta = txn.open_table(META).map_err(io_err)?;
            meta.remove(KEY_LAST_PURGED).map_err(io_err)?;
            meta.insert(KEY_FORMAT, encode(&FORMAT_VERSION)?.as_slice())
                .map_err(io_err)?;
            meta.insert(KEY_HAS_WAL, encode(&true)?.as_slice())
                .map_err(io_err)?;
        }
        commit(txn, Durability::Immediate)?;
        if format == Some(1) {
            tracing::info!(dir = %dir.display(), "moved the raft log from the redb file into its WAL (format 1 -> 2)");
        }
    }
    Ok(wal)
}

/// The entries in the raft log of a closed store file (test hook: the purge, crash and
/// migration tests look at the log without opening raft).
#[doc(hidden)]
pub fn closed_log(store: &Path) -> io::Result<Vec<Entry>> {
    let wal = Wal::open(&crate::wal::dir_for(store), false).map_err(io::Error::from)?;
    let entries = wal.entries();
    let e = entries.read().unwrap_or_else(|e| e.into_inner());
    Ok(e.entries.iter().cloned().collect())
}

fn migrate_log(db: &Database, dir: &Path) -> io::Result<()> {
    let tmp = dir.with_extension("wal.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let txn = db.begin_read().map_err(io_err)?;
    let last_purged: Option<LogId> = read_value(&txn, META, KEY_LAST_PURGED)?;
    let table = txn.open_table(LOG).map_err(io_err)?;
    let mut entries = Vec::new();
    for item in table.iter().map_err(io_err)? {
        let (_, v) = item.map_err(io_err)?;
        entries.push(decode::<Entry>("log entry", v.value())?);
    }
    let mut wal = Wal::open(&tmp, false).map_err(io::Error::from)?;
    if let Some(p) = last_purged {
        wal.purge(p)?;
    }
    wal.append(entries)?;
    drop(wal);
    std::fs::rename(&tmp, dir)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let from = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        Ok(self.entries().range(from, to))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let e = self.entries();
        Ok(LogState {
            last_log_id: e.last_log_id(),
            last_purged_log_id: e.last_purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let txn = self.db.begin_write().map_err(io_err)?;
        write_value(&txn, META, KEY_VOTE, vote)?;
        commit(txn, Durability::Immediate)
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
        // The one fsync per proposal. The callback (which lets raft count this entry as
        // flushed, commit it and answer the proposer) runs only after it.
        self.wal().append(entries.into_iter().collect())?;
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.wal().truncate_after(last_log_id.map(|id| id.index()))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.wal().purge(log_id)
    }
}

/// The state machine: drives `lockbox_store::Store` inside redb write transactions and keeps
/// `last_applied`, the membership and the current snapshot beside the store's tables.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    /// The index of the last applied entry that destroyed sealed values (a remove, or a new
    /// version that pruned old ones): the replica then snapshots and purges the log up to it,
    /// so the log stops holding them (see `Replica::scrub_after_destruction`).
    destroyed: Arc<tokio::sync::watch::Sender<u64>>,
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
        Self {
            db,
            destroyed: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// Follows the index of the last applied entry that destroyed sealed values.
    pub(crate) fn destructions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.destroyed.subscribe()
    }

    /// The current snapshot: the state machine as it is now, exported from one read
    /// transaction with the `last_applied` and membership of that same transaction. `None`
    /// until a snapshot was first built or installed (openraft then has nothing to send).
    fn read_snapshot(&self) -> io::Result<Option<Snapshot>> {
        let txn = self.db.begin_read().map_err(io_err)?;
        if read_value::<SnapshotMeta>(&txn, SNAPSHOT, KEY_SNAPSHOT_META)?.is_none() {
            return Ok(None);
        }
        let (last_log_id, last_membership) = read_applied(&txn)?;
        let data = Store::export(&txn).map_err(io_err)?;
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
            },
            snapshot: data,
        }))
    }
}

/// Whether applying `cmd` destroyed sealed values whose copies in the log must go too.
fn destroys_sealed_values(cmd: &lockbox_store::Command, reply: &lockbox_store::Response) -> bool {
    use lockbox_store::{Command, Response};
    match (cmd, reply) {
        (_, Response::Failed(_)) => false,
        (Command::Remove { .. }, _) => true,
        (_, Response::Versioned { pruned, .. }) => !pruned.is_empty(),
        _ => false,
    }
}

/// Scratch rows that [`overwrite_free_pages`] writes into the free pages and deletes again.
const SCRUB: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("replication.scrub");

/// Overwrites the store file's free pages with zeros, so that the pages that held removed
/// rows (sealed values among them: redb frees a removed row's pages without overwriting
/// them) stop holding them: zero rows are written until they take the free space (redb
/// allocates free pages before growing the file) in one durable commit, then deleted in
/// another. Costs a write of the free space; returns the pages written. Both commits hold
/// the one write lock, so applies wait meanwhile.
pub(crate) fn overwrite_free_pages(db: &Database) -> io::Result<u64> {
    let txn = db.begin_write().map_err(io_err)?;
    let stats = txn.stats().map_err(io_err)?;
    let page = stats.page_size() as u64;
    // Free pages plus the unused part of tree pages: an upper bound of what can be reused.
    let pages = stats.fragmented_bytes().div_ceil(page);
    // Two rows per leaf page, so that single free pages are taken too.
    let zeros = vec![0u8; (page / 2).saturating_sub(64) as usize];
    {
        let mut t = txn.open_table(SCRUB).map_err(io_err)?;
        for i in 0..pages * 2 {
            t.insert(i, zeros.as_slice()).map_err(io_err)?;
        }
    }
    commit(txn, Durability::Immediate)?;
    let txn = db.begin_write().map_err(io_err)?;
    txn.delete_table(SCRUB).map_err(io_err)?;
    commit(txn, Durability::Immediate)?;
    Ok(pages)
}

/// Records `meta` as the newest snapshot point; a stored export from before lazy snapshots
/// is dropped.
fn store_snapshot_meta(txn: &redb::WriteTransaction, meta: &SnapshotMeta) -> io::Result<()> {
    write_value(txn, SNAPSHOT, KEY_SNAPSHOT_META, meta)?;
    let mut t = txn.open_table(SNAPSHOT).map_err(io_err)?;
    t.remove(KEY_SNAPSHOT_DATA).map_err(io_err)?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    /// A snapshot here is a durability point, not a copy: the redb tables *are* the state
    /// machine, so "building" one makes them durable up to `last_applied` (an `Immediate`
    /// commit, after which openraft may purge the log behind it) and records that point.
    /// The export a follower needs is made when it is asked for ([`Self::read_snapshot`]),
    /// which is rare, instead of every `snapshot_every` entries on every node: exporting a
    /// large store and writing it into redb each time cost throughput and stalled applies
    /// (one redb writer). openraft uses only the metadata of what this returns (it sends
    /// snapshots from `get_current_snapshot`), so the data is left empty.
    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let meta = {
            let txn = self.db.begin_read().map_err(io_err)?;
            let (last_log_id, last_membership) = read_applied(&txn)?;
            SnapshotMeta {
                last_log_id,
                last_membership,
            }
        };
        let txn = self.db.begin_write().map_err(io_err)?;
        store_snapshot_meta(&txn, &meta)?;
        commit(txn, Durability::Immediate)?;
        tracing::debug!(last_log_id = ?meta.last_log_id, "snapshot point made durable");
        Ok(Snapshot {
            meta,
            snapshot: Vec::new(),
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
        let mut destroyed = None;
        for (entry, responder) in batch {
            let index = entry.index();
            let reply = match &entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(proposal) => {
                    let reply = Store::apply(&txn, index, &proposal.0);
                    if destroys_sealed_values(&proposal.0, &reply) {
                        destroyed = Some(index);
                    }
                    Some(reply)
                }
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
        if let Some(index) = destroyed {
            self.destroyed.send_replace(index);
        }

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
        store_snapshot_meta(&txn, meta)?;
        commit(txn, Durability::Immediate)?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = snapshot.len(), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        self.read_snapshot()
    }
}

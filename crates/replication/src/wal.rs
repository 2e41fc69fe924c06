//! The raft log as an append-only write-ahead log beside the redb file.
//!
//! # Why not a redb table
//!
//! Every proposal waits for the log append to be durable, on the leader and then on a
//! follower, so the append's fsync is the floor of write latency. A durable redb commit
//! rewrites the B-tree path, the allocator state and the header (about twenty page writes
//! scattered over the file) before its fsync; on the disk this was measured on, that is
//! ~1.1 ms at p50 where appending one record and `fdatasync` is ~0.1–0.2 ms. etcd makes the
//! same split: a WAL on the critical path, its B-tree (bbolt) committed in the background.
//! Here the state machine's redb commits were already non-durable (see `storage`); with the
//! log out of redb, the fsync on a proposal's path is one sequential append.
//!
//! # Layout
//!
//! `<store>.wal/` holds segments named by the index of their first entry
//! (`00000000000000000042.seg`) and, once anything was purged, `purged` (the last purged log
//! id, replaced atomically). A segment is a sequence of records, one per append:
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of the payload | payload (postcard `Vec<Entry>`)
//! ```
//!
//! Entries are contiguous within and across segments, except below the purge point. After the
//! last record a segment holds zeros: space written ahead of the records (see "Preallocation")
//! that a record header can never be (a record is never empty), so the first all-zero header
//! ends the segment's records.
//!
//! # Preallocation: why an append never extends the file
//!
//! An append that grows the file needs a journal commit (the new blocks and size) before its
//! `fdatasync` returns, and on ext4 that commit is where an acknowledged append was lost: when
//! the journal aborts (an I/O error, `errors=remount-ro`), an `fdatasync` racing the abort can
//! return success although the transaction holding the append's blocks never reached the
//! disk (measured on Linux 6.18 with a plain loop of `write` + `fdatasync` and a forced ext4
//! error: the last acknowledged append missing after the remount in 4 of 20 runs; overwriting
//! preallocated blocks the same way: 0 of 20). So the segment is extended ahead of the records
//! (`PREALLOCATE` bytes of zeros written and `fdatasync`ed before any record lands there), and
//! an append overwrites blocks that are already allocated and sized: its `fdatasync` writes
//! data only and needs no journal commit, so the data is on disk when it returns. Only the
//! extension races the journal, and no record is acknowledged out of an extension whose own
//! `fdatasync` failed.
//!
//! # Recovery
//!
//! Opening reads every segment and checks every record. A crash during an append can leave
//! only that append's record damaged (one record per append is what makes this so), and that
//! append's fsync never returned, so nothing in it was acknowledged: an incomplete record, or
//! a failing one that ends exactly at the end of the newest segment, is cut off. Damage
//! anywhere else (a failing record with more bytes after it, an older segment, a gap, an
//! entry out of order) is [`WalError::Corrupt`]: lockbox refuses to serve a log it cannot
//! trust.
//!
//! # Memory
//!
//! Entries not yet purged are also kept in memory, which is what openraft reads when it
//! replicates; purging follows each snapshot, so this is bounded by the snapshot interval
//! (`ReplicaConfig::snapshot_every` + `logs_to_keep_after_snapshot` entries). Entries hold
//! sealed values only.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::entry::RaftEntry;

use crate::storage::{decode, encode};
use crate::types::{Entry, LogId};

/// A segment is closed and a new one started once it grows past this, so that purging after
/// a snapshot can delete whole files.
const SEGMENT_BYTES: u64 = 8 << 20;
/// How far ahead of the records a segment is extended with zeros (see the module docs).
/// One extra `fdatasync` per this many bytes of log.
const PREALLOCATE: u64 = 256 << 10;
const HEADER: usize = 8;
/// No entry comes near this; a length field above it is damage, not a record.
const MAX_RECORD: u32 = 256 << 20;
const PURGED_FILE: &str = "purged";
const SEGMENT_EXT: &str = "seg";

/// Why the log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("raft log {}: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl From<WalError> for io::Error {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Io(e) => e,
            corrupt => io::Error::new(io::ErrorKind::InvalidData, corrupt.to_string()),
        }
    }
}

/// The in-memory side: every entry after the purge point, readable while an append's fsync
/// is in flight.
#[derive(Debug, Default)]
pub(crate) struct Entries {
    pub(crate) entries: VecDeque<Entry>,
    pub(crate) last_purged: Option<LogId>,
}

impl Entries {
    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        self.entries.back().map(|e| e.log_id()).or(self.last_purged)
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index())
    }

    /// Clones the entries with index in `[from, to)`.
    pub(crate) fn range(&self, from: u64, to: u64) -> Vec<Entry> {
        let Some(first) = self.first_index() else {
            return Vec::new();
        };
        let start = from.max(first) - first;
        let end = to.saturating_sub(first).min(self.entries.len() as u64);
        if start >= end {
            return Vec::new();
        }
        self.entries
            .range(start as usize..end as usize)
            .cloned()
            .collect()
    }
}

struct Segment {
    first: u64,
    path: PathBuf,
}

/// The segment being appended to: where its records end, and how far its file is written
/// (zeros past `end`, see the module docs).
struct Active {
    file: File,
    end: u64,
    allocated: u64,
}

impl Active {
    fn new(file: File, end: u64) -> io::Result<Active> {
        let allocated = file.metadata()?.len().max(end);
        Ok(Active {
            file,
            end,
            allocated,
        })
    }

    /// Makes sure `len` more bytes after `end` land in blocks already written and synced.
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let need = self.end + len;
        if need <= self.allocated {
            return Ok(());
        }
        let ahead = need.div_ceil(PREALLOCATE) * PREALLOCATE;
        // On a nearly full disk, room for this record alone is enough.
        let mut result = Err(io::Error::other("no extension tried"));
        for target in [ahead, need] {
            let zeros = vec![0u8; (target - self.allocated) as usize];
            result = self
                .file
                .write_all_at(&zeros, self.allocated)
                .and_then(|()| self.file.sync_data())
                .map(|()| target);
            if result.is_ok() || target == need {
                break;
            }
            // Whatever part of the zeros landed is not counted on.
            self.file.set_len(self.allocated)?;
        }
        self.allocated = result?;
        Ok(())
    }
}

/// Where an entry is: the segment, the offset of its record, its position in the record.
#[derive(Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    pos: usize,
}

/// The log's files. Only the storage task touches them (`&mut self`); readers go through
/// [`Wal::entries`].
pub(crate) struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// The newest segment, open for writing at the end of its records.
    active: Option<Active>,
    /// Parallel to `entries.entries`.
    locs: VecDeque<Loc>,
    entries: Arc<RwLock<Entries>>,
    /// Opening cut off an incomplete final append.
    cut_torn_tail: bool,
}

/// The log directory for a store file: `lockbox.redb` → `lockbox.wal`.
pub(crate) fn dir_for(store: &Path) -> PathBuf {
    store.with_extension("wal")
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.{SEGMENT_EXT}")
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn record(entries: &[Entry], out: &mut Vec<u8>) -> io::Result<()> {
    let payload = encode(&entries)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= MAX_RECORD)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "log entry too large"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// One segment's records: each record's offset and entries, and where the valid prefix ends.
struct Scan {
    records: Vec<(u64, Vec<Entry>)>,
    valid_len: u64,
    file_len: u64,
    /// What is wrong after the valid prefix, and whether it can be a torn final append (it
    /// reaches the end of the file) rather than damage to written records.
    damage: Option<(String, bool)>,
}

fn scan(path: &Path) -> io::Result<Scan> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    // Past the last non-zero byte there is only the preallocated tail.
    let data_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let damage = loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            break None;
        }
        if at >= data_end {
            break None;
        }
        if rest.len() < HEADER {
            break Some((format!("incomplete record header at offset {at}"), true));
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len == 0 {
            break Some((
                format!("bytes after the end of the records at offset {at}"),
                false,
            ));
        }
        if len > MAX_RECORD || rest.len() - HEADER < len as usize {
            break Some((format!("incomplete record at offset {at}"), true));
        }
        let end = HEADER + len as usize;
        // The final append, if only the preallocated zeros follow it.
        let last = at + end >= data_end;
        let payload = &rest[HEADER..end];
        if crc32fast::hash(payload) != crc {
            break Some((
                format!("checksum mismatch in the record at offset {at}"),
                last,
            ));
        }
        match decode::<Vec<Entry>>("log record", payload) {
            Ok(entries) => records.push((at as u64, entries)),
            Err(e) => break Some((format!("record at offset {at}: {e}"), last)),
        }
        at += end;
    };
    Ok(Scan {
        records,
        valid_len: at as u64,
        file_len: bytes.len() as u64,
        damage,
    })
}

impl Wal {
    /// Opens (creating if missing) the log in `dir`, cutting off a torn final append when
    /// `allow_torn_tail` (see the module docs; `ReplicaConfig::allow_torn_commit_rollback`).
    pub(crate) fn open(dir: &Path, allow_torn_tail: bool) -> Result<Wal, WalError> {
        let corrupt = |reason: String| WalError::Corrupt {
            path: dir.to_path_buf(),
            reason,
        };
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let last_purged: Option<LogId> = match fs::read(dir.join(PURGED_FILE)) {
            Ok(bytes) => {
                Some(decode("last purged log id", &bytes).map_err(|e| corrupt(format!("{e}")))?)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };

        let mut segments = Vec::new();
        for item in fs::read_dir(dir)? {
            let item = item?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(&format!(".{SEGMENT_EXT}")) {
                let first = stem
                    .parse::<u64>()
                    .map_err(|_| corrupt(format!("unexpected segment name {name}")))?;
                segments.push(Segment {
                    first,
                    path: item.path(),
                });
            }
        }
        segments.sort_by_key(|s| s.first);
        // A segment whose successor starts at or below the purge point + 1 holds nothing
        // needed: purged entries, or (a rewrite cut short by a crash, see `purge`) copies of
        // entries its successor holds in full. Its purged bytes are deleted now.
        if let Some(p) = last_purged.map(|l| l.index()) {
            let superseded = segments
                .windows(2)
                .take_while(|w| w[1].first <= p + 1)
                .count();
            for seg in segments.drain(..superseded) {
                if allow_torn_tail {
                    fs::remove_file(&seg.path)?;
                }
            }
            if superseded > 0 && allow_torn_tail {
                sync_dir(dir)?;
            }
        }

        let purged_index = last_purged.map(|l| l.index());
        let mut entries = VecDeque::new();
        let mut locs = VecDeque::new();
        let mut active = None;
        let mut cut_torn_tail = false;
        let count = segments.len();
        for (i, seg) in segments.iter().enumerate() {
            let newest = i + 1 == count;
            let scanned = scan(&seg.path)?;
            if let Some((damage, at_end)) = &scanned.damage {
                if !newest || !at_end {
                    return Err(corrupt(format!(
                        "{}: {damage} (not the final record of the newest segment, so not a \
                         torn append)",
                        seg.path.display()
                    )));
                }
                if !allow_torn_tail {
                    return Err(corrupt(format!(
                        "{}: {damage} (a torn final append or damage; refusing because \
                         torn-commit rollback is off)",
                        seg.path.display()
                    )));
                }
                tracing::warn!(
                    segment = %seg.path.display(),
                    damage,
                    cut_bytes = scanned.file_len - scanned.valid_len,
                    "raft log ends in an incomplete append (a crash mid-write); cutting it off, \
                     nothing in it was acknowledged"
                );
                let f = OpenOptions::new().write(true).open(&seg.path)?;
                f.set_len(scanned.valid_len)?;
                f.sync_all()?;
                cut_torn_tail = true;
            }
            let mut expect = seg.first;
            for (offset, batch) in scanned.records {
                for (pos, entry) in batch.into_iter().enumerate() {
                    let purged = purged_index.is_some_and(|p| entry.index() <= p);
                    // A truncation inside a record rewrites its unpurged prefix only, so
                    // order is all that purged entries must keep.
                    if entry.index() != expect && !(purged && entry.index() > expect) {
                        return Err(corrupt(format!(
                            "{}: entry at offset {offset} has index {}, expected {expect}",
                            seg.path.display(),
                            entry.index()
                        )));
                    }
                    expect = entry.index() + 1;
                    if purged {
                        continue;
                    }
                    if let Some(prev) = entries.back().map(|e: &Entry| e.index())
                        && entry.index() != prev + 1
                    {
                        return Err(corrupt(format!(
                            "gap in the log: entry {} follows entry {prev}",
                            entry.index()
                        )));
                    }
                    locs.push_back(Loc {
                        segment: seg.first,
                        offset,
                        pos,
                    });
                    entries.push_back(entry);
                }
            }
            if newest {
                let f = OpenOptions::new().write(true).open(&seg.path)?;
                active = Some(Active::new(f, scanned.valid_len)?);
            }
        }
        if let (Some(p), Some(first)) = (purged_index, entries.front().map(|e| e.index()))
            && first != p + 1
        {
            return Err(corrupt(format!(
                "the log starts at entry {first} but only entries up to {p} were purged"
            )));
        }
        Ok(Wal {
            dir: dir.to_path_buf(),
            segments,
            active,
            locs,
            entries: Arc::new(RwLock::new(Entries {
                entries,
                last_purged,
            })),
            cut_torn_tail,
        })
    }

    /// True when opening cut off an incomplete final append.
    pub(crate) fn cut_torn_tail(&self) -> bool {
        self.cut_torn_tail
    }

    /// The index of the last entry, or of the last purged one when none is left.
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.read().last_log_id().map(|id| id.index())
    }

    /// The entries, for readers (replication tasks) that must not wait for an fsync.
    pub(crate) fn entries(&self) -> Arc<RwLock<Entries>> {
        self.entries.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `batch` with one write and one `fdatasync`; returns once both are done.
    pub(crate) fn append(&mut self, batch: Vec<Entry>) -> io::Result<()> {
        let Some(first) = batch.first().map(|e| e.index()) else {
            return Ok(());
        };
        let next = self.read().entries.back().map(|e| e.index() + 1);
        if let Some(next) = next
            && first != next
        {
            return Err(io::Error::other(format!(
                "raft log append at index {first}, but the log ends before {next}"
            )));
        }
        let full = self.active.as_ref().is_none_or(|a| a.end >= SEGMENT_BYTES);
        // After a purge past the end of the log (a snapshot installed on a follower) the
        // open segment's entries are gone and the next one is not contiguous with it.
        if full || next.is_none() {
            self.start_segment(first)?;
        }
        let (segment, segment_path) = {
            let s = self.segments.last().expect("a segment is open");
            (s.first, s.path.clone())
        };
        let active = self.active.as_mut().expect("a segment is open");
        let offset = active.end;
        let mut buf = Vec::new();
        record(&batch, &mut buf)?;
        if let Err(e) = active.preallocate(buf.len() as u64) {
            // Nothing of the record was written; the zeros are the segment's tail either way.
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "raft log segment {}: extending it ahead of an append of {} bytes failed: {e}",
                    segment_path.display(),
                    buf.len()
                ),
            ));
        }
        let file = &active.file;
        if let Err(e) = file
            .write_all_at(&buf, offset)
            .and_then(|()| file.sync_data())
        {
            // Nothing of this append counts. Cutting the partial record off keeps the
            // segment well-formed for the reopen (which would cut it as a torn tail anyway);
            // raft stops on this error and the append is never retried in this process.
            let cut = file.set_len(offset).and_then(|()| file.sync_data());
            active.allocated = offset;
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "raft log segment {}: append of {} bytes failed: {}{}",
                    segment_path.display(),
                    buf.len(),
                    e,
                    match cut {
                        Ok(()) => String::new(),
                        Err(c) => format!(
                            " (cutting the partial record off failed too: {}; the next open cuts it)",
                            c
                        ),
                    }
                ),
            ));
        }
        active.end += buf.len() as u64;
        self.locs.extend((0..batch.len()).map(|pos| Loc {
            segment,
            offset,
            pos,
        }));
        self.write().entries.extend(batch);
        Ok(())
    }

    fn start_segment(&mut self, first: u64) -> io::Result<()> {
        let path = self.dir.join(segment_name(first));
        let f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .or_else(|e| {
                // A segment left empty by a truncation that was cut short.
                if e.kind() == io::ErrorKind::AlreadyExists
                    && fs::metadata(&path).is_ok_and(|m| m.len() == 0)
                {
                    OpenOptions::new().write(true).open(&path)
                } else {
                    Err(e)
                }
            })?;
        // The new name must survive a crash before anything in it is acknowledged.
        sync_dir(&self.dir)?;
        self.segments.retain(|s| s.first != first);
        self.segments.push(Segment { first, path });
        self.active = Some(Active::new(f, 0)?);
        Ok(())
    }

    /// Removes every entry after `last` (all of them for `None`), durably.
    pub(crate) fn truncate_after(&mut self, last: Option<u64>) -> io::Result<()> {
        let from = last.map_or(0, |i| i + 1);
        let (first, len) = {
            let e = self.read();
            match e.first_index() {
                Some(first) => (first, e.entries.len() as u64),
                None => return Ok(()),
            }
        };
        if from >= first + len {
            return Ok(());
        }
        let keep = from.saturating_sub(first) as usize;
        let cut = self.locs[keep];
        // The entries of the cut record that stay (those still in memory; purged ones are
        // not needed again) are written back as a record of their own.
        let same_record = |l: &&Loc| l.segment == cut.segment && l.offset == cut.offset;
        let record_start = keep
            - self
                .locs
                .range(..keep)
                .rev()
                .take_while(same_record)
                .count();
        let rewrite: Vec<Entry> = self
            .read()
            .entries
            .range(record_start..keep)
            .cloned()
            .collect();
        // Segments wholly after the cut go; the one holding it is cut at the record.
        let mut removed = false;
        while let Some(seg) = self.segments.last() {
            if seg.first > cut.segment
                || (seg.first == cut.segment && cut.offset == 0 && rewrite.is_empty())
            {
                fs::remove_file(&seg.path)?;
                self.segments.pop();
                removed = true;
            } else {
                break;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        self.active = match self.segments.last() {
            Some(seg) => {
                let f = OpenOptions::new().write(true).open(&seg.path)?;
                let end = if seg.first == cut.segment {
                    f.set_len(cut.offset)?;
                    let mut buf = Vec::new();
                    if !rewrite.is_empty() {
                        record(&rewrite, &mut buf)?;
                        f.write_all_at(&buf, cut.offset)?;
                    }
                    f.sync_all()?;
                    cut.offset + buf.len() as u64
                } else {
                    scan(&seg.path)?.valid_len
                };
                Some(Active::new(f, end)?)
            }
            None => None,
        };
        self.locs.truncate(keep);
        for (pos, loc) in self.locs.range_mut(record_start..).enumerate() {
            loc.pos = pos;
        }
        self.write().entries.truncate(keep);
        Ok(())
    }

    /// Forgets every entry up to `log_id` (a snapshot covers them) and deletes the segments
    /// that hold nothing newer.
    pub(crate) fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // The purge point is recorded first: should the process die between the two steps,
        // the reopened log skips the purged entries still on disk.
        let tmp = self.dir.join(format!("{PURGED_FILE}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&encode(&log_id)?)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(PURGED_FILE))?;
        sync_dir(&self.dir)?;

        let upto = log_id.index();
        let dropped = {
            let mut e = self.write();
            let n = e.entries.iter().take_while(|x| x.index() <= upto).count();
            e.entries.drain(..n);
            e.last_purged = Some(log_id);
            n
        };
        self.locs.drain(..dropped);
        // A segment can go when the next one starts at or below upto + 1 (all of its entries
        // are purged); the newest one goes only when every entry is purged.
        let log_empty = self.read().entries.is_empty();
        let mut doomed = 0;
        for (i, seg) in self.segments.iter().enumerate() {
            let all_purged = match self.segments.get(i + 1) {
                Some(next) => next.first <= upto + 1,
                None => log_empty,
            };
            if !all_purged {
                break;
            }
            fs::remove_file(&seg.path)?;
            doomed += 1;
        }
        if doomed > 0 {
            self.segments.drain(..doomed);
            if self.segments.is_empty() {
                self.active = None;
            }
            sync_dir(&self.dir)?;
        }
        self.rewrite_first_segment(upto)
    }

    /// The segment holding the purge point also holds purged records (the sealed values of
    /// removed secrets among them): it is rewritten with only the entries after `upto`, so
    /// that purging really removes them from disk. Crash-safe: the new segment is complete
    /// and durable under its final name (`upto + 1`) before the old one goes, and an open
    /// that finds both skips the old one (see [`Wal::open`]).
    fn rewrite_first_segment(&mut self, upto: u64) -> io::Result<()> {
        let Some(seg) = self.segments.first() else {
            return Ok(());
        };
        let first = upto + 1;
        if seg.first >= first {
            return Ok(());
        }
        let old = seg.first;
        let old_path = seg.path.clone();
        let keep = self.locs.iter().take_while(|l| l.segment == old).count();
        let survivors: Vec<Entry> = self.read().entries.range(..keep).cloned().collect();
        if survivors.first().is_some_and(|e| e.index() != first) {
            return Ok(());
        }
        let path = self.dir.join(segment_name(first));
        let tmp = self.dir.join(format!("{}.tmp", segment_name(first)));
        let mut buf = Vec::new();
        if !survivors.is_empty() {
            record(&survivors, &mut buf)?;
        }
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        fs::remove_file(&old_path)?;
        sync_dir(&self.dir)?;
        let active = self.segments.len() == 1;
        self.segments[0] = Segment { first, path };
        for (pos, loc) in self.locs.range_mut(..keep).enumerate() {
            *loc = Loc {
                segment: first,
                offset: 0,
                pos,
            };
        }
        if active {
            let f = OpenOptions::new()
                .write(true)
                .open(&self.segments[0].path)?;
            self.active = Some(Active::new(f, buf.len() as u64)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TypeConfig;
    use openraft::testing::{blank_ent, log_id};

    fn ent(i: u64) -> Entry {
        blank_ent::<TypeConfig>(1, 1, i)
    }

    fn indexes(w: &Wal) -> Vec<u64> {
        w.read().entries.iter().map(|e| e.index()).collect()
    }

    #[test]
    fn a_truncation_inside_an_append_keeps_its_prefix_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), false).unwrap();
        w.append((0..5).map(ent).collect()).unwrap();
        w.append((5..8).map(ent).collect()).unwrap();
        // Index 2 sits inside the first append's record: 0..=2 are written back.
        w.truncate_after(Some(2)).unwrap();
        assert_eq!(indexes(&w), [0, 1, 2]);
        w.append((3..6).map(ent).collect()).unwrap();
        w.truncate_after(Some(4)).unwrap();
        drop(w);
        let w = Wal::open(dir.path(), false).unwrap();
        assert_eq!(indexes(&w), [0, 1, 2, 3, 4]);
        assert!(!w.cut_torn_tail());
    }

    /// Every record lands in blocks written and synced before it (the ext4 journal-abort
    /// loss, see the module docs): the file never grows during a record's append, and the
    /// zero tail reopens as the end of the log, while bytes after it are damage.
    #[test]
    fn appends_overwrite_preallocated_zeros_and_the_tail_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), false).unwrap();
        w.append(vec![ent(0)]).unwrap();
        let seg = dir.path().join(segment_name(0));
        let allocated = fs::metadata(&seg).unwrap().len();
        assert_eq!(allocated, PREALLOCATE, "preallocated ahead of the records");
        for i in 1..50 {
            w.append(vec![ent(i)]).unwrap();
            assert_eq!(
                fs::metadata(&seg).unwrap().len(),
                allocated,
                "append {i} grew the file"
            );
        }
        drop(w);
        let w = Wal::open(dir.path(), false).unwrap();
        assert_eq!(indexes(&w), (0..50).collect::<Vec<_>>());
        assert!(!w.cut_torn_tail());
        drop(w);
        let mut bytes = fs::read(&seg).unwrap();
        let end = bytes.len() - 100;
        bytes[end] = 1;
        fs::write(&seg, &bytes).unwrap();
        let err = Wal::open(dir.path(), true).err().expect("refused");
        assert!(
            err.to_string().contains("after the end of the records"),
            "{err}"
        );
    }

    #[test]
    fn an_append_that_would_leave_a_gap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), false).unwrap();
        w.append(vec![ent(0), ent(1)]).unwrap();
        let err = w.append(vec![ent(5)]).unwrap_err();
        assert!(err.to_string().contains("ends before 2"), "{err}");
        assert_eq!(indexes(&w), [0, 1]);
    }

    #[test]
    fn a_purge_survives_a_reopen_and_the_log_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), false).unwrap();
        w.append((0..5).map(ent).collect()).unwrap();
        w.append((5..8).map(ent).collect()).unwrap();
        w.purge(log_id::<TypeConfig>(1, 1, 5)).unwrap();
        assert_eq!(indexes(&w), [6, 7]);
        drop(w);
        let mut w = Wal::open(dir.path(), false).unwrap();
        assert_eq!(indexes(&w), [6, 7]);
        assert_eq!(w.last_index(), Some(7));
        // Everything purged (a snapshot installed past the log's end): a new segment starts.
        w.purge(log_id::<TypeConfig>(1, 1, 20)).unwrap();
        assert_eq!(w.last_index(), Some(20));
        w.append(vec![ent(21)]).unwrap();
        drop(w);
        let w = Wal::open(dir.path(), false).unwrap();
        assert_eq!(indexes(&w), [21]);
    }

    #[test]
    fn a_purge_rewrites_the_segment_it_cuts_and_a_rewrite_cut_short_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), false).unwrap();
        w.append((0..5).map(ent).collect()).unwrap();
        w.append((5..8).map(ent).collect()).unwrap();
        let old = dir.path().join(segment_name(0));
        let old_bytes = fs::read(&old).unwrap();
        w.purge(log_id::<TypeConfig>(1, 1, 5)).unwrap();
        assert!(
            !old.exists(),
            "the cut segment was rewritten without its purged records"
        );
        assert!(dir.path().join(segment_name(6)).exists());
        w.append(vec![ent(8)]).unwrap();
        drop(w);
        // A crash between the rewrite's rename and the old segment's removal.
        fs::write(&old, &old_bytes).unwrap();
        let w = Wal::open(dir.path(), true).unwrap();
        assert_eq!(indexes(&w), [6, 7, 8]);
        assert!(!old.exists(), "the superseded segment is deleted at open");
    }
}

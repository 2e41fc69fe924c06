//! The audit log: one JSON object a line, each carrying the SHA-256 of the line before it.
//!
//! A record is appended and flushed to disk *before* the daemon answers the request it
//! describes, and before any plaintext is handed out. Because every record names its
//! predecessor's hash and its own sequence number, `verify` finds an edited record (its hash
//! no longer matches), a removed one (a gap in the sequence or a broken `prev` link) and a
//! reordered one (sequence out of order), and says at which line.
//!
//! Architecture invariant: records carry names, IDs, versions and actors — never a value.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

pub use lockbox_proto::{AuditRecord, AuditVerify};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Errors writing or reading the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log {path}, line {line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    /// Found at open: a break in the chain that is not a torn final record. The daemon
    /// refuses to chain new records behind it.
    #[error(
        "audit log {path} is damaged: {problem}. The {line_before} record(s) before line {line} verify. \
         lockbox will not chain new records behind damage: move the file aside and keep it as \
         evidence (e.g. `mv {path} {path}.damaged`), then start the daemon again to begin a new chain"
    , path = .path.display(), line_before = .line - 1)]
    Damaged {
        path: PathBuf,
        line: u64,
        problem: String,
    },
    /// An append failed (disk full, read-only file system, I/O error). Nothing of it counts:
    /// the file was cut back to its last good record, or, when even that failed, the writer
    /// refuses every append until the file can be cut back.
    #[error("audit log {path}: the record could not be written ({cause}); {state}", path = .path.display())]
    Append {
        path: PathBuf,
        cause: String,
        state: String,
    },
}

impl AuditError {
    /// A copy for each caller of a group commit that failed together.
    fn duplicate(&self) -> AuditError {
        match self {
            AuditError::Io { path, source } => AuditError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            AuditError::Malformed { path, line, reason } => AuditError::Malformed {
                path: path.clone(),
                line: *line,
                reason: reason.clone(),
            },
            AuditError::Damaged {
                path,
                line,
                problem,
            } => AuditError::Damaged {
                path: path.clone(),
                line: *line,
                problem: problem.clone(),
            },
            AuditError::Append { path, cause, state } => AuditError::Append {
                path: path.clone(),
                cause: cause.clone(),
                state: state.clone(),
            },
        }
    }
}

/// What happened, before it gets its place in the chain.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub action: String,
    pub kind: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<u64>,
    pub actor: String,
    pub detail: BTreeMap<String, String>,
}

impl Event {
    /// An event with an action and an actor; the rest is filled with the builder methods.
    pub fn new(action: &str, actor: &str) -> Self {
        Self {
            action: action.into(),
            actor: actor.into(),
            ..Self::default()
        }
    }
    /// The object the event is about.
    pub fn object(mut self, kind: &str, id: &str, name: &str) -> Self {
        self.kind = Some(kind.into());
        self.id = Some(id.into());
        self.name = Some(name.into());
        self
    }
    /// The secret version concerned.
    pub fn version(mut self, v: u64) -> Self {
        self.version = Some(v);
        self
    }
    /// Any other fact worth keeping (service, workload, node…).
    pub fn detail(mut self, k: &str, v: &str) -> Self {
        self.detail.insert(k.into(), v.into());
        self
    }
}

/// The hashed part of a record: everything but `hash`, in a fixed field order.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    time: &'a str,
    action: &'a str,
    kind: &'a Option<String>,
    id: &'a Option<String>,
    name: &'a Option<String>,
    version: &'a Option<u64>,
    actor: &'a str,
    detail: &'a BTreeMap<String, String>,
    prev: &'a str,
}

fn hash_of(r: &AuditRecord) -> String {
    let h = Hashed {
        seq: r.seq,
        time: &r.time,
        action: &r.action,
        kind: &r.kind,
        id: &r.id,
        name: &r.name,
        version: &r.version,
        actor: &r.actor,
        detail: &r.detail,
        prev: &r.prev,
    };
    let bytes = serde_json::to_vec(&h).expect("plain data serialises");
    hex::encode(Sha256::digest(bytes))
}

/// An open audit log, positioned at its end.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    next_seq: u64,
    last_hash: String,
    torn_tail: u64,
    /// The file's length after the last append that reached the disk: a failed append is
    /// cut back to it.
    good_len: u64,
    /// Why appends are refused: a failed append could not be cut back, so the file may end
    /// in a partial record. Cleared once a later cut-back succeeds.
    poisoned: Option<String>,
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the log and finds the chain's head from its last line.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let torn_tail = drop_torn_tail(&mut file).map_err(io)?;
        // The whole chain, not only its last line: a record chained behind damage would
        // make every later `verify` fail, so damage is refused here with the line named.
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let walked = walk(&mut BufReader::new(&file), path)?;
        if let Some((line, problem)) = walked.broken {
            return Err(AuditError::Damaged {
                path: path.to_owned(),
                line,
                problem,
            });
        }
        let good_len = file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            next_seq: walked.records + 1,
            last_hash: walked.head,
            torn_tail,
            good_len,
            poisoned: None,
        })
    }

    /// Bytes of an unfinished last record dropped at open (0 when the log ended cleanly).
    pub fn torn_tail(&self) -> u64 {
        self.torn_tail
    }

    /// Appends one record and flushes it to disk (fdatasync) before returning it.
    pub fn append(&mut self, e: Event) -> Result<AuditRecord, AuditError> {
        let mut out = self.append_batch(vec![e])?;
        Ok(out.pop().expect("one record per event"))
    }

    /// Appends several records with one write and one fdatasync (group commit): none is
    /// acknowledged before all are on disk. On an error none of them counts: the file is cut
    /// back to its length before the append (so it never keeps a partial line that the next
    /// record would be chained behind), and the chain's head in memory is unchanged. When
    /// even the cut-back fails (a file system gone read-only), the writer is poisoned: every
    /// append fails until a cut-back succeeds (tried again at each append) or the log is
    /// reopened, whose torn-tail repair does the same.
    pub fn append_batch(&mut self, events: Vec<Event>) -> Result<Vec<AuditRecord>, AuditError> {
        if let Some(cause) = self.poisoned.clone() {
            self.cut_back().map_err(|e| AuditError::Append {
                path: self.path.clone(),
                cause: cause.clone(),
                state: format!(
                    "an earlier append failed and the file still cannot be cut back to its last good record ({e}); \
                     every append is refused until it can (free space or make the file system writable; restarting the daemon repairs it too)"
                ),
            })?;
            self.poisoned = None;
        }
        let mut records = Vec::with_capacity(events.len());
        let mut bytes = Vec::new();
        let (mut seq, mut prev) = (self.next_seq, self.last_hash.clone());
        for e in events {
            let r = self.record(e, seq, prev);
            bytes.extend(serde_json::to_vec(&r).expect("plain data serialises"));
            bytes.push(b'\n');
            seq += 1;
            prev = r.hash.clone();
            records.push(r);
        }
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let cause = e.to_string();
            let state = match self.cut_back() {
                Ok(()) => {
                    "nothing of it was kept: the log still ends at its last good record".to_string()
                }
                Err(cut) => {
                    self.poisoned = Some(cause.clone());
                    format!(
                        "cutting the file back to its last good record failed too ({}), so every append is refused until it can be",
                        cut
                    )
                }
            };
            return Err(AuditError::Append {
                path: self.path.clone(),
                cause,
                state,
            });
        }
        self.good_len += bytes.len() as u64;
        self.next_seq = seq;
        self.last_hash = prev;
        Ok(records)
    }

    /// Restores the file to its length after the last good append, durably. A failed
    /// fdatasync may have dropped pages of the failed append only: everything before
    /// `good_len` was flushed by an earlier fdatasync that succeeded.
    fn cut_back(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.good_len)?;
        self.file.sync_data()
    }

    /// Whether appends are refused until the file can be cut back (see [`Self::append_batch`]).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    fn record(&self, e: Event, seq: u64, prev: String) -> AuditRecord {
        let mut r = AuditRecord {
            seq,
            time: jiff::Timestamp::now().to_string(),
            action: e.action,
            kind: e.kind,
            id: e.id,
            name: e.name,
            version: e.version,
            actor: e.actor,
            detail: e.detail,
            prev,
            hash: String::new(),
        };
        r.hash = hash_of(&r);
        r
    }

    /// How many records the log holds.
    pub fn len(&self) -> u64 {
        self.next_seq - 1
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 1
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A crash (kill -9, power loss) in the middle of an append can leave a last record without
/// its newline. That record's fdatasync never returned, so nothing was answered or handed
/// out on the strength of it: dropping it restores the log as of the last acknowledged
/// record. A *complete* last line that does not parse is a different matter — tampering or
/// corruption — and is refused by the caller, not repaired here.
fn drop_torn_tail(f: &mut File) -> std::io::Result<u64> {
    let len = f.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(0);
    }
    // Find the end of the last complete line.
    let mut end = len;
    let mut keep = 0u64;
    'scan: while end > 0 {
        let start = end.saturating_sub(8192);
        let mut chunk = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk)?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            keep = start + pos as u64 + 1;
            break 'scan;
        }
        end = start;
    }
    f.set_len(keep)?;
    f.sync_all()?;
    f.seek(SeekFrom::End(0))?;
    Ok(len - keep)
}

/// Reads every record, or those written at or after `since`.
pub fn read(path: &Path, since: Option<jiff::Timestamp>) -> Result<Vec<AuditRecord>, AuditError> {
    let f = File::open(path).map_err(|source| AuditError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| AuditError::Io {
            path: path.to_owned(),
            source,
        })?;
        if line.is_empty() {
            continue;
        }
        let r: AuditRecord = serde_json::from_str(&line).map_err(|e| AuditError::Malformed {
            path: path.to_owned(),
            line: i as u64 + 1,
            reason: e.to_string(),
        })?;
        if let Some(s) = since {
            match r.time.parse::<jiff::Timestamp>() {
                Ok(t) if t < s => continue,
                _ => {}
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Walks the whole chain and reports the first break, naming the line.
pub fn verify(path: &Path) -> Result<AuditVerify, AuditError> {
    let f = File::open(path).map_err(|source| AuditError::Io {
        path: path.to_owned(),
        source,
    })?;
    let walked = walk(&mut BufReader::new(f), path)?;
    Ok(AuditVerify {
        ok: walked.broken.is_none(),
        records: walked.records,
        problem: walked.broken.map(|(_, p)| p),
    })
}

/// The chain as far as it verifies.
struct Walked {
    records: u64,
    /// The hash of the last good record (`GENESIS` when none).
    head: String,
    /// The first broken line and what is wrong with it.
    broken: Option<(u64, String)>,
}

fn walk(reader: &mut impl std::io::BufRead, path: &Path) -> Result<Walked, AuditError> {
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    // Bytes, not `lines()`: a line that is not UTF-8 is damage to name, not an I/O error.
    for (i, line) in reader.split(b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|source| AuditError::Io {
            path: path.to_owned(),
            source,
        })?;
        let expect = n + 1;
        let problem = match serde_json::from_slice::<AuditRecord>(&line) {
            Err(e) => Some(format!("line {line_no}: not a valid record ({e})")),
            Ok(r) if hash_of(&r) != r.hash => Some(format!(
                "line {line_no} (record {}): edited — its hash does not match its content",
                r.seq
            )),
            Ok(r) if r.seq != expect => {
                let what = if r.seq > expect {
                    format!("record {expect} is missing (removed)")
                } else {
                    format!("record {} is out of order (reordered or duplicated)", r.seq)
                };
                Some(format!(
                    "line {line_no}: expected record {expect}, found {}: {what}",
                    r.seq
                ))
            }
            Ok(r) if r.prev != prev => Some(format!(
                "line {line_no} (record {}): chain broken — it does not follow the record before it",
                r.seq
            )),
            Ok(r) => {
                prev = r.hash;
                n += 1;
                None
            }
        };
        if let Some(problem) = problem {
            return Ok(Walked {
                records: n,
                head: prev,
                broken: Some((line_no, problem)),
            });
        }
    }
    Ok(Walked {
        records: n,
        head: prev,
        broken: None,
    })
}

/// Group commit: one thread owns the log and appends whatever records are waiting with one
/// fdatasync, so N concurrent writers pay for one disk flush instead of N. Each caller still
/// gets its record back only once it is on disk.
pub struct GroupCommit {
    tx: std::sync::Mutex<std::sync::mpsc::Sender<Pending>>,
    path: PathBuf,
    len: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Where the writer sends a record once it is on disk: a blocked thread ([`GroupCommit::append`])
/// or a task ([`GroupCommit::submit`]).
enum Reply {
    Thread(std::sync::mpsc::SyncSender<Result<AuditRecord, AuditError>>),
    Task(tokio::sync::oneshot::Sender<Result<AuditRecord, AuditError>>),
}

impl Reply {
    fn send(self, r: Result<AuditRecord, AuditError>) {
        match self {
            Reply::Thread(tx) => {
                let _ = tx.send(r);
            }
            Reply::Task(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

struct Pending(Event, Reply);

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("path", &self.path)
            .finish()
    }
}

impl GroupCommit {
    /// Moves `log` to a writer thread.
    pub fn start(mut log: AuditLog) -> Self {
        let path = log.path.clone();
        let len = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(log.len()));
        let counter = len.clone();
        let (tx, rx) = std::sync::mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let (events, replies): (Vec<Event>, Vec<Reply>) =
                        batch.into_iter().map(|Pending(e, r)| (e, r)).unzip();
                    match log.append_batch(events) {
                        Ok(records) => {
                            counter.store(log.len(), std::sync::atomic::Ordering::Relaxed);
                            for (r, reply) in records.into_iter().zip(replies) {
                                reply.send(Ok(r));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                reply.send(Err(e.duplicate()));
                            }
                        }
                    }
                }
            })
            .expect("spawn the audit writer");
        Self {
            tx: std::sync::Mutex::new(tx),
            path,
            len,
        }
    }

    /// How many records the log holds.
    pub fn len(&self) -> u64 {
        self.len.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn writer_gone(&self) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("the audit writer stopped"),
        }
    }

    fn send(&self, e: Event, reply: Reply) -> Result<(), AuditError> {
        self.tx
            .lock()
            .map_err(|_| self.writer_gone())?
            .send(Pending(e, reply))
            .map_err(|_| self.writer_gone())
    }

    /// Appends `e` and returns its record once it is on disk. Blocks the calling thread.
    pub fn append(&self, e: Event) -> Result<AuditRecord, AuditError> {
        let (reply, wait) = std::sync::mpsc::sync_channel(1);
        self.send(e, Reply::Thread(reply))?;
        wait.recv().map_err(|_| self.writer_gone())?
    }

    /// Queues `e` at once and resolves to its record once it is on disk, without blocking a
    /// thread: a caller can do other work (propose the write the record is about) while the
    /// record's fdatasync runs.
    pub fn submit(
        &self,
        e: Event,
    ) -> impl std::future::Future<Output = Result<AuditRecord, AuditError>> + use<> {
        let (reply, wait) = tokio::sync::oneshot::channel();
        let queued = self.send(e, Reply::Task(reply));
        let gone = self.writer_gone();
        async move {
            queued?;
            wait.await.map_err(|_| gone)?
        }
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

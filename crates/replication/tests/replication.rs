//! Integration tests for lockbox-replication: real redb files on disk (under cargo's
//! target tmp dir, so fsync is real), real processes, real SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lockbox_keyring::Sealed;
use lockbox_replication::storage::{LogStore, StateMachine, new_storage};
use lockbox_replication::types::TypeConfig;
use lockbox_replication::{Replica, ReplicaConfig, ReplicationError};
use lockbox_store::{Command, Kind, NewVersion, Reader, Response};
use openraft::StorageError;
use openraft::async_runtime::WatchReceiver;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
use tempfile::TempDir;

mod cluster;
mod faults;

/// The log table, as the storage module names it (a foreign file that has it is refused).
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("replication.log");
/// The replication meta table (the format-1 migration test rewinds it).
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("replication.meta");

fn tmpdir() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("create temp dir")
}

fn store_path(dir: &TempDir) -> PathBuf {
    dir.path().join("lockbox.redb")
}

/// `(first, last)` index in the raft log of a closed store file.
fn log_bounds(path: &Path) -> (Option<u64>, Option<u64>) {
    let log = lockbox_replication::storage::closed_log(path).expect("read the closed raft log");
    (
        log.first().map(|e| e.log_id.index()),
        log.last().map(|e| e.log_id.index()),
    )
}

/// The raft log directory beside a store file (`x.redb` → `x.wal`).
fn wal_dir(path: &Path) -> PathBuf {
    path.with_extension("wal")
}

/// Copies a closed store: the redb file as `bytes`, and its raft log directory.
fn write_store_copy(copy: &Path, bytes: &[u8], from: &Path) {
    std::fs::write(copy, bytes).unwrap();
    let (src, dst) = (wal_dir(from), wal_dir(copy));
    std::fs::create_dir_all(&dst).unwrap();
    for item in std::fs::read_dir(&src).unwrap() {
        let item = item.unwrap();
        std::fs::copy(item.path(), dst.join(item.file_name())).unwrap();
    }
}

async fn propose_noops(replica: &Replica, n: usize) -> Vec<u64> {
    let mut indexes = Vec::with_capacity(n);
    for _ in 0..n {
        let (index, _) = replica
            .propose_indexed(Command::Noop)
            .await
            .expect("propose");
        indexes.push(index);
    }
    indexes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_and_read_back() {
    let dir = tmpdir();
    let replica = Replica::open(&store_path(&dir), ReplicaConfig::default())
        .await
        .expect("open new store");
    assert!(
        replica.raft().is_leader(),
        "a one-voter replica is its own leader after open"
    );

    let indexes = propose_noops(&replica, 20).await;
    for pair in indexes.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "proposals get consecutive log indexes"
        );
    }
    let last = *indexes.last().unwrap();
    // What apply wrote is visible the moment propose returns, and through a linearizable read.
    assert_eq!(replica.applied_index().unwrap(), Some(last));
    replica
        .ensure_linearizable()
        .await
        .expect("leader confirms itself");
    assert_eq!(replica.applied_index().unwrap(), Some(last));
    // The store's tables live in the same database and are readable through db().
    let db = replica.db();
    let txn = db.begin_read().unwrap();
    assert!(
        txn.list_tables().unwrap().count() >= 4,
        "replication tables exist"
    );
    drop(txn);
    drop(db);
    replica.shutdown().await.unwrap();
}

/// A secret create as the daemon will propose it: a fresh ID, a sealed value of `size` bytes
/// (opaque to the store, so patterned bytes stand in for real ciphertext).
fn create_secret(n: u64, size: usize) -> Command {
    let mut random = [0u8; 16];
    random[8..].copy_from_slice(&n.to_be_bytes());
    Command::Create {
        kind: Kind::Secret,
        id: lockbox_store::object_id(random),
        name: format!("secret-{n}"),
        labels: [("n".to_string(), n.to_string())].into(),
        time_ns: 1_700_000_000_000_000_000 + n as i64,
        driver: None,
        templating: None,
        value: Some(NewVersion {
            number: 1,
            sealed: sealed_value(n, size),
            size: size as u64,
            created_by: "test".to_string(),
            rollback_of: None,
        }),
    }
}

fn sealed_value(n: u64, size: usize) -> Sealed {
    Sealed {
        kek_id: 1,
        wrapped_dek: vec![n as u8; 72],
        ciphertext: (0..size).map(|i| (i as u64 * 31 + n) as u8).collect(),
    }
}

fn check_secret(reader: &Reader, n: u64, size: usize) {
    let rec = reader
        .resolve(Kind::Secret, &format!("secret-{n}"))
        .unwrap_or_else(|e| panic!("secret-{n}: {e}"));
    assert_eq!(rec.labels.get("n"), Some(&n.to_string()));
    let sealed = reader.sealed(&rec, 1).unwrap();
    assert_eq!(
        sealed,
        sealed_value(n, size),
        "secret-{n} value round-trips"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_creates_survive_snapshot_purge_and_reopen() {
    let dir = tmpdir();
    let path = store_path(&dir);
    let cfg = ReplicaConfig {
        snapshot_every: 16,
        logs_to_keep_after_snapshot: 4,
        ..ReplicaConfig::default()
    };
    let replica = Replica::open(&path, cfg.clone()).await.unwrap();
    for n in 0..60 {
        match replica.propose(create_secret(n, 2048)).await.unwrap() {
            Response::Created { .. } => {}
            other => panic!("create secret-{n}: {other:?}"),
        }
    }
    // The store's own answers pass through unchanged: a duplicate name is refused.
    match replica.propose(create_secret(7, 10)).await.unwrap() {
        Response::Failed(e) => assert!(e.to_string().contains("already exists"), "{e}"),
        other => panic!("duplicate create answered {other:?}"),
    }
    replica.ensure_linearizable().await.unwrap();
    let reader = Reader::new(replica.db());
    for n in 0..60 {
        check_secret(&reader, n, 2048);
    }
    drop(reader);
    replica.snapshot().await.unwrap();
    replica.shutdown().await.unwrap();

    let (first, _) = log_bounds(&path);
    assert!(
        first > Some(20),
        "log purged behind the snapshots: first entry {first:?}"
    );

    let replica = Replica::open(&path, cfg).await.unwrap();
    let reader = Reader::new(replica.db());
    for n in 0..60 {
        check_secret(&reader, n, 2048);
    }
    drop(reader);
    replica.shutdown().await.unwrap();
}

/// redb calls are synchronous inside the storage traits; a write transaction never lives
/// across an `.await`, so even a single-threaded runtime (one thread for the raft core, the
/// state machine task and the caller) cannot deadlock on redb's writer lock.
#[tokio::test(flavor = "current_thread")]
async fn works_on_a_current_thread_runtime() {
    let dir = tmpdir();
    let path = store_path(&dir);
    let cfg = ReplicaConfig {
        snapshot_every: 10,
        logs_to_keep_after_snapshot: 2,
        ..ReplicaConfig::default()
    };
    let replica = Replica::open(&path, cfg.clone()).await.unwrap();
    for n in 0..25 {
        let response = replica.propose(create_secret(n, 100)).await.unwrap();
        assert!(matches!(response, Response::Created { .. }), "{response:?}");
    }
    replica.ensure_linearizable().await.unwrap();
    replica.snapshot().await.unwrap();
    replica.shutdown().await.unwrap();
    let replica = Replica::open(&path, cfg).await.unwrap();
    let reader = Reader::new(replica.db());
    for n in 0..25 {
        check_secret(&reader, n, 100);
    }
    drop(reader);
    replica.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_resumes_without_reinitializing() {
    let dir = tmpdir();
    let path = store_path(&dir);

    let replica = Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap();
    let first_membership = *replica
        .raft()
        .metrics()
        .borrow_watched()
        .membership_config
        .log_id();
    let first_term = replica.raft().metrics().borrow_watched().current_term;
    let before = propose_noops(&replica, 10).await;
    let last_before = *before.last().unwrap();
    replica.shutdown().await.unwrap();

    let started = Instant::now();
    let replica = Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap();
    let reopen_time = started.elapsed();
    let metrics = replica.raft().metrics().borrow_watched().clone();
    assert_eq!(
        metrics.membership_config.log_id(),
        &first_membership,
        "reopen must keep the original membership entry, not initialize a new cluster"
    );
    assert!(
        metrics.current_term > first_term,
        "a reopen elects itself in a new term"
    );
    assert!(replica.applied_index().unwrap() >= Some(last_before));
    let (next, _) = replica.propose_indexed(Command::Noop).await.unwrap();
    assert!(
        next > last_before,
        "the log continues where it stopped ({next} > {last_before})"
    );
    // The one-voter replica elects itself at once instead of waiting an election timeout.
    assert!(
        reopen_time < ReplicaConfig::default().election_timeout_min,
        "reopen took {reopen_time:?}"
    );
    replica.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_purge_then_reopen() {
    let dir = tmpdir();
    let path = store_path(&dir);
    let cfg = ReplicaConfig {
        snapshot_every: 40,
        logs_to_keep_after_snapshot: 5,
        ..ReplicaConfig::default()
    };

    let replica = Replica::open(&path, cfg.clone()).await.unwrap();
    let indexes = propose_noops(&replica, 150).await;
    let last = *indexes.last().unwrap();
    // Automatic snapshots ran (every 40 entries); force one covering everything, too.
    let covered = replica
        .snapshot()
        .await
        .unwrap()
        .expect("a snapshot exists");
    assert!(covered >= last, "snapshot covers {covered}, applied {last}");
    // Raft purges up to the snapshot minus the entries it keeps.
    replica
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.purged.as_ref().map(|p| p.index()) >= Some(last - 5),
            "purged up to the snapshot",
        )
        .await
        .expect("log purged");
    replica.shutdown().await.unwrap();

    let (first, last_in_log) = log_bounds(&path);
    let first = first.expect("entries kept after the snapshot");
    assert!(
        first > 100,
        "purged entries are gone from the file (first index {first})"
    );
    assert!(last_in_log >= Some(last));

    // Reopen from snapshot + short log: state and index continue.
    let replica = Replica::open(&path, cfg).await.unwrap();
    assert!(replica.applied_index().unwrap() >= Some(last));
    let snapshot = replica
        .raft()
        .get_snapshot()
        .await
        .unwrap()
        .expect("current snapshot survives the reopen");
    assert!(snapshot.meta.last_log_id.as_ref().map(|l| l.index()) >= Some(last));
    let more = propose_noops(&replica, 5).await;
    assert!(more[0] > last);
    replica.shutdown().await.unwrap();
}

/// A deterministic xorshift, seeded from the clock and printed, so a failing run can be
/// replayed with `LOCKBOX_TEST_SEED`.
struct Rng(u64);

impl Rng {
    fn from_env_or_clock() -> Self {
        let seed = std::env::var("LOCKBOX_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("kill -9 test seed: LOCKBOX_TEST_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs the crash helper on `path`, SIGKILLs it `delay` after it has acknowledged `min_acks`
/// proposals (so every round has acknowledged writes to lose, whatever the disk speed), and
/// returns
/// every `(index, secret name)` it printed as acknowledged.
fn run_and_kill(
    path: &Path,
    advertise_addr: &str,
    min_acks: usize,
    delay: Duration,
) -> Vec<(u64, String)> {
    let mut child = Process::new(env!("CARGO_BIN_EXE_replication-crash-helper"))
        .arg(path)
        .arg(advertise_addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash helper");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("crash helper prints ready");
    assert_eq!(first, "ready");
    let mut lines = Vec::new();
    while lines.len() < min_acks {
        lines.push(
            rx.recv_timeout(Duration::from_secs(30))
                .expect("crash helper keeps acknowledging"),
        );
    }
    std::thread::sleep(delay);
    // std's Child::kill is SIGKILL on Unix: no destructor, no flush, no clean redb close.
    child.kill().expect("SIGKILL the crash helper");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "helper was killed, not finished: {status:?}"
    );
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines
        .into_iter()
        .map(|line| {
            line.strip_prefix("ack ")
                .and_then(|rest| rest.split_once(' '))
                .and_then(|(n, name)| Some((n.parse().ok()?, name.to_string())))
                .unwrap_or_else(|| panic!("unexpected helper output {line:?}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_never_loses_an_acknowledged_proposal() {
    let dir = tmpdir();
    let path = store_path(&dir);
    let mut rng = Rng::from_env_or_clock();
    let mut highest_acked = 0;
    let mut total_acks = 0;
    let mut torn_rounds = 0;
    // More kills for a stress run: LOCKBOX_KILL_ROUNDS=200 cargo test ... kill_9
    let rounds: u32 = std::env::var("LOCKBOX_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    for round in 0..rounds {
        // Kill at a random moment: after 1..=40 acknowledged creates plus 0..60 ms.
        let min_acks = 1 + rng.below(40) as usize;
        let delay = Duration::from_millis(rng.below(60));
        let acked = run_and_kill(&path, "local", min_acks, delay);
        for pair in acked.windows(2) {
            assert!(pair[1].0 > pair[0].0, "acks are increasing");
        }
        if let Some((max, _)) = acked.last() {
            assert!(*max > highest_acked, "round {round} continued the log");
            highest_acked = *max;
        }
        total_acks += acked.len();

        // Reopen after the kill: redb recovers, raft re-applies the durable log.
        let replica = Replica::open(&path, ReplicaConfig::default())
            .await
            .unwrap_or_else(|e| panic!("round {round}: reopen after kill -9 failed: {e}"));
        if replica.rolled_back_torn_commit() {
            // The kill landed inside a commit; redb dropped that (unacknowledged) commit.
            torn_rounds += 1;
        }
        let applied = replica.applied_index().unwrap().unwrap_or(0);
        assert!(
            applied >= highest_acked,
            "round {round} (killed {delay:?} after {min_acks} acks): acknowledged index {highest_acked} but only {applied} applied after reopen"
        );
        let reader = Reader::new(replica.db());
        for (index, name) in &acked {
            let rec = reader.resolve(Kind::Secret, name).unwrap_or_else(|e| {
                panic!("round {round}: secret {name} acknowledged at {index} is missing: {e}")
            });
            assert_eq!(rec.index, *index, "{name} was created by entry {index}");
        }
        drop(reader);
        replica.shutdown().await.unwrap();
    }
    eprintln!(
        "kill -9: {total_acks} acknowledged creates over {rounds} kills, {torn_rounds} kills tore a commit; none lost"
    );
    assert!(
        total_acks >= rounds as usize,
        "the helper got proposals acknowledged ({total_acks})"
    );
}

/// Makes a store with some history and closes it cleanly.
async fn make_store(path: &Path, marker: &str) {
    let cfg = ReplicaConfig {
        advertise_addr: marker.to_string(),
        ..ReplicaConfig::default()
    };
    let replica = Replica::open(path, cfg).await.unwrap();
    propose_noops(&replica, 30).await;
    replica.shutdown().await.unwrap();
}

fn expect_corrupt(result: Result<Replica, ReplicationError>, what: &str) -> String {
    match result {
        Err(e @ ReplicationError::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("is corrupt"), "{what}: message {msg:?}");
            msg
        }
        Err(other) => panic!("{what}: expected a Corrupt error, got {other:?} ({other})"),
        Ok(_) => panic!("{what}: a damaged store file was opened"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_file_is_refused() {
    let dir = tmpdir();
    let path = store_path(&dir);
    make_store(&path, "truncation-test").await;
    let len = std::fs::metadata(&path).unwrap().len();

    for (name, new_len) in [("half", len / 2), ("header only", 400), ("empty", 0)] {
        let copy = dir.path().join(format!("truncated-{new_len}.redb"));
        write_store_copy(&copy, &std::fs::read(&path).unwrap(), &path);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_len(new_len)
            .unwrap();
        let msg = expect_corrupt(
            Replica::open(&copy, ReplicaConfig::default()).await,
            &format!("truncated to {name} ({new_len} of {len} bytes)"),
        );
        eprintln!("truncated to {name}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_flipped_file_is_refused() {
    let dir = tmpdir();
    let path = store_path(&dir);
    // The advertised address is stored in the membership (log entry and state machine), which
    // gives the test a byte pattern to find in pages that are certainly live.
    let marker = "lockbox-bitflip-marker-7f3a";
    make_store(&path, marker).await;
    let bytes = std::fs::read(&path).unwrap();
    let hits: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert!(!hits.is_empty(), "marker found in the store file");

    // A hit may sit in a page that copy-on-write has since freed (an old copy of the
    // membership record); flipping it loses nothing and the file may open. A hit in a live
    // page must be refused. Either way nothing acknowledged may be lost.
    let mut refused = 0;
    for &at in &hits {
        let copy = dir.path().join(format!("flipped-{at}.redb"));
        let mut damaged = bytes.clone();
        damaged[at + 3] ^= 0x01;
        write_store_copy(&copy, &damaged, &path);
        match Replica::open(&copy, ReplicaConfig::default()).await {
            Err(e @ ReplicationError::Corrupt { .. }) => {
                assert!(e.to_string().contains("is corrupt"), "{e}");
                eprintln!("bit flip at {}: {e}", at + 3);
                refused += 1;
            }
            Err(other) => panic!("bit flip at {}: expected Corrupt, got {other:?}", at + 3),
            Ok(replica) => {
                eprintln!("bit flip at {} hit a free page; the file is intact", at + 3);
                assert!(replica.applied_index().unwrap() >= Some(31));
                let metrics = replica.raft().metrics().borrow_watched().clone();
                let addrs: Vec<String> = metrics
                    .membership_config
                    .nodes()
                    .map(|(_, node)| node.addr.clone())
                    .collect();
                assert_eq!(addrs, [marker.to_string()], "membership intact");
                replica.shutdown().await.unwrap();
            }
        }
    }
    assert!(
        refused > 0,
        "no flip of a live page was refused ({} hits)",
        hits.len()
    );
    // The undamaged original still opens.
    Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

/// The newest segment of a store's raft log, and the offsets of its records (the documented
/// WAL format: u32 LE length, u32 LE CRC-32, payload).
fn newest_segment(path: &Path) -> (PathBuf, Vec<usize>) {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(wal_dir(path))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let seg = segs.pop().expect("a log segment");
    let bytes = std::fs::read(&seg).unwrap();
    let mut offsets = Vec::new();
    let mut at = 0;
    // A zero header ends the records; zeros written ahead of them follow.
    while at + 8 <= bytes.len() && bytes[at..at + 8] != [0; 8] {
        offsets.push(at);
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    assert!(
        bytes[at..].iter().all(|&b| b == 0),
        "the segment is whole records, then zeros"
    );
    (seg, offsets)
}

/// After a kill -9 the log may end in an append that was in flight: an incomplete final
/// record, never acknowledged (its fsync did not return). With the default it is cut off and
/// *reported*, never served silently; with `allow_torn_commit_rollback` off it is refused.
/// Damage anywhere but the final record (a bit flip in an earlier one) is refused either way,
/// as is a log directory that is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_or_damaged_log_after_a_crash_is_refused_or_reported() {
    let dir = tmpdir();
    let path = store_path(&dir);
    let acked = run_and_kill(&path, "crash-log-test", 20, Duration::from_millis(5));
    let highest = acked.last().expect("some proposals acknowledged").0;
    let bytes = std::fs::read(&path).unwrap();
    let (seg, offsets) = newest_segment(&path);
    let mut seg_bytes = std::fs::read(&seg).unwrap();
    // Without the preallocated zeros: a torn append is made by adding bytes after the records.
    let records_end = {
        let last = *offsets.last().unwrap();
        last + 8 + u32::from_le_bytes(seg_bytes[last..last + 4].try_into().unwrap()) as usize
    };
    seg_bytes.truncate(records_end);
    let seg_name = seg.file_name().unwrap().to_owned();
    assert!(
        offsets.len() >= 3,
        "records in the newest segment: {offsets:?}"
    );
    let strict = ReplicaConfig {
        allow_torn_commit_rollback: false,
        ..ReplicaConfig::default()
    };

    // A torn final append: half of a new record after the last one.
    let torn = dir.path().join("torn.redb");
    write_store_copy(&torn, &bytes, &path);
    let last = *offsets.last().unwrap();
    let mut with_tail = seg_bytes.clone();
    with_tail.extend_from_slice(&seg_bytes[last..last + (seg_bytes.len() - last) / 2]);
    std::fs::write(wal_dir(&torn).join(&seg_name), &with_tail).unwrap();
    let msg = expect_corrupt(
        Replica::open(&torn, strict.clone()).await,
        "torn tail, strict",
    );
    assert!(msg.contains("torn"), "{msg}");
    let replica = Replica::open(&torn, ReplicaConfig::default())
        .await
        .unwrap();
    assert!(
        replica.rolled_back_torn_commit(),
        "the cut must be reported"
    );
    assert!(replica.applied_index().unwrap() >= Some(highest));
    replica.shutdown().await.unwrap();

    // A bit flip in a record that is not the last one: acknowledged data, refused.
    let flipped = dir.path().join("flipped.redb");
    write_store_copy(&flipped, &bytes, &path);
    let mut damaged = seg_bytes.clone();
    damaged[offsets[offsets.len() / 2] + 9] ^= 0x01;
    std::fs::write(wal_dir(&flipped).join(&seg_name), &damaged).unwrap();
    for cfg in [strict.clone(), ReplicaConfig::default()] {
        let msg = expect_corrupt(Replica::open(&flipped, cfg).await, "flipped record");
        assert!(msg.contains("checksum mismatch"), "{msg}");
    }

    // The log directory gone while the store file says entries were applied.
    let lost = dir.path().join("lost.redb");
    std::fs::write(&lost, &bytes).unwrap();
    let msg = expect_corrupt(
        Replica::open(&lost, ReplicaConfig::default()).await,
        "no log",
    );
    assert!(msg.contains("is missing"), "{msg}");

    // The undamaged crashed store recovers with everything acknowledged.
    let replica = Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap();
    assert!(replica.applied_index().unwrap() >= Some(highest));
    replica.shutdown().await.unwrap();
}

/// A store file of format 1 kept the raft log in its `replication.log` table; opening it
/// moves the log into the WAL and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_store_moves_its_log_into_the_wal() {
    let dir = tmpdir();
    let path = store_path(&dir);
    let replica = Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap();
    let indexes = propose_noops(&replica, 30).await;
    replica.shutdown().await.unwrap();
    let log = lockbox_replication::storage::closed_log(&path).unwrap();
    {
        // Rewind the file to format 1: the log in the table, no WAL.
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(LOG).unwrap();
            for entry in &log {
                let bytes = postcard::to_stdvec(entry).unwrap();
                table
                    .insert(entry.log_id.index(), bytes.as_slice())
                    .unwrap();
            }
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("format", postcard::to_stdvec(&1u32).unwrap().as_slice())
                .unwrap();
            meta.remove("has_wal").unwrap();
        }
        txn.commit().unwrap();
    }
    std::fs::remove_dir_all(wal_dir(&path)).unwrap();

    let replica = Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap();
    assert!(replica.applied_index().unwrap() >= indexes.last().copied());
    let more = propose_noops(&replica, 3).await;
    replica.shutdown().await.unwrap();
    let (first, last) = log_bounds(&path);
    assert_eq!(
        first,
        log.first().map(|e| e.log_id.index()),
        "nothing dropped"
    );
    assert!(
        last >= more.last().copied(),
        "new entries appended after the moved ones"
    );
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    assert!(
        txn.open_table(LOG).unwrap().is_empty().unwrap(),
        "the table is emptied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_is_refused_in_process_and_across_processes() {
    let dir = tmpdir();
    let path = store_path(&dir);
    let replica = Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap();

    match Replica::open(&path, ReplicaConfig::default()).await {
        Err(e @ ReplicationError::AlreadyOpen { .. }) => {
            assert!(e.to_string().contains("already open"), "{e}");
        }
        Err(other) => panic!("expected AlreadyOpen, got {other:?}"),
        Ok(_) => panic!("the same store file was opened twice in one process"),
    }

    let out = Process::new(env!("CARGO_BIN_EXE_replication-crash-helper"))
        .arg(&path)
        .output()
        .expect("run helper");
    assert!(
        !out.status.success(),
        "another process opened a store that is in use"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already open"), "helper stderr: {stderr}");

    // The first replica is unaffected, and the file opens again once it is shut down.
    replica.propose(Command::Noop).await.unwrap();
    replica.shutdown().await.unwrap();
    Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_is_refused() {
    let dir = tmpdir();
    let cfg = ReplicaConfig {
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(200),
        ..ReplicaConfig::default()
    };
    match Replica::open(&store_path(&dir), cfg).await {
        Err(e @ ReplicationError::Config(_)) => assert!(e.to_string().contains("config"), "{e}"),
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_file_keeps_its_node_id() {
    let dir = tmpdir();
    let path = store_path(&dir);
    Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let other = ReplicaConfig {
        node_id: 2,
        ..ReplicaConfig::default()
    };
    match Replica::open(&path, other).await {
        Err(e @ ReplicationError::Config(_)) => {
            assert!(
                e.to_string().contains("belongs to raft node 1, not node 2"),
                "{e}"
            )
        }
        other => panic!("expected a node id mismatch, got {other:?}"),
    }
    // The refusal released the file.
    Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_redb_file_is_refused() {
    let dir = tmpdir();
    let path = store_path(&dir);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(LOG).unwrap();
        txn.commit().unwrap();
    }
    match Replica::open(&path, ReplicaConfig::default()).await {
        Err(e @ ReplicationError::UnsupportedFormat { .. }) => {
            assert!(e.to_string().contains("unsupported format"), "{e}")
        }
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
}

/// Dropping a replica without `shutdown` still stops raft (in the background) and so
/// releases the file shortly after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_replica_releases_the_file() {
    let dir = tmpdir();
    let path = store_path(&dir);
    let replica = Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap();
    let (index, _) = replica.propose_indexed(Command::Noop).await.unwrap();
    drop(replica);
    let deadline = Instant::now() + Duration::from_secs(10);
    let reopened = loop {
        match Replica::open(&path, ReplicaConfig::default()).await {
            Ok(r) => break r,
            Err(ReplicationError::AlreadyOpen { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopen after drop: {e}"),
        }
    };
    assert!(reopened.applied_index().unwrap() >= Some(index));
    reopened.shutdown().await.unwrap();
}

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tmpdir();
        let db = redb::Database::create(dir.path().join("suite.redb"))
            .map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        let (log, sm) = new_storage(Arc::new(db), &dir.path().join("suite.wal"))
            .map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_conformance_suite() {
    Suite::test_all(RedbBuilder).await.expect("storage suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_latency() {
    const FLOOR: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("floor");
    let dir = tmpdir();
    let replica = Replica::open(&store_path(&dir), ReplicaConfig::default())
        .await
        .unwrap();
    // The floor: one fsync'd redb commit of the same size on the same disk, interleaved with
    // the proposals so both see the same disk weather.
    let floor_db = redb::Database::create(dir.path().join("floor.redb")).unwrap();
    propose_noops(&replica, 50).await; // warm-up
    let mut samples = Vec::with_capacity(2000);
    let mut floor = Vec::with_capacity(2000);
    for n in 0..2000 {
        let t = Instant::now();
        let mut txn = floor_db.begin_write().unwrap();
        txn.open_table(FLOOR)
            .unwrap()
            .insert(n, [0u8; 1200].as_slice())
            .unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        txn.commit().unwrap();
        floor.push(t.elapsed());

        let cmd = create_secret(n, 1024);
        let t = Instant::now();
        let response = replica.propose(cmd).await.unwrap();
        samples.push(t.elapsed());
        assert!(matches!(response, Response::Created { .. }), "{response:?}");
    }
    samples.sort();
    floor.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    let floor_p50 = floor[floor.len() / 2];
    eprintln!(
        "secret-create propose latency over {} sequential proposes (debug build): p50 {:?}, p99 {:?}, max {:?}; one fsync'd redb commit: p50 {:?}",
        samples.len(),
        p50,
        p99,
        samples.last().unwrap(),
        floor_p50,
    );
    // Loose enough for a loaded CI disk (it scales with the measured fsync cost), tight
    // enough to catch a regression to several fsyncs per proposal.
    let bound = (floor_p50 * 3).max(Duration::from_millis(15));
    assert!(p50 < bound, "p50 {p50:?} >= {bound:?}");
    replica.shutdown().await.unwrap();
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).unwrap() {
        let path = item.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn holds(files: &[(PathBuf, Vec<u8>)], needle: &[u8]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(p, _)| p.clone())
        .collect()
}

/// A removed secret's sealed value and wrapped data key used to stay in the raft log (the
/// entry that created it) until a routine snapshot purged it, although removal is meant to
/// destroy the only copy of the wrapped key. The removal now triggers a snapshot and a purge
/// that rewrites the log segment holding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_secret_leaves_no_sealed_copy_in_the_raft_log() {
    let dir = tmpdir();
    let path = store_path(&dir);
    let replica = Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap();
    for n in 0..6 {
        replica.propose(create_secret(n, 3000)).await.unwrap();
    }
    let doomed = sealed_value(3, 3000);
    let reader = Reader::new(replica.db());
    let id = reader.resolve(Kind::Secret, "secret-3").unwrap().id;
    let before = files_under(dir.path());
    assert!(
        !holds(&before, &doomed.ciphertext[..64]).is_empty(),
        "the value is on disk before the removal (the test sees it)"
    );
    let (index, _) = replica
        .propose_indexed(Command::Remove {
            kind: Kind::Secret,
            id,
        })
        .await
        .unwrap();
    // Writes go on meanwhile: the purge point is not the end of the log.
    replica.propose(create_secret(10, 3000)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.purged_index().is_none_or(|p| p < index) {
        assert!(Instant::now() < deadline, "no purge covered the removal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log_files = files_under(&wal_dir(&path));
    assert_eq!(
        holds(&log_files, &doomed.ciphertext[..64]),
        Vec::<PathBuf>::new(),
        "sealed value left in the raft log"
    );
    assert_eq!(
        holds(&log_files, &doomed.wrapped_dek),
        Vec::<PathBuf>::new(),
        "wrapped data key left in the raft log"
    );
    // Not asserted for store.redb: redb frees the pages that held the value without
    // overwriting them, so a copy can stay there until the pages are reused (documented in
    // SECURITY.md, with KEK rotation as the remedy).
    for n in [0, 1, 2, 4, 5, 10] {
        check_secret(&reader, n, 3000);
    }
    drop(reader);
    replica.shutdown().await.unwrap();
    // The rewritten log reopens and still holds what came after the purge point.
    let replica = Replica::open(&path, ReplicaConfig::default())
        .await
        .unwrap();
    let reader = Reader::new(replica.db());
    for n in [0, 1, 2, 4, 5, 10] {
        check_secret(&reader, n, 3000);
    }
    assert!(reader.resolve(Kind::Secret, "secret-3").is_err());
    drop(reader);
    replica.shutdown().await.unwrap();
}

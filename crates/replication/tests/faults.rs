//! Disk faults under a replica, on a real small tmpfs (the tests run as root).
use std::process::Command as Process;
use std::time::{Duration, Instant};

use lockbox_replication::{Replica, ReplicaConfig, ReplicationError};
use lockbox_store::Reader;

use super::{check_secret, create_secret};

/// A tmpfs of `size` on a fresh temp dir, unmounted on drop.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("faults-replication-")
            .tempdir()
            .unwrap();
        let out = Process::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount a tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg(self.0.path()).status();
    }
}

/// A full disk stops raft for good (openraft treats any storage error as fatal, and a failed
/// fsync must not be retried as if it were safe). Every later call must say so at once,
/// naming the files and the cause, instead of waiting out `write_timeout` and blaming the
/// quorum; a reopen once space is back must hold every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_raft_with_the_cause_named_and_a_reopen_keeps_every_acknowledged_write() {
    let fs = SmallFs::mount("2m");
    let path = fs.0.path().join("lockbox.redb");
    let cfg = || ReplicaConfig {
        exit_on_storage_failure: false,
        ..ReplicaConfig::default()
    };
    let replica = Replica::open(&path, cfg()).await.unwrap();
    let filler = fs.0.path().join("filler");
    let mut acknowledged = Vec::new();
    let mut first_error = None;
    for n in 0..10_000u64 {
        // The filler takes what is left once a little history exists.
        if n == 20 {
            let mut f = std::fs::File::create(&filler).unwrap();
            let block = vec![0u8; 4096];
            while std::io::Write::write(&mut f, &block).is_ok_and(|w| w > 0) {}
        }
        match replica.propose(create_secret(n, 3000)).await {
            Ok(_) => acknowledged.push(n),
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    let first = first_error.expect("the disk filled up").to_string();
    assert!(first.contains("No space left on device"), "{first}");

    let started = Instant::now();
    let later = replica
        .propose_forwarded(create_secret(99_999, 10))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a stopped replica answers at once, not after write_timeout"
    );
    let msg = later.to_string();
    assert!(matches!(later, ReplicationError::Fatal(_)), "{later:?}");
    assert!(!msg.contains("quorum"), "not blamed on the quorum: {msg}");
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("must be restarted"), "{msg}");

    let _ = replica.shutdown().await;
    std::fs::remove_file(&filler).unwrap();
    let replica = Replica::open(&path, cfg()).await.unwrap();
    let reader = Reader::new(replica.db());
    for n in &acknowledged {
        check_secret(&reader, *n, 3000);
    }
    replica.propose(create_secret(50_000, 3000)).await.unwrap();
    check_secret(&reader, 50_000, 3000);
    drop(reader);
    replica.shutdown().await.unwrap();
}

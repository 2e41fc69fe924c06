//! Crash safety: kill -9 during a burst of writes, corrupt and truncated stores, and a
//! second daemon on one data directory.
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{BIN, Daemon, http};

/// xorshift64*: enough randomness for kill timing, reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn seed() -> u64 {
    std::env::var("LOCKBOX_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

#[test]
fn kill9_during_creates_loses_no_acknowledged_secret() {
    let cycles: u64 = std::env::var("LOCKBOX_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed = seed();
    eprintln!("kill9 test: seed {seed} (rerun with LOCKBOX_TEST_SEED={seed}), {cycles} cycles");
    let mut rng = Rng(seed);
    let mut d = Daemon::start();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    for cycle in 0..cycles {
        let sock = d.sock();
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let (sock, acked) = (sock.clone(), acked.clone());
                std::thread::spawn(move || {
                    for i in 0.. {
                        let name = format!("k{cycle}_{t}_{i}");
                        let body = format!(r#"{{"Name":"{name}","Data":"eA=="}}"#);
                        // After the kill, connecting or reading fails: the worker stops.
                        let r = std::panic::catch_unwind(|| {
                            http(&sock, "POST", "/v1/secrets/create", Some(&body))
                        });
                        match r {
                            Ok((201, _)) => acked.lock().unwrap().push(name),
                            _ => break,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50 + rng.next() % 400));
        d.kill9();
        for w in workers {
            let _ = w.join();
        }
        d.spawn(&[]);
        let o = d.lb(&["secret", "ls", "--format", "{{.Name}}"]);
        assert_eq!(
            o.code,
            0,
            "seed {seed} cycle {cycle}: {o:?}\n{}",
            d.log_text()
        );
        let have: std::collections::HashSet<&str> = o.stdout.lines().collect();
        let acked = acked.lock().unwrap();
        let lost: Vec<&String> = acked
            .iter()
            .filter(|n| !have.contains(n.as_str()))
            .collect();
        assert!(
            lost.is_empty(),
            "seed {seed} cycle {cycle}: {} acknowledged secrets lost: {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        let v = d.lb(&["audit", "verify"]);
        assert_eq!(v.code, 0, "seed {seed} cycle {cycle}: {v:?}");
    }
    let n = acked.lock().unwrap().len();
    eprintln!("kill9 test: {cycles} cycles, {n} acknowledged creates, none lost");
    assert!(n > 0, "the load produced no acknowledged write");
}

#[test]
fn a_second_daemon_on_the_same_data_dir_refuses() {
    let d = Daemon::start();
    let other = d.dir.path().join("other.sock");
    let o = Command::new(BIN)
        .arg("daemon")
        .arg("--data-dir")
        .arg(d.data())
        .arg("-H")
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("another lockbox daemon is using"), "{err}");
    // And one on the same socket with another data dir refuses too, leaving the first alive.
    let dir2 = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .arg("daemon")
        .arg("--data-dir")
        .arg(dir2.path())
        .arg("-H")
        .arg(d.sock())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("another daemon is listening on it"));
    assert_eq!(d.lb(&["secret", "ls", "-q"]).code, 0);
}

fn start_fails(d: &Daemon) -> String {
    let o = Command::new(BIN)
        .arg("daemon")
        .arg("--data-dir")
        .arg(d.data())
        .arg("-H")
        .arg(d.sock())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "a damaged store must not be served"
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn truncated_or_corrupted_store_is_refused_at_start() {
    let mut d = Daemon::start();
    for i in 0..50 {
        d.create(&format!("s{i}"), b"value");
    }
    d.stop();
    let path = d.data().join("store.redb");
    let good = std::fs::read(&path).unwrap();

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let err = start_fails(&d);
    assert!(err.contains("store.redb"), "{err}");

    // Flip bits across the file's header and its last pages (the latest commit).
    let mut bad = good.clone();
    for off in [0usize, 64, 512, bad.len() - 4096, bad.len() - 100] {
        bad[off] ^= 0xff;
    }
    std::fs::write(&path, &bad).unwrap();
    let err = start_fails(&d);
    assert!(err.contains("store.redb"), "{err}");

    // The good file still starts.
    std::fs::write(&path, &good).unwrap();
    d.spawn(&[]);
    assert_eq!(d.lb(&["secret", "ls", "-q"]).stdout.lines().count(), 50);
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut d = Daemon::start();
    d.create("a", b"1");
    d.stop();
    assert!(!d.sock().exists(), "the socket is removed on shutdown");
    d.spawn(&[]);
    assert_eq!(d.lb(&["secret", "ls", "-q"]).stdout.lines().count(), 1);
}

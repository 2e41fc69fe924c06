//! Fault injection, black box: `lockbox daemon` on a data directory whose file system fails
//! under it — full (a small tmpfs filled up, ENOSPC) and read-only (an ext4 loop device with
//! `errors=remount-ro` forced into it, EROFS: a tmpfs cannot be remounted read-only while
//! files are open for writing) — during bursts of creates, rotations and hand-outs.
//!
//! After each fault: every acknowledged write is present with an acknowledged value,
//! `lockbox audit verify` exits 0, writes resume once the fault is cleared (after the
//! documented exit with status 74 and a restart by the "service manager", the test), and
//! every error names its cause. Needs root (mounts); `LOCKBOX_FAULT_CYCLES` repeats the
//! cycles (`scripts/soak`), `LOCKBOX_TEST_SEED` replays one.
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::support::{Daemon, parse_response, run_cli, seed};

/// `lockbox_replication::STORAGE_FAILURE_EXIT_CODE`: the daemon's exit after a storage
/// failure (EX_IOERR).
const STORAGE_FAILURE_EXIT: i32 = 74;

fn sh(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}{} (the fault tests need root)",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where the data directory lives and how to break it.
enum Disk {
    /// A 24 MiB tmpfs on `<dir>/data`.
    Tmpfs,
    /// An ext4 image on a loop device, mounted on `<dir>/data`.
    Ext4 { image: PathBuf },
}

impl Disk {
    fn mount(&self, data: &Path) {
        std::fs::create_dir_all(data).unwrap();
        let data = data.to_str().unwrap();
        match self {
            Disk::Tmpfs => sh(&[
                "mount",
                "-t",
                "tmpfs",
                "-o",
                "size=24m,mode=0700",
                "tmpfs",
                data,
            ]),
            Disk::Ext4 { image } => sh(&[
                "mount",
                "-o",
                "loop,errors=remount-ro",
                image.to_str().unwrap(),
                data,
            ]),
        }
    }

    /// Unmounts `data`, waiting out a file system still busy for a moment after the daemon
    /// died: a failed unmount followed by `fsck` and a second mount of the same image would
    /// corrupt it, and the test would blame lockbox.
    fn unmount(data: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("umount").arg(data).output().unwrap();
            if out.status.success() {
                return;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("not mounted") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "umount {}: {err}",
                data.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Disk {
    /// Makes sure no file system instance lives on the image any more before `fsck` and the
    /// remount: `fsck` on a file system still alive elsewhere (another mount namespace's
    /// private copy of the mount) and a remount sharing its aborted superblock made this
    /// test lose writes that lockbox had on disk. A `lockbox run` workload no longer keeps
    /// such a copy, but on a shared machine any process that makes itself a private mount
    /// namespace while the test's mount exists does (another test's `dockerd`). Such a copy
    /// is emergency-read-only and writes nothing more, so the disk is then taken as it is,
    /// like a failed disk moved to another machine: the image is copied and the copy used.
    fn release(&mut self, what: &str) {
        let Disk::Ext4 { image } = self else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        let holder = loop {
            let out = Command::new("losetup")
                .arg("-j")
                .arg(&*image)
                .output()
                .unwrap();
            if out.status.success() && out.stdout.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                break String::from_utf8_lossy(&out.stdout).into_owned();
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let copy = image.with_file_name(format!("data-{stamp}.img"));
        eprintln!(
            "{what}: {} is still held after the unmount ({}); going on with a copy",
            image.display(),
            holder.trim()
        );
        sh(&[
            "cp",
            "--sparse=always",
            image.to_str().unwrap(),
            copy.to_str().unwrap(),
        ]);
        let _ = std::fs::remove_file(&*image);
        *image = copy;
    }
}

/// Makes `dir` a shared mount (a bind of itself), as every mount on a systemd host is: an
/// unmount below it then reaches the mount namespaces copied from this one (`lockbox run`
/// workloads), which it does not when the parent mount is private (as `/` is in some
/// containers; see SECURITY.md). Undone by [`Disk::unmount`].
fn share(dir: &Path) {
    let d = dir.to_str().unwrap();
    sh(&["mount", "--bind", d, d]);
    sh(&["mount", "--make-shared", d]);
}

/// Fills the file system holding `dir` until ENOSPC; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    // The last partial pages too.
    let small = [0x5au8; 512];
    while f.write(&small).is_ok_and(|n| n > 0) {}
    filler
}

/// One request; `None` when the daemon did not answer (gone, or the connection broke).
fn request(sock: &Path, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: lockbox\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let (status, _, body) = parse_response(&resp);
    (status != 0).then_some((status, body))
}

/// What the clients were told.
#[derive(Default)]
struct Ledger {
    /// Acknowledged secrets: name → every value it may hold now (the acknowledged one, and
    /// a rotation's new value while that rotation's outcome is unknown).
    acked: BTreeMap<String, Vec<String>>,
    acknowledged_writes: u64,
    failed_writes: u64,
    /// Every error answer, to check that it names its cause.
    errors: Vec<String>,
    handouts: u64,
}

fn value(seed: u64, client: usize, i: u64) -> String {
    format!("fault-{seed:x}-{client}-{i}-{}", "v".repeat(2048))
}

/// Creates and rotates secrets from `clients` threads (and hands some out through
/// `lockbox run`) until `stop` is set.
fn burst(
    sock: &Path,
    seed: u64,
    round: usize,
    clients: usize,
    ledger: &Arc<Mutex<Ledger>>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for c in 0..clients {
        let (sock, ledger, stop) = (sock.to_owned(), ledger.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let client = round * 100 + c;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let v = value(seed, client, i);
                let rotate = i.is_multiple_of(3);
                let target = if rotate {
                    let l = ledger.lock().unwrap();
                    let mine: Vec<&String> = l
                        .acked
                        .keys()
                        .filter(|k| k.starts_with(&format!("f{client}-")))
                        .collect();
                    mine.get(i as usize % mine.len().max(1))
                        .map(|s| s.to_string())
                } else {
                    None
                };
                let (name, answer) = match target {
                    Some(name) => {
                        let body = format!(r#"{{"Data":"{}"}}"#, STANDARD.encode(&v));
                        let a =
                            request(&sock, "POST", &format!("/v1/secrets/{name}/rotate"), &body);
                        (name, a)
                    }
                    None => {
                        let name = format!("f{client}-{i}");
                        let body =
                            format!(r#"{{"Name":"{name}","Data":"{}"}}"#, STANDARD.encode(&v));
                        (name, request(&sock, "POST", "/v1/secrets/create", &body))
                    }
                };
                let mut l = ledger.lock().unwrap();
                match answer {
                    Some((200 | 201, _)) => {
                        l.acknowledged_writes += 1;
                        l.acked.insert(name, vec![v]);
                    }
                    other => {
                        l.failed_writes += 1;
                        if rotate && let Some(vals) = l.acked.get_mut(&name) {
                            vals.push(v);
                        }
                        if let Some((status, body)) = other {
                            l.errors.push(format!("{status} {body}"));
                        }
                        drop(l);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }));
    }
    // Hand-outs: a real `lockbox run` of an acknowledged secret.
    let (sock, ledger, stop) = (sock.to_owned(), ledger.clone(), stop.clone());
    threads.push(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let name = ledger.lock().unwrap().acked.keys().last().cloned();
            if let Some(name) = name {
                let o = run_cli(
                    &sock,
                    &[
                        "run",
                        "--secret",
                        &name,
                        "--",
                        "cat",
                        &format!("/run/secrets/{name}"),
                    ],
                    None,
                );
                if o.code == 0 {
                    ledger.lock().unwrap().handouts += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }));
    threads
}

/// Every acknowledged secret is there with an acknowledged value (read back by a hand-out
/// for a sample, by its version list for the rest), and the audit chain verifies.
fn check_after_fault(d: &Daemon, ledger: &Ledger, what: &str) {
    let sock = d.sock();
    for (n, (name, values)) in ledger.acked.iter().enumerate() {
        let (status, body) = request(&sock, "GET", &format!("/v1/secrets/{name}"), "")
            .unwrap_or_else(|| panic!("{what}: the daemon did not answer"));
        assert_eq!(
            status,
            200,
            "{what}: acknowledged secret {name} lost: {body}\ndaemon log:\n{}",
            d.log_text()
        );
        if n.is_multiple_of(10) {
            let o = run_cli(
                &sock,
                &[
                    "run",
                    "--secret",
                    name,
                    "--",
                    "cat",
                    &format!("/run/secrets/{name}"),
                ],
                None,
            );
            assert_eq!(o.code, 0, "{what}: hand-out of {name}: {}", o.stderr);
            assert!(
                values.contains(&o.stdout),
                "{what}: {name} holds a value that was never acknowledged"
            );
        }
    }
    let v = run_cli(&sock, &["audit", "verify"], None);
    assert_eq!(
        v.code, 0,
        "{what}: audit chain broken: {}{}",
        v.stdout, v.stderr
    );
}

/// The daemon's end: still running, or exited with the documented status and message.
fn exited(d: &mut Daemon) -> Option<i32> {
    let st = d.child.as_mut().unwrap().try_wait().unwrap()?;
    d.child = None;
    Some(st.code().unwrap_or(-1))
}

/// A write that must succeed within `within` (writes resume once the fault is cleared).
fn write_resumes(d: &Daemon, name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let body = format!(
        r#"{{"Name":"{name}","Data":"{}"}}"#,
        STANDARD.encode("after")
    );
    loop {
        match request(&d.sock(), "POST", "/v1/secrets/create", &body) {
            Some((201, _)) => return,
            other if Instant::now() > deadline => {
                panic!(
                    "writes did not resume within {within:?}: {other:?}\n{}",
                    d.log_text()
                )
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

struct Cycle {
    faults: u64,
    exits: u64,
}

/// One fault cycle: burst, break the disk, burst on, clear, recover, check.
fn cycle(
    d: &mut Daemon,
    disk: &mut Disk,
    seed: u64,
    round: usize,
    ledger: &Arc<Mutex<Ledger>>,
    stats: &mut Cycle,
) {
    let data = d.data();
    let stop = Arc::new(AtomicBool::new(false));
    let threads = burst(&d.sock(), seed, round, 3, ledger, &stop);
    std::thread::sleep(Duration::from_millis(800));
    let (cause, filler) = match disk {
        Disk::Tmpfs => ("No space left on device", Some(fill(&data))),
        Disk::Ext4 { .. } => {
            let dev = String::from_utf8(
                Command::new("findmnt")
                    .args(["-no", "SOURCE"])
                    .arg(&data)
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap();
            let dev = dev.trim().rsplit('/').next().unwrap().to_string();
            std::fs::write(format!("/sys/fs/ext4/{dev}/trigger_fs_error"), "1").unwrap();
            ("Read-only file system", None)
        }
    };
    stats.faults += 1;
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let what = format!("round {round} ({cause})");
    {
        let l = ledger.lock().unwrap();
        for e in &l.errors {
            assert!(
                e.contains(cause),
                "{what}: an error that does not name its cause: {e}"
            );
            assert!(!e.contains("quorum"), "{what}: blamed on the quorum: {e}");
        }
    }
    // The documented exit, or still serving.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut code = exited(d);
    while code.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        code = exited(d);
    }
    if let Some(c) = code {
        stats.exits += 1;
        let log = d.log_text();
        assert_eq!(c, STORAGE_FAILURE_EXIT, "{what}: exit status\n{log}");
        assert!(
            log.contains(cause),
            "{what}: the exit names the cause\n{log}"
        );
        assert!(
            log.contains(&data.display().to_string()),
            "{what}: the exit names the file\n{log}"
        );
    }
    // Clear the fault, as an operator would.
    if let Disk::Ext4 { .. } = disk {
        if d.child.is_some() {
            d.kill9();
        }
        Disk::unmount(&data);
        disk.release(&what);
    }
    match disk {
        Disk::Tmpfs => std::fs::remove_file(filler.unwrap()).unwrap(),
        Disk::Ext4 { image } => {
            let out = Command::new("fsck.ext4")
                .arg("-fy")
                .arg(&*image)
                .output()
                .unwrap();
            // 0: clean, 1: errors corrected; anything else left the file system broken.
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{what}: fsck.ext4 -fy {}: {:?}\n{}{}",
                image.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if std::env::var_os("LOCKBOX_FAULT_VERBOSE").is_some() {
                eprintln!("{what}: fsck: {}", String::from_utf8_lossy(&out.stdout));
            }
            disk.mount(&data);
        }
    }
    if d.child.is_none() {
        // The service manager's restart.
        d.spawn(&[]);
    }
    write_resumes(d, &format!("after-{round}"), Duration::from_secs(15));
    check_after_fault(d, &ledger.lock().unwrap(), &what);
    ledger.lock().unwrap().errors.clear();
}

fn run_cycles(mut disk: Disk, name: &str) {
    let seed = seed();
    let cycles: usize = std::env::var("LOCKBOX_FAULT_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    eprintln!("{name}: LOCKBOX_TEST_SEED={seed}, {cycles} cycles");
    let mut dir = tempfile::Builder::new()
        .prefix("faults-daemon-")
        .tempdir()
        .unwrap();
    if std::env::var_os("LOCKBOX_FAULT_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("daemon dir kept in {}", dir.path().display());
    }
    share(dir.path());
    let data = dir.path().join("data");
    disk.mount(&data);
    let mut d = Daemon {
        log: dir.path().join("daemon.log"),
        dir,
        child: None,
        prefix: Vec::new(),
        env: Vec::new(),
    };
    d.spawn(&[]);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut stats = Cycle {
        faults: 0,
        exits: 0,
    };
    for round in 0..cycles {
        cycle(&mut d, &mut disk, seed, round, &ledger, &mut stats);
    }
    let l = ledger.lock().unwrap();
    // The summary `scripts/soak` reports; lost writes and broken chains would have failed above.
    println!(
        "FAULTS {name}: cycles {cycles}, faults {}, daemon exits {}, acknowledged writes {}, failed writes {}, hand-outs {}, lost writes 0, broken chains 0",
        stats.faults, stats.exits, l.acknowledged_writes, l.failed_writes, l.handouts
    );
    assert!(
        l.acknowledged_writes > 0 && l.handouts > 0,
        "the bursts did work"
    );
    drop(l);
    d.stop();
    Disk::unmount(&d.data());
    Disk::unmount(d.dir.path());
}

#[test]
fn disk_full_during_bursts_loses_no_acknowledged_write_and_keeps_the_chain() {
    run_cycles(Disk::Tmpfs, "enospc");
}

/// This used to lose one acknowledged secret in about 1 of 10 runs of 2 cycles. Two causes,
/// both fixed: ext4's `fdatasync` of an append that grew the raft log could return success
/// while racing the journal abort, and the append was gone after the remount (the WAL now
/// overwrites preallocated zeros instead, `wal` module docs); and a `lockbox run` workload's
/// private mount namespace kept the file system alive after the test's unmount, so `fsck`
/// ran on a live file system and the remount could share its aborted superblock (the
/// namespace now follows the host's unmounts; the test also waits for the loop device to be
/// released, or copies an image another process still holds). With the fixes, 30 runs in a
/// row of the final code passed (2 cycles each, about 10 s a run).
#[test]
fn disk_gone_read_only_during_bursts_loses_no_acknowledged_write_and_keeps_the_chain() {
    let mut images = tempfile::Builder::new()
        .prefix("faults-image-")
        .tempdir()
        .unwrap();
    // Forensics: keep the image (and print where) when asked.
    if std::env::var_os("LOCKBOX_FAULT_KEEP").is_some() {
        images.disable_cleanup(true);
        eprintln!("image kept in {}", images.path().display());
    }
    let image = images.path().join("data.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(96 << 20)
        .unwrap();
    sh(&["mkfs.ext4", "-q", "-F", image.to_str().unwrap()]);
    run_cycles(Disk::Ext4 { image }, "erofs");
}

/// `secret rm` used to leave the secret's ID, name and sealed value in the raft log until a
/// routine snapshot purged it. The removal now triggers a snapshot and a purge that rewrites
/// the log: soon after, no raft log file holds the ID or the name.
#[test]
fn a_removed_secret_is_gone_from_the_raft_log_soon_after() {
    let d = Daemon::start();
    let name = format!("faults-doomed-{:x}", seed());
    let id = d.create(&name, b"doomed value");
    d.create("faults-kept", b"kept value");
    let wal = d.data().join("store.wal");
    let log_holds = |needle: &str| {
        crate::keys::walk(&wal).into_iter().any(|p| {
            std::fs::read(&p)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
    };
    assert!(
        log_holds(&id) && log_holds(&name),
        "the test sees the entry"
    );
    let o = d.lb(&["secret", "rm", &name]);
    assert_eq!(o.code, 0, "{o:?}");
    // Writes go on: the purge point is not the end of the log.
    d.create("faults-after", b"after");
    let deadline = Instant::now() + Duration::from_secs(10);
    while log_holds(&id) || log_holds(&name) {
        assert!(
            Instant::now() < deadline,
            "the removed secret is still in the raft log after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = d.lb(&["secret", "ls", "--format", "{{.Name}}"]);
    assert!(o.stdout.contains("faults-kept") && o.stdout.contains("faults-after"));
}

/// More than 8 MiB of secrets in one `lockbox run`: the workload's fixed 16 MiB tmpfs used
/// to hold the set but not a rotation (the new set is written beside the old one), so
/// `secret rotate` succeeded while the workload kept the old value. The tmpfs is now sized
/// from the set and grown before such a rotation.
#[test]
fn a_rotation_into_lockbox_run_with_more_than_8_mib_of_secrets_reaches_the_workload() {
    let d = Daemon::start();
    let big = |tag: &str| {
        let mut v = tag.as_bytes().to_vec();
        v.resize(480 * 1024, b'x');
        v
    };
    let mut args: Vec<String> = vec!["run".into()];
    for i in 0..20 {
        d.create(&format!("faults-big-{i}"), &big("v1"));
        args.push("--secret".into());
        args.push(format!("faults-big-{i}"));
    }
    let work = tempfile::tempdir().unwrap();
    let seen = work.path().join("seen");
    let done = work.path().join("done");
    let script = format!(
        r#"i=0
while [ $i -lt 1500 ]; do
  [ "$(head -c 2 /run/secrets/faults-big-19)" = v2 ] && break
  sleep 0.02; i=$((i+1))
done
head -c 2 /run/secrets/faults-big-19 > {seen}
i=0; while [ ! -e {done} ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done"#,
        seen = seen.display(),
        done = done.display()
    );
    args.extend(["--".into(), "/bin/sh".into(), "-c".into(), script]);
    let sock = d.sock();
    let run = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&sock, &args, None)
    });
    // The workload is up once the daemon lists it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.http("GET", "/v1/workloads", None).1.contains("process") {
        assert!(Instant::now() < deadline, "lockbox run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = d.lb_in(
        &["secret", "rotate", "faults-big-19", "-"],
        Some(&big("v2")),
    );
    assert_eq!(o.code, 0, "{o:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&seen)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the workload never saw the new value"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&done, b"").unwrap();
    let o = run.join().unwrap();
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "v2",
        "the workload sees the rotated value: {}",
        o.stderr
    );
}

/// A `lockbox run` workload's mount namespace used to be a private copy of the host's: a
/// file system the host unmounted stayed mounted (and its device busy) inside every workload
/// started before, so an operator's `umount` + `fsck` of a failed data disk ran on a file
/// system still alive, and the remount could share its aborted superblock (how the read-only
/// fault test lost acknowledged writes). The namespace is now a slave of the host's: the
/// unmount reaches the workload.
#[test]
fn a_host_unmount_reaches_a_running_lockbox_run_workload() {
    let d = Daemon::start();
    d.create("faults-unmount", b"value");
    let work = tempfile::Builder::new()
        .prefix("faults-unmount-")
        .tempdir()
        .unwrap();
    share(work.path());
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=1m,mode=0700",
        "tmpfs",
        mnt.to_str().unwrap(),
    ]);
    let (ready, go, seen) = (
        work.path().join("ready"),
        work.path().join("go"),
        work.path().join("seen"),
    );
    let script = format!(
        r#"grep -c ' {mnt} ' /proc/self/mountinfo > {ready}
i=0; while [ ! -e {go} ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i+1)); done
grep -c ' {mnt} ' /proc/self/mountinfo > {seen}
exit 0"#,
        mnt = mnt.display(),
        ready = ready.display(),
        go = go.display(),
        seen = seen.display()
    );
    let sock = d.sock();
    let run = std::thread::spawn(move || {
        run_cli(
            &sock,
            &[
                "run",
                "--secret",
                "faults-unmount",
                "--",
                "/bin/sh",
                "-c",
                &script,
            ],
            None,
        )
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&ready)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the workload did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&ready).unwrap().trim(),
        "1",
        "the workload sees the host's mount at first"
    );
    Disk::unmount(&mnt);
    std::fs::write(&go, b"").unwrap();
    let o = run.join().unwrap();
    Disk::unmount(work.path());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap().trim(),
        "0",
        "the workload still holds a file system the host unmounted"
    );
}

/// The records of a raft log segment (the documented format: u32 LE length, u32 LE CRC-32,
/// payload; zeros after the last), as (offset of the payload, payload length).
fn wal_records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() && bytes[at..at + 8] != [0; 8] {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at + 8, len));
        at += 8 + len;
    }
    out
}

/// `secret rm` used to leave the sealed value in `store.redb`'s freed pages (redb frees the
/// pages of a removed row without overwriting them) after the raft log dropped it. Within
/// the documented bound, no file under the data directory holds any part of it.
#[test]
fn a_removed_secret_s_sealed_value_is_in_no_file_soon_after() {
    let mut d = Daemon::start();
    let name = format!("faults-sealed-{:x}", seed());
    // Large, so that its ciphertext dominates its log record.
    let value: Vec<u8> = (0..96 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    d.create(&name, &value);
    d.create("faults-sealed-kept", b"kept");
    let wal = d.data().join("store.wal");
    let mut needles = Vec::new();
    for p in crate::keys::walk(&wal) {
        let bytes = std::fs::read(&p).unwrap();
        for (start, len) in wal_records(&bytes) {
            let rec = &bytes[start..start + len];
            if len > 64 * 1024 && rec.windows(name.len()).any(|w| w == name.as_bytes()) {
                // Windows of the sealed value: a quarter, half and three quarters in.
                for q in 1..4 {
                    needles.push(rec[len * q / 4..len * q / 4 + 48].to_vec());
                }
            }
        }
    }
    assert_eq!(
        needles.len(),
        3,
        "the test finds the sealed value in the log"
    );
    // A restart makes the store file durable, with the value written into its pages.
    d.restart(&[]);
    let holders = |needle: &[u8]| -> Vec<PathBuf> {
        crate::keys::walk(&d.data())
            .into_iter()
            .filter(|p| {
                std::fs::read(p)
                    .unwrap_or_default()
                    .windows(needle.len())
                    .any(|w| w == needle)
            })
            .collect()
    };
    assert!(
        holders(&needles[1])
            .iter()
            .any(|p| p.ends_with("store.redb")),
        "the test sees the sealed value in store.redb"
    );
    let o = d.lb(&["secret", "rm", &name]);
    assert_eq!(o.code, 0, "{o:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held: Vec<PathBuf> = needles.iter().flat_map(|n| holders(n)).collect();
        if held.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the removed secret's sealed value is still in {held:?} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = d.lb(&["secret", "ls", "--format", "{{.Name}}"]);
    assert!(o.stdout.contains("faults-sealed-kept"), "{o:?}");
}

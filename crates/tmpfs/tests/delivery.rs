//! Delivery end to end, with real tmpfs mounts, mount namespaces and processes. Needs root; under
//! `CI=true` running without root is a failure, never a skip.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lockbox_tmpfs::{
    AtomicWriter, DATA_DIR, Error, RunOptions, SecretFile, ShimCommand, Staging, Supervisor, reap,
};
use rustix::fs::{Mode, OFlags};

fn require_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("delivery tests need root (mounts, namespaces, chown); CI must run them as root");
    }
    eprintln!("skipping: delivery tests need root");
    false
}

fn shim() -> ShimCommand {
    ShimCommand::new(
        env!("CARGO_BIN_EXE_lockbox-tmpfs-shim"),
        Vec::<String>::new(),
    )
}

/// A scratch directory on disk (never tmpfs): holds mount points and test output only.
fn scratch() -> tempfile::TempDir {
    scratch_named("delivery-")
}

/// Host staging tests mount tmpfs (source "lockbox") in the host namespace on purpose; their
/// scratch directories carry this prefix so the `lockbox run` tests can tell them apart.
const STAGING_PREFIX: &str = "staging-test-";

fn scratch_named(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    // World-writable so a command dropped to --user can write its report.
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
    d
}

fn file(target: &str, data: &[u8]) -> SecretFile {
    SecretFile::new(target, data.to_vec())
}

/// (mount point, options, fs type, source, super options) of every line of a mountinfo file.
fn mountinfo(path: &str) -> Vec<(String, String, String, String, String)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (pre, post) = l.split_once(" - ").unwrap();
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            (
                pre[4].to_owned(),
                pre[5].to_owned(),
                post[0].to_owned(),
                post[1].to_owned(),
                post.get(2).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Runs `sh -c script` under the supervisor; returns the exit code.
fn run_sh(script: &str, files: Vec<SecretFile>, tweak: impl FnOnce(&mut RunOptions)) -> i32 {
    let mut opts = RunOptions::new(["/bin/sh", "-c", script]);
    opts.forward_signals = false;
    tweak(&mut opts);
    Supervisor::spawn(&shim(), opts, files)
        .unwrap()
        .wait()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Atomic writer
// ---------------------------------------------------------------------------------------------

/// A value whose every byte says which generation it belongs to, big enough (96 KiB) that a
/// torn read would show.
fn generation_blob(tag: &str, generation: u64) -> Vec<u8> {
    let unit = format!("{tag}:{generation:08};");
    unit.repeat(96 * 1024 / unit.len()).into_bytes()
}

fn parse_generation(tag: &str, data: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(data).ok()?;
    let first = s.split(';').next()?;
    let g: u64 = first.strip_prefix(&format!("{tag}:"))?.parse().ok()?;
    (data == generation_blob(tag, g).as_slice()).then_some(g)
}

fn read_at(dir: &OwnedFd, name: &str) -> rustix::io::Result<Vec<u8>> {
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut out = Vec::new();
    fs::File::from(fd).read_to_end(&mut out).unwrap();
    Ok(out)
}

#[test]
fn atomic_writer_readers_see_all_old_or_all_new() {
    if !require_root() {
        return;
    }
    let root = scratch_named(STAGING_PREFIX);
    let staging = Staging::create(root.path(), "atomic").unwrap();
    let dir = staging.published_dir();
    let set = |g: u64| {
        vec![
            SecretFile::new("a", generation_blob("a", g)),
            SecretFile::new("b", generation_blob("b", g)),
            SecretFile::new("nested/deeper/c", generation_blob("c", g)),
        ]
    };
    staging.write(&set(0)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let snapshots = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let visible_retries = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, snapshots, retries, visible_retries, dir) = (
            stop.clone(),
            snapshots.clone(),
            retries.clone(),
            visible_retries.clone(),
            dir.clone(),
        );
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut last_single = 0;
            while !stop.load(Ordering::Relaxed) {
                // A consistent snapshot: resolve `..data` once, read every file relative to it.
                let snap = (|| {
                    let d = rustix::fs::open(
                        dir.join(DATA_DIR).as_path(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    Ok::<_, rustix::io::Errno>((
                        read_at(&d, "a")?,
                        read_at(&d, "b")?,
                        read_at(&d, "nested/deeper/c")?,
                    ))
                })();
                match snap {
                    Ok((a, b, c)) => {
                        let ga = parse_generation("a", &a).expect("torn or foreign content in a");
                        let gb = parse_generation("b", &b).expect("torn content in b");
                        let gc = parse_generation("c", &c).expect("torn content in c");
                        assert!(ga == gb && gb == gc, "mixed generations {ga} {gb} {gc}");
                        seen.insert(ga);
                        snapshots.fetch_add(1, Ordering::Relaxed);
                    }
                    // The documented window: the old directory vanished under us. Retry.
                    Err(rustix::io::Errno::NOENT) => {
                        retries.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("reader: {e}"),
                }
                // Through the visible name: always one whole version, never going backwards.
                match fs::read(dir.join("nested/deeper/c")) {
                    Ok(c) => {
                        let g = parse_generation("c", &c).expect("torn content via symlink");
                        assert!(g >= last_single, "went back from {last_single} to {g}");
                        last_single = g;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        visible_retries.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("reader: {e}"),
                }
            }
            seen
        })
    };
    const SWAPS: u64 = 300;
    for g in 1..=SWAPS {
        staging.write(&set(g)).unwrap();
    }
    // Let the reader finish at least a few snapshots of the final state.
    let before = snapshots.load(Ordering::Relaxed);
    wait_until("reader progress", Duration::from_secs(10), || {
        snapshots.load(Ordering::Relaxed) > before + 5
    });
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("reader found an inconsistency");
    eprintln!(
        "{} consistent snapshots over {} generations; ENOENT retries: {} pinned-snapshot, {} by name",
        snapshots.load(Ordering::Relaxed),
        seen.len(),
        retries.load(Ordering::Relaxed),
        visible_retries.load(Ordering::Relaxed)
    );
    assert!(seen.len() >= 3, "reader saw too few generations: {seen:?}");
    assert!(seen.contains(&SWAPS));

    // Exactly one version directory remains, and no temporary link.
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let versions: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("..") && *n != DATA_DIR)
        .collect();
    assert_eq!(versions.len(), 1, "{names:?}");
    assert!(!names.iter().any(|n| n == "..data_tmp"));
    staging.remove().unwrap();
}

#[test]
fn atomic_writer_owner_mode_links_and_duplicate_references() {
    if !require_root() {
        return;
    }
    let root = scratch_named(STAGING_PREFIX);
    let staging = Staging::create(root.path(), "owners").unwrap();
    let dir = staging.published_dir();
    // One secret referenced twice with different owners and modes (Swarm collapses these to the
    // last reference): keyed by target, each keeps its own.
    let pw = b"s3cret-pw".to_vec();
    staging
        .write(&[
            SecretFile::new("pw_app", pw.clone())
                .owner(1000, 1001)
                .mode(0o400),
            SecretFile::new("pw_root", pw.clone()),
            SecretFile::new("conf/app/pw", pw.clone())
                .owner(7, 8)
                .mode(0o640),
            SecretFile::new("gone_later", b"x".to_vec()),
        ])
        .unwrap();
    let check = |name: &str, uid: u32, gid: u32, mode: u32| {
        let m = fs::metadata(dir.join(name)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uid, gid, mode),
            "{name}"
        );
        assert_eq!(fs::read(dir.join(name)).unwrap(), pw, "{name}");
    };
    check("pw_app", 1000, 1001, 0o400);
    check("pw_root", 0, 0, 0o444);
    check("conf/app/pw", 7, 8, 0o640);
    // Visible names are relative symlinks into ..data; nested targets go through their top dir.
    for name in ["pw_app", "pw_root", "conf", "gone_later"] {
        assert_eq!(
            fs::read_link(dir.join(name)).unwrap(),
            PathBuf::from(format!("..data/{name}"))
        );
    }
    let version = fs::read_link(dir.join(DATA_DIR)).unwrap();
    assert!(version.to_string_lossy().starts_with("..20"), "{version:?}");
    assert_eq!(
        fs::metadata(dir.join(&version)).unwrap().mode() & 0o777,
        0o755
    );

    // A rotation that drops a name removes its link and the old version directory.
    staging
        .write(&[SecretFile::new("pw_root", b"new".to_vec()).mode(0o440)])
        .unwrap();
    assert!(fs::symlink_metadata(dir.join("gone_later")).is_err());
    assert!(fs::symlink_metadata(dir.join("conf")).is_err());
    assert!(!dir.join(&version).exists());
    assert_eq!(fs::read(dir.join("pw_root")).unwrap(), b"new");
    assert_eq!(
        fs::metadata(dir.join("pw_root")).unwrap().mode() & 0o777,
        0o440
    );

    // Bad sets are refused before anything changes.
    for bad in [
        vec![file("../x", b"1")],
        vec![file("/etc/x", b"1")],
        vec![file("..data", b"1")],
        vec![file("a", b"1"), file("a/b", b"1")],
    ] {
        assert!(staging.write(&bad).is_err(), "{bad:?}");
    }
    assert!(matches!(
        staging.write(&[file("a", b"1"), file("./a", b"2")]),
        Err(Error::DuplicateTarget(_))
    ));
    assert_eq!(fs::read(dir.join("pw_root")).unwrap(), b"new");
    staging.remove().unwrap();
}

#[test]
fn atomic_writer_refuses_a_disk_directory() {
    // No root needed: this only proves plaintext is never written off tmpfs.
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    match AtomicWriter::open(d.path()) {
        Err(Error::NotTmpfs { magic, .. }) => assert_ne!(magic, lockbox_tmpfs::TMPFS_MAGIC),
        other => panic!("expected NotTmpfs, got {other:?}"),
    }
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Host staging
// ---------------------------------------------------------------------------------------------

#[test]
fn staging_mount_options_removal_and_reap() {
    if !require_root() {
        return;
    }
    let root = scratch_named(STAGING_PREFIX);
    let sroot = root.path().join("staging");
    let s = Staging::create(&sroot, "w1").unwrap();
    assert_eq!(fs::metadata(&sroot).unwrap().mode() & 0o777, 0o700);
    assert_eq!(fs::metadata(s.path()).unwrap().mode() & 0o777, 0o700);
    let mp = s.path().to_string_lossy().into_owned();
    let line = mountinfo("/proc/self/mountinfo")
        .into_iter()
        .find(|m| m.0 == mp)
        .expect("staging tmpfs is mounted");
    assert_eq!(line.2, "tmpfs");
    for opt in ["nosuid", "nodev", "noexec"] {
        assert!(
            line.1.split(',').any(|o| o == opt),
            "{opt} missing: {line:?}"
        );
    }
    assert!(line.4.contains("size=16384k"), "{line:?}");
    assert_eq!(line.4.contains("noswap"), s.noswap(), "{line:?}");
    eprintln!("staging super options: {} (noswap={})", line.4, s.noswap());
    s.write(&[file("x", b"v")]).unwrap();
    assert_eq!(fs::read(s.published_dir().join("x")).unwrap(), b"v");

    assert!(matches!(
        Staging::create(&sroot, "../evil"),
        Err(Error::BadWorkloadId(_))
    ));

    s.remove().unwrap();
    assert!(!Path::new(&mp).exists());
    assert!(!mountinfo("/proc/self/mountinfo").iter().any(|m| m.0 == mp));

    // Crash leftovers: reap unmounts and removes everything not kept.
    let keep = Staging::create(&sroot, "keep").unwrap().persist();
    let lost = Staging::create(&sroot, "lost").unwrap();
    lost.write(&[file("x", b"leftover")]).unwrap();
    let lost = lost.persist();
    let removed = reap(&sroot, |name| name == "keep").unwrap();
    assert_eq!(removed, vec!["lost".to_owned()]);
    assert!(!lost.exists());
    assert!(keep.exists());
    let mounts = mountinfo("/proc/self/mountinfo");
    let lost_s = lost.to_string_lossy();
    assert!(!mounts.iter().any(|m| m.0 == lost_s));
    assert_eq!(reap(&sroot, |_| false).unwrap(), vec!["keep".to_owned()]);
    assert!(!keep.exists());
}

// ---------------------------------------------------------------------------------------------
// Process delivery (`lockbox run`)
// ---------------------------------------------------------------------------------------------

const SECRET: &str = "correct-horse-battery-staple-4f1c";

/// Lines of the host mount table that could belong to a `lockbox run`: nothing may ever show.
/// Any tmpfs named "lockbox" counts, except the host staging tests' own.
fn host_run_mounts(paths: &[&Path]) -> Vec<String> {
    mountinfo("/proc/self/mountinfo")
        .into_iter()
        .filter(|m| {
            m.0 == "/run/secrets"
                || paths.iter().any(|p| Path::new(&m.0) == *p)
                // Staging mounts of other tests running in parallel (this crate's own, and the
                // daemon's per-workload ones under `<data>/workloads/`) are not ours to judge.
                || (m.3 == "lockbox"
                    && !m.0.contains(STAGING_PREFIX)
                    && !m.0.contains("/workloads/"))
        })
        .map(|m| format!("{m:?}"))
        .collect()
}

#[test]
fn run_delivers_read_only_tmpfs_with_owner_and_mode() {
    if !require_root() {
        return;
    }
    let work = scratch();
    let out = work.path().join("out");
    let abs = work.path().join("app-pw");
    let script = format!(
        r#"exec > {out} 2>&1
stat -L -c 'x %u %g %a' /run/secrets/x
stat -L -c 'x_root %u %g %a' /run/secrets/x_root
stat -L -c 'abs %u %g %a' {abs}
[ "$(cat /run/secrets/x)" = "{SECRET}" ] && echo x-content-ok
[ "$(cat {abs})" = "{SECRET}" ] && echo abs-content-ok
[ "$(cat /run/secrets/sub/dir/y)" = "nested" ] && echo nested-ok
( echo overwrite > /run/secrets/x ) 2>/dev/null || echo x-write-refused
( echo overwrite > {abs} ) 2>/dev/null || echo abs-write-refused
( touch /run/secrets/new ) 2>/dev/null || echo dir-write-refused
cat /proc/self/mountinfo > {out}.mountinfo
"#,
        out = out.display(),
        abs = abs.display()
    );
    let before = host_run_mounts(&[&abs]);
    assert!(before.is_empty(), "{before:?}");
    let code = run_sh(
        &script,
        vec![
            file("x", SECRET.as_bytes()).owner(1000, 1001).mode(0o400),
            file("x_root", SECRET.as_bytes()),
            file("sub/dir/y", b"nested").mode(0o600),
            SecretFile::new(&abs, SECRET.as_bytes().to_vec())
                .owner(33, 33)
                .mode(0o440),
        ],
        |_| {},
    );
    let report = read(&out);
    assert_eq!(code, 0, "{report}");
    for want in [
        "x 1000 1001 400",
        "x_root 0 0 444",
        "abs 33 33 440",
        "x-content-ok",
        "abs-content-ok",
        "nested-ok",
        "x-write-refused",
        "abs-write-refused",
        "dir-write-refused",
    ] {
        assert!(
            report.lines().any(|l| l == want),
            "missing {want:?} in\n{report}"
        );
    }
    // Inside: the topmost mount at /run/secrets and at the absolute target are read-only
    // tmpfs with nosuid,nodev,noexec.
    let inside = mountinfo(&format!("{}.mountinfo", out.display()));
    for mp in [
        "/run/secrets".to_owned(),
        abs.to_string_lossy().into_owned(),
    ] {
        let top = inside
            .iter()
            .rev()
            .find(|m| m.0 == mp)
            .unwrap_or_else(|| panic!("no mount at {mp}"));
        assert_eq!(top.2, "tmpfs", "{top:?}");
        let opts: Vec<&str> = top.1.split(',').collect();
        for o in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(opts.contains(&o), "{o} missing at {mp}: {top:?}");
        }
    }
    // Outside: nothing new in the host mount table, the placeholder is gone, and no file on the
    // host's disk holds the secret.
    assert_eq!(host_run_mounts(&[&abs]), before);
    assert!(!abs.exists(), "placeholder left behind");
    if let Ok(entries) = fs::read_dir("/run/secrets") {
        assert_eq!(
            entries.count(),
            0,
            "host /run/secrets must stay an empty mount point"
        );
    }
}

#[test]
fn run_exit_codes_pass_through() {
    if !require_root() {
        return;
    }
    assert_eq!(run_sh("exit 0", vec![], |_| {}), 0);
    assert_eq!(run_sh("exit 7", vec![file("x", b"1")], |_| {}), 7);
    // Killed by a signal: 128 + N, like a shell.
    assert_eq!(run_sh("kill -TERM $$", vec![], |_| {}), 128 + 15);
    assert_eq!(run_sh("kill -KILL $$", vec![], |_| {}), 128 + 9);
    // A command that does not exist fails the spawn with the shim's reason.
    let err = Supervisor::spawn(
        &shim(),
        RunOptions::new(["/nonexistent/lockbox-test-cmd"]),
        vec![file("x", b"1")],
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Shim(m) if m.contains("lockbox-test-cmd")),
        "unexpected error: {err}"
    );
    // A bad target is refused by the shim before anything runs.
    let err = Supervisor::spawn(
        &shim(),
        RunOptions::new(["/bin/true"]),
        vec![file("..data", b"1")],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("reserved"),
        "unexpected error: {err}"
    );
    // A shim command that does not speak the protocol is detected, not waited on forever.
    let err = Supervisor::spawn(
        &ShimCommand::new("/bin/false", Vec::<String>::new()),
        RunOptions::new(["/bin/true"]),
        vec![file("x", b"1")],
    )
    .unwrap_err();
    assert!(matches!(err, Error::ChildGone), "unexpected error: {err}");
}

#[test]
fn run_forwards_signals_and_signal_policy() {
    if !require_root() {
        return;
    }
    let work = scratch();
    let out = work.path().join("out");
    let script = format!(
        r#"trap 'echo got-usr1 >> {out}; exit 0' USR1
trap 'echo got-hup >> {out}' HUP
echo ready >> {out}
i=0; while [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; exit 1"#,
        out = out.display()
    );
    let mut opts = RunOptions::new(["/bin/sh", "-c", &script]);
    opts.forward_signals = true;
    let sup = Supervisor::spawn(&shim(), opts, vec![file("x", b"1")]).unwrap();
    wait_until("child ready", Duration::from_secs(10), || {
        read(&out).contains("ready")
    });
    // The `signal:SIG` rotation policy path: straight to the command through the helper.
    sup.signal(rustix::process::Signal::HUP).unwrap();
    wait_until("HUP delivered", Duration::from_secs(10), || {
        read(&out).contains("got-hup")
    });
    // Forwarding: a signal sent to this (supervising) process reaches the command.
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::USR1)
        .unwrap();
    assert_eq!(sup.wait().unwrap(), 0, "{}", read(&out));
    assert!(read(&out).contains("got-usr1"));
}

#[test]
fn run_rotation_reaches_a_running_child() {
    if !require_root() {
        return;
    }
    let work = scratch();
    let out = work.path().join("out");
    let abs = work.path().join("rotating-abs");
    // The child reads both files in a loop until it has seen v2 in each, and reports anything
    // that is neither v1 nor v2 (a torn or empty read).
    let script = format!(
        r#"i=0
while [ $i -lt 600 ]; do
  r=$(cat /run/secrets/token 2>/dev/null); a=$(cat {abs} 2>/dev/null)
  case "$r" in v1-*|v2-*) ;; *) echo "bad-rel:$r" >> {out};; esac
  case "$a" in v1-*|v2-*) ;; *) echo "bad-abs:$a" >> {out};; esac
  echo "seen $r $a" >> {out}
  case "$r/$a" in v2-*/v2-*) break;; esac
  sleep 0.02; i=$((i+1))
done
stat -L -c 'mode %a %u' /run/secrets/token >> {out}
( echo x > {abs} ) 2>/dev/null || echo abs-still-ro >> {out}
echo "abs-mounts $(grep -c ' {abs} ' /proc/self/mountinfo)" >> {out}
case "$r/$a" in v2-*/v2-*) exit 0;; esac
exit 1"#,
        out = out.display(),
        abs = abs.display()
    );
    let v = |tag: &str| {
        vec![
            file("token", format!("{tag}-rel").as_bytes()).mode(0o444),
            SecretFile::new(&abs, format!("{tag}-abs").into_bytes()),
        ]
    };
    let mut opts = RunOptions::new(["/bin/sh", "-c", &script]);
    opts.forward_signals = false;
    let mut sup = Supervisor::spawn(&shim(), opts, v("v1")).unwrap();
    wait_until("child reads v1", Duration::from_secs(10), || {
        read(&out).contains("seen v1-rel v1-abs")
    });
    let mut v2 = v("v2");
    v2[0] = file("token", b"v2-rel").owner(5, 5).mode(0o400);
    let t = Instant::now();
    sup.rotate(v2).unwrap();
    eprintln!("rotation applied in {:?}", t.elapsed());
    let code = sup.wait().unwrap();
    let report = read(&out);
    assert_eq!(code, 0, "{report}");
    assert!(!report.contains("bad-"), "torn or missing read:\n{report}");
    assert!(report.contains("seen v2-rel v2-abs"), "{report}");
    assert!(report.contains("mode 400 5"), "{report}");
    assert!(report.contains("abs-still-ro"), "{report}");
    // The new bind replaced the old one (MOVE_MOUNT_BENEATH + unmount) instead of stacking.
    assert!(report.contains("abs-mounts 1\n"), "{report}");
    assert!(!abs.exists(), "placeholder left behind");
}

#[test]
fn run_drops_to_user() {
    if !require_root() {
        return;
    }
    // The report must be writable by uid 65534 whatever the checkout's permissions are: use the
    // system temp directory (world-traversable) rather than the target directory.
    let work = tempfile::Builder::new()
        .prefix("delivery-user-")
        .tempdir()
        .unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let out = work.path().join("out");
    let script = format!(
        r#"exec > {out} 2>&1
echo "uid $(id -u) gid $(id -g) groups $(id -G)"
grep NoNewPrivs /proc/self/status
[ "$(cat /run/secrets/mine)" = "mine" ] && echo mine-readable
cat /run/secrets/roots >/dev/null 2>&1 || echo roots-refused
"#,
        out = out.display()
    );
    let code = run_sh(
        &script,
        vec![
            file("mine", b"mine").owner(65534, 65534).mode(0o400),
            file("roots", b"roots").mode(0o400),
        ],
        |o| o.user = Some((65534, 65534)),
    );
    let report = read(&out);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("uid 65534 gid 65534 groups 65534\n"),
        "{report}"
    );
    assert!(report.contains("NoNewPrivs:\t1"), "{report}");
    assert!(report.contains("mine-readable"), "{report}");
    assert!(report.contains("roots-refused"), "{report}");
}

#[test]
fn run_keeps_secret_out_of_argv_and_environment() {
    if !require_root() {
        return;
    }
    let work = scratch();
    let out = work.path().join("out");
    let script = format!("echo ready > {}; exec sleep 30", out.display());
    let mut opts = RunOptions::new(["/bin/sh", "-c", &script]);
    opts.forward_signals = false;
    opts.env
        .push(("DB_PASSWORD_FILE".into(), "/run/secrets/db".into()));
    let sup = Supervisor::spawn(&shim(), opts, vec![file("db", SECRET.as_bytes())]).unwrap();
    wait_until("child ready", Duration::from_secs(10), || {
        read(&out).contains("ready")
    });
    for pid in [sup.command_pid(), sup.shim_pid()] {
        for what in ["environ", "cmdline"] {
            let data = fs::read(format!("/proc/{pid}/{what}")).unwrap();
            assert!(!data.is_empty() || what == "environ");
            assert!(
                !String::from_utf8_lossy(&data).contains(SECRET),
                "secret in /proc/{pid}/{what}"
            );
        }
    }
    // The path convention did arrive.
    let env = fs::read(format!("/proc/{}/environ", sup.command_pid())).unwrap();
    assert!(String::from_utf8_lossy(&env).contains("DB_PASSWORD_FILE=/run/secrets/db"));
    // The command sees the secret; the host's /run/secrets does not.
    let ns_file = format!("/proc/{}/root/run/secrets/db", sup.command_pid());
    assert_eq!(
        fs::read_to_string(&ns_file).ok().as_deref(),
        Some(SECRET),
        "via the command's mount namespace"
    );
    assert!(!Path::new("/run/secrets/db").exists());
    sup.kill().unwrap();
    assert_eq!(sup.wait().unwrap(), 128 + 9);
}

/// Pipes, sockets and anonymous inodes (pidfds…) this process holds open right now.
fn own_pipes() -> HashSet<String> {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| is_channel(l))
        .collect()
}

fn is_channel(link: &str) -> bool {
    ["pipe:", "socket:", "anon_inode:"]
        .iter()
        .any(|p| link.starts_with(p))
}

#[test]
fn run_secret_pipes_are_not_inherited_by_the_command() {
    if !require_root() {
        return;
    }
    let work = scratch();
    let out = work.path().join("out");
    // Pipes the command may legitimately hold: those this process had before the run (stdio
    // of the test harness). The control and status pipes are created later and must not leak.
    let before = own_pipes();
    let script = format!(
        "for f in /proc/$$/fd/*; do readlink $f; done > {} 2>&1; exit 0",
        out.display()
    );
    assert_eq!(run_sh(&script, vec![file("x", b"1")], |_| {}), 0);
    let listing = read(&out);
    let leaked: Vec<&str> = listing
        .lines()
        .filter(|l| is_channel(l) && !before.contains(*l))
        .collect();
    assert!(leaked.is_empty(), "leaked {leaked:?}; all fds:\n{listing}");
    assert!(listing.lines().count() >= 3, "{listing}");
}

#[test]
fn run_does_not_double_deliver_terminal_signals() {
    if !require_root() {
        return;
    }
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let work = scratch();
    let out = work.path().join("out");
    // A real terminal: ^C makes the kernel signal the whole foreground process group, which the
    // command is part of. Supervisor and helper must not relay that one again.
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave_path = ptsname(&master, Vec::new()).unwrap();
    let slave = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlags::NOCTTY.bits() as i32)
        .open(slave_path.to_str().unwrap())
        .unwrap();
    // setsid -c: a new session whose controlling terminal is the pty, like a login shell's job.
    let mut run = std::process::Command::new("setsid")
        .args([
            "-c",
            "-w",
            env!("CARGO_BIN_EXE_lockbox-tmpfs-shim"),
            "--supervise",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_lockbox-tmpfs-shim"))
        .arg("--record-signals")
        .arg(&out)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    wait_until("child ready", Duration::from_secs(10), || {
        read(&out).contains("ready")
    });
    let mut m = fs::File::from(master);
    m.write_all(b"\x03").unwrap();
    wait_until("SIGINT delivered", Duration::from_secs(10), || {
        read(&out).contains("INT")
    });
    // Give any relayed duplicate time to arrive.
    std::thread::sleep(Duration::from_millis(500));
    let report = read(&out);
    let ints: Vec<&str> = report.lines().filter(|l| l.starts_with("INT")).collect();
    assert_eq!(
        ints,
        ["INT kernel"],
        "terminal ^C must arrive once, from the terminal"
    );
    // A signal sent to `lockbox run` by a process (not the terminal) is relayed.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(run.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let st = run.wait().unwrap();
    assert_eq!(st.code(), Some(128 + 15), "{}", read(&out));
}

/// 20 files of 500 KiB (Docker's largest secret) starting with `tag`: 10 MB, more than half
/// the default 16 MiB tmpfs.
fn big_set(tag: &str) -> Vec<SecretFile> {
    (0..20)
        .map(|i| {
            let mut data = tag.as_bytes().to_vec();
            data.resize(500 * 1024, b'x');
            file(&format!("big-{i}"), &data)
        })
        .collect()
}

/// More than 8 MiB of secrets: the fixed 16 MiB tmpfs used to fit the set but not a rotation
/// (the new set is written beside the old one), and the rotation failed while the command
/// kept the old values. The tmpfs is now sized from the set and grown before a rotation.
#[test]
fn run_rotation_of_a_set_larger_than_half_the_default_tmpfs_reaches_the_child() {
    if !require_root() {
        return;
    }
    let work = scratch();
    let out = work.path().join("out");
    let done = work.path().join("done");
    let script = format!(
        r#"i=0
while [ $i -lt 1500 ]; do
  h=$(head -c 2 /run/secrets/big-19 2>/dev/null)
  [ "$h" = v2 ] && break
  sleep 0.02; i=$((i+1))
done
echo "last $h" >> {out}
df -B1 --output=size /run/secrets | tail -1 >> {out}
# Outlive the rotation's reply to the supervisor.
i=0; while [ ! -e {done} ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done
[ "$h" = v2 ]"#,
        out = out.display(),
        done = done.display()
    );
    let mut opts = RunOptions::new(["/bin/sh", "-c", &script]);
    opts.forward_signals = false;
    let mut sup = Supervisor::spawn(&shim(), opts, big_set("v1")).unwrap();
    sup.rotate(big_set("v2"))
        .expect("a rotation of a 10 MB set fits (the tmpfs grows)");
    fs::write(&done, b"").unwrap();
    let code = sup.wait().unwrap();
    let report = read(&out);
    assert_eq!(code, 0, "the command saw the new value: {report}");
    let size: u64 = report.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(
        size >= 2 * 20 * 500 * 1024,
        "tmpfs sized from the set: {report}"
    );
}

/// The placeholder for an absolute target is root's write into a directory the workload's
/// user may control. Re-pointing a symlinked parent during the run used to make root create
/// a file in one root-only directory (a rotation's new target) and, at exit, delete an
/// unrelated empty file in another.
#[test]
fn run_placeholders_never_follow_a_symlink_even_one_re_pointed_during_the_run() {
    if !require_root() {
        return;
    }
    let work = scratch();
    let w = work.path();
    let state = w.join("state");
    let real = w.join("real");
    let victim = w.join("victim");
    fs::create_dir(&real).unwrap();
    fs::create_dir(&victim).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).unwrap();
    // An unrelated empty file, where the placeholder would be if the path were followed.
    fs::write(victim.join("x"), b"").unwrap();
    std::os::unix::fs::symlink(&real, w.join("link")).unwrap();
    let opts = |script: &str| {
        let mut o = RunOptions::new(["/bin/sh", "-c", script]);
        o.forward_signals = false;
        o.state_dir = state.clone();
        o
    };

    // A symlink on the path is refused outright, naming the target.
    let err = Supervisor::spawn(
        &shim(),
        opts("true"),
        vec![SecretFile::new(w.join("link/x"), b"v1".to_vec())],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("symlink") && err.contains("link/x"), "{err}");
    assert!(!real.join("x").exists(), "nothing created through the link");

    // A real path, re-pointed while the command runs.
    let done = w.join("done");
    let script = format!(
        "i=0; while [ ! -e {d} ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done",
        d = done.display()
    );
    let mut sup = Supervisor::spawn(
        &shim(),
        opts(&script),
        vec![SecretFile::new(real.join("x"), b"v1".to_vec())],
    )
    .unwrap();
    assert!(real.join("x").exists(), "placeholder made");
    let records: Vec<_> = fs::read_dir(&state).unwrap().collect();
    assert_eq!(records.len(), 1, "the placeholder is recorded");
    assert_eq!(
        fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let moved = w.join("moved");
    fs::rename(&real, &moved).unwrap();
    std::os::unix::fs::symlink(&victim, &real).unwrap();

    // A rotation that adds a target under the re-pointed path must not create it in victim/.
    let err = sup
        .rotate(vec![
            SecretFile::new(real.join("x"), b"v2".to_vec()),
            SecretFile::new(real.join("y"), b"v2".to_vec()),
        ])
        .unwrap_err()
        .to_string();
    assert!(err.contains("symlink"), "{err}");
    assert!(
        !victim.join("y").exists(),
        "root wrote into the victim directory"
    );

    fs::write(&done, b"").unwrap();
    assert_eq!(sup.wait().unwrap(), 0);
    assert!(
        victim.join("x").exists(),
        "the unrelated empty file was deleted through the re-pointed path"
    );
    assert!(
        !moved.join("x").exists(),
        "the placeholder itself is removed, where it really is"
    );
    assert_eq!(fs::read_dir(&state).unwrap().count(), 0, "record removed");
}

/// `kill -9` of the supervisor used to leave the command running unsupervised and a mode-0
/// placeholder behind for good ("already exists" on the next run). Now the helper kills the
/// command when its supervisor dies, and the next supervisor reaps the recorded placeholder.
#[test]
fn run_supervisor_killed_with_sigkill_takes_the_command_down_and_its_placeholder_is_reaped() {
    if !require_root() {
        return;
    }
    let work = scratch();
    let w = work.path();
    let state = w.join("state");
    let target = w.join("etc-like/app.conf");
    fs::create_dir(w.join("etc-like")).unwrap();
    let pidfile = w.join("command.pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
    let mut sup = std::process::Command::new(env!("CARGO_BIN_EXE_lockbox-tmpfs-shim"))
        .arg("--supervise")
        .arg("--abs")
        .arg(&target)
        .arg("--state")
        .arg(&state)
        .args(["--", "/bin/sh", "-c", &script])
        .spawn()
        .unwrap();
    wait_until("command started", Duration::from_secs(10), || {
        read(&pidfile).trim().parse::<u32>().is_ok()
    });
    let command: u32 = read(&pidfile).trim().parse().unwrap();
    assert!(target.exists(), "placeholder made");
    sup.kill().unwrap();
    sup.wait().unwrap();
    wait_until(
        "the command dies with its supervisor",
        Duration::from_secs(10),
        || fs::read_to_string(format!("/proc/{command}/stat")).map_or(true, |s| s.contains(") Z ")),
    );
    assert!(target.exists(), "a killed supervisor cannot clean up");
    assert_eq!(
        fs::read_dir(&state).unwrap().count(),
        1,
        "but it left a record"
    );

    // The next run reaps it, and can use the same target.
    let code = std::process::Command::new(env!("CARGO_BIN_EXE_lockbox-tmpfs-shim"))
        .arg("--supervise")
        .arg("--abs")
        .arg(&target)
        .arg("--state")
        .arg(&state)
        .args(["--", "/bin/sh", "-c"])
        .arg(format!("cat {}", target.display()))
        .status()
        .unwrap();
    assert!(code.success(), "the second run delivers to the same target");
    assert!(
        !target.exists(),
        "placeholder reaped, then the new one removed"
    );
    assert_eq!(fs::read_dir(&state).unwrap().count(), 0);
}

/// The daemon's staging tmpfs (containers: `docker run`, compose, services) grows the same
/// way before a rotation of a set larger than half its size.
#[test]
fn staging_rotation_of_a_set_larger_than_half_the_default_tmpfs_fits() {
    if !require_root() {
        return;
    }
    let work = scratch_named(STAGING_PREFIX);
    let staging = Staging::create(work.path(), "faults-big").unwrap();
    staging.write(&big_set("v1")).unwrap();
    staging
        .write(&big_set("v2"))
        .expect("the staging tmpfs grows before the rotation");
    let got = fs::read(staging.published_dir().join("big-19")).unwrap();
    assert!(got.starts_with(b"v2"));
    staging.remove().unwrap();
}

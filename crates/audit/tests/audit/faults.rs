//! Disk faults during appends, on a real small tmpfs (the tests run as root): a full file
//! system (ENOSPC, with a short write before it) and one forced read-only (EROFS). After
//! each, the log must still verify and go on chaining once the fault is gone.
use std::path::{Path, PathBuf};
use std::process::Command;

use lockbox_audit::{AuditError, AuditLog, Event, GroupCommit, verify};

/// A tmpfs of `size` mounted on a fresh temp dir; unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("faults-audit-")
            .tempdir()
            .unwrap();
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            dir.path().to_str().unwrap(),
        ]);
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0xa5u8; 4096];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", filler.display()),
            }
        }
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {} (these tests need root to mount a tmpfs)",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn event(i: usize) -> Event {
    Event::new("create", "uid:0")
        .object(
            "secret",
            &format!("id{i:04}"),
            &format!("a-long-enough-name-{i:04}"),
        )
        .version(1)
        .detail("padding", &"p".repeat(200))
}

fn assert_verifies(path: &Path, records: u64) {
    let v = verify(path).unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.records, records);
    let text = std::fs::read(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with(b"\n"),
        "no partial line is left"
    );
}

#[test]
fn a_full_disk_leaves_no_partial_line_and_the_chain_goes_on_when_space_returns() {
    let fs = SmallFs::mount("256k");
    let path = fs.path().join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    for i in 0..3 {
        log.append(event(i)).unwrap();
    }
    let filler = fs.fill();
    let before = std::fs::metadata(&path).unwrap().len();
    // The file's last page still has room, so the write starts (a short write) and then
    // meets ENOSPC: the case that used to leave half a record behind.
    let batch: Vec<Event> = (3..60).map(event).collect();
    let err = log.append_batch(batch).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AuditError::Append { .. }), "{err:?}");
    assert!(
        msg.contains("No space left on device"),
        "the cause is named: {msg}"
    );
    assert!(
        msg.contains(&path.display().to_string()),
        "the file is named: {msg}"
    );
    assert!(msg.contains("last good record"), "{msg}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before, "cut back");
    assert_eq!(log.len(), 3, "the head in memory did not move");
    assert!(!log.is_poisoned());
    assert_verifies(&path, 3);

    std::fs::remove_file(&filler).unwrap();
    let r = log.append(event(99)).unwrap();
    assert_eq!(r.seq, 4);
    assert_verifies(&path, 4);
    drop(log);
    let log = AuditLog::open(&path).unwrap();
    assert_eq!((log.len(), log.torn_tail()), (4, 0));
}

#[test]
fn group_commit_callers_all_get_the_cause_and_the_log_stays_verifiable() {
    let fs = SmallFs::mount("256k");
    let path = fs.path().join("audit.log");
    let gc = std::sync::Arc::new(GroupCommit::start(AuditLog::open(&path).unwrap()));
    gc.append(event(0)).unwrap();
    let filler = fs.fill();
    let mut failed = 0;
    let mut acknowledged = 1;
    for round in 0..20 {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let gc = gc.clone();
                std::thread::spawn(move || gc.append(event(round * 10 + t)))
            })
            .collect();
        for t in threads {
            match t.join().unwrap() {
                Ok(_) => acknowledged += 1,
                Err(e) => {
                    assert!(e.to_string().contains("No space left on device"), "{e}");
                    failed += 1;
                }
            }
        }
    }
    assert!(failed > 0, "the disk was full");
    assert_verifies(&path, acknowledged);
    std::fs::remove_file(&filler).unwrap();
    gc.append(event(1000)).unwrap();
    assert_verifies(&path, acknowledged + 1);
}

/// A small ext4 file system on a loop device, mounted with `errors=remount-ro`: unlike a
/// tmpfs (whose remount fails while files are open for writing), it can be forced read-only
/// under open files, as a disk with errors is.
struct Ext4Loop {
    dir: tempfile::TempDir,
    image: PathBuf,
    mnt: PathBuf,
}

impl Ext4Loop {
    fn mount() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("faults-audit-ext4-")
            .tempdir()
            .unwrap();
        let image = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        run(&["mkfs.ext4", "-q", "-F", image.to_str().unwrap()]);
        let me = Self { dir, image, mnt };
        me.attach();
        me
    }

    fn attach(&self) {
        run(&[
            "mount",
            "-o",
            "loop,errors=remount-ro",
            self.image.to_str().unwrap(),
            self.mnt.to_str().unwrap(),
        ]);
    }

    /// What the kernel does on a metadata error: the file system turns read-only at once.
    fn fail(&self) {
        let out = Command::new("findmnt")
            .args(["-no", "SOURCE"])
            .arg(&self.mnt)
            .output()
            .unwrap();
        let dev = String::from_utf8(out.stdout).unwrap();
        let dev = dev.trim().rsplit('/').next().unwrap().to_string();
        std::fs::write(format!("/sys/fs/ext4/{dev}/trigger_fs_error"), "1").unwrap();
    }

    /// An operator's repair: unmount, fsck, mount again.
    fn repair(&self) {
        run(&["umount", self.mnt.to_str().unwrap()]);
        // fsck exits 1 when it fixed something, which is expected here.
        let _ = Command::new("fsck.ext4")
            .args(["-p"])
            .arg(&self.image)
            .status()
            .unwrap();
        self.attach();
    }
}

impl Drop for Ext4Loop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = &self.dir;
    }
}

#[test]
fn a_file_system_gone_read_only_poisons_the_writer_and_a_reopen_goes_on_with_the_chain() {
    let fs = Ext4Loop::mount();
    let path = fs.mnt.join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    log.append(event(0)).unwrap();
    log.append(event(1)).unwrap();
    fs.fail();
    let err = log.append(event(2)).unwrap_err().to_string();
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(
        log.is_poisoned(),
        "the cut-back could not be written either"
    );
    let again = log.append(event(3)).unwrap_err().to_string();
    assert!(again.contains("every append is refused"), "{again}");
    assert_eq!(log.len(), 2);
    drop(log);
    fs.repair();
    assert_verifies(&path, 2);
    let mut log = AuditLog::open(&path).unwrap();
    let r = log.append(event(4)).unwrap();
    assert_eq!(r.seq, 3);
    assert_verifies(&path, 3);
}

#[test]
fn damage_before_the_last_line_is_refused_at_open_with_the_line_and_the_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    for i in 0..3 {
        log.append(event(i)).unwrap();
    }
    drop(log);
    // What the old append left after a failed write: half a record with the next record
    // glued onto the same line, then more records chained behind it.
    let good = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let glued = format!(
        "{}\n{}\n{}{}\n",
        lines[0],
        lines[1],
        &lines[2][..40],
        lines[2]
    );
    std::fs::write(&path, glued).unwrap();
    let err = AuditLog::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, AuditError::Damaged { line: 3, .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("is damaged: line 3: not a valid record"),
        "{msg}"
    );
    assert!(msg.contains("mv "), "the remedy is given: {msg}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().count(),
        3,
        "a refused log is left as it was, as evidence"
    );
}

#[test]
fn a_line_that_is_not_utf8_is_named_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    log.append(event(0)).unwrap();
    drop(log);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"\xff\xfe\n");
    std::fs::write(&path, &bytes).unwrap();
    let v = verify(&path).unwrap();
    assert!(
        !v.ok && v.problem.as_deref().unwrap().starts_with("line 2"),
        "{v:?}"
    );
    let err = AuditLog::open(&path).unwrap_err();
    assert!(
        matches!(err, AuditError::Damaged { line: 2, .. }),
        "{err:?}"
    );
}

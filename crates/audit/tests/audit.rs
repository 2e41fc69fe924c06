//! The audit chain, tested through files on disk.
use lockbox_audit::{AuditLog, Event, read, verify};

fn log_with(n: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    for i in 0..n {
        log.append(
            Event::new("create", "uid:0")
                .object("secret", &format!("id{i}"), &format!("name{i}"))
                .version(1),
        )
        .unwrap();
    }
    (dir, path)
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &std::path::Path, l: &[String]) {
    std::fs::write(path, l.join("\n") + "\n").unwrap();
}

#[test]
fn chain_verifies_and_survives_reopen() {
    let (_d, path) = log_with(5);
    let v = verify(&path).unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.records, 5);
    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.len(), 5);
    let r = log.append(Event::new("remove", "uid:0")).unwrap();
    assert_eq!(r.seq, 6);
    assert!(verify(&path).unwrap().ok);
    assert_eq!(read(&path, None).unwrap().len(), 6);
}

#[test]
fn edited_record_is_found() {
    let (_d, path) = log_with(4);
    let mut l = lines(&path);
    l[2] = l[2].replace("name2", "nameX");
    write_lines(&path, &l);
    let v = verify(&path).unwrap();
    assert!(!v.ok);
    assert!(
        v.problem
            .as_deref()
            .unwrap()
            .starts_with("line 3 (record 3): edited"),
        "{v:?}"
    );
}

#[test]
fn removed_record_is_found() {
    let (_d, path) = log_with(4);
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    let v = verify(&path).unwrap();
    assert!(!v.ok);
    assert!(
        v.problem
            .as_deref()
            .unwrap()
            .contains("record 2 is missing"),
        "{v:?}"
    );
}

#[test]
fn reordered_records_are_found() {
    let (_d, path) = log_with(4);
    let mut l = lines(&path);
    l.swap(1, 2);
    write_lines(&path, &l);
    let v = verify(&path).unwrap();
    assert!(!v.ok);
    assert!(
        v.problem
            .as_deref()
            .unwrap()
            .starts_with("line 2: expected record 2, found 3"),
        "{v:?}"
    );
}

#[test]
fn rehashed_forgery_breaks_the_link() {
    // An attacker who edits a record and recomputes its hash still breaks the next link.
    let (_d, path) = log_with(3);
    let mut recs = read(&path, None).unwrap();
    recs[0].name = Some("forged".into());
    let mut l = lines(&path);
    // Recompute the forged hash the way the log does by re-appending into a scratch log.
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("a.log");
    let mut s = AuditLog::open(&scratch).unwrap();
    let mut e = Event::new(&recs[0].action, &recs[0].actor)
        .object("secret", "id0", "forged")
        .version(1);
    e.detail = recs[0].detail.clone();
    let forged = s.append(e).unwrap();
    l[0] = serde_json::to_string(&forged).unwrap();
    write_lines(&path, &l);
    let v = verify(&path).unwrap();
    assert!(!v.ok);
    assert!(
        v.problem.as_deref().unwrap().contains("chain broken"),
        "{v:?}"
    );
}

#[test]
fn file_is_private() {
    let (_d, path) = log_with(1);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_torn_last_record_is_dropped_and_a_corrupt_complete_one_refused() {
    let (_d, path) = log_with(3);
    let good = std::fs::read(&path).unwrap();
    // A crash mid-append: a partial record with no newline.
    let mut torn = good.clone();
    torn.extend_from_slice(br#"{"seq":4,"time":"2026-"#);
    std::fs::write(&path, &torn).unwrap();
    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.torn_tail(), 22);
    assert_eq!(log.len(), 3);
    assert_eq!(std::fs::read(&path).unwrap(), good);
    log.append(Event::new("after", "uid:0")).unwrap();
    assert!(verify(&path).unwrap().ok);
    // A whole torn file (no complete line at all) is emptied, not refused.
    std::fs::write(&path, br#"{"seq":1,"ti"#).unwrap();
    let log = AuditLog::open(&path).unwrap();
    assert_eq!((log.len(), log.torn_tail()), (0, 12));
    // A complete last line that does not parse is corruption: refused.
    let mut bad = good.clone();
    bad.extend_from_slice(b"not json\n");
    std::fs::write(&path, &bad).unwrap();
    let e = AuditLog::open(&path).unwrap_err();
    assert!(e.to_string().contains("line 4"), "{e}");
}

#[test]
fn group_commit_from_many_threads_keeps_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    let gc = std::sync::Arc::new(lockbox_audit::GroupCommit::start(log));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let gc = gc.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        gc.append(Event::new("create", &format!("uid:{t}-{i}")))
                            .unwrap()
                            .seq
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=400).collect::<Vec<u64>>(),
        "every append got its own sequence number"
    );
    assert_eq!(gc.len(), 400);
    let v = lockbox_audit::verify(&path).unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.records, 400);
}

#[path = "audit/faults.rs"]
mod faults;

//! Autolock, unlock keys, KEK rotation and the audit chain, through the real daemon.
use crate::support::Daemon;

#[test]
fn autolock_locks_after_restart_until_unlocked() {
    let mut d = Daemon::start_with(&["--autolock"]);
    // The daemon never prints the key (security finding 5); an administrator reads it.
    let key = d.lb(&["unlock-key", "-q"]).stdout.trim().to_string();
    assert_eq!(key.len(), "LBXKEY-1-".len() + 43);
    d.create("db", b"value");
    assert_eq!(
        d.lb(&["info", "--format", "{{.KeyMode}}"]).stdout,
        "autolock\n"
    );
    let o = d.lb(&["unlock-key", "-q"]);
    assert_eq!(o.stdout.trim(), key);
    // The key is nowhere on disk.
    for e in walk(&d.data()) {
        let bytes = std::fs::read(&e).unwrap();
        assert!(
            !bytes
                .windows(key.len() - 9)
                .any(|w| w == &key.as_bytes()[9..]),
            "{}",
            e.display()
        );
    }

    d.restart(&[]);
    let o = d.lb(&["secret", "ls"]);
    assert_eq!(o.code, 4);
    assert_eq!(
        o.stderr.trim_end(),
        "Error response from daemon: lockbox is encrypted and needs to be unlocked before it can be used. Please use \"lockbox unlock\" to unlock it."
    );
    let (st, _) = d.http("GET", "/v1/secrets", None);
    assert_eq!(st, 503);
    assert_eq!(
        d.lb(&["info", "--format", "{{.LockState}}"]).stdout,
        "locked\n"
    );

    let o = d.lb_in(&["unlock"], Some(b"not-a-key\n"));
    assert_eq!(
        o.stderr.trim_end(),
        "Error response from daemon: invalid key string"
    );
    let (st, _) = d.http("POST", "/v1/unlock", Some(r#"{"UnlockKey":"garbage"}"#));
    assert_eq!(st, 400);
    let wrong = format!("LBXKEY-1-{}", "A".repeat(43));
    let (st, b) = d.http(
        "POST",
        "/v1/unlock",
        Some(&format!(r#"{{"UnlockKey":"{wrong}"}}"#)),
    );
    assert_eq!(
        (st, b.as_str()),
        (
            401,
            "{\"message\":\"lockbox could not be unlocked: invalid key provided\"}\n"
        )
    );
    let o = d.lb_in(&["unlock"], Some(format!("{key}\n").as_bytes()));
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(d.lb(&["secret", "ls", "-q"]).stdout.lines().count(), 1);

    // Rotating the unlock key: the old one stops working after the next restart.
    let o = d.lb(&["unlock-key", "--rotate", "-q"]);
    let new_key = o.stdout.trim().to_string();
    assert_ne!(new_key, key);
    d.restart(&[]);
    let o = d.lb_in(&["unlock"], Some(key.as_bytes()));
    assert!(o.stderr.contains("invalid key provided"), "{o:?}");
    assert_eq!(d.lb_in(&["unlock"], Some(new_key.as_bytes())).code, 0);

    // Disabling autolock: the next start is unlocked.
    assert_eq!(d.lb(&["autolock", "disable"]).code, 0);
    d.restart(&[]);
    assert_eq!(d.lb(&["secret", "ls", "-q"]).code, 0);
    let o = d.lb(&["autolock", "enable"]);
    assert!(o.stdout.contains("LBXKEY-1-"), "{o:?}");

    // Failed unlocks are audited.
    let o = d.lb(&["audit", "ls", "--format", "json"]);
    assert!(
        o.stdout.contains("\"action\":\"unlock-failed\""),
        "{}",
        o.stdout
    );
}

#[test]
fn kek_rotation_rewraps_and_keeps_values() {
    let mut d = Daemon::start();
    d.create("a", b"alpha");
    d.lb_in(&["secret", "rotate", "a", "-"], Some(b"beta"));
    d.lb_in(&["config", "create", "c", "-"], Some(b"gamma"));
    let before = std::fs::read_to_string(d.data().join("keyring.json")).unwrap();
    let o = d.lb(&["kek", "rotate"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("now KEK 2 (3 data keys rewrapped)"),
        "{}",
        o.stdout
    );
    let after = std::fs::read_to_string(d.data().join("keyring.json")).unwrap();
    assert_ne!(before, after);
    // The old key is gone from the ring, and everything still opens after a restart.
    assert!(!after.contains("\"1\""), "{after}");
    d.restart(&[]);
    let o = d.lb(&[
        "config",
        "inspect",
        "--format",
        "{{printf \"%s\" .Spec.Data}}",
        "c",
    ]);
    assert_eq!(o.stdout.trim(), "gamma");
    assert_eq!(d.lb(&["secret", "rollback", "a", "1"]).code, 0);
}

#[test]
fn audit_records_everything_and_verify_finds_tampering() {
    let mut d = Daemon::start();
    d.create("x", b"1");
    d.lb_in(&["secret", "rotate", "x", "-"], Some(b"2"));
    d.lb(&["secret", "update", "x", "--label-add", "a=b"]);
    d.lb(&["secret", "rm", "x"]);
    let o = d.lb(&["audit", "ls", "--format", "json"]);
    let actions: Vec<String> = o
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        actions,
        ["daemon-start", "create", "rotate", "update", "remove"]
    );
    assert_eq!(
        d.lb(&["audit", "ls", "--since", "1h", "--format", "json"])
            .stdout
            .lines()
            .count(),
        5
    );
    assert_eq!(
        d.lb(&[
            "audit",
            "ls",
            "--since",
            "2999-01-01T00:00:00Z",
            "--format",
            "json"
        ])
        .stdout,
        ""
    );
    assert_eq!(d.lb(&["audit", "ls", "--since", "yesterday"]).code, 1);
    let o = d.lb(&["audit", "verify"]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "audit log intact: 5 records, hash chain verified\n")
    );

    d.stop();
    let path = d.data().join("audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"rotate\"", "\"rotatE\"", 1)).unwrap();
    // The daemon refuses to chain new records behind the damage: it does not start, and says
    // where the chain breaks and what to do.
    let o = std::process::Command::new(crate::support::BIN)
        .arg("daemon")
        .arg("--data-dir")
        .arg(d.data())
        .arg("-H")
        .arg(d.sock())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("is damaged: line 3 (record 3): edited") && stderr.contains("mv "),
        "{stderr}"
    );
    // The remedy it names: the damaged log kept aside, a new chain begins.
    std::fs::rename(&path, d.data().join("audit.log.damaged")).unwrap();
    d.spawn(&[]);
    let o = d.lb(&["audit", "verify"]);
    assert_eq!(o.code, 0, "{o:?}");
}

pub(crate) fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
}

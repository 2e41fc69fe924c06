//! `lockbox backup` and `lockbox restore` end to end: a real daemon makes the file, `restore`
//! builds a new data directory offline, a second daemon serves it. Values are compared through
//! `lockbox run` (needs root, like the delivery tests).
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use crate::support::{BIN, Daemon, Out, marker, run_cli};

fn ok(o: Out, what: &str) -> String {
    assert_eq!(o.code, 0, "{what}: {o:?}");
    o.stdout
}

/// A daemon on a data directory that `restore` fills first (not started yet).
fn unstarted() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    Daemon {
        log: dir.path().join("daemon.log"),
        dir,
        child: None,
        prefix: Vec::new(),
        env: Vec::new(),
    }
}

fn key_from(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|w| w.starts_with("LBXKEY-1-"))
        .map(str::to_string)
}

fn backup(d: &Daemon, file: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["backup", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    d.lb(&args)
}

fn restore(file: &Path, dir: &Path, key: &str) -> Out {
    run_cli(
        Path::new("/nonexistent.sock"),
        &[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        Some(format!("{key}\n").as_bytes()),
    )
}

/// Every secret version's value as `lockbox run` delivers it, one `name vN value` a line.
fn values(d: &Daemon, secrets: &[(&str, u64)]) -> String {
    let mut args: Vec<String> = vec!["run".into()];
    let mut script = String::new();
    for (name, v) in secrets {
        args.push("--secret".into());
        args.push(format!("source={name},target={name}_v{v},version={v}"));
        script.push_str(&format!(
            "printf '%s v{v} ' {name}; cat /run/secrets/{name}_v{v}; echo; "
        ));
    }
    args.extend(["--".into(), "sh".into(), "-c".into(), script]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(d.lb(&args), "reading values with lockbox run")
}

/// Listings that must survive a restore unchanged (IDs, names, times, labels, versions).
fn listing(d: &Daemon) -> String {
    let mut out = String::new();
    for (kind, name) in [("secret", "db_pw"), ("secret", "api"), ("config", "app")] {
        out.push_str(&ok(
            d.lb(&[
                kind,
                "inspect",
                name,
                "--format",
                "{{.ID}} {{.Spec.Name}} {{.CreatedAt}} {{.UpdatedAt}} {{json .Spec.Labels}}",
            ]),
            "inspect",
        ));
    }
    for name in ["db_pw", "api"] {
        out.push_str(&ok(
            d.lb(&[
                "secret",
                "versions",
                name,
                "--format",
                "{{.Version}} {{.CreatedAt}} {{.Size}} {{.CreatedBy}} {{.Current}}",
            ]),
            "versions",
        ));
    }
    let (st, body) = d.http("GET", "/v1/configs/app/versions", None);
    assert_eq!(st, 200, "{body}");
    out.push_str(&body);
    out.push_str(&ok(
        d.lb(&["config", "inspect", "app", "--format", "{{.Spec.Data}}"]),
        "config data",
    ));
    out
}

fn encodings(m: &str) -> Vec<(&'static str, Vec<u8>)> {
    let b = m.as_bytes();
    vec![
        ("raw", b.to_vec()),
        (
            "base64",
            base64::engine::general_purpose::STANDARD
                .encode(b)
                .into_bytes(),
        ),
        (
            "base64 (unpadded)",
            base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(b)
                .into_bytes(),
        ),
        (
            "hex",
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
                .into_bytes(),
        ),
        (
            "utf-16",
            m.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
        ),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Writes `bytes` with a freshly computed CRC trailer (a deliberate edit, not damage).
fn with_crc(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - 4);
    let c = crc32(&bytes);
    bytes.extend_from_slice(&c.to_be_bytes());
    bytes
}

#[test]
fn backup_then_restore_brings_every_value_back() {
    let d = Daemon::start();
    let m: Vec<String> = (0..6).map(|_| marker()).collect();
    d.create("db_pw", m[0].as_bytes());
    ok(
        d.lb_in(&["secret", "rotate", "db_pw", "-"], Some(m[1].as_bytes())),
        "rotate",
    );
    ok(
        d.lb_in(&["secret", "rotate", "db_pw", "-"], Some(m[2].as_bytes())),
        "rotate",
    );
    ok(
        d.lb_in(
            &["secret", "create", "--label", "env=prod", "api", "-"],
            Some(m[3].as_bytes()),
        ),
        "create",
    );
    ok(
        d.lb_in(&["config", "create", "app", "-"], Some(m[4].as_bytes())),
        "config",
    );
    let (st, body) = d.http(
        "POST",
        "/v1/configs/app/rotate",
        Some(&format!(
            r#"{{"Data":"{}"}}"#,
            base64::engine::general_purpose::STANDARD.encode(&m[5])
        )),
    );
    assert_eq!(st, 200, "config rotate: {body}");
    ok(
        d.lb(&[
            "service",
            "create",
            "web",
            "--secret",
            "db_pw",
            "--secret",
            "source=api,target=api_key,mode=0400",
        ]),
        "service",
    );
    let all = [("db_pw", 1), ("db_pw", 2), ("db_pw", 3), ("api", 1)];
    let before_values = values(&d, &all);
    for v in &m[..4] {
        assert!(before_values.contains(v.as_str()), "{before_values}");
    }
    let before = listing(&d);

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("lockbox.lbx");
    let o = backup(&d, &file, &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr
            .contains("2 secrets, 1 configs, 1 services (6 versions)"),
        "{o:?}"
    );
    let key = key_from(&o.stderr).expect("a new backup key is printed");
    assert!(o.stderr.contains("Keep it apart"), "{o:?}");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // An existing file is kept unless --force; with it, a new backup (and a new key).
    let o = backup(&d, &file, &[]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("already exists; pass --force"), "{o:?}");
    let o = backup(&d, &file, &["--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    let new_key = key_from(&o.stderr).unwrap();
    assert_ne!(
        new_key, key,
        "every backup without autolock gets its own key"
    );
    let key = new_key;
    // Nothing left behind by the atomic write.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);

    // No value, in any encoding, and not the key, in the file.
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"LBXBAK1\n{"));
    for v in &m {
        for (enc, needle) in encodings(v) {
            assert!(!contains(&bytes, &needle), "marker ({enc}) in the backup");
        }
    }
    assert!(!contains(&bytes, &key.as_bytes()[9..]));
    assert!(!contains(
        &std::fs::read(&d.log).unwrap(),
        &key.as_bytes()[9..]
    ));
    // The header says what is inside, without names.
    let header = bytes.split(|b| *b == b'\n').nth(1).unwrap();
    let header: serde_json::Value = serde_json::from_slice(header).unwrap();
    assert_eq!(header["format"], 1);
    assert_eq!(header["key"], "backup-key");
    assert_eq!(header["secrets"], 2);
    assert!(!String::from_utf8_lossy(&bytes).contains("db_pw"));

    // Standard output works too (and is the same kind of file).
    let o = d.lb(&["backup", "-"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.starts_with("LBXBAK1\n"));

    // The audit log has both backups, with the key kind and never the key.
    let audit = ok(d.lb(&["audit", "ls", "--format", "json"]), "audit");
    assert!(audit.contains("\"backup\""), "{audit}");
    assert!(audit.contains("backup-key"), "{audit}");
    assert!(!audit.contains(&key[9..]));

    // Restore into a directory that does not exist yet, then serve it.
    let mut r = unstarted();
    let o = restore(&file, &r.data(), &key);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("2 secrets, 1 configs, 1 services (6 versions)"),
        "{o:?}"
    );
    let mode = std::fs::metadata(r.data()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let names: Vec<String> = std::fs::read_dir(r.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for f in ["store.redb", "keyring.json", "audit.log"] {
        assert!(names.iter().any(|n| n == f), "{names:?}");
    }
    // The restore left no staging directory behind.
    assert_eq!(std::fs::read_dir(r.dir.path()).unwrap().count(), 1);
    r.spawn(&[]);
    assert_eq!(values(&r, &all), before_values);
    assert_eq!(listing(&r), before);
    // The service came back with its references.
    let o = ok(
        r.lb(&[
            "run",
            "--service",
            "web",
            "--",
            "cat",
            "/run/secrets/api_key",
        ]),
        "service",
    );
    assert_eq!(o, m[3]);
    // The new node's audit chain starts with the restore and verifies.
    let o = r.lb(&["audit", "verify"]);
    assert_eq!(o.code, 0, "{o:?}");
    let audit = ok(r.lb(&["audit", "ls", "--format", "json"]), "audit");
    assert!(audit.contains("\"restore\""), "{audit}");
    // It is a working store: writes go on, and Docker's optimistic update sees the index.
    ok(
        r.lb_in(&["secret", "rotate", "db_pw", "-"], Some(b"after restore")),
        "rotate after restore",
    );
    r.create("new_one", b"x");
    let o = ok(r.lb(&["info", "--format", "{{.Secrets}}"]), "info");
    assert_eq!(o.trim(), "3");
    let idx = ok(
        r.lb(&["secret", "inspect", "api", "--format", "{{.Version.Index}}"]),
        "inspect",
    );
    let (st, body) = r.http(
        "POST",
        &format!("/v1/secrets/api/update?version={}", idx.trim()),
        Some(r#"{"Name":"api","Labels":{"env":"staging"}}"#),
    );
    assert_eq!(st, 200, "{body}");
    // No marker on the new node's disk either.
    for p in walk(&r.data()) {
        let hay = std::fs::read(&p).unwrap();
        for v in &m {
            for (enc, needle) in encodings(v) {
                assert!(!contains(&hay, &needle), "{enc} marker in {}", p.display());
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn restore_refuses_wrong_keys_damage_and_used_directories() {
    let d = Daemon::start();
    d.create("s", b"value-1");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.lbx");
    let o = backup(&d, &file, &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let key = key_from(&o.stderr).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let target = out.path().join("restored");

    let refused = |file: &Path, key: &str, msg: &str| {
        let o = restore(file, &target, key);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(o.stderr.contains(msg), "want {msg:?}: {o:?}");
        assert!(!target.exists(), "nothing written: {o:?}");
        let left: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.iter()
                .all(|n| !n.to_string_lossy().contains("restore")),
            "no staging left: {left:?}"
        );
    };

    // A well-formed key that is not this backup's.
    let wrong = format!("LBXKEY-1-{}", "A".repeat(43));
    refused(&file, &wrong, "the key does not open this backup");
    refused(&file, "not-a-key", "invalid key string");

    // One flipped bit anywhere: in the header, in the key check, in the sealed payload, in
    // the trailer.
    let header_end = 8 + bytes[8..].iter().position(|b| *b == b'\n').unwrap();
    let key_check = 8
        + String::from_utf8_lossy(&bytes[8..header_end])
            .find("key_check")
            .unwrap()
        + 14;
    for at in [
        10,
        key_check,
        header_end + 5,
        (header_end + bytes.len()) / 2,
        bytes.len() - 1,
    ] {
        let mut b = bytes.clone();
        b[at] ^= 0x04;
        let f = out.path().join("flipped.lbx");
        std::fs::write(&f, &b).unwrap();
        refused(&f, &key, "backup is damaged or was not made by lockbox");
    }
    // A deliberate edit that keeps the CRC right: the AEAD still refuses it.
    let text = String::from_utf8_lossy(&bytes[..header_end]).into_owned();
    let edited = text.replace("\"secrets\":1", "\"secrets\":9");
    assert_ne!(edited, text);
    let mut b = edited.into_bytes();
    b.extend_from_slice(&bytes[header_end..]);
    let f = out.path().join("edited.lbx");
    std::fs::write(&f, with_crc(b)).unwrap();
    refused(&f, &key, "backup is damaged or was not made by lockbox");
    let mut b = bytes.clone();
    let mid = (header_end + bytes.len()) / 2;
    b[mid] ^= 1;
    std::fs::write(&f, with_crc(b)).unwrap();
    refused(&f, &key, "backup is damaged or was not made by lockbox");
    // Truncated, and not a backup at all.
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    refused(&f, &key, "backup is damaged or was not made by lockbox");
    std::fs::write(&f, b"hello").unwrap();
    refused(&f, &key, "not a lockbox backup");
    // A newer format is named as such.
    let newer =
        String::from_utf8_lossy(&bytes[..header_end]).replace("\"format\":1", "\"format\":2");
    let mut b = newer.into_bytes();
    b.extend_from_slice(&bytes[header_end..]);
    std::fs::write(&f, with_crc(b)).unwrap();
    refused(&f, &key, "backup format 2 is not supported");

    // A directory in use is refused, naming what is there; an empty one is fine.
    let o = restore(&file, &d.data(), &key);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("is not empty"), "{o:?}");
    assert!(o.stderr.contains("keyring.json"), "{o:?}");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("stray"), b"x").unwrap();
    let o = restore(&file, &target, &key);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("(stray)"), "{o:?}");
    std::fs::remove_file(target.join("stray")).unwrap();
    let o = restore(&file, &target, &key);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(target.join("store.redb").exists());
    // Standard input needs --key-file.
    let o = run_cli(
        Path::new("/nonexistent.sock"),
        &["restore", "-", "--data-dir", "/tmp/x"],
        Some(&bytes),
    );
    assert_eq!(o.code, 2, "{o:?}");
}

#[test]
fn autolock_backups_use_the_unlock_key_and_need_root() {
    let d = Daemon::start_with(&["--autolock"]);
    let unlock = key_from(&d.lb(&["unlock-key", "-q"]).stdout).unwrap();
    d.create("s", b"autolocked-value");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.lbx");

    // Not root: refused by the daemon, nothing written.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(d.sock(), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = {
        use std::os::unix::process::CommandExt as _;
        Command::new(BIN)
            .arg("-H")
            .arg(d.sock())
            .args(["backup", file.to_str().unwrap()])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(!file.exists());
    let (st, _) = d.http("POST", "/v1/backup", None);
    assert_eq!(st, 200, "root over the socket");

    let o = backup(&d, &file, &[]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        key_from(&o.stderr).is_none(),
        "no new key under autolock: {o:?}"
    );
    assert!(o.stderr.contains("sealed with the unlock key"), "{o:?}");
    let audit = ok(d.lb(&["audit", "ls", "--format", "json"]), "audit");
    assert!(
        // The gate refuses a non-root backup before the handler runs (SECURITY.md, "Who may
        // do what"), and records it with the route.
        audit.contains("unlock-key")
            && audit.contains("access-denied")
            && audit.contains("/v1/backup"),
        "{audit}"
    );

    let mut r = unstarted();
    let o = restore(&file, &r.data(), &unlock);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("sealed with the same unlock key"),
        "{o:?}"
    );
    r.spawn(&[]);
    // The restored ring is sealed: locked until the same unlock key is given.
    assert_eq!(r.lb(&["secret", "ls"]).code, 4);
    ok(
        r.lb_in(&["unlock"], Some(format!("{unlock}\n").as_bytes())),
        "unlock",
    );
    assert_eq!(values(&r, &[("s", 1)]), "s v1 autolocked-value\n");
    assert_eq!(r.lb(&["audit", "verify"]).code, 0);
}

#[test]
fn a_cluster_backup_restores_as_a_single_node_that_can_init_again() {
    let (c, _) = crate::cluster::Cluster::start(1, 0, false);
    let d = &c.nodes[0].d;
    d.create("cl_pw", b"cluster-value-1");
    let (st, v) = d.http("GET", "/v1/cluster", None);
    assert_eq!(st, 200, "{v}");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("c.lbx");
    let o = backup(d, &file, &[]);
    assert_eq!(o.code, 0, "{o:?}");
    let key = key_from(&o.stderr).unwrap();

    let mut r = unstarted();
    let o = restore(&file, &r.data(), &key);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!r.data().join("cluster").exists());
    r.spawn(&[]);
    let (st, body) = r.http("GET", "/v1/cluster", None);
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("not part of a cluster"), "{body}");
    assert_eq!(values(&r, &[("cl_pw", 1)]), "cl_pw v1 cluster-value-1\n");
    // A new cluster from the restored node.
    let addr = format!("127.0.0.1:{}", crate::cluster::free_port());
    let body = format!(r#"{{"AdvertiseAddr":"{addr}","ListenAddr":"{addr}"}}"#);
    let (st, v) = r.http("POST", "/v1/cluster/init", Some(&body));
    assert_eq!(st, 200, "cluster init after restore: {v}\n{}", r.log_text());
    assert_eq!(values(&r, &[("cl_pw", 1)]), "cl_pw v1 cluster-value-1\n");
    assert_eq!(r.lb(&["audit", "verify"]).code, 0);
}

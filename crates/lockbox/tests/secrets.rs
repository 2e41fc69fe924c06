//! `lockbox secret …` / `lockbox config …` against a real daemon: Docker's rules and words.
use crate::support::{Daemon, run_cli};

#[test]
fn create_ls_inspect_rm_round_trip() {
    let d = Daemon::start();
    let id = d.create("db_password", b"s3cr3t");
    assert_eq!(id.len(), 25);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    );

    // File input, labels.
    let f = d.dir.path().join("tls.key");
    std::fs::write(&f, b"filedata\n").unwrap();
    let o = d.lb(&[
        "secret",
        "create",
        "--label",
        "env=prod",
        "-l",
        "k=v",
        "-l",
        "novalue",
        "tls_key",
        f.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{o:?}");

    // ls: Docker's header, sorted by name.
    let o = d.lb(&["secret", "ls"]);
    assert_eq!(o.code, 0);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]
    );
    assert!(
        lines[1].contains("db_password") && lines[2].contains("tls_key"),
        "{}",
        o.stdout
    );
    assert!(lines[1].contains("ago"));
    assert_eq!(d.lb(&["secret", "ls", "-q"]).stdout.lines().count(), 2);
    assert_eq!(
        d.lb(&["secret", "ls", "--filter", "name=TLS"])
            .stdout
            .lines()
            .count(),
        2
    );
    assert_eq!(
        d.lb(&[
            "secret",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            "label=env=prod"
        ])
        .stdout,
        "tls_key\n"
    );
    assert_eq!(
        d.lb(&[
            "secret",
            "ls",
            "--format",
            "{{.Name}} {{.Label \"k\"}}",
            "--filter",
            "label=novalue"
        ])
        .stdout,
        "tls_key v\n"
    );

    // inspect: Docker's JSON shape, field order, no Data; labels always an object.
    let o = d.lb(&["secret", "inspect", "db_password"]);
    assert_eq!(o.code, 0);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let obj = v[0].as_object().unwrap();
    assert_eq!(
        obj.keys().collect::<Vec<_>>(),
        ["ID", "Version", "CreatedAt", "UpdatedAt", "Spec"]
    );
    assert_eq!(
        v[0]["Spec"],
        serde_json::json!({"Name": "db_password", "Labels": {}})
    );
    assert!(
        o.stdout.starts_with("[\n    {\n        \"ID\""),
        "4-space indent: {}",
        o.stdout
    );
    assert!(!o.stdout.contains("s3cr3t") && !o.stdout.contains("czNjcjN0"));
    let created = v[0]["CreatedAt"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && created.parse::<jiff::Timestamp>().is_ok(),
        "{created}"
    );
    // By ID prefix, and by name in another case.
    assert_eq!(
        d.lb(&["secret", "inspect", "--format", "{{.Spec.Name}}", &id[..6]])
            .stdout,
        "db_password\n"
    );
    assert_eq!(
        d.lb(&["secret", "inspect", "--format", "{{.ID}}", "DB_PASSWORD"])
            .stdout,
        format!("{id}\n")
    );
    let o = d.lb(&["secret", "inspect", "--pretty", "tls_key"]);
    assert!(
        o.stdout
            .contains("Labels:\n - env=prod\n - k=v\n - novalue\n"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains(" +0000 utc\n"));

    // inspect of a missing one: [] on stdout, Docker's error on stderr, exit 1.
    let o = d.lb(&["secret", "inspect", "nope"]);
    assert_eq!((o.code, o.stdout.as_str()), (1, "[]\n"));
    assert_eq!(
        o.stderr,
        "Error response from daemon: secret nope not found\n"
    );

    // rm continues past failures, prints each argument that worked, exit 1.
    let o = d.lb(&["secret", "rm", "nope", "db_password", &id]);
    assert_eq!(o.code, 1);
    assert_eq!(o.stdout, "db_password\n");
    assert_eq!(
        o.stderr,
        format!(
            "Error response from daemon: secret nope not found\nError response from daemon: secret {id} not found\n"
        )
    );
    assert_eq!(d.lb(&["secret", "ls", "-q"]).stdout.lines().count(), 1);
}

#[test]
fn validation_messages_are_dockers() {
    let d = Daemon::start();
    let o = d.lb_in(&["secret", "create", "x", "-"], Some(b""));
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (1, "error reading from STDIN: data is empty\n")
    );
    let empty = d.dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let o = d.lb(&["secret", "create", "x", empty.to_str().unwrap()]);
    assert_eq!(
        o.stderr,
        format!("error reading from {}: data is empty\n", empty.display())
    );

    let cases: &[(&str, &str)] = &[
        (
            "rs_end_",
            "rpc error: code = InvalidArgument desc = invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]",
        ),
        (
            "_rs",
            "rpc error: code = InvalidArgument desc = invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]",
        ),
    ];
    for (name, msg) in cases {
        let o = d.lb_in(&["secret", "create", name, "-"], Some(b"v"));
        assert_eq!(
            (o.code, o.stderr.trim_end()),
            (1, format!("Error response from daemon: {msg}").as_str()),
            "{name}"
        );
    }
    let long = "a".repeat(65);
    assert_eq!(
        d.lb_in(&["secret", "create", &long, "-"], Some(b"v")).code,
        1
    );
    assert_eq!(
        d.lb_in(&["secret", "create", &"a".repeat(64), "-"], Some(b"v"))
            .code,
        0
    );

    // Size bounds: 511999 accepted, 512000 refused (secrets); configs go to 1023999.
    assert_eq!(
        d.lb_in(
            &["secret", "create", "big_ok", "-"],
            Some(&vec![b'x'; 511_999])
        )
        .code,
        0
    );
    let o = d.lb_in(
        &["secret", "create", "big_no", "-"],
        Some(&vec![b'x'; 512_000]),
    );
    assert_eq!(
        o.stderr.trim_end(),
        "Error response from daemon: rpc error: code = InvalidArgument desc = secret data must be larger than 0 and less than 512000 bytes"
    );
    assert_eq!(
        d.lb_in(
            &["config", "create", "cfg_ok", "-"],
            Some(&vec![b'x'; 1_023_999])
        )
        .code,
        0
    );
    let o = d.lb_in(
        &["config", "create", "cfg_no", "-"],
        Some(&vec![b'x'; 1_024_000]),
    );
    assert!(
        o.stderr
            .contains("config data must be larger than 0 and less than 1024000 bytes"),
        "{o:?}"
    );

    // Case-insensitive uniqueness; the message echoes the requested name.
    d.create("rs_Case", b"v");
    let o = d.lb_in(&["secret", "create", "rs_case", "-"], Some(b"v"));
    assert_eq!(
        o.stderr.trim_end(),
        "Error response from daemon: rpc error: code = AlreadyExists desc = secret rs_case already exists"
    );

    // Client-side label checks, nothing sent.
    let o = d.lb_in(&["secret", "create", "-l", "=v", "lbl", "-"], Some(b"v"));
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("invalid label '=v': empty name"),
        "{}",
        o.stderr
    );
    let o = d.lb_in(&["secret", "create", "-l", "a b", "lbl", "-"], Some(b"v"));
    assert!(
        o.stderr.contains("label 'a b' contains whitespaces"),
        "{}",
        o.stderr
    );
    assert!(d.lb(&["secret", "inspect", "lbl"]).code != 0);

    // Bad filters.
    let o = d.lb(&["secret", "ls", "--filter", "bogus=1"]);
    assert_eq!(
        o.stderr.trim_end(),
        "Error response from daemon: invalid filter 'bogus'"
    );
    let o = d.lb(&["config", "ls", "--filter", "names=x"]);
    assert_eq!(
        o.stderr.trim_end(),
        "Error response from daemon: invalid filter 'names'"
    );
}

#[test]
fn ambiguous_prefix_and_name_beats_prefix() {
    let d = Daemon::start();
    // Make enough secrets that some share a first character.
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(d.create(&format!("s{i}"), b"v"));
    }
    let c = ids[0].chars().next().unwrap().to_string();
    let n = ids.iter().filter(|id| id.starts_with(&c)).count();
    let o = d.lb(&["secret", "inspect", &c]);
    if n > 1 {
        assert_eq!(
            o.stderr.trim_end(),
            format!("Error response from daemon: secret {c} is ambiguous ({n} matches found)")
        );
    } else {
        assert_eq!(o.code, 0);
    }
    // A name that looks like another secret's ID prefix resolves as the name.
    let prefix = &ids[1][..5];
    d.create(prefix, b"named");
    assert_eq!(
        d.lb(&["secret", "inspect", "--format", "{{.Spec.Name}}", prefix])
            .stdout
            .trim(),
        prefix
    );
}

#[test]
fn update_labels_versions_rotate_rollback_prune() {
    let d = Daemon::start_with(&["--keep-versions", "2"]);
    d.create("api_token", b"v1");
    let o = d.lb(&[
        "secret",
        "update",
        "api_token",
        "--label-add",
        "owner=a",
        "--label-add",
        "env=x",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = d.lb(&["secret", "update", "api_token", "--label-rm", "env"]);
    assert_eq!(o.code, 0);
    assert_eq!(
        d.lb(&[
            "secret",
            "inspect",
            "--format",
            "{{json .Spec.Labels}}",
            "api_token"
        ])
        .stdout,
        "{\"owner\":\"a\"}\n"
    );

    for v in 2..=5 {
        let o = d.lb_in(
            &["secret", "rotate", "api_token", "-"],
            Some(format!("v{v}").as_bytes()),
        );
        assert_eq!(
            (o.code, o.stdout.trim()),
            (0, format!("api_token now at version {v}").as_str()),
            "{o:?}"
        );
    }
    // keep 2 old versions besides the current one.
    let o = d.lb(&[
        "secret",
        "versions",
        "api_token",
        "--format",
        "{{.Version}} {{.Current}}",
    ]);
    assert_eq!(o.stdout, "3 false\n4 false\n5 true\n");
    let o = d.lb(&["secret", "rollback", "api_token", "1"]);
    assert_eq!(
        o.stderr.trim_end(),
        "Error response from daemon: secret api_token has no version 1"
    );
    let o = d.lb(&["secret", "rollback", "api_token", "3"]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = d.lb(&["secret", "versions", "api_token"]);
    assert!(o.stdout.contains("6 (rollback of 3)"), "{}", o.stdout);
    // --keep on the command line overrides the daemon's default.
    let o = d.lb_in(
        &["secret", "rotate", "--keep", "0", "api_token", "-"],
        Some(b"v7"),
    );
    assert_eq!(o.code, 0);
    assert_eq!(
        d.lb(&[
            "secret",
            "versions",
            "api_token",
            "--format",
            "{{.Version}}"
        ])
        .stdout,
        "7\n"
    );
    let o = d.lb_in(&["secret", "rotate", "nope", "-"], Some(b"x"));
    assert_eq!(
        o.stderr.trim_end(),
        "Error response from daemon: secret nope not found"
    );
}

#[test]
fn configs_return_their_data() {
    let d = Daemon::start();
    let o = d.lb_in(
        &["config", "create", "-l", "app=web", "nginx_conf", "-"],
        Some(b"server {}\n"),
    );
    assert_eq!(o.code, 0);
    let o = d.lb(&["config", "inspect", "nginx_conf"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v[0]["Spec"]["Data"], "c2VydmVyIHt9Cg==");
    let o = d.lb(&["config", "inspect", "--pretty", "nginx_conf"]);
    assert!(o.stdout.contains("Data:\nserver {}\n"), "{}", o.stdout);
    let lines = d.lb(&["config", "ls"]).stdout;
    assert_eq!(
        lines
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["ID", "NAME", "CREATED", "UPDATED"]
    );
    // Secrets and configs are separate namespaces.
    d.create("nginx_conf", b"x");
    assert_eq!(d.lb(&["config", "rm", "nginx_conf"]).stdout, "nginx_conf\n");
    assert_eq!(d.lb(&["secret", "ls", "-q"]).stdout.lines().count(), 1);
}

#[test]
fn no_daemon_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let o = run_cli(&sock, &["secret", "ls"], None);
    assert_eq!(o.code, 3);
    assert_eq!(
        o.stderr,
        format!(
            "Cannot connect to the lockbox daemon at unix://{}. Is 'lockbox daemon' running?\n",
            sock.display()
        )
    );
}

#[test]
fn info_version_completion_help() {
    let d = Daemon::start();
    d.create("a", b"1");
    let o = d.lb(&["info"]);
    assert_eq!(o.code, 0);
    assert!(
        o.stdout.contains(" Lock state: unlocked\n") && o.stdout.contains(" Key mode: file\n"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains(" Secrets: 1\n"));
    assert!(
        o.stdout
            .contains("WARNING: the key-encryption key is stored in"),
        "{}",
        o.stdout
    );
    let o = d.lb(&["info", "--format", "{{.LockState}} {{.KeyMode}}"]);
    assert_eq!(o.stdout, "unlocked file\n");
    let o = d.lb(&["version"]);
    assert!(o.stdout.contains("Client:\n Version: ") && o.stdout.contains("Server:\n Version: "));
    for sh in ["bash", "zsh", "fish"] {
        let o = d.lb(&["completion", sh]);
        assert_eq!(o.code, 0);
        assert!(o.stdout.contains("secret"), "{sh}");
    }
    for args in [
        &["--help"][..],
        &["secret", "create", "--help"],
        &["secret", "rotate", "--help"],
        &["daemon", "--help"],
    ] {
        let o = d.lb(args);
        assert_eq!(o.code, 0);
        assert!(
            o.stdout.contains("Examples:") || o.stdout.contains("Exit codes"),
            "{args:?}: {}",
            o.stdout
        );
    }
    assert_eq!(d.lb(&["secret", "bogus"]).code, 2);
}

#[test]
fn events_stream_changes() {
    let d = Daemon::start();
    let text = crate::support::events_during(&d, &[], || {
        d.create("ev_one", b"x");
        d.lb(&["secret", "rm", "ev_one"]);
    });
    let evs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = evs.iter().map(|e| e["Action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["create", "remove"]);
    assert_eq!(evs[0]["Type"], "secret");
    assert_eq!(evs[0]["Actor"]["Attributes"]["name"], "ev_one");
}

//! `--format` end to end: the lockbox CLI against a real daemon prints what the docker CLI
//! 28.2.2 printed against a real Swarm for the same objects and templates. The docker side
//! is `crates/gotemplate/tests/docker-recorded.json` (how it was recorded: the top of
//! `crates/gotemplate/tests/gotemplate.rs`); here the daemon gets secrets and configs with
//! the same names, labels and data, and every recorded case whose output does not depend on
//! IDs, times or Go's struct and `[]byte` printing runs through `lockbox`.
use base64::Engine as _;
use serde_json::Value;

use crate::support::Daemon;

/// Cases left out: their output carries IDs, versions or times that differ between the two
/// stores, or a Go struct or type name that JSON cannot stand for (see gotemplate.rs).
const NOT_COMPARABLE: &[&str] = &[
    ".ID",
    "{{json .}}",
    ".Version",
    ".CreatedAt",
    ".UpdatedAt",
    "{{.Spec}}",
    "%T",
];

#[test]
fn lockbox_prints_what_the_docker_cli_printed() {
    let rec: Value =
        serde_json::from_str(include_str!("../../gotemplate/tests/docker-recorded.json")).unwrap();
    let d = Daemon::start();
    // The secrets' values are not in the record; record-docker.py created them with these.
    let secret_values = [b"s3cr3t".to_vec(), b"other".to_vec()];
    for kind in ["secret", "config"] {
        for (i, o) in rec["objects"][kind].as_array().unwrap().iter().enumerate() {
            let mut args = vec![kind.to_string(), "create".into()];
            for (k, v) in o["Spec"]["Labels"].as_object().unwrap() {
                args.push("--label".into());
                args.push(format!("{k}={}", v.as_str().unwrap()));
            }
            args.push(o["Spec"]["Name"].as_str().unwrap().into());
            args.push("-".into());
            let data = match o["Spec"]["Data"].as_str() {
                Some(b) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
                None => secret_values[i].clone(),
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = d.lb_in(&args, Some(&data));
            assert_eq!(out.code, 0, "{out:?}");
        }
    }
    let prefix = rec["prefix"].as_str().unwrap();
    let first = rec["objects"]["secret"][0]["Spec"]["Name"]
        .as_str()
        .unwrap();
    let mut compared = 0;
    let mut failures = Vec::new();
    for c in rec["cases"].as_array().unwrap() {
        let format = c["format"].as_str().unwrap();
        if NOT_COMPARABLE.iter().any(|n| format.contains(n)) {
            continue;
        }
        let cmd = c["cmd"].as_str().unwrap();
        let (kind, verb) = cmd.split_once(' ').unwrap();
        let filter = format!("name={prefix}");
        let args: Vec<&str> = match verb {
            "inspect" => vec![kind, verb, "--format", format, first],
            _ => vec![kind, verb, "--filter", &filter, "--format", format],
        };
        let out = d.lb(&args);
        compared += 1;
        let want = (c["stdout"].as_str().unwrap(), c["stderr"].as_str().unwrap());
        if (out.stdout.as_str(), out.stderr.as_str()) != want {
            failures.push(format!(
                "lockbox {cmd} --format {format:?}\n  docker:  {want:?}\n  lockbox: {:?}",
                (&out.stdout, &out.stderr)
            ));
        }
        // Docker exits 1 on a template error; lockbox calls it a usage error.
        let code = if want.1.is_empty() { 0 } else { 2 };
        if out.code != code {
            failures.push(format!(
                "lockbox {cmd} --format {format:?}: exit {}",
                out.code
            ));
        }
    }
    assert!(compared > 90, "only {compared} cases compared");
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// lockbox's own commands take the same templates: info, version, versions, audit ls,
/// service ls and inspect.
#[test]
fn every_command_with_format_takes_go_templates() {
    let d = Daemon::start();
    d.create("db_pw", b"one");
    assert_eq!(
        d.lb_in(&["secret", "rotate", "db_pw", "-"], Some(b"two"))
            .code,
        0
    );
    let ok = |args: &[&str]| {
        let o = d.lb(args);
        assert_eq!(o.code, 0, "{args:?}: {o:?}");
        o.stdout
    };
    assert_eq!(
        ok(&[
            "info",
            "--format",
            "{{if eq .Secrets 1}}one secret{{end}} {{.LockState}}"
        ]),
        "one secret unlocked\n"
    );
    let v = ok(&[
        "version",
        "--format",
        "{{.Client.Version}}|{{.Server.Version}}",
    ]);
    assert_eq!(v, format!("{0}|{0}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(
        ok(&[
            "secret",
            "versions",
            "db_pw",
            "--format",
            "table {{.Version}}\\t{{.Size}}\\t{{.Current}}"
        ]),
        "VERSION   SIZE      CURRENT\n1         3         false\n2         3         true\n"
    );
    let audit = ok(&[
        "audit",
        "ls",
        "--format",
        "{{.action}}{{with .name}} {{.}}{{end}}",
    ]);
    assert!(
        audit.contains("create db_pw\n") && audit.contains("rotate db_pw\n"),
        "{audit}"
    );
    assert_eq!(
        ok(&["service", "create", "web", "--secret", "db_pw"])
            .lines()
            .count(),
        1
    );
    assert_eq!(
        ok(&[
            "service",
            "ls",
            "--format",
            "{{.Spec.Name}}: {{range .Spec.Secrets}}{{.SecretName}}{{end}}"
        ]),
        "web: db_pw\n"
    );
    assert_eq!(
        ok(&[
            "service",
            "inspect",
            "--format",
            "{{.Spec.Name}} {{len .Spec.Secrets}}",
            "web"
        ]),
        "web 1\n"
    );
    // Fields Go's JSON omits are still fields of docker's struct: a nil pointer, an empty
    // []byte; `json` leaves them out as docker's does.
    assert_eq!(
        ok(&[
            "secret",
            "inspect",
            "--format",
            "{{.Spec.Driver}}|{{.Spec.Templating}}|{{.Spec.Data}}|{{if .Spec.Driver}}x{{end}}|{{json .Spec}}",
            "db_pw"
        ]),
        "<nil>|<nil>|[]||{\"Name\":\"db_pw\",\"Labels\":{}}\n"
    );
    let bad = d.lb(&["secret", "versions", "db_pw", "--format", "{{.Nope"]);
    assert_eq!(
        (bad.code, bad.stderr.as_str()),
        (2, "template parsing error: template: :1: unclosed action\n")
    );
}

#[test]
fn events_take_go_templates() {
    let d = Daemon::start();
    let format = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}";
    let text = crate::support::events_during(&d, &["--format", format], || {
        d.create("ev_one", b"x");
        d.lb(&["secret", "rm", "ev_one"]);
    });
    assert_eq!(text, "secret create ev_one\nsecret remove ev_one\n");
}

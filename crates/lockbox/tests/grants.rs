//! Grants (`lockbox policy`) from the outside: administered and audited, and what a granted
//! socket-group member can and cannot get, each hole attacked for real as a real uid
//! (setpriv). The refusal throttle is flooded here too.
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::authz::{
    As, GRANTED, MEMBER, audit_denials, grant_the_granted, requests_as, shared_daemon,
};
use crate::no_plaintext_all::require;
use crate::support::{BIN, Daemon};

const IMAGE: &str = "lockbox-test/busybox:latest";

/// A `lockbox` command run as `who` (setpriv), with extra supplementary groups and a
/// private HOME (the docker CLI writes its config there).
pub(crate) fn lockbox_as(who: As, extra_groups: &[u32]) -> Command {
    let home = tempfile::tempdir().unwrap().keep();
    std::os::unix::fs::chown(&home, Some(who.uid), Some(who.gid)).unwrap();
    let groups: Vec<String> = who
        .groups
        .iter()
        .chain(extra_groups)
        .map(u32::to_string)
        .collect();
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", who.uid))
        .arg(format!("--regid={}", who.gid));
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        c.arg(format!("--groups={}", groups.join(",")));
    }
    c.arg(BIN)
        .env("HOME", &home)
        .current_dir(&home)
        .stdin(Stdio::null());
    c
}

/// `lockbox -H SOCK ARGS` as `who`.
pub(crate) fn lb_as(who: As, extra_groups: &[u32], d: &Daemon, args: &[&str]) -> Output {
    lockbox_as(who, extra_groups)
        .arg("-H")
        .arg(d.sock())
        .args(args)
        .output()
        .unwrap()
}

/// `lockbox docker run --secret SECRET` as `who`, with a docker CLI that would fail: each
/// refusal here happens before docker is run.
fn docker_run_as(who: As, d: &Daemon, secret: &str) -> Output {
    lb_as(
        who,
        &[],
        d,
        &[
            "docker",
            "run",
            "--docker",
            "/bin/false",
            "--secret",
            secret,
            "--",
            "--rm",
            IMAGE,
            "true",
        ],
    )
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn audit(d: &Daemon) -> Vec<serde_json::Value> {
    let (st, body) = d.http("GET", "/v1/audit", None);
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn grants_are_administered_listed_and_audited() {
    let (d, _plugin) = shared_daemon();
    grant_the_granted(&d);
    let o = d.lb(&["policy", "ls", "--format", "{{.Subject}} {{.Pattern}}"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "gid:64207 authz-probe\nuid:64206 app_*\n");
    let o = d.lb(&["policy", "ls"]);
    assert!(o.stdout.starts_with("SUBJECT"), "{o:?}");
    assert!(o.stdout.contains("uid:0"), "granted by root: {o:?}");
    // Patterns that could reach outside names are refused, naming the problem.
    for bad in ["app/*", "../*", "a b", "[ab]*"] {
        let o = d.lb(&["policy", "grant", "--uid", "64206", "--use", bad]);
        assert_eq!(o.code, 1, "{bad}: {o:?}");
        assert!(o.stderr.contains("pattern"), "{bad}: {o:?}");
    }
    // One subject, not two; an unknown group is named.
    let o = d.lb(&["policy", "grant", "--uid", "1", "--gid", "2", "--use", "x"]);
    assert_eq!(o.code, 2, "{o:?}");
    let o = d.lb(&["policy", "grant", "--uid", "1", "--volumes", "--use", "x"]);
    assert_eq!(o.code, 2, "{o:?}");
    // The API says the same to a raw caller naming two subjects, or none.
    for body in [
        r#"{"UID": 1, "Volumes": true, "Pattern": "x"}"#,
        r#"{"Pattern": "x"}"#,
    ] {
        let (status, answer) = d.http("POST", "/v1/policies/grant", Some(body));
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer.contains("give one of --uid, --gid and --volumes"),
            "{body}: {answer}"
        );
    }
    let o = d.lb(&[
        "policy",
        "grant",
        "--gid",
        "no-such-group-lbx",
        "--use",
        "x",
    ]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("no-such-group-lbx"), "{o:?}");
    // A member (even a granted one) cannot grant itself more, nor list grants.
    for who in [GRANTED, MEMBER] {
        let o = lb_as(
            who,
            &[],
            &d,
            &["policy", "grant", "--uid", "64206", "--use", "*"],
        );
        assert_eq!(o.status.code(), Some(6), "{}", text(&o));
        let o = lb_as(who, &[], &d, &["policy", "ls"]);
        assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    }
    // Revoke: exact subject and pattern; a second revoke is a clear 404.
    let o = d.lb(&["policy", "revoke", "--uid", "64206", "--use", "app_*"]);
    assert_eq!(o.code, 0, "{o:?}");
    let o = d.lb(&["policy", "revoke", "--uid", "64206", "--use", "app_*"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("no grant of"), "{o:?}");
    let records = audit(&d);
    let of = |action: &str| -> Vec<&serde_json::Value> {
        records.iter().filter(|r| r["action"] == action).collect()
    };
    assert_eq!(of("policy-grant").len(), 2, "{records:#?}");
    assert_eq!(of("policy-revoke").len(), 1, "{records:#?}");
    for r in of("policy-grant").into_iter().chain(of("policy-revoke")) {
        assert!(r["actor"].as_str().unwrap().starts_with("uid:0"), "{r}");
        assert!(r["detail"]["subject"].as_str().is_some(), "{r}");
    }
}

/// Each hole a granted member might try, refused before anything is looked up or handed
/// out: a secret outside its grant (existing or not: the same answer), a file owner other
/// than itself, names that are patterns or paths. Each refusal is audited with its uid.
#[test]
fn a_granted_member_gets_nothing_outside_its_grant() {
    let (d, _plugin) = shared_daemon();
    grant_the_granted(&d);
    d.create("app_db", b"granted-value");
    d.create("other_pw", b"never-for-64206");
    let run = |secret: &str| docker_run_as(GRANTED, &d, secret);
    for (secret, named) in [
        ("other_pw", "\"other_pw\""),
        ("zz_does_not_exist", "\"zz_does_not_exist\""),
        ("app_*", "\"app_*\""),
        ("app_..", "\"app_..\""),
        ("source=other_pw,target=app_db", "\"other_pw\""),
    ] {
        let o = run(secret);
        let all = text(&o);
        assert_eq!(o.status.code(), Some(6), "{secret}: {all}");
        assert!(
            all.contains(named) && all.contains("no grant"),
            "{secret}: {all}"
        );
        assert!(!all.contains("never-for-64206"), "{all}");
    }
    // Another owner than itself: refused, naming what was asked.
    let o = run("source=app_db,target=app_db,uid=4242");
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(text(&o).contains("cannot ask for uid 4242"), "{}", text(&o));
    let o = run("source=app_db,target=app_db,gid=4243");
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(text(&o).contains("cannot ask for gid 4243"), "{}", text(&o));
    // A member without any grant is stopped at the gate, told what it lacks.
    let o = docker_run_as(MEMBER, &d, "app_db");
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(text(&o).contains("needs a grant"), "{}", text(&o));
    // Lists and inspects show the granted member only what it may use.
    let o = lb_as(GRANTED, &[], &d, &["secret", "ls", "--format", "{{.Name}}"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "app_db\n",
        "{}",
        text(&o)
    );
    let o = lb_as(GRANTED, &[], &d, &["secret", "inspect", "other_pw"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("other_pw"),
        "{}",
        text(&o)
    );
    // Audited with the uid, the secret and what was missing; no hand-out happened.
    let records = audit(&d);
    let denied: Vec<_> = records
        .iter()
        .filter(|r| r["action"] == "access-denied" && r["detail"]["secret"] == "other_pw")
        .collect();
    assert!(!denied.is_empty(), "{records:#?}");
    assert!(
        denied[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("uid:64206 "),
        "{}",
        denied[0]
    );
    assert!(
        !records
            .iter()
            .any(|r| r["action"] == "handout" && r["name"] == "other_pw"),
        "{records:#?}"
    );
}

/// Refusal flood: a member repeating one refused request made one fsynced record per
/// request. Now the first is recorded, the throttling once, and the rest are counted.
#[test]
fn repeated_refusals_are_throttled_each_distinct_one_recorded() {
    let (d, _plugin) = shared_daemon();
    let reqs: Vec<_> = (0..40)
        .map(|_| (d.sock(), "GET".to_string(), "/v1/info".to_string()))
        .chain([(d.sock(), "GET".to_string(), "/v1/audit".to_string())])
        .collect();
    let got = requests_as(MEMBER, &reqs);
    assert!(got.iter().all(|s| *s == Ok(403)), "{got:?}");
    let denials = audit_denials(&d);
    let paths: Vec<&str> = denials
        .iter()
        .map(|r| r["detail"]["path"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(paths, ["/v1/info", "/v1/audit"], "{denials:#?}");
    let throttled: Vec<_> = audit(&d)
        .into_iter()
        .filter(|r| r["action"] == "access-denied-throttled")
        .collect();
    assert_eq!(throttled.len(), 1, "{throttled:#?}");
    assert!(
        throttled[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("uid:64204"),
        "{}",
        throttled[0]
    );
}

pub(crate) fn docker_gid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/var/run/docker.sock")
        .ok()
        .map(|m| m.gid())
}

/// The non-root workflow end to end: root grants, the user runs a container with the
/// secret. The user is put in the docker socket's group for this (only root and that group
/// may open dockerd's socket; membership there is root-equivalent on the host, which is
/// dockerd's rule, not lockbox's). The file is the user's, readable by it alone, the
/// container runs as the user, and the hand-out is audited with the user's uid.
#[test]
fn a_granted_user_runs_a_container_with_its_secret() {
    let docker_ok = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(docker_ok, "Docker engine with the test image") {
        return;
    }
    let Some(docker_gid) = docker_gid() else {
        panic!("no /var/run/docker.sock although docker answers");
    };
    let (d, _plugin) = shared_daemon();
    grant_the_granted(&d);
    d.create("app_db", b"granted-value-e2e");
    let o = lb_as(
        GRANTED,
        &[docker_gid],
        &d,
        &[
            "docker",
            "run",
            "--secret",
            "source=app_db,target=app_db,mode=0444",
            "--",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "id -u; stat -L -c '%u:%g %a' /run/secrets/app_db; cat /run/secrets/app_db",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "64206\n64206:{} 400\ngranted-value-e2e",
            crate::authz::SOCKET_GID
        ),
        "{}",
        text(&o)
    );
    let records = audit(&d);
    let handout = records
        .iter()
        .find(|r| r["action"] == "handout" && r["name"] == "app_db")
        .unwrap_or_else(|| panic!("no hand-out record: {records:#?}"));
    assert!(
        handout["actor"].as_str().unwrap().starts_with("uid:64206 "),
        "{handout}"
    );
    // Nothing left behind: the staging tmpfs went with the container.
    let staging = d.data().join("workloads");
    if staging.is_dir() {
        let left: Vec<_> = std::fs::read_dir(&staging).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?}");
    }
    assert!(!Path::new("/run/secrets/app_db").exists());
}

/// A member sees and releases only its own workloads: root's running `lockbox run` is
/// neither listed for it nor releasable by it (the same 404 as a workload that does not
/// exist), while root sees it.
#[test]
fn a_member_cannot_see_or_release_another_users_workload() {
    let (d, _plugin) = shared_daemon();
    grant_the_granted(&d);
    d.create("app_db", b"roots-workload-value");
    let mut run = Command::new(BIN)
        .arg("-H")
        .arg(d.sock())
        .args(["run", "--secret", "app_db", "--", "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut id = String::new();
    for _ in 0..200 {
        let (_, body) = d.http("GET", "/v1/workloads", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(w) = v.as_array().and_then(|a| a.first()) {
            id = w["ID"].as_str().unwrap_or_default().to_string();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!id.is_empty(), "root's lockbox run registered no workload");
    let got = requests_as(
        GRANTED,
        &[
            (d.sock(), "GET".into(), format!("/v1/workloads/{id}")),
            (
                d.sock(),
                "POST".into(),
                format!("/v1/workloads/{id}/release"),
            ),
            (
                d.sock(),
                "POST".into(),
                format!("/v1/workloads/{id}/rotation"),
            ),
        ],
    );
    assert_eq!(got, [Ok(404), Ok(404), Ok(404)]);
    let (_, body) = d.http("GET", "/v1/workloads", None);
    assert!(body.contains(&id), "root still sees it: {body}");
    let _ = run.kill();
    let _ = run.wait();
}

//! Delivery end to end: services, `lockbox run` (real processes in their own mount
//! namespace), `lockbox docker run` (real containers on the machine's Docker engine), live
//! rotation into both, rotation policies, pinned versions, cleanup on every exit path, and a
//! daemon killed with SIGKILL while workloads run.
//!
//! Needs root and a Docker engine with `lockbox-test/busybox:latest` (`scripts/prereqs.sh`).
//! Every container is named `lbdt-<random>` and removed by a guard, even when a test fails.
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Daemon, Out, http};

const IMAGE: &str = "lockbox-test/busybox:latest";

pub(crate) fn rand_name(prefix: &str) -> String {
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    format!(
        "{prefix}-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Removes the named containers when dropped (test failure included), then waits for the
/// daemon (still alive: declare this after the `Daemon`, so it drops first) to reap their
/// staging, and as a last resort detaches whatever is still mounted under the daemon's
/// directory, so a failing test cannot leave a mount behind.
struct Containers {
    names: Vec<String>,
    dir: std::path::PathBuf,
}

impl Containers {
    fn new(d: &Daemon) -> Self {
        Containers {
            names: Vec::new(),
            dir: d.dir.path().to_owned(),
        }
    }
    fn name(&mut self) -> String {
        let n = rand_name("lbdt");
        self.names.push(n.clone());
        n
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("docker")
                .args(["rm", "-f", n])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let staging = self.dir.join("data").join("workloads");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && std::fs::read_dir(&staging).is_ok_and(|mut r| r.next().is_some())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let dir = self.dir.to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for l in mounts.lines() {
            if let Some(mp) = l.split(' ').nth(4)
                && mp.starts_with(&dir)
            {
                let _ = Command::new("umount").args(["-l", mp]).status();
            }
        }
    }
}

/// Kills a background `lockbox run` when dropped.
pub(crate) struct Bg(Child);

impl Drop for Bg {
    /// SIGTERM first: `lockbox run` forwards it to its workload and waits for it. A bare
    /// SIGKILL (what `Child::kill` sends) leaves the workload running after the test, still
    /// looping over its secret files and slowing every later test and benchmark.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn docker(args: &[&str]) -> Out {
    let o = Command::new("docker").args(args).output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn ok(o: Out, what: &str) -> String {
    assert_eq!(o.code, 0, "{what}: {o:?}");
    o.stdout
}

pub(crate) fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

/// Host mount points under the daemon's directory, and any mount of a lockbox tmpfs at all
/// outside it (a process workload's tmpfs must never show up on the host).
fn host_mounts(d: &Daemon) -> BTreeSet<String> {
    let dir = d.dir.path().to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mp = f.get(4)?.to_string();
            let src = l.split(" - ").nth(1)?.split(' ').nth(1)?.to_string();
            // Other tests (and other engineers' suites) mount tmpfs of their own: only ours,
            // and the one path a leaking process workload would show on the host, count.
            (mp.starts_with(&dir) || (src == "lockbox" && mp == "/run/secrets")).then_some(mp)
        })
        .collect()
}

fn staging_dirs(d: &Daemon) -> Vec<String> {
    match std::fs::read_dir(d.data().join("workloads")) {
        Ok(r) => r
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn assert_clean(d: &Daemon, what: &str) {
    wait_until(what, Duration::from_secs(10), || {
        host_mounts(d).is_empty() && staging_dirs(d).is_empty()
    });
}

fn containers_labelled(name: &str) -> String {
    docker(&["ps", "-a", "-q", "--filter", &format!("name={name}")]).stdout
}

#[test]
fn services_docker_messages_and_validation() {
    let d = Daemon::start();
    d.create("db_pw", b"v1");
    d.create("tls", b"k1");
    let o = d.lb(&[
        "service",
        "create",
        "web",
        "--secret",
        "db_pw",
        "--secret",
        "source=tls,target=/etc/tls/key,uid=101,gid=102,mode=0400",
        "--on-rotate",
        "signal:HUP",
        "--constraint",
        "node.labels.zone==a",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let ls = ok(d.lb(&["service", "ls"]), "ls");
    assert!(ls.contains("web") && ls.contains("signal:HUP"), "{ls}");
    let pretty = ok(d.lb(&["service", "inspect", "--pretty", "web"]), "inspect");
    assert!(
        pretty.contains("UID: 101  GID: 102  Mode: 0400"),
        "{pretty}"
    );
    let js: serde_json::Value =
        serde_json::from_str(&ok(d.lb(&["service", "inspect", "web"]), "inspect")).unwrap();
    assert_eq!(js[0]["Spec"]["Secrets"][1]["File"]["Mode"], 256);
    assert_eq!(js[0]["Spec"]["Secrets"][1]["File"]["UID"], "101");

    // In use: Docker's message, singular then plural.
    let o = d.lb(&["secret", "rm", "db_pw"]);
    assert_eq!(
        o.stderr.trim(),
        "Error response from daemon: rpc error: code = InvalidArgument desc = secret 'db_pw' is in use by the following service: web"
    );
    ok(
        d.lb(&["service", "create", "api", "--secret", "db_pw"]),
        "api",
    );
    let o = d.lb(&["secret", "rm", "db_pw"]);
    assert!(
        o.stderr
            .contains("is in use by the following services: api, web"),
        "{o:?}"
    );

    // Unknown secrets: nothing created, Docker's singular and plural forms.
    let o = d.lb(&["service", "create", "x", "--secret", "nope"]);
    assert_eq!(
        o.stderr.trim(),
        "Error response from daemon: rpc error: code = InvalidArgument desc = secret not found: nope"
    );
    let o = d.lb(&[
        "service", "create", "x", "--secret", "nope", "--secret", "nada",
    ]);
    assert!(o.stderr.contains("secrets not found: nada, nope"), "{o:?}");
    // A case-folded or prefix hit does not count.
    let o = d.lb(&["service", "create", "x", "--secret", "DB_PW"]);
    assert!(o.stderr.contains("secret not found: DB_PW"), "{o:?}");
    assert!(!ok(d.lb(&["service", "ls"]), "ls").contains(" x "));

    // Duplicate targets on one command line: Docker's client message, naming the source.
    let o = d.lb(&[
        "service",
        "create",
        "x",
        "--secret",
        "db_pw",
        "--secret",
        "source=tls,target=db_pw",
    ]);
    assert_eq!(
        o.stderr.trim(),
        "duplicate secret target for tls not allowed"
    );
    // Server side (a raw API caller): Docker's conflicting-target message.
    let body = r#"{"Name":"x","Secrets":[
        {"SecretName":"db_pw","File":{"Name":"a","UID":"0","GID":"0","Mode":292}},
        {"SecretName":"tls","File":{"Name":"a","UID":"0","GID":"0","Mode":292}}]}"#;
    let (st, b) = http(&d.sock(), "POST", "/v1/services/create", Some(body));
    assert_eq!(st, 400);
    assert!(
        b.contains("secret references 'db_pw' and 'tls' have a conflicting target: 'a'"),
        "{b}"
    );
    let (st, b) = http(
        &d.sock(),
        "POST",
        "/v1/services/create",
        Some(r#"{"Name":"x","Secrets":[{"SecretName":"db_pw"}]}"#),
    );
    assert_eq!(st, 400);
    assert!(
        b.contains("malformed secret reference, no target provided"),
        "{b}"
    );
    let (st, b) = http(
        &d.sock(),
        "POST",
        "/v1/services/create",
        Some(r#"{"Name":"x","Secrets":[{"File":{"Name":"a"}}]}"#),
    );
    assert_eq!(st, 400);
    assert!(b.contains("desc = malformed secret reference\""), "{b}");
    // Non-numeric uid: refused when parsed (Docker fails the task when it starts).
    let (st, b) = http(
        &d.sock(),
        "POST",
        "/v1/services/create",
        Some(
            r#"{"Name":"x","Secrets":[{"SecretName":"db_pw","File":{"Name":"a","UID":"notanumber"}}]}"#,
        ),
    );
    assert_eq!(st, 400);
    assert!(b.contains("invalid UID \\\"notanumber\\\""), "{b}");
    let o = d.lb(&["service", "create", "x", "--secret", "source=db_pw,uid=www"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("uid \"www\" is not a numeric id"),
        "{o:?}"
    );
    // `..` escapes: refused with a clear message, by the CLI and by the server.
    let o = d.lb(&[
        "service",
        "create",
        "x",
        "--secret",
        "source=db_pw,target=../../etc/x",
    ]);
    assert!(o.stderr.contains("escapes the secrets directory"), "{o:?}");
    let (st, b) = http(
        &d.sock(),
        "POST",
        "/v1/services/create",
        Some(r#"{"Name":"x","Secrets":[{"SecretName":"db_pw","File":{"Name":"../../etc/x"}}]}"#),
    );
    assert_eq!(st, 400);
    assert!(b.contains("escapes the secrets directory"), "{b}");
    let o = d.lb(&["service", "create", "x", "--on-rotate", "reboot"]);
    assert!(o.stderr.contains("invalid --on-rotate"), "{o:?}");

    // Update: Docker's rotation recipe, and a pinned version that must exist.
    d.create("db_pw_v2", b"v2");
    ok(
        d.lb(&[
            "service",
            "update",
            "web",
            "--secret-rm",
            "db_pw",
            "--secret-add",
            "source=db_pw_v2,target=db_pw",
        ]),
        "update",
    );
    let js: serde_json::Value =
        serde_json::from_str(&ok(d.lb(&["service", "inspect", "web"]), "inspect")).unwrap();
    let names: Vec<_> = js[0]["Spec"]["Secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["SecretName"].as_str().unwrap().to_string(),
                r["File"]["Name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        names.contains(&("db_pw_v2".into(), "db_pw".into())),
        "{names:?}"
    );
    assert!(!names.iter().any(|(n, _)| n == "db_pw"), "{names:?}");
    let o = d.lb(&[
        "service",
        "update",
        "web",
        "--secret-add",
        "source=tls,target=t2,version=9",
    ]);
    assert!(o.stderr.contains("has no version 9"), "{o:?}");
    let o = d.lb(&["service", "inspect", "nosuch"]);
    assert_ne!(o.code, 0);
    ok(d.lb(&["service", "rm", "web", "api"]), "rm");
    ok(
        d.lb(&["secret", "rm", "db_pw"]),
        "secret rm after service rm",
    );
}

/// Writes a shell script that reports every file's owner, mode, filesystem and content.
fn report_script(paths: &[&str]) -> String {
    let mut s = String::new();
    for p in paths {
        s.push_str(&format!(
            "echo \"{p} $(stat -L -c '%u %g %a' {p}) $(cat {p})\"; "
        ));
    }
    s
}

#[test]
fn run_process_delivery_and_cleanup() {
    let d = Daemon::start();
    d.create("run_pw", b"marker-run-pw-1");
    d.create("run_key", b"marker-run-key-1");
    let tmp = tempfile::tempdir().unwrap();
    let abs = tmp.path().join("conf");
    std::fs::create_dir(&abs).unwrap();
    let abs_target = abs.join("key");
    let before = host_mounts(&d);
    assert!(before.is_empty(), "{before:?}");
    let sabs = format!(
        "source=run_key,target={},uid=101,gid=102,mode=0400",
        abs_target.display()
    );
    let script = format!(
        "{} grep ' /run/secrets ' /proc/mounts; echo x > /run/secrets/new 2>/dev/null || echo ro-ok; \
         echo \"env:$DB_PASSWORD_FILE\"; cat /proc/self/environ | tr '\\0' '\\n' | grep -c marker-run; \
         exit 7",
        report_script(&[
            "/run/secrets/run_pw",
            "/run/secrets/pw_copy",
            abs_target.to_str().unwrap(),
        ])
    );
    let o = d.lb(&[
        "run",
        "--secret",
        "run_pw",
        // The same secret twice, with different owners and modes: both honoured.
        "--secret",
        "source=run_pw,target=pw_copy,uid=1000,gid=1001,mode=0440",
        "--secret",
        &sabs,
        "--secret-env",
        "DB_PASSWORD=run_pw",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(o.code, 7, "exit code passes through: {o:?}");
    let out = o.stdout;
    assert!(
        out.contains("/run/secrets/run_pw 0 0 444 marker-run-pw-1"),
        "{out}"
    );
    assert!(
        out.contains("/run/secrets/pw_copy 1000 1001 440 marker-run-pw-1"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{} 101 102 400 marker-run-key-1",
            abs_target.display()
        )),
        "{out}"
    );
    assert!(out.contains("tmpfs ro,"), "read-only tmpfs: {out}");
    assert!(out.contains("ro-ok"), "{out}");
    assert!(out.contains("env:/run/secrets/run_pw"), "{out}");
    assert!(
        out.lines().any(|l| l == "0"),
        "no value in the environment: {out}"
    );
    assert_clean(&d, "process workload torn down");
    // The host's own view never had the files.
    assert!(std::fs::read(&abs_target).is_err());

    // A signal ends the command: 128+N.
    let o = d.lb(&[
        "run",
        "--secret",
        "run_pw",
        "--",
        "sh",
        "-c",
        "kill -TERM $$",
    ]);
    assert_eq!(o.code, 143, "{o:?}");
    // --user drops privileges; the file owned by that user with 0400 is readable by it.
    let o = d.lb(&[
        "run",
        "--user",
        "1000:1000",
        "--secret",
        "source=run_pw,uid=1000,mode=0400",
        "--",
        "sh",
        "-c",
        "id -u; cat /run/secrets/run_pw",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "1000\nmarker-run-pw-1");
    // Unknown secret or service: clear error, nothing started.
    let o = d.lb(&["run", "--secret", "nope", "--", "sh", "-c", "echo started"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("secret not found: nope"), "{o:?}");
    assert!(!o.stdout.contains("started"));
    let o = d.lb(&["run", "--service", "nope", "--", "sh", "-c", "echo started"]);
    assert!(o.stderr.contains("service nope not found"), "{o:?}");
    assert!(!o.stdout.contains("started"));
    let o = d.lb(&["run", "--secret", "source=run_pw,target=../x", "--", "true"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("escapes the secrets directory"), "{o:?}");
    // Not root: says why instead of half-working.
    let o = {
        use std::os::unix::process::CommandExt as _;
        Command::new(crate::support::BIN)
            .arg("-H")
            .arg(d.sock())
            .args(["run", "--secret", "run_pw", "--", "true"])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("lockbox run needs root"),
        "{o:?}"
    );
    // Every hand-out is audited with its workload.
    let audit = ok(d.lb(&["audit", "ls", "--format", "json"]), "audit");
    assert!(
        // ... and with the uid (and pid) of whoever started the workload (security finding
        // 9: `lockbox run` hand-outs were recorded as `workload:<id>` alone).
        audit.contains("handout")
            && audit.contains("\"actor\":\"uid:0 pid:")
            && audit.contains(" workload:"),
        "{audit}"
    );
    assert_clean(&d, "after failures");
}

#[test]
fn docker_run_files_modes_and_clean_inspect() {
    let d = Daemon::start();
    let mut c = Containers::new(&d);
    d.create("c_pw", b"marker-c-pw-1");
    d.create("c_key", b"marker-c-key-1");
    ok(
        d.lb(&[
            "service",
            "create",
            "csvc",
            "--secret",
            "c_pw",
            "--secret",
            "source=c_pw,target=copy,uid=1000,gid=1001,mode=0440",
            "--secret",
            "source=c_key,target=/etc/app/key,uid=101,gid=102,mode=0400",
        ]),
        "service",
    );
    let name = c.name();
    let script = format!(
        "{} grep ' /run/secrets ' /proc/mounts; echo x > /run/secrets/c_pw 2>/dev/null || echo ro-ok; \
         echo x > /etc/app/key 2>/dev/null || echo ro-abs-ok; echo \"env:$C_FILE\"; \
         cat /proc/self/environ | tr '\\0' '\\n' | grep -c marker-c; exit 5",
        report_script(&["/run/secrets/c_pw", "/run/secrets/copy", "/etc/app/key"])
    );
    let o = d.lb(&[
        "docker",
        "run",
        "--service",
        "csvc",
        "--secret-env",
        "C=c_pw",
        "--",
        "--name",
        &name,
        "--rm",
        IMAGE,
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(o.code, 5, "{o:?}");
    let out = o.stdout;
    assert!(
        out.contains("/run/secrets/c_pw 0 0 444 marker-c-pw-1"),
        "{out}"
    );
    assert!(
        out.contains("/run/secrets/copy 1000 1001 440 marker-c-pw-1"),
        "{out}"
    );
    assert!(
        out.contains("/etc/app/key 101 102 400 marker-c-key-1"),
        "{out}"
    );
    assert!(out.contains(" tmpfs ro,"), "{out}");
    assert!(out.contains("ro-ok") && out.contains("ro-abs-ok"), "{out}");
    assert!(out.contains("env:/run/secrets/c_pw"), "{out}");
    assert!(out.lines().any(|l| l == "0"), "{out}");
    assert_clean(&d, "foreground --rm run");

    // Detached, with --user and --read-only passing through: inspect shows no value, the
    // container's environ has none, the label ties it to its workload.
    let name = c.name();
    let cid = ok(
        d.lb(&[
            "docker",
            "run",
            "--service",
            "csvc",
            "--",
            "-d",
            "--name",
            &name,
            "--user",
            "1000:1001",
            "--read-only",
            IMAGE,
            "sh",
            "-c",
            "cat /run/secrets/copy; echo; sleep 300",
        ]),
        "detached",
    );
    let cid = cid.trim();
    wait_until("container log", Duration::from_secs(10), || {
        docker(&["logs", cid]).stdout.contains("marker-c-pw-1")
    });
    let inspect = ok(docker(&["inspect", cid]), "inspect");
    assert!(
        !inspect.contains("marker-c"),
        "docker inspect shows a value"
    );
    assert!(inspect.contains("lockbox.workload"), "{inspect}");
    let pid = ok(docker(&["inspect", "-f", "{{.State.Pid}}", cid]), "pid");
    let environ = std::fs::read(format!("/proc/{}/environ", pid.trim())).unwrap();
    assert!(!String::from_utf8_lossy(&environ).contains("marker-c"));
    assert_eq!(staging_dirs(&d).len(), 1, "staged while it runs");
    ok(docker(&["rm", "-f", cid]), "rm");
    assert_clean(&d, "detached container removed (Docker's destroy event)");
}

#[test]
fn docker_run_cleanup_on_every_exit_path() {
    let d = Daemon::start();
    let mut c = Containers::new(&d);
    d.create("e_pw", b"marker-e-1");
    // Exits at once, detached with --rm.
    let name = c.name();
    let o = d.lb(&[
        "docker", "run", "--secret", "e_pw", "--", "-d", "--rm", "--name", &name, IMAGE, "true",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_clean(&d, "container that exits immediately");
    // Exits at once, detached, not removed: the container stays, its secrets do not.
    let name = c.name();
    let o = d.lb(&[
        "docker", "run", "--secret", "e_pw", "--", "-d", "--name", &name, IMAGE, "true",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    wait_until("exited", Duration::from_secs(10), || {
        docker(&["inspect", "-f", "{{.State.Running}}", &name])
            .stdout
            .trim()
            == "false"
    });
    // The CLI released it while it may still have been running; Docker's die is not a
    // destroy, so a removal is what reaps it.
    ok(docker(&["rm", "-f", &name]), "rm");
    assert_clean(&d, "exited container removed");
    // Foreground run of a container that is not removed: the run's end reaps.
    let name = c.name();
    let o = d.lb(&[
        "docker",
        "run",
        "--secret",
        "e_pw",
        "--",
        "--name",
        &name,
        IMAGE,
        "cat",
        "/run/secrets/e_pw",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "marker-e-1");
    assert_clean(&d, "foreground run ended");
    // docker run fails (an image that does not exist): its exit code, nothing left.
    let name = c.name();
    let o = d.lb(&[
        "docker",
        "run",
        "--secret",
        "e_pw",
        "--",
        "--name",
        &name,
        "lockbox-test/no-such-image:x",
        "true",
    ]);
    assert_eq!(o.code, 125, "{o:?}");
    assert_clean(&d, "failed docker run");
    // Unknown secret or service: refused before docker runs; no container created.
    let name = c.name();
    let o = d.lb(&[
        "docker", "run", "--secret", "nope", "--", "--name", &name, IMAGE, "true",
    ]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("secret not found: nope"), "{o:?}");
    assert!(containers_labelled(&name).trim().is_empty());
    let o = d.lb(&[
        "docker",
        "run",
        "--service",
        "nope",
        "--",
        "--name",
        &name,
        IMAGE,
        "true",
    ]);
    assert!(o.stderr.contains("service nope not found"), "{o:?}");
    assert!(containers_labelled(&name).trim().is_empty());
    assert_clean(&d, "refused runs");
    // Ctrl-C (SIGINT to the process group) during a foreground run.
    let name = c.name();
    let child = Command::new(crate::support::BIN)
        .arg("-H")
        .arg(d.sock())
        .args([
            "docker",
            "run",
            "--secret",
            "e_pw",
            "--",
            "--name",
            &name,
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 130' INT; sleep 30 & wait",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut bg = Bg(child);
    wait_until("staged", Duration::from_secs(10), || {
        staging_dirs(&d).len() == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    // What a terminal's ^C does: SIGINT to the CLI and to the docker CLI it runs (sent to
    // each pid rather than to a process group, so nothing else can ever be hit).
    let pid = bg.0.id();
    let children = read(Path::new(&format!("/proc/{pid}/task/{pid}/children")));
    let mut pids = vec![pid.to_string()];
    pids.extend(children.split_whitespace().map(str::to_owned));
    Command::new("kill")
        .arg("-INT")
        .args(&pids)
        .status()
        .unwrap();
    wait_until("run ended", Duration::from_secs(20), || {
        bg.0.try_wait().unwrap().is_some()
    });
    let _ = docker(&["rm", "-f", &name]);
    assert_clean(&d, "Ctrl-C during a run");
    // SIGKILL of the CLI itself: the daemon sees the stream close.
    let name = c.name();
    let child = Command::new(crate::support::BIN)
        .arg("-H")
        .arg(d.sock())
        .args([
            "docker", "run", "--secret", "e_pw", "--", "--name", &name, IMAGE, "sleep", "30",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut bg = Bg(child);
    wait_until("staged", Duration::from_secs(10), || {
        staging_dirs(&d).len() == 1
    });
    bg.0.kill().unwrap();
    let _ = bg.0.wait();
    let _ = docker(&["rm", "-f", &name]);
    assert_clean(&d, "CLI killed");
}

pub(crate) fn spawn_bg(d: &Daemon, args: &[&str]) -> Bg {
    Bg(Command::new(crate::support::BIN)
        .arg("-H")
        .arg(d.sock())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn exec_cat(cid: &str, path: &str) -> String {
    docker(&["exec", cid, "cat", path]).stdout
}

#[test]
fn live_rotation_into_containers_and_processes() {
    let d = Daemon::start();
    let mut c = Containers::new(&d);
    let tmp = tempfile::tempdir().unwrap();
    d.create("r_pw", b"one");
    d.create("r_abs", b"abs-one");
    ok(
        d.lb(&[
            "service",
            "create",
            "rsig",
            "--secret",
            "source=r_pw,target=pw",
            "--secret",
            "source=r_abs,target=/etc/app/key",
            "--on-rotate",
            "signal:USR1",
        ]),
        "rsig",
    );
    ok(
        d.lb(&[
            "service",
            "create",
            "rpin",
            "--secret",
            "source=r_pw,target=pw,version=1",
        ]),
        "rpin",
    );
    ok(
        d.lb(&[
            "service",
            "create",
            "rrestart",
            "--secret",
            "source=r_pw,target=pw",
            "--on-rotate",
            "restart",
        ]),
        "rr",
    );

    // A container that reports USR1 and reads continuously (a torn read would show up).
    let name = c.name();
    let cid = ok(
        d.lb(&[
            "docker", "run", "--service", "rsig", "--", "-d", "--name", &name, IMAGE, "sh", "-c",
            // fd 3 keeps the absolute target's file open across rotations (a plain unmount
            // of the old bind would fail with EBUSY).
            "exec 3</etc/app/key; trap 'echo got-usr1' USR1; while true; do v=$(cat /run/secrets/pw); case $v in one|two|three|one-again) ;; *) echo torn:$v;; esac; sleep 0.01; done",
        ]),
        "container",
    )
    .trim()
    .to_string();
    let pinned_name = c.name();
    let pinned = ok(
        d.lb(&[
            "docker",
            "run",
            "--service",
            "rpin",
            "--",
            "-d",
            "--name",
            &pinned_name,
            IMAGE,
            "sleep",
            "300",
        ]),
        "pinned",
    )
    .trim()
    .to_string();
    let restart_name = c.name();
    let restarted = ok(
        d.lb(&[
            "docker",
            "run",
            "--service",
            "rrestart",
            "--",
            "-d",
            "--name",
            &restart_name,
            IMAGE,
            "sleep",
            "300",
        ]),
        "restart",
    )
    .trim()
    .to_string();
    let started = |id: &str| docker(&["inspect", "-f", "{{.State.StartedAt}}", id]).stdout;
    let restart_t0 = started(&restarted);

    // A process that appends each value it reads and each HUP it gets.
    let plog = tmp.path().join("proc.log");
    ok(
        d.lb(&[
            "service",
            "create",
            "rproc",
            "--secret",
            "source=r_pw,target=pw",
            "--on-rotate",
            "signal:HUP",
        ]),
        "rproc",
    );
    let pscript = format!(
        "trap 'echo hup >> {l}' HUP; while true; do echo \"v=$(cat /run/secrets/pw)\" >> {l}; sleep 0.05; done",
        l = plog.display()
    );
    let _proc = spawn_bg(
        &d,
        &["run", "--service", "rproc", "--", "sh", "-c", &pscript],
    );
    // A process with the restart policy counts its starts.
    let starts = tmp.path().join("starts.log");
    ok(
        d.lb(&[
            "service",
            "create",
            "rproc2",
            "--secret",
            "source=r_pw,target=pw",
            "--on-rotate",
            "restart",
        ]),
        "rproc2",
    );
    let s2 = format!(
        "echo \"start $(cat /run/secrets/pw)\" >> {}; exec sleep 300",
        starts.display()
    );
    let _proc2 = spawn_bg(&d, &["run", "--service", "rproc2", "--", "sh", "-c", &s2]);
    wait_until("process started", Duration::from_secs(10), || {
        read(&plog).contains("v=one")
    });
    wait_until("restart process started", Duration::from_secs(10), || {
        read(&starts).contains("start one")
    });
    assert_eq!(exec_cat(&cid, "/run/secrets/pw"), "one");
    assert_eq!(exec_cat(&cid, "/etc/app/key"), "abs-one");

    // Rotate: same paths, new content, in the container and the process.
    ok(
        d.lb_in(&["secret", "rotate", "r_pw", "-"], Some(b"two")),
        "rotate",
    );
    ok(
        d.lb_in(&["secret", "rotate", "r_abs", "-"], Some(b"abs-two")),
        "rotate abs",
    );
    wait_until("container sees two", Duration::from_secs(5), || {
        exec_cat(&cid, "/run/secrets/pw") == "two"
    });
    wait_until("absolute target rotated", Duration::from_secs(5), || {
        exec_cat(&cid, "/etc/app/key") == "abs-two"
    });
    let st = docker(&["exec", &cid, "stat", "-c", "%u %g %a", "/etc/app/key"]).stdout;
    assert_eq!(st.trim(), "0 0 444");
    wait_until("process sees two", Duration::from_secs(5), || {
        read(&plog).contains("v=two")
    });
    wait_until("signal policy (container)", Duration::from_secs(5), || {
        docker(&["logs", &cid]).stdout.contains("got-usr1")
    });
    wait_until("signal policy (process)", Duration::from_secs(5), || {
        read(&plog).contains("hup")
    });
    wait_until(
        "restart policy (container)",
        Duration::from_secs(30),
        || started(&restarted) != restart_t0,
    );
    wait_until("restart policy (process)", Duration::from_secs(15), || {
        read(&starts).contains("start two")
    });
    // Pinned to version 1: does not move.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(exec_cat(&pinned, "/run/secrets/pw"), "one");

    // Rollback to version 1: everyone following moves back.
    ok(d.lb(&["secret", "rollback", "r_pw", "1"]), "rollback");
    wait_until("rollback in container", Duration::from_secs(5), || {
        exec_cat(&cid, "/run/secrets/pw") == "one"
    });
    wait_until("rollback in process", Duration::from_secs(5), || {
        read(&plog)
            .lines()
            .last()
            .is_some_and(|l| l == "v=one" || l == "hup")
    });

    // Docker's recipe: a new secret under the same target, through service update.
    d.create("r_pw_v2", b"three");
    ok(
        d.lb(&[
            "service",
            "update",
            "rsig",
            "--secret-rm",
            "r_pw",
            "--secret-add",
            "source=r_pw_v2,target=pw",
        ]),
        "recipe",
    );
    wait_until("recipe in container", Duration::from_secs(5), || {
        exec_cat(&cid, "/run/secrets/pw") == "three"
    });
    let logs = docker(&["logs", &cid]).stdout;
    assert!(
        !logs.contains("torn:"),
        "a reader saw a partial or mixed value: {logs}"
    );
    assert_eq!(exec_cat(&pinned, "/run/secrets/pw"), "one");
    // Hand-outs to workloads are audited with service and workload.
    let audit = ok(d.lb(&["audit", "ls", "--format", "json"]), "audit");
    assert!(
        audit.contains("rsig") && audit.contains("workload:"),
        "{audit}"
    );
}

#[test]
fn daemon_kill9_keeps_running_workloads() {
    let mut d = Daemon::start();
    let mut c = Containers::new(&d);
    let tmp = tempfile::tempdir().unwrap();
    d.create("k_pw", b"before");
    let name = c.name();
    let cid = ok(
        d.lb(&[
            "docker", "run", "--secret", "k_pw", "--", "-d", "--name", &name, IMAGE, "sleep", "300",
        ]),
        "running",
    )
    .trim()
    .to_string();
    let gone_name = c.name();
    ok(
        d.lb(&[
            "docker", "run", "--secret", "k_pw", "--", "-d", "--name", &gone_name, IMAGE, "sleep",
            "300",
        ]),
        "to be removed",
    );
    let plog = tmp.path().join("p.log");
    let script = format!(
        "while true; do echo \"v=$(cat /run/secrets/k_pw)\" >> {}; sleep 0.05; done",
        plog.display()
    );
    let _p = spawn_bg(&d, &["run", "--secret", "k_pw", "--", "sh", "-c", &script]);
    wait_until("process", Duration::from_secs(10), || {
        read(&plog).contains("v=before")
    });
    assert_eq!(staging_dirs(&d).len(), 2);

    d.kill9();
    ok(
        docker(&["rm", "-f", &gone_name]),
        "rm while the daemon is down",
    );
    assert_eq!(exec_cat(&cid, "/run/secrets/k_pw"), "before", "files stay");
    d.spawn(&[]);
    wait_until(
        "reaped the removed container's staging",
        Duration::from_secs(10),
        || staging_dirs(&d).len() == 1,
    );
    // The process supervisor re-registers; give it a moment, then rotate.
    wait_until("process re-attached", Duration::from_secs(10), || {
        http(&d.sock(), "GET", "/v1/workloads", None)
            .1
            .matches("\"ID\"")
            .count()
            == 2
    });
    ok(
        d.lb_in(&["secret", "rotate", "k_pw", "-"], Some(b"after")),
        "rotate",
    );
    wait_until("container after restart", Duration::from_secs(5), || {
        exec_cat(&cid, "/run/secrets/k_pw") == "after"
    });
    wait_until("process after restart", Duration::from_secs(5), || {
        read(&plog).contains("v=after")
    });
    ok(docker(&["rm", "-f", &cid]), "rm");
    drop(_p);
    assert_clean(&d, "everything ended");
}

#[test]
fn clean_daemon_restart_keeps_containers_attached() {
    let mut d = Daemon::start();
    let mut c = Containers::new(&d);
    d.create("r_pw", b"before");
    let name = c.name();
    let cid = ok(
        d.lb(&[
            "docker", "run", "--secret", "r_pw", "--", "-d", "--name", &name, IMAGE, "sleep", "300",
        ]),
        "running",
    )
    .trim()
    .to_string();
    assert_eq!(staging_dirs(&d).len(), 1);
    // SIGTERM, not SIGKILL: the tmpfs must survive a clean stop too.
    d.restart(&[]);
    assert_eq!(
        staging_dirs(&d).len(),
        1,
        "the running container's tmpfs survives a clean stop"
    );
    assert_eq!(exec_cat(&cid, "/run/secrets/r_pw"), "before");
    ok(
        d.lb_in(&["secret", "rotate", "r_pw", "-"], Some(b"after")),
        "rotate",
    );
    wait_until(
        "container after a clean restart",
        Duration::from_secs(5),
        || exec_cat(&cid, "/run/secrets/r_pw") == "after",
    );
    ok(docker(&["rm", "-f", &cid]), "rm");
    wait_until(
        "staging removed with the container",
        Duration::from_secs(10),
        || staging_dirs(&d).is_empty(),
    );
}

/// A rotation a consumer could not take (faults issue, finding 3: the only trace was a line on
/// the workload's stderr) is logged by the daemon, audited, emitted on `/events` and shown in
/// the workload's status until a rotation reaches it. `lockbox run` reports through the same
/// call this test makes.
#[test]
fn a_failed_rotation_is_audited_emitted_and_shown() {
    let d = Daemon::start();
    d.create("rot_pw", b"v1");
    let child = Command::new(crate::support::BIN)
        .arg("-H")
        .arg(d.sock())
        .args(["run", "--secret", "rot_pw", "--", "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _bg = Bg(child);
    let mut id = String::new();
    wait_until("workload registered", Duration::from_secs(10), || {
        let (_, body) = d.http("GET", "/v1/workloads", None);
        let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
        if let Some(w) = list.first() {
            id = w["ID"].as_str().unwrap_or_default().to_string();
        }
        !id.is_empty()
    });
    let path = format!("/v1/workloads/{id}/rotation");
    let events = crate::support::events_during(&d, &["--format", "{{json .}}"], || {
        let (st, body) = d.http(
            "POST",
            &path,
            Some(r#"{"Ok":false,"Error":"no space left on the secrets tmpfs"}"#),
        );
        assert_eq!(st, 204, "{body}");
    });
    assert!(
        events.contains("rotate-failed") && events.contains(&id),
        "{events}"
    );
    let (_, list) = d.http("GET", "/v1/workloads", None);
    assert!(
        list.contains("no space left on the secrets tmpfs"),
        "{list}"
    );
    let audit = ok(d.lb(&["audit", "ls", "--format", "json"]), "audit");
    assert!(
        audit.contains("rotate-failed") && audit.contains("no space left on the secrets tmpfs"),
        "{audit}"
    );
    // A later rotation that arrives clears it.
    let (st, _) = d.http("POST", &path, Some(r#"{"Ok":true}"#));
    assert_eq!(st, 204);
    let (_, list) = d.http("GET", "/v1/workloads", None);
    assert!(list.contains(r#""RotationError":null"#), "{list}");
    // A report that is not one is refused, naming the problem, and changes nothing.
    let (st, body) = d.http("POST", &path, Some(r#"{"Error":"no Ok field"}"#));
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("Ok"), "{body}");
    let (_, list) = d.http("GET", "/v1/workloads", None);
    assert!(list.contains(r#""RotationError":null"#), "{list}");
    // An unknown workload is named.
    let (st, body) = d.http(
        "POST",
        "/v1/workloads/nope/rotation",
        Some(r#"{"Ok":false}"#),
    );
    assert_eq!(
        (st, body.contains("workload nope not found")),
        (404, true),
        "{body}"
    );
}

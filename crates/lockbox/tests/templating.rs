//! Templated secrets (`--template-driver golang`) rendered at delivery: a config file that
//! embeds a database password, delivered by `lockbox run` and `lockbox docker run` and
//! re-rendered live when the password rotates; a template that includes a secret outside
//! its set, or does not parse, fails the start with a message naming the problem, before
//! anything runs.
//!
//! Needs root and Docker with `lockbox-test/busybox:latest`, as delivery.rs.
use std::time::Duration;

use crate::delivery::{spawn_bg, wait_until};
use crate::support::Daemon;

fn create_template(d: &Daemon, name: &str, template: &str) {
    let o = d.lb_in(
        &["secret", "create", "--template-driver", "golang", name, "-"],
        Some(template.as_bytes()),
    );
    assert_eq!(o.code, 0, "create {name}: {o:?}");
}

#[test]
fn run_renders_a_template_and_rerenders_it_on_rotation() {
    let d = Daemon::start();
    d.create("db_pw", b"pw-one");
    let o = d.lb_in(&["config", "create", "db_host", "-"], Some(b"db.internal"));
    assert_eq!(o.code, 0, "{o:?}");
    create_template(
        &d,
        "app_conf",
        "password={{ secret \"db_pw\" }}\ntask={{ .Task.ID }} os={{ .Node.Platform.OS }} env=[{{ env \"HOME\" }}] host={{ config \"db_host\" }}\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("seen");
    let script = format!(
        "while true; do cat /run/secrets/app_conf > {c}.tmp && mv {c}.tmp {c}; sleep 0.02; done",
        c = copy.display()
    );
    let _run = spawn_bg(
        &d,
        &[
            "run", "--secret", "db_pw", "--secret", "app_conf", "--", "sh", "-c", &script,
        ],
    );
    let seen = || std::fs::read_to_string(&copy).unwrap_or_default();
    wait_until("the rendered file", Duration::from_secs(10), || {
        seen().starts_with("password=pw-one\n")
    });
    let first = seen();
    let task = first
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("task="))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(task.len(), 24, "the workload ID as .Task.ID: {first:?}");
    assert!(task.bytes().all(|b| b.is_ascii_hexdigit()), "{first:?}");
    assert!(
        first.ends_with(" os=linux env=[] host=db.internal\n"),
        "{first:?}"
    );
    let workloads = d.lb(&["audit", "ls", "--format", "json"]).stdout;
    assert!(workloads.contains(&task), "hand-outs name the workload");

    let o = d.lb_in(&["secret", "rotate", "db_pw", "-"], Some(b"pw-two"));
    assert_eq!(o.code, 0, "{o:?}");
    let t0 = std::time::Instant::now();
    wait_until("the re-rendered file", Duration::from_secs(5), || {
        seen().starts_with("password=pw-two\n")
    });
    eprintln!("re-rendered after rotation in {:?}", t0.elapsed());
    assert!(seen().contains(&format!("task={task} ")), "{}", seen());

    // The inclusion is a hand-out of its own, audited with the template that included it.
    let audit = d.lb(&["audit", "ls", "--format", "json"]).stdout;
    let inclusions = audit
        .lines()
        .filter(|l| l.contains("\"handout\"") && l.contains("db_pw") && l.contains("app_conf"))
        .count();
    assert!(inclusions >= 2, "one audited inclusion per render: {audit}");
}

#[test]
fn run_refuses_a_template_outside_its_grant_or_unparsable() {
    let d = Daemon::start();
    d.create("db_pw", b"pw-one");
    d.create("other_pw", b"not-yours");
    create_template(&d, "greedy", "x={{ secret \"other_pw\" }}");
    create_template(&d, "broken", "x={{ secret \"db_pw\" ");

    let o = d.lb(&[
        "run",
        "--secret",
        "db_pw",
        "--secret",
        "greedy",
        "--",
        "sh",
        "-c",
        "echo started",
    ]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        !o.stdout.contains("started"),
        "the workload never starts: {o:?}"
    );
    assert!(
        o.stderr.contains("greedy") && o.stderr.contains("\"other_pw\" is not granted"),
        "{o:?}"
    );

    let o = d.lb(&[
        "run",
        "--secret",
        "db_pw",
        "--secret",
        "broken",
        "--",
        "sh",
        "-c",
        "echo started",
    ]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains("started"), "{o:?}");
    assert!(
        o.stderr.contains("secret broken: template: broken:1:"),
        "{o:?}"
    );
    eprintln!("{}", o.stderr);
}

/// Removes a container when dropped, test failure included.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

fn exec_cat(name: &str, path: &str) -> String {
    let o = std::process::Command::new("docker")
        .args(["exec", name, "cat", path])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn docker_run_renders_a_template_and_rerenders_it_on_rotation() {
    let d = Daemon::start();
    d.create("db_pw", b"pw-one");
    create_template(
        &d,
        "app_conf",
        "password={{ secret \"db_pw\" }} task={{ .Task.ID }}\n",
    );
    let c = Container(format!("templating-{}", std::process::id()));
    let o = d.lb(&[
        "docker",
        "run",
        "--secret",
        "db_pw",
        "--secret",
        "app_conf",
        "--",
        "-d",
        "--name",
        &c.0,
        "lockbox-test/busybox:latest",
        "sleep",
        "300",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let first = exec_cat(&c.0, "/run/secrets/app_conf");
    assert!(first.starts_with("password=pw-one task="), "{first:?}");
    let o = d.lb_in(&["secret", "rotate", "db_pw", "-"], Some(b"pw-two"));
    assert_eq!(o.code, 0, "{o:?}");
    wait_until("the re-rendered file", Duration::from_secs(5), || {
        exec_cat(&c.0, "/run/secrets/app_conf").starts_with("password=pw-two task=")
    });
    // The rendering context is the workload's, unchanged by the rotation.
    let again = exec_cat(&c.0, "/run/secrets/app_conf");
    assert_eq!(first.split(" task=").nth(1), again.split(" task=").nth(1));
}

/// On a worker, which holds no store, the manager renders the template for the worker's
/// node and workload, and a rotation on the manager re-renders it on the worker.
#[test]
fn a_worker_gets_the_template_rendered_by_its_manager() {
    let (c, _) = crate::cluster::Cluster::start(1, 1, false);
    let worker_id = c.ready_worker();
    let (m, w) = (&c.nodes[0].d, &c.nodes[1].d);
    m.create("db_pw", b"pw-one");
    create_template(
        m,
        "app_conf",
        "password={{ secret \"db_pw\" }} node={{ .Node.ID }} service={{ .Service.Name }}\n",
    );
    let o = m.lb(&[
        "service", "create", "tweb", "--secret", "db_pw", "--secret", "app_conf",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("seen");
    let script = format!(
        "while true; do cat /run/secrets/app_conf > {c}.tmp && mv {c}.tmp {c}; sleep 0.02; done",
        c = copy.display()
    );
    let _run = spawn_bg(w, &["run", "--service", "tweb", "--", "sh", "-c", &script]);
    let seen = || std::fs::read_to_string(&copy).unwrap_or_default();
    let want = |pw: &str| format!("password={pw} node={worker_id} service=tweb\n");
    wait_until(
        "the rendered file on the worker",
        Duration::from_secs(15),
        || seen() == want("pw-one"),
    );
    let o = m.lb_in(&["secret", "rotate", "db_pw", "-"], Some(b"pw-two"));
    assert_eq!(o.code, 0, "{o:?}");
    wait_until(
        "the re-rendered file on the worker",
        Duration::from_secs(15),
        || seen() == want("pw-two"),
    );
}

/// The same through lockbox's Docker socket, as an SDK writes it (lower-case field names at
/// API 1.45, which Go's decoder accepts): the template is stored from the Docker API and
/// rendered at delivery like one made with the CLI.
#[test]
fn a_template_created_through_the_docker_api_renders() {
    use base64::Engine as _;
    let d = Daemon::start();
    d.create("api_pw", b"from-the-cli");
    let template = base64::engine::general_purpose::STANDARD.encode(b"pw={{ secret \"api_pw\" }}");
    let body =
        format!(r#"{{"name":"api_tpl","data":"{template}","templating":{{"name":"golang"}}}}"#);
    let (st, answer) = crate::support::http(
        &d.dir.path().join("docker.sock"),
        "POST",
        "/v1.45/secrets/create",
        Some(&body),
    );
    assert_eq!(st, 201, "{answer}");
    let (_, inspect) = crate::support::http(
        &d.dir.path().join("docker.sock"),
        "GET",
        "/v1.45/secrets/api_tpl",
        None,
    );
    assert!(
        inspect.contains(r#""Templating":{"Name":"golang""#),
        "{inspect}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("seen");
    let script = format!(
        "while true; do cat /run/secrets/api_tpl > {c}.tmp && mv {c}.tmp {c}; sleep 0.02; done",
        c = copy.display()
    );
    let _run = spawn_bg(
        &d,
        &[
            "run", "--secret", "api_pw", "--secret", "api_tpl", "--", "sh", "-c", &script,
        ],
    );
    wait_until("the rendered file", Duration::from_secs(10), || {
        std::fs::read_to_string(&copy).unwrap_or_default() == "pw=from-the-cli"
    });
}

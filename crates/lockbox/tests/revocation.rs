//! Revocation at the edge (trust-boundary finding 10): a worker that stops qualifying for a
//! service loses the values its running workloads were handed, within the documented bound
//! (SECURITY.md: 10 s while a manager is reachable), and the revocation is audited on the
//! worker and on the manager. Each test performs the attack for real: a workload on the
//! worker keeps reading its secret file while the cluster takes the right away, and the
//! test fails if the value is still readable after the bound.
//!
//! Real daemons on loopback, real mutual TLS, real `lockbox run` workloads; seeded through
//! `LOCKBOX_TEST_SEED` like the other cluster tests (printed on failure).
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, json, seed};
use crate::delivery::{Bg, spawn_bg};
use crate::support::{Daemon, marker};

/// SECURITY.md's bound, while a manager is reachable from the worker.
const BOUND: Duration = Duration::from_secs(10);

/// A workload of service `web` running on the worker, appending what it reads from each of
/// `files` (or `GONE`) to a log, one line per read.
struct Reader {
    _bg: Bg,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Reader {
    fn start(w: &Daemon, files: &[&str]) -> Reader {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("seen.log");
        let reads: String = files
            .iter()
            .map(|f| format!("(cat /run/secrets/{f} 2>/dev/null || printf GONE); printf ' ';"))
            .collect();
        let script = format!(
            "while true; do {reads} echo; sleep 0.05; done >> {}",
            log.display()
        );
        let bg = spawn_bg(w, &["run", "--service", "web", "--", "sh", "-c", &script]);
        Reader {
            _bg: bg,
            _dir: dir,
            log,
        }
    }

    fn last(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .rev()
            .nth(1) // the last line may be half-written
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Waits until the last complete read is `want` (within `within`), returns how long.
    fn wait_for(&self, want: &str, within: Duration, s: u64, what: &str) -> Duration {
        self.wait_for_or(want, within, s, what, String::new)
    }

    /// [`Reader::wait_for`], with `context` (the daemons' logs) in the failure message.
    fn wait_for_or(
        &self,
        want: &str,
        within: Duration,
        s: u64,
        what: &str,
        context: impl Fn() -> String,
    ) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if self.last() == want {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "LOCKBOX_TEST_SEED={s}: {what}: the workload still reads {:?} after {within:?} (wanted {want:?}){}",
            self.last(),
            context()
        );
    }
}

fn audit_lines(d: &Daemon) -> Vec<serde_json::Value> {
    std::fs::read_to_string(d.data().join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A `revoke` record for `service` on `d` (with `node` when given: the manager's record
/// names the worker).
fn revoked_on(d: &Daemon, service: &str, node: Option<&str>) -> bool {
    audit_lines(d).iter().any(|r| {
        r["action"] == "revoke"
            && r["detail"]["service"] == service
            && node.is_none_or(|n| r["detail"]["node"] == n)
    })
}

/// The revocation of `web` is audited on the worker and, naming it, on the manager.
fn assert_revoked_on_both(w: &Daemon, m: &Daemon, worker_id: &str) {
    assert!(
        revoked_on(w, "web", None),
        "worker audit:\n{:#?}",
        audit_lines(w)
    );
    assert!(
        revoked_on(m, "web", Some(worker_id)),
        "manager audit:\n{:#?}",
        audit_lines(m)
    );
}

/// `lockbox service update web` moving its placement from `zone==from` to `zone==to`.
fn move_web(d: &Daemon, from: &str, to: &str) -> crate::support::Out {
    d.lb(&[
        "service",
        "update",
        "web",
        "--constraint-rm",
        &format!("node.labels.zone=={from}"),
        "--constraint-add",
        &format!("node.labels.zone=={to}"),
    ])
}

/// A cluster of `managers` managers and one worker (the last node) labelled `zone=a`, and
/// secrets `s1` and `s2` with fresh markers: the cluster, the worker's ID, both values.
fn labelled(managers: usize) -> (Cluster, String, String, String) {
    let (c, _) = Cluster::start(managers, 1, false);
    let worker_id = c.ready_worker();
    let m = &c.nodes[0].d;
    let (st, v) = json(
        m,
        "POST",
        &format!("/v1/nodes/{worker_id}/update"),
        Some(r#"{"LabelAdd":{"zone":"a"}}"#),
    );
    assert_eq!(st, 200, "label the worker: {v}");
    let (v1, v2) = (marker(), marker());
    m.create("s1", v1.as_bytes());
    m.create("s2", v2.as_bytes());
    (c, worker_id, v1, v2)
}

/// `lockbox service create NAME --secret …` placed on `zone==a`.
fn create_placed(m: &Daemon, name: &str, secrets: &[&str]) {
    let mut args = vec!["service", "create", name];
    for x in secrets {
        args.extend(["--secret", x]);
    }
    args.extend(["--constraint", "node.labels.zone==a"]);
    let o = m.lb(&args);
    assert_eq!(o.code, 0, "service create {name}: {o:?}");
}

/// `lockbox docker run --service SERVICE -- -d --name NAME busybox sleep 300` on `w`.
fn run_detached(w: &Daemon, service: &str, name: &str, s: u64) {
    let o = w.lb(&[
        "docker",
        "run",
        "--service",
        service,
        "--",
        "-d",
        "--name",
        name,
        "lockbox-test/busybox:latest",
        "sleep",
        "300",
    ]);
    assert_eq!(
        o.code,
        0,
        "LOCKBOX_TEST_SEED={s}: docker run {service}: {o:?}\n{}",
        w.log_text()
    );
}

/// A cluster of `managers` managers and one worker labelled `zone=a`; secrets `s1` and `s2`
/// attached to service `web`, placed on `zone==a`; a workload of `web` on the worker reading
/// both. Returns the cluster, the worker's ID, both values and the reader.
fn placed(managers: usize) -> (Cluster, String, String, String, Reader) {
    let (c, worker_id, v1, v2) = labelled(managers);
    let m = &c.nodes[0].d;
    create_placed(m, "web", &["s1", "s2"]);
    let w = &c.nodes[managers].d;
    let r = Reader::start(w, &["s1", "s2"]);
    let s = seed();
    r.wait_for(
        &format!("{v1} {v2}"),
        Duration::from_secs(20),
        s,
        "first read",
    );
    (c, worker_id, v1, v2, r)
}

#[test]
fn a_placement_change_takes_the_values_back_within_the_bound_and_gives_them_back() {
    let s = seed();
    let (c, worker_id, v1, v2, r) = placed(1);
    let (m, w) = (&c.nodes[0].d, &c.nodes[1].d);
    let o = move_web(m, "a", "b");
    assert_eq!(o.code, 0, "{o:?}");
    let took = r.wait_for(
        "GONE GONE",
        BOUND,
        s,
        "placement no longer admits the worker",
    );
    println!("revoked after {took:?}");
    assert_revoked_on_both(w, m, &worker_id);
    // A new workload of the service cannot fetch them either.
    let o = w.lb(&["run", "--service", "web", "--", "cat", "/run/secrets/s1"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains(&v1), "{o:?}");
    // Placed on the worker again: the running workload gets them back.
    let o = move_web(m, "b", "a");
    assert_eq!(o.code, 0, "{o:?}");
    r.wait_for(&format!("{v1} {v2}"), BOUND, s, "placed again");
}

#[test]
fn draining_the_worker_takes_the_values_back() {
    let s = seed();
    let (c, worker_id, _, _, r) = placed(1);
    let (m, w) = (&c.nodes[0].d, &c.nodes[1].d);
    let o = m.lb(&["node", "update", "--availability", "drain", &worker_id]);
    assert_eq!(o.code, 0, "{o:?}");
    let took = r.wait_for("GONE GONE", BOUND, s, "drained");
    println!("revoked after {took:?}");
    assert!(
        revoked_on(w, "web", None),
        "worker audit:\n{:#?}",
        audit_lines(w)
    );
    let rec = audit_lines(m)
        .into_iter()
        .find(|r| r["action"] == "revoke" && r["detail"]["node"] == worker_id.as_str())
        .unwrap_or_else(|| panic!("LOCKBOX_TEST_SEED={s}: no revoke on the manager"));
    assert!(
        rec["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("drained"),
        "{rec}"
    );
}

#[test]
fn removing_the_worker_takes_the_values_back() {
    let s = seed();
    let (c, worker_id, _, _, r) = placed(1);
    let (m, w) = (&c.nodes[0].d, &c.nodes[1].d);
    let (st, v) = json(m, "DELETE", &format!("/v1/nodes/{worker_id}"), None);
    assert_eq!(st, 200, "{v}");
    let took = r.wait_for("GONE GONE", BOUND, s, "node rm");
    println!("revoked after {took:?}");
    assert_revoked_on_both(w, m, &worker_id);
}

#[test]
fn secret_rm_takes_that_secret_back_and_leaves_the_others() {
    let s = seed();
    let (c, worker_id, _, v2, r) = placed(1);
    let (m, w) = (&c.nodes[0].d, &c.nodes[1].d);
    let o = m.lb(&["service", "update", "web", "--secret-rm", "s1"]);
    assert_eq!(o.code, 0, "{o:?}");
    r.wait_for(&format!("GONE {v2}"), BOUND, s, "--secret-rm s1");
    let detached = audit_lines(m).into_iter().any(|r| {
        r["action"] == "revoke"
            && r["detail"]["node"] == worker_id.as_str()
            && r["detail"]["secrets"] == "s1"
    });
    assert!(detached, "manager audit:\n{:#?}", audit_lines(m));
    let on_worker = audit_lines(w).into_iter().any(|r| {
        r["action"] == "revoke" && r["detail"]["secrets"] == "s1" && r["detail"]["service"] == "web"
    });
    assert!(on_worker, "worker audit:\n{:#?}", audit_lines(w));
}

#[test]
fn the_revocation_reaches_the_worker_when_the_manager_holding_its_registrations_dies() {
    let s = seed();
    let (mut c, worker_id, _, _, r) = placed(3);
    // The manager the worker's agent follows (the one that hears its heartbeats).
    let follows = |d: &Daemon| {
        let (_, v) = json(d, "GET", "/v1/nodes", None);
        v.as_array()
            .into_iter()
            .flatten()
            .any(|n| n["ID"] == worker_id.as_str() && n["Status"] == "ready")
    };
    let holder = (0..3)
        .find(|i| follows(&c.nodes[*i].d))
        .unwrap_or_else(|| panic!("LOCKBOX_TEST_SEED={s}: no manager hears the worker"));
    c.nodes[holder].d.kill9();
    let other = (holder + 1) % 3;
    // Writes resume once the two left have a leader (the update is idempotent: retried).
    let t0 = Instant::now();
    loop {
        let o = move_web(&c.nodes[other].d, "a", "b");
        if o.code == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "LOCKBOX_TEST_SEED={s}: writes never resumed: {o:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("the update committed {:?} after the kill", t0.elapsed());
    let w = &c.nodes[3].d;
    let took = r.wait_for_or("GONE GONE", BOUND, s, "the holding manager died", || {
        let mut out = format!("\nworker log:\n{}", w.log_text());
        for i in (0..3).filter(|i| *i != holder) {
            out += &format!("\nmanager {i} log:\n{}", c.nodes[i].d.log_text());
        }
        out
    });
    println!("revoked {took:?} after the update committed");
    assert!(
        revoked_on(w, "web", None),
        "worker audit:\n{:#?}",
        audit_lines(w)
    );
    let on_a_manager = (0..3)
        .filter(|i| *i != holder)
        .any(|i| revoked_on(&c.nodes[i].d, "web", Some(&worker_id)));
    assert!(
        on_a_manager,
        "LOCKBOX_TEST_SEED={s}: no manager audited the revocation"
    );
}

/// Removes the named containers when dropped (test failure included).
struct Named(Vec<String>);

impl Drop for Named {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = crate::delivery::docker(&["rm", "-f", n]);
        }
    }
}

#[test]
fn containers_on_a_drained_worker_lose_their_files_and_one_with_an_absolute_target_stops() {
    let s = seed();
    let (c, worker_id, v1, v2) = labelled(1);
    let (m, w) = (&c.nodes[0].d, &c.nodes[1].d);
    create_placed(m, "web", &["s1"]);
    create_placed(m, "abs", &["source=s2,target=/etc/app/key"]);
    let names = Named(vec![
        crate::delivery::rand_name("edge-revoke"),
        crate::delivery::rand_name("edge-revoke"),
    ]);
    for (service, name) in [("web", &names.0[0]), ("abs", &names.0[1])] {
        run_detached(w, service, name, s);
    }
    let exec_cat = |name: &str, path: &str| crate::delivery::docker(&["exec", name, "cat", path]);
    assert_eq!(exec_cat(&names.0[0], "/run/secrets/s1").stdout, v1);
    assert_eq!(exec_cat(&names.0[1], "/etc/app/key").stdout, v2);

    let o = m.lb(&["node", "update", "--availability", "drain", &worker_id]);
    assert_eq!(o.code, 0, "{o:?}");
    let t0 = Instant::now();
    let running = |name: &str| {
        crate::delivery::docker(&["inspect", "-f", "{{.State.Running}}", name])
            .stdout
            .trim()
            == "true"
    };
    loop {
        let gone = exec_cat(&names.0[0], "/run/secrets/s1");
        if gone.code != 0 && !running(&names.0[1]) {
            assert!(!gone.stdout.contains(&v1));
            break;
        }
        assert!(
            t0.elapsed() < BOUND,
            "LOCKBOX_TEST_SEED={s}: after {BOUND:?}, web reads {:?}, abs running: {}\nworker log:\n{}",
            gone.stdout,
            running(&names.0[1]),
            w.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("revoked from both containers after {:?}", t0.elapsed());
    // The relative-target container keeps running, without the file.
    assert!(running(&names.0[0]));
    assert!(revoked_on(w, "web", None) && revoked_on(w, "abs", None));
}

/// A worker that was down while it was removed: its detached container (re-attached when
/// the worker's daemon comes back) loses its files as soon as a manager refuses the
/// worker's watch.
#[test]
fn a_worker_removed_while_down_loses_the_values_when_it_comes_back() {
    let s = seed();
    let (mut c, worker_id, v1, _) = labelled(1);
    let m = &c.nodes[0].d;
    create_placed(m, "web", &["s1"]);
    let names = Named(vec![crate::delivery::rand_name("edge-revoke")]);
    run_detached(&c.nodes[1].d, "web", &names.0[0], s);
    let cat = || crate::delivery::docker(&["exec", &names.0[0], "cat", "/run/secrets/s1"]);
    assert_eq!(cat().stdout, v1);
    // The worker goes down (its container keeps running, its tmpfs stays for the restart).
    c.nodes[1].d.stop();
    let (st, v) = json(
        &c.nodes[0].d,
        "DELETE",
        &format!("/v1/nodes/{worker_id}?force=1"),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(cat().stdout, v1, "nobody could tell the worker yet");
    c.nodes[1].d.spawn(&[]);
    let t0 = Instant::now();
    loop {
        let o = cat();
        if o.code != 0 {
            assert!(!o.stdout.contains(&v1));
            break;
        }
        assert!(
            t0.elapsed() < BOUND,
            "LOCKBOX_TEST_SEED={s}: the removed worker's container still reads its secret after {BOUND:?}\nworker log:\n{}",
            c.nodes[1].d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("revoked {:?} after the worker came back", t0.elapsed());
    assert!(
        revoked_on(&c.nodes[1].d, "web", None),
        "worker audit:\n{:#?}",
        audit_lines(&c.nodes[1].d)
    );
}

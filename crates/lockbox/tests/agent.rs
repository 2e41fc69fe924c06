//! Need-to-know distribution to workers (invariant 4): a worker's agent gets a secret only
//! for a service placed on it and only while it runs a workload of that service; refusals
//! and hand-outs are audited on the manager; rotations reach running workloads on the
//! worker; nothing of a value lands on the worker's disk.
//!
//! Real daemons on loopback, real mutual TLS: the direct `/agent/fetch` calls below present
//! the worker's own certificate and key from its data directory.
use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{Cluster, json};
use crate::delivery::{spawn_bg, wait_until};
use crate::keys::walk;
use crate::plaintext::assert_no_markers;
use crate::support::{Daemon, marker, parse_response};

/// One request to `addr`'s node API over mutual TLS with the certificate and key in `from`'s
/// data directory (`cluster/node.key`, `node.crt`, `ca.crt`, all DER).
pub(crate) fn node_call(from: &Daemon, addr: &str, path: &str, body: &str) -> (u16, String) {
    let dir = from.data().join("cluster");
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let ca = read("ca.crt");
    let config: Arc<rustls::ClientConfig> = lockbox_cluster::tls::client_config(
        &ca,
        vec![read("node.crt"), ca.clone()],
        &read("node.key"),
    )
    .unwrap();
    let conn = rustls::ClientConnection::new(config, lockbox_cluster::tls::server_name()).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: lockbox-node\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    // The server may close without close_notify: what was read is the answer.
    let _ = tls.read_to_end(&mut resp);
    let (status, _, body) = parse_response(&resp);
    (status, body)
}

fn audit(d: &Daemon) -> String {
    std::fs::read_to_string(d.data().join("audit.log")).unwrap()
}

#[test]
fn a_worker_gets_only_secrets_of_services_placed_on_it_and_refusals_are_audited() {
    let (mut c, _) = Cluster::start(1, 1, false);
    let worker_id = c.ready_worker();
    let manager_addr = c.nodes[0].addr.clone();
    let (m, w) = (&c.nodes[0].d, &c.nodes[1].d);
    let (st, v) = json(
        m,
        "POST",
        &format!("/v1/nodes/{worker_id}/update"),
        Some(r#"{"LabelAdd":{"zone":"a"}}"#),
    );
    assert_eq!(st, 200, "label the worker: {v}");
    let (v1, v2, v3) = (marker(), marker(), marker());
    m.create("s1", v1.as_bytes());
    m.create("s2", v2.as_bytes());
    for (name, secret, zone) in [("web", "s1", "a"), ("db", "s2", "b")] {
        let o = m.lb(&[
            "service",
            "create",
            name,
            "--secret",
            secret,
            "--constraint",
            &format!("node.labels.zone=={zone}"),
        ]);
        assert_eq!(o.code, 0, "service create {name}: {o:?}");
    }

    // A service placed on the worker: its workload reads the value.
    let o = w.lb(&["run", "--service", "web", "--", "cat", "/run/secrets/s1"]);
    assert_eq!(
        o.code,
        0,
        "run web on the worker: {o:?}\nworker:\n{}\nmanager:\n{}",
        w.log_text(),
        m.log_text()
    );
    assert_eq!(o.stdout, v1);
    let a = audit(m);
    assert!(
        a.lines().any(|l| l.contains("\"handout\"")
            && l.contains(&format!("node:{worker_id}"))
            && l.contains("web")),
        "the hand-out to the worker is audited on the manager:\n{a}"
    );

    // A service not placed on it: refused, with the rule named, and audited.
    let o = w.lb(&["run", "--service", "db", "--", "cat", "/run/secrets/s2"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("placement") && o.stderr.contains("node.labels.zone==b"),
        "{o:?}"
    );
    assert!(!o.stdout.contains(&v2));
    let refused = |service: &str| {
        audit(m).lines().any(|l| {
            l.contains("handout-refused")
                && l.contains(&format!("node:{worker_id}"))
                && l.contains(service)
        })
    };
    assert!(refused("db"), "refusal audited:\n{}", audit(m));

    // Ad-hoc references need a manager.
    let o = w.lb(&["run", "--secret", "s1", "--", "true"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr
            .contains("on a worker, secrets come through a service placed on this node"),
        "{o:?}"
    );

    // The worker's own certificate, straight at the manager: db is refused by placement,
    // web without a registered workload is refused too; both audited.
    let before = audit(m).lines().count();
    let (st, body) = node_call(
        w,
        &manager_addr,
        "/agent/fetch",
        r#"{"Service":"db","Workload":"0123456789abcdef01234567"}"#,
    );
    assert_eq!(st, 403, "{body}");
    assert!(
        body.contains("placement") && body.contains("node.labels.zone==b"),
        "{body}"
    );
    assert!(!body.contains(&v2));
    let (st, body) = node_call(
        w,
        &manager_addr,
        "/agent/fetch",
        r#"{"Service":"web","Workload":"0123456789abcdef01234567"}"#,
    );
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("no running workload"), "{body}");
    assert!(!body.contains(&crate::cluster::base64(v1.as_bytes())));
    let a = audit(m);
    let new: Vec<&str> = a.lines().skip(before).collect();
    assert_eq!(
        new.iter()
            .filter(|l| l.contains("handout-refused") && l.contains(&format!("node:{worker_id}")))
            .count(),
        2,
        "both direct refusals audited: {new:#?}"
    );
    assert!(!new.iter().any(|l| l.contains("\"handout\"")), "{new:#?}");

    // On the manager, placement is enforced too: it has no zone label.
    let o = m.lb(&["run", "--service", "web", "--", "true"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("node.labels.zone==a"), "{o:?}");

    // Rotation on the manager reaches a running workload on the worker (pushed down the
    // watch stream, re-fetched, swapped into the workload's tmpfs).
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("seen.log");
    let script = format!(
        "while true; do cat /run/secrets/s1 >> {l}; echo >> {l}; sleep 0.05; done",
        l = log.display()
    );
    let bg = spawn_bg(w, &["run", "--service", "web", "--", "sh", "-c", &script]);
    let seen = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("the workload reads s1", Duration::from_secs(15), || {
        seen().contains(&v1)
    });
    let o = m.lb_in(&["secret", "rotate", "s1", "-"], Some(v3.as_bytes()));
    assert_eq!(o.code, 0, "rotate: {o:?}");
    wait_until(
        "the rotation reaches the worker",
        Duration::from_secs(15),
        || seen().lines().last() == Some(v3.as_str()),
    );

    // Managers unreachable: the running workload keeps its value; a new one fails clearly.
    c.nodes[0].d.stop();
    let w = &c.nodes[1].d;
    let lines = seen().lines().count();
    std::thread::sleep(Duration::from_millis(500));
    assert!(seen().lines().count() > lines, "the workload keeps running");
    assert_eq!(seen().lines().last(), Some(v3.as_str()));
    let o = w.lb(&["run", "--service", "web", "--", "true"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("no lockbox manager is reachable"),
        "{o:?}"
    );
    drop(bg);

    // Nothing of a value on the worker's disk or in its log.
    let mut places: Vec<(String, Vec<u8>)> = walk(&w.data())
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    places.push(("worker log".into(), w.log_text().into_bytes()));
    assert_no_markers(&places, &[v1, v2, v3]);
}

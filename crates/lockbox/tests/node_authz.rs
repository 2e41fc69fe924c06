//! The node API's authorization matrix: every node-API route of the gate's table driven over
//! real mutual TLS against a real cluster (one manager, one worker) with a manager's
//! certificate, a worker's, none, and one from another CA; each answer checked cell by cell
//! and each refusal found in the audit log with the certificate's node ID.
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lockbox_daemon::gate::{Need, RULES, Socket};
use lockbox_daemon::node_gate;

use crate::cluster::{Cluster, seed};
use crate::support::parse_response;

/// Who presents what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cert {
    Manager,
    Worker,
    None,
    ForeignCa,
}

/// One node-API request with `config`: the status, or how the connection failed. Reads
/// only the status line (`/agent/watch` answers with a stream that does not end).
fn request(config: Arc<rustls::ClientConfig>, addr: &str, path: &str) -> Result<u16, String> {
    let conn = rustls::ClientConnection::new(config, lockbox_cluster::tls::server_name())
        .map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: lockbox-node\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = tls.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before a status line".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(parse_response(&head).0)
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join("cluster").join(name)).unwrap()
}

/// The client configuration for `cert`: a node's own files from its data directory, none,
/// or a certificate issued to node 1 of a cluster by a CA of its own.
fn config_for(cert: Cert, c: &Cluster) -> Arc<rustls::ClientConfig> {
    let manager = c.nodes[0].d.data();
    let ca = read(&manager, "ca.crt");
    match cert {
        Cert::Manager | Cert::Worker => {
            let dir = if cert == Cert::Manager {
                manager
            } else {
                c.nodes[1].d.data()
            };
            lockbox_cluster::tls::client_config(
                &ca,
                vec![read(&dir, "node.crt"), ca.clone()],
                &read(&dir, "node.key"),
            )
            .unwrap()
        }
        Cert::None => {
            lockbox_cluster::tls::bootstrap_client_config(lockbox_cluster::pki::cert_digest(&ca))
                .unwrap()
        }
        Cert::ForeignCa => {
            use lockbox_cluster::pki::{ClusterCa, NodeKey};
            let other = ClusterCa::generate("foreign-cluster").unwrap();
            let key = NodeKey::generate().unwrap();
            let leaf = other
                .issue(
                    &key.csr_der().unwrap(),
                    1,
                    lockbox_cluster::Role::Manager,
                    "foreign-cluster",
                    SystemTime::now(),
                    Duration::from_secs(3600),
                )
                .unwrap();
            // It trusts the real cluster's CA, so only the server can refuse it.
            lockbox_cluster::tls::client_config(
                &ca,
                vec![leaf, other.cert_der().to_vec()],
                &key.key_der(),
            )
            .unwrap()
        }
    }
}

/// What the table says `cert` gets: `Ok(true)` allowed, `Ok(false)` refused by the gate
/// (401 without a certificate, 403 otherwise), `Err` the handshake fails.
fn expected(need: Need, cert: Cert) -> Result<bool, ()> {
    match (cert, need) {
        (Cert::ForeignCa, _) => Err(()),
        (_, Need::JoinToken) => Ok(true),
        (Cert::None, _) => Ok(false),
        (Cert::Manager, Need::RaftPeer | Need::NodeCert | Need::ManagerCert) => Ok(true),
        (Cert::Worker, Need::NodeCert | Need::WorkerCert) => Ok(true),
        _ => Ok(false),
    }
}

/// A concrete request for a route pattern (`{op}`: a raft RPC name; the `{}` body is
/// refused by the handler, after the gate, with 400).
fn concrete(path: &str) -> String {
    path.replace("{op}", "vote")
}

fn denials(c: &Cluster) -> Vec<serde_json::Value> {
    std::fs::read_to_string(c.nodes[0].d.data().join("audit.log"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["action"] == "access-denied" && r["detail"]["socket"] == "node")
        .collect()
}

#[test]
fn node_api_matrix_every_route_every_certificate() {
    let s = seed();
    let (c, _) = Cluster::start(1, 1, false);
    let worker_id = c.ready_worker();
    let (_, v) = crate::cluster::json(&c.nodes[0].d, "GET", "/v1/cluster", None);
    let manager_id = v["Self"]["ID"].as_str().unwrap_or_default().to_string();
    let addr = c.nodes[0].addr.clone();
    let before = denials(&c).len();
    let mut failures = Vec::new();
    let mut refused = Vec::new();
    let rows: Vec<_> = RULES.iter().filter(|r| r.socket == Socket::Node).collect();
    assert!(rows.len() >= 8, "the node API's rows: {rows:?}");
    for cert in [Cert::Manager, Cert::Worker, Cert::None, Cert::ForeignCa] {
        for r in &rows {
            let path = concrete(r.path);
            let got = request(config_for(cert, &c), &addr, &path);
            let cell = format!("{} {path} as {cert:?}", r.method);
            match (expected(r.need, cert), &got) {
                (Err(()), Err(_)) => {}
                (Ok(true), Ok(st)) if *st != 401 && *st != 403 => {}
                (Ok(false), Ok(401)) if cert == Cert::None => refused.push((cert, path)),
                (Ok(false), Ok(403)) if cert != Cert::None => refused.push((cert, path)),
                _ => failures.push(format!("{cell}: got {got:?}, needs {}", r.need.name())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "LOCKBOX_TEST_SEED={s}: node-API matrix cells wrong:\n{}\nmanager log:\n{}",
        failures.join("\n"),
        c.nodes[0].d.log_text()
    );
    // Each refusal is in the manager's audit log, with the certificate's node ID (or the
    // peer's address when it presented none).
    let new: Vec<_> = denials(&c).into_iter().skip(before).collect();
    for (cert, path) in &refused {
        let actor = match cert {
            Cert::Manager => format!("node:{manager_id}"),
            Cert::Worker => format!("node:{worker_id}"),
            _ => "peer:".to_string(),
        };
        assert!(
            new.iter().any(|r| r["detail"]["path"] == path.as_str()
                && r["actor"].as_str().unwrap_or_default().starts_with(&actor)),
            "LOCKBOX_TEST_SEED={s}: refusal of {path} as {cert:?} not audited as {actor}: {new:#?}"
        );
    }
    // One record per refusal (raft's throttle allows the first of each node).
    assert_eq!(new.len(), refused.len(), "{new:#?}");
    // A route without a row needs a manager: a worker is refused, a manager finds nothing.
    assert_eq!(
        request(config_for(Cert::Worker, &c), &addr, "/cluster/nope"),
        Ok(403)
    );
    assert_eq!(
        request(config_for(Cert::Manager, &c), &addr, "/cluster/nope"),
        Ok(404)
    );
}

/// SECURITY.md's node-API matrix is the gate's table.
#[test]
fn security_md_node_matrix_is_the_gate_table() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../SECURITY.md"))
            .unwrap();
    let expected = node_gate::markdown_matrix();
    assert!(
        doc.contains(&expected),
        "SECURITY.md's node-API matrix differs from the node rows of crates/daemon/src/gate.rs; paste this between its markers:\n{expected}"
    );
}

/// A node cannot act for another: the gate gives handlers the certificate's node only, so
/// worker B presenting worker A's running workload gets nothing (A's registration is A's),
/// and the refusal is audited with B's ID.
#[test]
fn a_worker_cannot_fetch_for_another_workers_workload() {
    let s = seed();
    let (c, _) = Cluster::start(1, 2, false);
    let m = &c.nodes[0].d;
    let value = crate::support::marker();
    m.create("shared", value.as_bytes());
    let o = m.lb(&["service", "create", "web", "--secret", "shared"]);
    assert_eq!(o.code, 0, "{o:?}");
    let (a, b) = (&c.nodes[1].d, &c.nodes[2].d);
    // Both agents up; B's ID is the node record with B's address.
    crate::delivery::wait_until("both workers joined", Duration::from_secs(20), || {
        let (_, v) = crate::cluster::json(m, "GET", "/v1/nodes", None);
        v.as_array().is_some_and(|l| {
            l.iter()
                .filter(|n| n["Role"] == "worker" && n["Status"] == "ready")
                .count()
                == 2
        })
    });
    let (_, nodes) = crate::cluster::json(m, "GET", "/v1/nodes", None);
    let b_id = nodes
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["Addr"] == c.nodes[2].addr.as_str())
        .and_then(|n| n["ID"].as_str())
        .unwrap_or_else(|| panic!("worker B's record: {nodes}"))
        .to_owned();
    let _bg = crate::delivery::spawn_bg(a, &["run", "--service", "web", "--", "sleep", "60"]);
    let mut workload = String::new();
    crate::delivery::wait_until("A's workload runs", Duration::from_secs(20), || {
        let (_, body) = a.http("GET", "/v1/workloads", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        workload = v[0]["ID"].as_str().unwrap_or_default().to_owned();
        !workload.is_empty()
    });
    let (st, body) = crate::agent::node_call(
        b,
        &c.nodes[0].addr,
        "/agent/fetch",
        &format!(r#"{{"Service":"web","Workload":"{workload}"}}"#),
    );
    assert_eq!(st, 403, "LOCKBOX_TEST_SEED={s}: {body}");
    assert!(body.contains("no running workload"), "{body}");
    assert!(!body.contains(&crate::cluster::base64(value.as_bytes())));
    let audited = std::fs::read_to_string(m.data().join("audit.log"))
        .unwrap()
        .lines()
        .any(|l| {
            l.contains("handout-refused")
                && l.contains(&format!("node:{b_id}"))
                && l.contains(&workload)
        });
    assert!(
        audited,
        "LOCKBOX_TEST_SEED={s}: refusal not audited with B's node ID"
    );
}

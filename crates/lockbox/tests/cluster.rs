//! Cluster tests: real daemons on loopback addresses (and, for partitions, in their own
//! network namespaces joined by veth pairs to a bridge), real mutual TLS, real raft.
//!
//! Raft timing is shortened for tests (`LOCKBOX_RAFT_TIMING`: heartbeat 100 ms, election
//! 800–1600 ms, generous for a loaded 2-core CI machine); randomness comes from `LOCKBOX_TEST_SEED` (printed on failure).
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Daemon;
pub(crate) use crate::support::seed;

const TIMING: (&str, &str) = ("LOCKBOX_RAFT_TIMING", "100,800,1600");

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn json(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (st, text) = d.http(method, path, body);
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// One node: its daemon and the address its node API listens on.
pub(crate) struct Node {
    pub(crate) d: Daemon,
    pub(crate) addr: String,
}

pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Node>,
}

impl Cluster {
    /// `managers` managers (node 0 runs `cluster init`), then `workers` workers.
    pub(crate) fn start(
        managers: usize,
        workers: usize,
        autolock: bool,
    ) -> (Cluster, Option<String>) {
        let mut nodes = Vec::new();
        for _ in 0..managers + workers {
            let addr = format!("127.0.0.1:{}", free_port());
            nodes.push(Node {
                d: Daemon::start_in(&[], &[TIMING], &[]),
                addr,
            });
        }
        let mut c = Cluster { nodes };
        let key = c.init(autolock);
        for i in 1..managers + workers {
            let role = if i < managers { "manager" } else { "worker" };
            c.join(i, role);
        }
        (c, key)
    }

    pub(crate) fn init(&mut self, autolock: bool) -> Option<String> {
        let n = &self.nodes[0];
        let body = serde_json::json!({"AdvertiseAddr": n.addr, "ListenAddr": n.addr, "Autolock": autolock});
        let (st, v) = json(&n.d, "POST", "/v1/cluster/init", Some(&body.to_string()));
        assert_eq!(st, 200, "cluster init: {v}\n{}", n.d.log_text());
        v["UnlockKey"].as_str().map(str::to_owned)
    }

    pub(crate) fn token(&self, role: &str) -> String {
        let (st, v) = json(
            &self.nodes[0].d,
            "GET",
            &format!("/v1/cluster/join-token/{role}"),
            None,
        );
        assert_eq!(st, 200, "join-token: {v}");
        v["Token"].as_str().unwrap().to_string()
    }

    pub(crate) fn join(&mut self, i: usize, role: &str) {
        let token = self.token(role);
        let n = &self.nodes[i];
        let body = serde_json::json!({"Token": token, "RemoteAddr": self.nodes[0].addr, "ListenAddr": n.addr, "AdvertiseAddr": n.addr});
        let (st, v) = json(&n.d, "POST", "/v1/cluster/join", Some(&body.to_string()));
        assert_eq!(st, 200, "join node {i}: {v}\n{}", n.d.log_text());
        assert_eq!(v["Role"], role);
    }

    /// The index of the node that says it leads, waiting up to `within`.
    pub(crate) fn leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            for (i, n) in self.nodes.iter().enumerate() {
                if n.d.child.is_none() {
                    continue;
                }
                let (st, v) = json(&n.d, "GET", "/v1/cluster", None);
                if st == 200 && v["Self"]["IsLeader"] == true {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The ID of a worker whose agent reaches node 0 (waits up to 15 s).
    pub(crate) fn ready_worker(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, v) = json(&self.nodes[0].d, "GET", "/v1/nodes", None);
            if let Some(w) = v
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["Role"] == "worker" && n["Status"] == "ready")
            {
                return w["ID"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "worker never ready: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn create(&self, i: usize, name: &str, value: &[u8]) -> (u16, String) {
        let body = serde_json::json!({"Name": name, "Data": base64(value)});
        self.nodes[i]
            .d
            .http("POST", "/v1/secrets/create", Some(&body.to_string()))
    }
}

pub(crate) fn base64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn three_managers_elect_one_leader_and_replicate_forwarded_writes() {
    let (c, _) = Cluster::start(3, 0, false);
    let leader = c.leader(Duration::from_secs(10));
    let (st, nodes) = json(&c.nodes[0].d, "GET", "/v1/nodes", None);
    assert_eq!(st, 200);
    let nodes = nodes.as_array().unwrap().clone();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(nodes.iter().all(|n| n["Role"] == "manager"));
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n["ManagerStatus"] == "Leader")
            .count(),
        1,
        "{nodes:?}"
    );
    // A write on a follower is forwarded to the leader; a read on any node sees it.
    let follower = (leader + 1) % 3;
    let (st, body) = c.create(follower, "db_password", b"s3cr3t");
    assert_eq!(st, 201, "create on a follower: {body}");
    for n in &c.nodes {
        let (st, v) = json(&n.d, "GET", "/v1/secrets/db_password", None);
        assert_eq!(st, 200, "inspect on {}: {v}", n.addr);
        assert_eq!(v["Spec"]["Name"], "db_password");
    }
    // Every manager holds the cluster's KEK: a config (whose value inspect shows) written on
    // one manager is readable on another.
    let body = serde_json::json!({"Name": "app_conf", "Data": base64(b"port=80")});
    let (st, _) = c.nodes[leader]
        .d
        .http("POST", "/v1/configs/create", Some(&body.to_string()));
    assert_eq!(st, 201);
    let (st, v) = json(&c.nodes[follower].d, "GET", "/v1/configs/app_conf", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["Spec"]["Data"], base64(b"port=80"));
}

#[test]
fn a_kek_rotation_reaches_every_manager() {
    let (mut c, _) = Cluster::start(3, 0, false);
    let leader = c.leader(Duration::from_secs(10));
    let body = serde_json::json!({"Name": "conf", "Data": base64(b"before-rotation")});
    assert_eq!(
        c.nodes[leader]
            .d
            .http("POST", "/v1/configs/create", Some(&body.to_string()))
            .0,
        201
    );
    let (st, v) = json(&c.nodes[leader].d, "POST", "/v1/kek/rotate", None);
    assert_eq!(st, 200, "kek rotate: {v}");
    let body = serde_json::json!({"Name": "conf2", "Data": base64(b"after-rotation")});
    assert_eq!(
        c.nodes[leader]
            .d
            .http("POST", "/v1/configs/create", Some(&body.to_string()))
            .0,
        201
    );
    for i in 0..3 {
        for (name, value) in [
            ("conf", &b"before-rotation"[..]),
            ("conf2", b"after-rotation"),
        ] {
            let (st, v) = json(&c.nodes[i].d, "GET", &format!("/v1/configs/{name}"), None);
            assert_eq!(st, 200, "node {i} {name}: {v}");
            assert_eq!(v["Spec"]["Data"], base64(value));
        }
    }
    // The followers persisted the new KEK: after a restart they still open everything, and
    // the cluster can still issue certificates and check tokens (re-sealed secrets).
    let follower = (leader + 1) % 3;
    c.nodes[follower].d.restart(&[]);
    let (st, v) = json(&c.nodes[follower].d, "GET", "/v1/configs/conf2", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["Spec"]["Data"], base64(b"after-rotation"));
    let (st, v) = json(
        &c.nodes[follower].d,
        "GET",
        "/v1/cluster/join-token/worker",
        None,
    );
    assert_eq!(st, 200, "{v}");
}

#[test]
fn killing_the_leader_resumes_writes_within_five_seconds() {
    let (mut c, _) = Cluster::start(3, 0, false);
    let leader = c.leader(Duration::from_secs(10));
    assert_eq!(c.create(leader, "before", b"v").0, 201);
    let other = (leader + 1) % 3;
    c.nodes[leader].d.kill9();
    let killed = Instant::now();
    let mut n = 0;
    let resumed = loop {
        n += 1;
        let (st, _) = c.create(other, &format!("after-{n}"), b"v");
        if st == 201 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "writes never resumed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("writes resumed {resumed:?} after kill -9 of the leader (election 800–1600 ms)");
    assert!(resumed < Duration::from_secs(5), "took {resumed:?}");
    // The old leader comes back as a follower and catches up.
    c.nodes[leader].d.spawn(&[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, _) = json(
            &c.nodes[leader].d,
            "GET",
            &format!("/v1/secrets/after-{n}"),
            None,
        );
        if st == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "restarted node did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn join_tokens_refuse_wrong_rotated_and_foreign() {
    let (c, _) = Cluster::start(1, 0, false);
    let old = c.token("worker");
    let (st, v) = json(
        &c.nodes[0].d,
        "GET",
        "/v1/cluster/join-token/worker?rotate=true",
        None,
    );
    assert_eq!(st, 200);
    let new = v["Token"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    assert_eq!(old[..60], new[..60], "rotation keeps the CA digest part");

    let joiner = Daemon::start_in(&[], &[TIMING], &[]);
    let addr = format!("127.0.0.1:{}", free_port());
    let try_join = |token: &str| {
        let body = serde_json::json!({"Token": token, "RemoteAddr": c.nodes[0].addr, "ListenAddr": addr, "AdvertiseAddr": addr});
        json(&joiner, "POST", "/v1/cluster/join", Some(&body.to_string()))
    };
    let (st, v) = try_join(&old);
    assert_eq!(st, 401, "rotated token: {v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("invalid join token"),
        "{v}"
    );
    // A token of another cluster: the digest does not match this manager's CA, so the
    // joining node refuses the server before sending the token.
    let (other, _) = Cluster::start(1, 0, false);
    let foreign = other.token("worker");
    let (st, v) = try_join(&foreign);
    assert!(st >= 400, "foreign token: {v}");
    let msg = v["message"].as_str().unwrap().to_lowercase();
    // Refused by the joining node's own TLS check (the server's CA is not the token's), not
    // by a connection failure or the manager.
    assert!(msg.contains("digest"), "{v}");
    let (st, v) = try_join("LBXTKN-1-nonsense");
    assert_eq!(st, 400, "{v}");
    // The manager audited the refused attempt.
    let audit = std::fs::read_to_string(c.nodes[0].d.data().join("audit.log")).unwrap();
    assert!(audit.contains("node-join-refused"), "{audit}");
    // The refused node is still a working single node.
    assert_eq!(joiner.http("GET", "/v1/secrets", None).0, 200);
}

#[test]
fn autolock_shares_unlock_with_k_and_not_with_k_minus_one() {
    let (mut c, key) = Cluster::start(3, 0, true);
    let key = key.expect("init --autolock shows the key");
    assert!(key.starts_with("LBXKEY-1-"));
    let leader = c.leader(Duration::from_secs(10));
    assert_eq!(c.create(leader, "s", b"v").0, 201);
    let (st, v) = json(
        &c.nodes[0].d,
        "POST",
        "/v1/cluster/unlock-key?split=3/5",
        None,
    );
    assert_eq!(st, 200, "{v}");
    let shares: Vec<String> = v["Shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(shares.len(), 5);
    // Every manager restarts locked.
    let victim = (leader + 1) % 3;
    c.nodes[victim].d.restart(&[]);
    let (st, v) = json(&c.nodes[victim].d, "GET", "/v1/secrets", None);
    assert_eq!(st, 503, "locked after restart: {v}");
    let unlock = |s: &[String]| {
        let body = serde_json::json!({"Shares": s});
        json(
            &c.nodes[victim].d,
            "POST",
            "/v1/unlock",
            Some(&body.to_string()),
        )
    };
    let (st, v) = unlock(&shares[..2]);
    assert!(
        st == 400 || st == 401,
        "2 of 3 shares must not unlock: {st} {v}"
    );
    assert_eq!(json(&c.nodes[victim].d, "GET", "/v1/secrets", None).0, 503);
    let (st, v) = unlock(&[shares[4].clone(), shares[1].clone(), shares[2].clone()]);
    assert_eq!(st, 200, "3 shares unlock: {v}");
    let (st, v) = json(&c.nodes[victim].d, "GET", "/v1/secrets/s", None);
    assert_eq!(st, 200, "{v}");
}

#[test]
fn node_rm_revokes_and_the_node_is_refused_and_audited() {
    let (mut c, _) = Cluster::start(1, 1, false);
    let worker_id = c.ready_worker();
    // A worker has no store: cluster state is not served there.
    let (st, v) = json(&c.nodes[1].d, "GET", "/v1/secrets", None);
    assert_eq!(st, 503, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("not a lockbox manager")
    );

    let (st, v) = json(
        &c.nodes[0].d,
        "DELETE",
        &format!("/v1/nodes/{worker_id}"),
        None,
    );
    assert_eq!(st, 200, "{v}");
    // Its certificate is refused from then on: the agent's reconnects fail, and each
    // refusal is audited with the node's identity.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let audit = std::fs::read_to_string(c.nodes[0].d.data().join("audit.log")).unwrap();
        if audit.lines().any(|l| {
            l.contains("node-refused")
                && l.contains(&format!("node:{worker_id}"))
                && l.contains("revoked")
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "no audited refusal:\n{audit}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, v) = json(&c.nodes[0].d, "GET", "/v1/nodes", None);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    c.nodes[1].d.stop();
}

/// Runs `ip` with arguments; panics with its stderr on failure.
pub(crate) fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) is installed");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Network namespaces joined by veth pairs to one bridge: `n` hosts 10.77.S.1..n. The
/// bridge lives in a namespace of its own, so the host's firewall (Docker sets the FORWARD
/// policy to DROP, which bridged traffic meets under br_netfilter) never sees the traffic.
pub(crate) struct Net {
    pub(crate) tag: String,
    pub(crate) subnet: u8,
    pub(crate) n: usize,
}

impl Net {
    pub(crate) fn new(n: usize) -> Net {
        let s = seed();
        let subnet = (s % 200) as u8 + 20;
        let tag = format!("{:x}", (s >> 8) % 0xfffff);
        let net = Net { tag, subnet, n };
        let hub = net.hub();
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for i in 0..n {
            let ns = net.ns(i);
            let (a, b) = (net.hub_if(i), format!("lbp{i}"));
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &hub]);
            ip(&["link", "set", &b, "netns", &ns]);
            ip(&["-n", &hub, "link", "set", &a, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &a, "up"]);
            let cidr = format!("{}/24", net.addr(i));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", &b]);
            ip(&["-n", &ns, "link", "set", &b, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }
    fn hub(&self) -> String {
        format!("lbx{}-hub", self.tag)
    }
    pub(crate) fn ns(&self, i: usize) -> String {
        format!("lbx{}-{i}", self.tag)
    }
    fn hub_if(&self, i: usize) -> String {
        format!("lbv{}{i}", self.tag)
    }
    pub(crate) fn addr(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.subnet, i + 1)
    }
    /// Cuts node `i` off the bridge (both directions).
    pub(crate) fn cut(&self, i: usize) {
        ip(&["-n", &self.hub(), "link", "set", &self.hub_if(i), "down"]);
    }
    pub(crate) fn heal(&self, i: usize) {
        ip(&["-n", &self.hub(), "link", "set", &self.hub_if(i), "up"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends inside it (and so their peers).
        for i in 0..self.n {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub()])
            .status();
    }
}

/// Three managers, each in its own network namespace.
pub(crate) fn netns_cluster(net: &Net) -> Cluster {
    let mut nodes = Vec::new();
    for i in 0..net.n {
        let ns = net.ns(i);
        nodes.push(Node {
            d: Daemon::start_in(&["ip", "netns", "exec", &ns], &[TIMING], &[]),
            addr: format!("{}:4377", net.addr(i)),
        });
    }
    let mut c = Cluster { nodes };
    c.init(false);
    for i in 1..net.n {
        c.join(i, "manager");
    }
    c
}

#[test]
fn a_partitioned_minority_refuses_writes_and_catches_up_after_healing() {
    let s = seed();
    println!("LOCKBOX_TEST_SEED={s}");
    let net = Net::new(3);
    let c = netns_cluster(&net);
    let leader = c.leader(Duration::from_secs(10));
    assert_eq!(c.create(leader, "before", b"v").0, 201);
    // Cut the leader off: it is the minority of one.
    net.cut(leader);
    let t = Instant::now();
    let (st, body) = c.create(leader, "minority-write", b"v");
    let refused_after = t.elapsed();
    assert_eq!(st, 503, "a minority must refuse writes: {body}");
    println!("minority refused a write after {refused_after:?}: {body}");
    assert!(
        refused_after < Duration::from_secs(15),
        "refusal took {refused_after:?}"
    );
    // The majority elects a new leader and goes on.
    let other = (leader + 1) % 3;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        if c.create(other, &format!("majority-{n}"), b"v").0 == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the majority never accepted a write"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reads on the cut-off node fail rather than answer stale data.
    let (st, _) = c.nodes[leader]
        .d
        .http("GET", &format!("/v1/secrets/majority-{n}"), None);
    assert_eq!(
        st, 503,
        "a partitioned node must not serve possibly stale reads"
    );
    net.heal(leader);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, _) = c.nodes[leader]
            .d
            .http("GET", &format!("/v1/secrets/majority-{n}"), None);
        if st == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "healed node did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The write the minority refused never appears.
    let (st, _) = c.nodes[other]
        .d
        .http("GET", "/v1/secrets/minority-write", None);
    assert_eq!(st, 404);
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn workers_promoted_become_voting_managers_and_a_demoted_one_drops_its_store() {
    let (c, _) = Cluster::start(1, 2, false);
    let (_, v) = json(&c.nodes[0].d, "GET", "/v1/nodes", None);
    let workers: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["Role"] == "worker")
        .map(|n| n["ID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(workers.len(), 2, "{v}");
    for id in &workers {
        let (st, v) = json(
            &c.nodes[0].d,
            "POST",
            &format!("/v1/nodes/{id}/update"),
            Some(r#"{"Role":"manager"}"#),
        );
        assert_eq!(st, 200, "promote {id}: {v}");
    }
    // Each promoted node opens a store, is admitted, caught up and made a voter.
    for i in 1..3 {
        wait_until(
            "a promoted worker serves the store",
            Duration::from_secs(30),
            || c.nodes[i].d.http("GET", "/v1/secrets", None).0 == 200,
        );
    }
    wait_until("three voting managers", Duration::from_secs(45), || {
        let (_, v) = json(&c.nodes[0].d, "GET", "/v1/nodes", None);
        v.as_array()
            .unwrap()
            .iter()
            .filter(|n| n["Role"] == "manager" && n["Status"] == "ready")
            .count()
            == 3
    });
    // A write through a promoted node, visible on the first.
    assert_eq!(c.create(1, "via-promoted", b"v").0, 201);
    assert_eq!(
        c.nodes[0].d.http("GET", "/v1/secrets/via-promoted", None).0,
        200
    );
    // Demote one: it leaves raft and drops its store.
    let leader = c.leader(Duration::from_secs(10));
    let victim = if leader == 1 { 2 } else { 1 };
    // Node IDs are random: ask the victim for its own.
    let (_, me) = json(&c.nodes[victim].d, "GET", "/v1/cluster", None);
    let victim_id = me["Self"]["ID"].as_str().unwrap().to_string();
    assert!(
        workers.contains(&victim_id),
        "{victim_id} not in {workers:?}"
    );
    let (st, v) = json(
        &c.nodes[leader].d,
        "POST",
        &format!("/v1/nodes/{victim_id}/update"),
        Some(r#"{"Role":"worker"}"#),
    );
    assert_eq!(st, 200, "demote: {v}");
    // The cluster's side of a demotion: the record says worker and raft lost a voter…
    wait_until(
        "the demoted node is a worker in the records",
        Duration::from_secs(20),
        || {
            let (_, v) = json(&c.nodes[leader].d, "GET", "/v1/nodes", None);
            v.as_array()
                .unwrap()
                .iter()
                .filter(|n| n["Role"] == "manager")
                .count()
                == 2
        },
    );
    // …and the node's: it drops its store and answers as a worker.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.nodes[victim].d.http("GET", "/v1/secrets", None).0 != 503 {
        assert!(
            Instant::now() < deadline,
            "the demoted node still serves the store after 20 s:\n{}",
            c.nodes[victim].d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.create(leader, "after-demote", b"v").0, 201);
}

#[test]
fn node_certificates_renew_and_the_cluster_keeps_working() {
    // Node 1 renews two seconds after it starts (test knob), i.e. repeatedly.
    let a = format!("127.0.0.1:{}", free_port());
    let b = format!("127.0.0.1:{}", free_port());
    let mut c = Cluster {
        nodes: vec![
            Node {
                d: Daemon::start_in(&[], &[TIMING], &[]),
                addr: a,
            },
            Node {
                d: Daemon::start_in(&[], &[TIMING, ("LOCKBOX_CERT_RENEW_AFTER_MS", "2000")], &[]),
                addr: b,
            },
        ],
    };
    c.init(false);
    c.join(1, "manager");
    let fingerprint = || std::fs::read(c.nodes[1].d.data().join("cluster/node.crt")).unwrap();
    let first = fingerprint();
    wait_until(
        "the node renews its certificate",
        Duration::from_secs(20),
        || fingerprint() != first,
    );
    let audit = std::fs::read_to_string(c.nodes[0].d.data().join("audit.log")).unwrap();
    assert!(audit.contains("cert-renew"), "{audit}");
    // Raft and forwarded writes run over the new certificate.
    assert_eq!(c.create(1, "after-renewal", b"v").0, 201);
    assert_eq!(
        c.nodes[0]
            .d
            .http("GET", "/v1/secrets/after-renewal", None)
            .0,
        200
    );
    // And after a restart, which reads the renewed files.
    c.nodes[1].d.restart(&[]);
    wait_until(
        "writes through the restarted node",
        Duration::from_secs(20),
        || {
            c.create(1, &format!("after-restart-{}", fastrand_ish()), b"v")
                .0
                == 201
        },
    );
}

fn fastrand_ish() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn cluster_and_node_requests_refuse_bad_input_with_clear_messages() {
    let refused =
        |d: &Daemon, method: &str, path: &str, body: Option<&str>, status: u16, says: &str| {
            let (st, v) = json(d, method, path, body);
            assert_eq!(st, status, "{method} {path}: {v}");
            let msg = v["message"].as_str().unwrap_or_default().to_string();
            assert!(
                msg.contains(says),
                "{method} {path}: {msg:?} does not say {says:?}"
            );
        };
    // A node in no cluster yet.
    let lone = Daemon::start_in(&[], &[TIMING], &[]);
    let here = format!("127.0.0.1:{}", free_port());
    let body =
        serde_json::json!({"AdvertiseAddr": here, "ListenAddr": here, "CertExpirySeconds": 60});
    refused(
        &lone,
        "POST",
        "/v1/cluster/init",
        Some(&body.to_string()),
        400,
        "minimum certificate expiry time is: 1h0m0s",
    );
    refused(
        &lone,
        "POST",
        "/v1/cluster/init",
        Some(r#"{"ListenAddr": "0.0.0.0:0"}"#),
        400,
        "--advertise-addr",
    );
    refused(
        &lone,
        "GET",
        "/v1/nodes/1",
        None,
        503,
        "not part of a cluster",
    );
    refused(
        &lone,
        "POST",
        "/v1/cluster/join",
        Some(r#"{"Token": "LBXTKN-1-abc", "RemoteAddr": "127.0.0.1:1"}"#),
        400,
        "invalid join token",
    );
    refused(
        &lone,
        "POST",
        "/v1/cluster/join",
        Some(r#"{"Token": "x"}"#),
        400,
        "address of a manager",
    );

    let (c, _) = Cluster::start(1, 0, false);
    let d = &c.nodes[0].d;
    let token = c.token("worker");
    let body = serde_json::json!({"AdvertiseAddr": c.nodes[0].addr});
    refused(
        d,
        "POST",
        "/v1/cluster/init",
        Some(&body.to_string()),
        400,
        "already part of a cluster",
    );
    let body = serde_json::json!({"Token": token, "RemoteAddr": c.nodes[0].addr});
    refused(
        d,
        "POST",
        "/v1/cluster/join",
        Some(&body.to_string()),
        400,
        "already part of a cluster",
    );
    refused(
        d,
        "GET",
        "/v1/cluster/join-token/admin",
        None,
        400,
        "unknown role admin",
    );
    refused(
        d,
        "POST",
        "/v1/cluster/unlock-key?split=1/3",
        None,
        400,
        "invalid --split",
    );
    refused(
        d,
        "POST",
        "/v1/cluster/unlock-key?split=4/3",
        None,
        400,
        "invalid --split",
    );
    refused(
        d,
        "POST",
        "/v1/nodes/1/update",
        Some(r#"{"Availability": "sleep"}"#),
        400,
        "invalid availability",
    );
    refused(
        d,
        "POST",
        "/v1/nodes/1/update",
        Some(r#"{"LabelRm": ["nope"]}"#),
        400,
        "key nope doesn't exist",
    );
    refused(
        d,
        "POST",
        "/v1/nodes/1/update",
        Some(r#"{"Role": "boss"}"#),
        400,
        "invalid role",
    );
    refused(
        d,
        "POST",
        "/v1/nodes/1/update",
        Some(r#"{"Role": "worker"}"#),
        400,
        "last manager",
    );
    refused(
        d,
        "POST",
        "/v1/nodes/zzz/update",
        Some("{}"),
        404,
        "node zzz not found",
    );
    refused(d, "DELETE", "/v1/nodes/1", None, 400, "must be demoted");
    refused(
        d,
        "GET",
        "/v1/nodes?filters=%7B%22color%22%3A%5B%22x%22%5D%7D",
        None,
        400,
        "invalid filter 'color'",
    );
    // Nothing above changed the cluster.
    let (_, v) = json(d, "GET", "/v1/nodes", None);
    let nodes = v.as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{v}");
    assert_eq!(nodes[0]["Role"], "manager");
    assert_eq!(nodes[0]["Availability"], "active");
    assert_eq!(nodes[0]["Labels"], serde_json::json!({}));
}

/// `GET /v1/cluster/ca` on `d`.
fn ca_of(d: &Daemon) -> Value {
    let (st, v) = json(d, "GET", "/v1/cluster/ca", None);
    assert_eq!(st, 200, "cluster ca: {v}");
    v
}

/// What node `d` trusts and presents (`cluster/trust.json`).
fn trust_of(d: &Daemon) -> Value {
    let raw = std::fs::read(d.data().join("cluster/trust.json")).unwrap_or_default();
    serde_json::from_slice(&raw).unwrap_or_default()
}

/// One POST to a node API over mutual TLS, presenting `cert` (with no intermediates) and
/// trusting `roots`: the status, or how the connection failed.
fn node_request(
    addr: &str,
    roots: &[&[u8]],
    cert: &[u8],
    key: &[u8],
    path: &str,
) -> Result<u16, String> {
    use std::io::{Read as _, Write as _};
    let config = lockbox_cluster::tls::client_config_roots(roots, vec![cert.to_vec()], key)
        .map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, lockbox_cluster::tls::server_name())
        .map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: lockbox-node\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    tls.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    Ok(crate::support::parse_response(&resp).0)
}

/// Waits until every node's certificate is from the root in `ca` (a `GET /v1/cluster/ca`
/// answer) and it trusts that root alone.
fn wait_for_new_root_only(c: &Cluster, ca: &Value) {
    let digest = ca["Digest"].as_str().unwrap().trim_start_matches("sha256:");
    wait_until(
        "every node trusts only the new root",
        Duration::from_secs(20),
        || {
            c.nodes.iter().all(|n| {
                let t = trust_of(&n.d);
                t["issuer"] == digest && t["roots"].as_array().is_some_and(|r| r.len() == 1)
            })
        },
    );
}

/// The P-256 public key (65 bytes) in a certificate's SubjectPublicKeyInfo.
fn p256_public_key(cert: &[u8]) -> Vec<u8> {
    // OID prime256v1, then the BIT STRING of the key.
    let prefix = [
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let at = cert
        .windows(prefix.len())
        .position(|w| w == prefix)
        .expect("a P-256 certificate")
        + prefix.len();
    cert[at..at + 65].to_vec()
}

/// How a plaintext private key (PKCS#8 / SEC 1) for `public` shows: its `[1]` public-key
/// field. A certificate carries the same key under another tag, so this finds only a key.
fn private_key_marker(public: &[u8]) -> Vec<u8> {
    let mut m = vec![0xa1, 0x44, 0x03, 0x42, 0x00];
    m.extend_from_slice(public);
    m
}

/// Fails if any file under any node's data directory holds the private key of `root`.
fn assert_ca_key_nowhere(c: &Cluster, root: &[u8]) {
    let marker = private_key_marker(&p256_public_key(root));
    for n in &c.nodes {
        for f in crate::keys::walk(&n.d.data()) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker),
                "a CA private key in plaintext in {}",
                f.display()
            );
        }
    }
}

#[test]
fn ca_rotation_moves_every_node_to_the_new_root_then_refuses_the_old_one() {
    let (c, _) = Cluster::start(2, 1, false);
    c.ready_worker();
    let before = ca_of(&c.nodes[0].d);
    let old_token = c.token("worker");
    let worker_dir = c.nodes[2].d.data().join("cluster");
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    let (old_cert, old_key) = (
        read(worker_dir.join("node.crt")),
        read(worker_dir.join("node.key")),
    );
    let old_root = read(worker_dir.join("ca.crt"));

    // Rotate from the follower (the proposal is forwarded), waiting for the end; writes
    // carry on meanwhile, through both managers.
    let sock = c.nodes[1].d.sock();
    let cli = std::thread::spawn(move || {
        crate::support::run_cli(
            &sock,
            &["cluster", "ca", "--rotate", "--timeout", "60s"],
            None,
        )
    });
    for i in 0..6 {
        let (st, body) = c.create(i % 2, &format!("during-rotation-{i}"), b"v");
        assert_eq!(st, 201, "write during the rotation: {body}");
        std::thread::sleep(Duration::from_millis(150));
    }
    let out = cli.join().unwrap();
    assert_eq!(out.code, 0, "cluster ca --rotate: {out:?}");
    assert!(
        out.stderr.contains("desired root digest: sha256:"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("rotated CA certificates: done"),
        "{out:?}"
    );
    let after = ca_of(&c.nodes[0].d);
    assert!(after["Rotation"].is_null(), "{after}");
    assert_ne!(after["Cert"], before["Cert"]);
    assert_eq!(
        out.stdout,
        after["Cert"].as_str().unwrap(),
        "prints the new root"
    );
    assert_eq!(c.nodes[1].d.lb(&["cluster", "ca"]).stdout, out.stdout);

    // Every node ends on a certificate from the new root and drops the old root.
    wait_for_new_root_only(&c, &after);
    let new_root = read(c.nodes[0].d.data().join("cluster/ca.crt"));
    assert_ne!(new_root, old_root);

    // Writes replicate after the rotation too, and the worker's agent still follows.
    assert_eq!(c.create(1, "after-rotation", b"v").0, 201);
    wait_until("the write replicates", Duration::from_secs(10), || {
        c.nodes[0]
            .d
            .http("GET", "/v1/secrets/after-rotation", None)
            .0
            == 200
    });
    c.ready_worker();

    // The join tokens' CA digest changed (the secrets did not); the old token is refused.
    let new_token = c.token("worker");
    assert_ne!(old_token[..60], new_token[..60]);
    assert_eq!(old_token[60..], new_token[60..]);
    let joiner = Daemon::start_in(&[], &[TIMING], &[]);
    let addr = format!("127.0.0.1:{}", free_port());
    let try_join = |token: &str| {
        let body = serde_json::json!({"Token": token, "RemoteAddr": c.nodes[0].addr, "ListenAddr": addr, "AdvertiseAddr": addr});
        json(&joiner, "POST", "/v1/cluster/join", Some(&body.to_string()))
    };
    // Bad inputs: not in a cluster, not a manager.
    let o = joiner.lb(&["cluster", "ca", "--rotate"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("not part of a cluster"), "{o:?}");
    let o = c.nodes[2].d.lb(&["cluster", "ca", "--rotate", "--detach"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.to_lowercase().contains("manager"), "{o:?}");
    let (st, v) = try_join(&old_token);
    assert!(st >= 400, "old token: {v}");
    assert!(v["message"].as_str().unwrap().contains("digest"), "{v}");
    let (st, v) = try_join(&new_token);
    assert_eq!(st, 200, "new token: {v}");

    // A certificate the old root issued is refused in the handshake, though the client
    // trusts both roots (so it is the server that refuses).
    let refused = node_request(
        &c.nodes[0].addr,
        &[&old_root, &new_root],
        &old_cert,
        &old_key,
        "/agent/register",
    );
    assert!(refused.is_err(), "old certificate accepted: {refused:?}");
    // The same request with the worker's current certificate goes through the TLS layer.
    let (cert, key) = (
        read(worker_dir.join("node.crt")),
        read(worker_dir.join("node.key")),
    );
    let ok = node_request(
        &c.nodes[0].addr,
        &[&new_root],
        &cert,
        &key,
        "/agent/register",
    );
    assert_eq!(ok, Ok(200));

    // Neither root's private key is on any disk in the clear (the detector does find the
    // worker's own key in its node.key, which must be plaintext).
    let own = private_key_marker(&p256_public_key(&cert));
    assert!(key.windows(own.len()).any(|w| w == own));
    assert_ca_key_nowhere(&c, &old_root);
    assert_ca_key_nowhere(&c, &new_root);

    let audit = |i: usize| std::fs::read_to_string(c.nodes[i].d.data().join("audit.log")).unwrap();
    assert!(audit(1).contains("ca-rotate"), "{}", audit(1));
    assert!((0..2).any(|i| audit(i).contains("ca-rotate-finish")));
}

#[test]
fn ca_rotation_held_by_a_down_node_replaced_by_a_second_joined_and_kek_rotated_meanwhile() {
    let (mut c, _) = Cluster::start(1, 1, false);
    let worker = c.ready_worker();
    let before = ca_of(&c.nodes[0].d);
    c.nodes[1].d.stop();
    let m = &c.nodes[0].d;
    let first = m.lb(&["cluster", "ca", "--rotate", "--detach"]);
    assert_eq!(first.code, 0, "{first:?}");
    let second = m.lb(&["cluster", "ca", "--rotate", "--detach", "-q"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(second.stderr, "", "-q prints nothing");
    // The manager moves; the stopped worker holds the rotation, and waiting says so.
    let o = m.lb(&["cluster", "ca", "--rotate", "--timeout", "3s"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("replaced the CA rotation in progress"),
        "{o:?}"
    );
    assert!(
        o.stderr.contains("timed out") && o.stderr.contains(&worker),
        "names the node it waits for: {o:?}"
    );
    let v = ca_of(m);
    let waiting = v["Rotation"]["Waiting"].as_array().unwrap();
    assert!(waiting.contains(&Value::String(worker.clone())), "{v}");
    assert_eq!(v["Cert"], before["Cert"], "not finished");
    assert_eq!(
        json(m, "GET", "/v1/cluster", None).1["RootRotationInProgress"],
        true
    );
    // A node joining meanwhile, with the token of the old root (still the cluster's), pins
    // the old root in the manager's chain [leaf, cross-signed new root, old root] and gets
    // its certificate from the new root straight away.
    let addr = format!("127.0.0.1:{}", free_port());
    c.nodes.push(Node {
        d: Daemon::start_in(&[], &[TIMING], &[]),
        addr,
    });
    c.join(2, "worker");
    let m = &c.nodes[0].d;
    wait_until(
        "the manager and the new node are on the new root, the stopped worker is not",
        Duration::from_secs(10),
        || {
            let v = ca_of(m);
            v["Rotation"]["Nodes"] == 3 && v["Rotation"]["Waiting"] == serde_json::json!([worker])
        },
    );
    // A KEK rotation meanwhile re-seals the new root's key too (the old KEK is dropped):
    // the new root keeps issuing, during the rotation and after it.
    let (st, kek) = json(m, "POST", "/v1/kek/rotate", None);
    assert_eq!(st, 200, "kek rotate: {kek}");
    // The worker comes back with its old certificate, is still accepted (both roots are
    // trusted), re-issues, and the rotation finishes.
    c.nodes[1].d.restart(&[]);
    let m = &c.nodes[0].d;
    wait_until("the rotation finishes", Duration::from_secs(30), || {
        ca_of(m)["Rotation"].is_null()
    });
    let after = ca_of(m);
    assert_ne!(after["Cert"], before["Cert"]);
    assert_eq!(
        after["Digest"], v["Rotation"]["Digest"],
        "the last rotation won"
    );
    assert_eq!(
        json(m, "GET", "/v1/cluster", None).1["RootRotationInProgress"],
        false
    );
    // Both nodes end trusting the new root alone, which took one more certificate from it.
    wait_for_new_root_only(&c, &after);
}

#[test]
fn ca_rotation_needs_an_unlocked_manager_and_works_on_a_single_one() {
    let (mut c, key) = Cluster::start(1, 0, true);
    // A node from before rotations has no trust.json: it trusts ca.crt alone, and rotates.
    std::fs::remove_file(c.nodes[0].d.data().join("cluster/trust.json")).unwrap();
    c.nodes[0].d.restart(&[]);
    let d = &c.nodes[0].d;
    let before = ca_pem_on_disk(d);
    let o = d.lb(&["cluster", "ca", "--rotate"]);
    assert_eq!(o.code, 4, "a locked manager: {o:?}");
    assert!(o.stderr.contains("unlock"), "{o:?}");
    let body = serde_json::json!({"UnlockKey": key.unwrap()});
    let (st, v) = json(d, "POST", "/v1/unlock", Some(&body.to_string()));
    assert_eq!(st, 200, "unlock: {v}");
    let o = d.lb(&["cluster", "ca", "--rotate", "-q", "--timeout", "30s"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stderr, "", "-q: no progress");
    assert_ne!(o.stdout, before);
    assert_eq!(ca_of(d)["Cert"], o.stdout.as_str());
    wait_for_new_root_only(&c, &ca_of(d));
}

/// The root CA PEM, read from the node's files (the API answers 503 while it is locked).
fn ca_pem_on_disk(d: &Daemon) -> String {
    let der = std::fs::read(d.data().join("cluster/ca.crt")).unwrap();
    lockbox_cluster::pki::pem_encode("CERTIFICATE", &der)
}

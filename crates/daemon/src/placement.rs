//! Placement: whether a service's constraints admit a node, with SwarmKit's semantics.
//!
//! A constraint is `KEY==VALUE` or `KEY!=VALUE` with `KEY` one of `node.id`,
//! `node.hostname`, `node.role` or `node.labels.LABEL`; every constraint of a service must
//! hold. As in SwarmKit, keys and values compare case-insensitively (label names are
//! case-sensitive), a missing label compares as the empty string (so `!=` holds), and an
//! unknown key never holds.
use lockbox_store::{NodeRecord, ServiceRecord, node_id_text};

use crate::ApiError;
use crate::cluster::ClusterRecords;
use lockbox_core::Daemon;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
}

/// Splits `KEY==VALUE` / `KEY!=VALUE` (whichever operator comes first), trimmed.
fn parse(c: &str) -> Option<(&str, Op, &str)> {
    let eq = c.find("==");
    let ne = c.find("!=");
    let (at, op) = match (eq, ne) {
        (Some(e), Some(n)) if n < e => (n, Op::Ne),
        (Some(e), _) => (e, Op::Eq),
        (None, Some(n)) => (n, Op::Ne),
        (None, None) => return None,
    };
    Some((c[..at].trim(), op, c[at + 2..].trim()))
}

/// The node's value for `key`, `None` for a key placement does not know.
fn value_of(node: &NodeRecord, key: &str) -> Option<String> {
    const LABELS: &str = "node.labels.";
    if key.len() > LABELS.len() && key[..LABELS.len()].eq_ignore_ascii_case(LABELS) {
        return Some(
            node.labels
                .get(&key[LABELS.len()..])
                .cloned()
                .unwrap_or_default(),
        );
    }
    match key.to_ascii_lowercase().as_str() {
        "node.id" => Some(node_id_text(node.id)),
        "node.hostname" => Some(node.hostname.clone()),
        "node.role" => Some(node.role.as_str().to_owned()),
        _ => None,
    }
}

/// Whether one constraint holds for `node`.
pub(crate) fn holds(constraint: &str, node: &NodeRecord) -> bool {
    let Some((key, op, want)) = parse(constraint) else {
        return false;
    };
    let Some(have) = value_of(node, key) else {
        return false;
    };
    let same = have.eq_ignore_ascii_case(want);
    match op {
        Op::Eq => same,
        Op::Ne => !same,
    }
}

/// `Ok` when every constraint admits `node`; otherwise the first one that does not.
pub(crate) fn admits<'a>(constraints: &'a [String], node: &NodeRecord) -> Result<(), &'a str> {
    match constraints.iter().find(|c| !holds(c, node)) {
        Some(c) => Err(c.as_str()),
        None => Ok(()),
    }
}

/// Why `node` may not run service `s`: the constraint that fails, named.
pub(crate) fn refusal(s: &ServiceRecord, node: &NodeRecord, constraint: &str) -> String {
    format!(
        "service {}'s placement does not admit node {} ({}): constraint \"{constraint}\" does not hold",
        s.name,
        node_id_text(node.id),
        node.hostname
    )
}

/// Whether `node` qualifies for service `s` now: its placement admits the node and the node
/// is not drained (a drained node runs nothing, as in Swarm). A worker's running workloads
/// keep a service's values only while this holds; the reason names what failed.
pub(crate) fn qualifies(s: &ServiceRecord, node: &NodeRecord) -> Result<(), String> {
    if node.availability == "drain" {
        return Err(format!(
            "node {} ({}) is drained: it runs no workload of service {}",
            node_id_text(node.id),
            node.hostname,
            s.name
        ));
    }
    admits(&s.constraints, node).map_err(|c| refusal(s, node, c))
}

/// On a manager in a cluster: refuses (400) a workload of a service whose placement excludes
/// this node. A single node has no node record and no placement.
pub(crate) fn check_here(d: &Daemon, s: &ServiceRecord) -> Result<(), ApiError> {
    let Some(cluster) = d.cluster() else {
        return Ok(());
    };
    let me = cluster.config().node_id;
    let Some(node) = d.reader()?.node(me)? else {
        return Ok(());
    };
    admits(&s.constraints, &node).map_err(|c| ApiError::bad_request(refusal(s, &node, c)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lockbox_store::NodeRole;

    use super::*;

    fn node(role: NodeRole, labels: &[(&str, &str)]) -> NodeRecord {
        NodeRecord {
            id: 123_456,
            role,
            addr: "10.0.0.2:4377".into(),
            hostname: "Worker-1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            availability: "active".into(),
            cert_fingerprint: Vec::new(),
            prev_fingerprint: Vec::new(),
            cert_not_after_ns: 0,
            created_ns: 0,
            updated_ns: 0,
            index: 0,
        }
    }

    fn cs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_equal_and_not_equal() {
        let n = node(NodeRole::Worker, &[("zone", "a"), ("Disk", "ssd")]);
        assert_eq!(admits(&cs(&["node.labels.zone==a"]), &n), Ok(()));
        assert_eq!(
            admits(&cs(&["node.labels.zone==b"]), &n),
            Err("node.labels.zone==b")
        );
        assert_eq!(admits(&cs(&["node.labels.zone!=b"]), &n), Ok(()));
        assert_eq!(
            admits(&cs(&["node.labels.zone != a"]), &n),
            Err("node.labels.zone != a")
        );
        // Values compare case-insensitively, label names do not.
        assert_eq!(admits(&cs(&["node.labels.Disk==SSD"]), &n), Ok(()));
        assert!(admits(&cs(&["node.labels.disk==ssd"]), &n).is_err());
        // A missing label is the empty string: `==` fails, `!=` holds.
        assert!(admits(&cs(&["node.labels.rack==r1"]), &n).is_err());
        assert_eq!(admits(&cs(&["node.labels.rack!=r1"]), &n), Ok(()));
    }

    #[test]
    fn id_hostname_and_role() {
        let n = node(NodeRole::Worker, &[]);
        let id = node_id_text(n.id);
        assert_eq!(admits(&[format!("node.id=={id}")], &n), Ok(()));
        assert!(admits(&[format!("node.id!={id}")], &n).is_err());
        assert_eq!(admits(&cs(&["node.hostname==worker-1"]), &n), Ok(()));
        assert!(admits(&cs(&["node.hostname!=Worker-1"]), &n).is_err());
        assert_eq!(admits(&cs(&["node.role==worker"]), &n), Ok(()));
        assert_eq!(admits(&cs(&["Node.Role==Worker"]), &n), Ok(()));
        assert!(admits(&cs(&["node.role==manager"]), &n).is_err());
        let m = node(NodeRole::Manager, &[]);
        assert_eq!(admits(&cs(&["node.role!=worker"]), &m), Ok(()));
    }

    #[test]
    fn all_must_hold_and_the_first_failing_one_is_named() {
        let n = node(NodeRole::Worker, &[("zone", "a")]);
        assert_eq!(admits(&[], &n), Ok(()));
        let list = cs(&[
            "node.role==worker",
            "node.labels.zone==b",
            "node.hostname==x",
        ]);
        assert_eq!(admits(&list, &n), Err("node.labels.zone==b"));
    }

    #[test]
    fn unknown_keys_and_malformed_constraints_never_hold() {
        let n = node(NodeRole::Worker, &[]);
        assert!(!holds("node.platform.os==linux", &n));
        assert!(!holds("engine.labels.x==y", &n));
        assert!(!holds("node.labels.==y", &n));
        assert!(!holds("node.role", &n));
        assert!(!holds("node.role=worker", &n));
    }
}

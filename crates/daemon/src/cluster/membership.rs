//! Membership changes (promote, demote, remove, leave) made by the leader and forwarded by
//! other managers, and the node list (`node ls/inspect/update/rm`, `cluster inspect`).
//!
//! Owns: raft membership and node records. Touches: the core, `record`, `admission`.
use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lockbox_audit::Event;
use lockbox_keyring::{KeyMode, KeyRing, RingFile};
use lockbox_replication::{Replica, ReplicaConfig};
use lockbox_store::{Command, NodeRecord, NodeRole, Reader, node_id_text, parse_node_id};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::body::{json_response, parse_body};
use crate::identity::Peer;
use lockbox_core::{Caller, Daemon, Keys, NodeStore, now_ns, rfc3339};

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// membership changes (leader only; other managers forward them)

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum MembershipOp {
    Promote,
    Demote,
    Remove {
        force: bool,
    },
    Update {
        labels_add: BTreeMap<String, String>,
        labels_rm: Vec<String>,
        availability: Option<String>,
    },
}

pub(super) async fn membership(
    State(d): State<Arc<Daemon>>,
    Extension(who): Extension<Authorized>,
    body: Bytes,
) -> Result<Response> {
    let (id, op): (u64, MembershipOp) = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed membership request: {e}")))?;
    apply_membership(&d, id, op, &format!("node:{}", node_id_text(who.node.id))).await?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn apply_membership(
    d: &Arc<Daemon>,
    id: u64,
    op: MembershipOp,
    actor: &str,
) -> Result<()> {
    let store = match d.require_leader() {
        Ok(s) => s,
        Err(e) if e.status == 421 => {
            // Forward to the leader over mutual TLS.
            let c = d.cluster_or_err()?;
            let leader = e
                .message
                .rsplit("the leader is at ")
                .next()
                .unwrap_or("")
                .to_string();
            let body =
                serde_json::to_vec(&(id, op)).map_err(|e| ApiError::internal(e.to_string()))?;
            let (_, a) = call_leader(
                c.tls.get().client.clone(),
                &leader,
                "/cluster/membership",
                body,
            )
            .await?;
            return if a.status == 200 {
                Ok(())
            } else {
                Err(remote_error(&a))
            };
        }
        Err(e) => return Err(e),
    };
    let mut node = store
        .reader
        .node(id)?
        .ok_or_else(|| ApiError::new(404, format!("node {} not found", node_id_text(id))))?;
    let nodes = store.reader.nodes()?;
    let managers = nodes.iter().filter(|n| n.role == NodeRole::Manager).count();
    let action;
    match op {
        MembershipOp::Promote => {
            action = "node-promote";
            if node.role == NodeRole::Manager {
                return Ok(());
            }
            node.role = NodeRole::Manager;
            node.updated_ns = now_ns();
            // The node notices (its agent watches its own record), opens a store and asks
            // to be admitted: raft membership follows then.
            d.propose(Command::PutNode { node: node.clone() }).await?;
        }
        MembershipOp::Demote => {
            action = "node-demote";
            if node.role == NodeRole::Worker {
                return Ok(());
            }
            if managers <= 1 {
                return Err(ApiError::bad_request(format!(
                    "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the cluster ({})",
                    node_id_text(id)
                )));
            }
            if id == store.replica.node_id() {
                return Err(ApiError::bad_request(
                    "the leader cannot demote itself; run the command on another manager, or stop this one so another takes over",
                ));
            }
            // The record first, while the node still receives the log: its watcher sees the
            // new role and drops its store; then it leaves raft.
            node.role = NodeRole::Worker;
            node.updated_ns = now_ns();
            let (index, response) = store
                .replica
                .propose_forwarded_indexed(Command::PutNode { node: node.clone() })
                .await?;
            response.into_result()?;
            // Give the node a moment to *apply* it, not only receive it: a follower learns
            // that an entry is committed from the next append it gets, so wait until it holds
            // an entry proposed after this one. (A node out of reach learns its new role from
            // its agent later, once it reconnects as a worker.)
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let reached = |at: u64| store.replica.matched_index(id).is_some_and(|m| m >= at);
            while !reached(index) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if let Ok((after, _)) = store.replica.propose_forwarded_indexed(Command::Noop).await {
                while !reached(after) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let _serial = MEMBERSHIP.lock().await;
            store.replica.remove_node(id).await?;
        }
        MembershipOp::Remove { force } => {
            action = "node-rm";
            if node.role == NodeRole::Manager && !force {
                return Err(ApiError::bad_request(format!(
                    "rpc error: code = FailedPrecondition desc = node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                    node_id_text(id)
                )));
            }
            if id == store.replica.node_id() {
                return Err(ApiError::bad_request(
                    "a manager cannot remove itself; use 'lockbox cluster leave --force' on it, or remove it from another manager",
                ));
            }
            if node.role == NodeRole::Manager && managers <= 1 {
                return Err(ApiError::bad_request("cannot remove the last manager"));
            }
            if store.replica.members().iter().any(|m| m.id == id) {
                let _serial = MEMBERSHIP.lock().await;
                store.replica.remove_node(id).await?;
            }
            d.propose(Command::RemoveNode {
                id,
                time_ns: now_ns(),
            })
            .await?;
        }
        MembershipOp::Update {
            labels_add,
            labels_rm,
            availability,
        } => {
            action = "node-update";
            for k in &labels_rm {
                if node.labels.remove(k).is_none() && !labels_add.contains_key(k) {
                    return Err(ApiError::bad_request(format!(
                        "key {k} doesn't exist in node's labels"
                    )));
                }
            }
            node.labels.extend(labels_add);
            if let Some(a) = availability {
                if !matches!(a.as_str(), "active" | "pause" | "drain") {
                    return Err(ApiError::bad_request(format!(
                        "invalid availability {a:?}: active, pause or drain"
                    )));
                }
                node.availability = a;
            }
            node.updated_ns = now_ns();
            d.propose(Command::PutNode { node: node.clone() }).await?;
        }
    }
    d.audit_event(Event::new(action, actor).detail("node", &node_id_text(id)))?;
    Ok(())
}

pub(super) fn status_of(
    d: &Daemon,
    n: &NodeRecord,
    store: &NodeStore,
) -> (&'static str, &'static str) {
    let st = store.replica.status();
    match n.role {
        NodeRole::Manager => {
            if st.leader == Some(n.id) {
                ("ready", "Leader")
            } else if st.voters.contains(&n.id) {
                let seen = d.peer_seen(n.id);
                if n.id == st.node_id || seen {
                    ("ready", "Reachable")
                } else {
                    ("down", "Unreachable")
                }
            } else {
                ("unknown", "")
            }
        }
        NodeRole::Worker => {
            if (d.agent_hooks().connected)(d, n.id) {
                ("ready", "")
            } else {
                ("down", "")
            }
        }
    }
}

pub(super) fn node_json(d: &Daemon, n: &NodeRecord, store: &NodeStore) -> serde_json::Value {
    let (status, manager_status) = status_of(d, n, store);
    serde_json::json!({
        "ID": node_id_text(n.id),
        "Hostname": n.hostname,
        "Role": n.role.as_str(),
        "Addr": n.addr,
        "Status": status,
        "Availability": n.availability,
        "ManagerStatus": manager_status,
        "Labels": n.labels,
        "CertNotAfter": rfc3339(n.cert_not_after_ns),
        "CreatedAt": rfc3339(n.created_ns),
        "UpdatedAt": rfc3339(n.updated_ns),
        "Self": n.id == store.replica.node_id(),
        "Version": {"Index": n.index},
    })
}

/// `docker node ls` filters: id, name (hostname), role, label / node.label (`K` or `K=V`).
pub(super) fn node_filters(json: Option<&str>) -> Result<lockbox_store::Filters> {
    let f = lockbox_store::validate::parse_filter_map(json)?;
    for k in f.keys() {
        if !matches!(k.as_str(), "id" | "name" | "role" | "label" | "node.label") {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    Ok(f)
}

pub(super) fn node_matches(n: &NodeRecord, f: &lockbox_store::Filters) -> bool {
    let label_ok = |v: &String| match v.split_once('=') {
        Some((k, want)) => n.labels.get(k).is_some_and(|have| have == want),
        None => n.labels.contains_key(v.as_str()),
    };
    f.iter().all(|(k, vals)| match k.as_str() {
        "id" => vals
            .iter()
            .any(|v| node_id_text(n.id).starts_with(v.as_str())),
        "name" => vals.iter().any(|v| n.hostname.starts_with(v.as_str())),
        "role" => vals.iter().any(|v| v == n.role.as_str()),
        _ => vals.iter().all(label_ok),
    })
}

pub(super) fn resolve_node(reader: &Reader, input: &str) -> Result<NodeRecord> {
    let nodes = reader.nodes()?;
    if let Some(id) = parse_node_id(input)
        && let Some(n) = nodes.iter().find(|n| n.id == id)
    {
        return Ok(n.clone());
    }
    let hits: Vec<_> = nodes
        .iter()
        .filter(|n| node_id_text(n.id).starts_with(input) || n.hostname == input)
        .collect();
    match hits.len() {
        1 => Ok(hits[0].clone()),
        0 => Err(ApiError::new(404, format!("node {input} not found"))),
        n => Err(ApiError::new(
            400,
            format!("node {input} is ambiguous ({n} matches found)"),
        )),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct NodeUpdate {
    #[serde(rename = "LabelAdd", default)]
    pub(super) label_add: BTreeMap<String, String>,
    #[serde(rename = "LabelRm", default)]
    pub(super) label_rm: Vec<String>,
    #[serde(rename = "Availability", default)]
    pub(super) availability: Option<String>,
    #[serde(rename = "Role", default)]
    pub(super) role: Option<String>,
}

pub(super) async fn node_update(
    d: Arc<Daemon>,
    who: Peer,
    input: String,
    body: Bytes,
) -> Result<Response> {
    d.cluster_or_err()?;
    let u: NodeUpdate = parse_body(&body)?;
    let actor = Caller::uid(who.uid).actor;
    let n = resolve_node(&d.reader()?, &input)?;
    match u.role.as_deref() {
        None => {}
        Some("manager") => apply_membership(&d, n.id, MembershipOp::Promote, &actor).await?,
        Some("worker") => apply_membership(&d, n.id, MembershipOp::Demote, &actor).await?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid role {other:?}: manager or worker"
            )));
        }
    }
    if !u.label_add.is_empty() || !u.label_rm.is_empty() || u.availability.is_some() {
        apply_membership(
            &d,
            n.id,
            MembershipOp::Update {
                labels_add: u.label_add,
                labels_rm: u.label_rm,
                availability: u.availability,
            },
            &actor,
        )
        .await?;
    }
    Ok(StatusCode::OK.into_response())
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ForceQuery {
    #[serde(default)]
    pub(super) force: Option<String>,
}

pub(super) async fn node_rm(
    d: Arc<Daemon>,
    who: Peer,
    input: String,
    q: ForceQuery,
) -> Result<Response> {
    d.cluster_or_err()?;
    let n = resolve_node(&d.reader()?, &input)?;
    apply_membership(
        &d,
        n.id,
        MembershipOp::Remove {
            force: truthy(&q.force),
        },
        &Caller::uid(who.uid).actor,
    )
    .await?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn cluster_inspect(d: Arc<Daemon>) -> Result<Response> {
    d.cluster_or_err()?;
    d.check_unlocked()?;
    let store = d.store()?;
    let (c, rotation) = d.cluster_and_rotation()?;
    let nodes = store.reader.nodes()?;
    let leader = store.replica.leader();
    let leader_id = leader.as_ref().map(|(id, _)| *id);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "ID": c.cluster_id,
            "CreatedAt": rfc3339(c.created_ns),
            "UpdatedAt": rfc3339(c.updated_ns),
            "CADigest": sha256_text(&c.ca_cert),
            "RootRotationInProgress": rotation.is_some(),
            "Leader": leader.map(|(id, addr)| serde_json::json!({"ID": node_id_text(id), "Addr": addr})),
            "Managers": nodes.iter().filter(|n| n.role == NodeRole::Manager).count(),
            "Workers": nodes.iter().filter(|n| n.role == NodeRole::Worker).count(),
            "Autolock": c.unlock_key.is_some(),
            "CertExpirySeconds": c.cert_validity_s,
            "RaftTerm": store.replica.status().term,
            "Self": {"ID": node_id_text(store.replica.node_id()), "IsLeader": leader_id == Some(store.replica.node_id())},
        }),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct LeaveQuery {
    #[serde(default)]
    pub(super) force: Option<String>,
}

/// `lockbox cluster leave`: the node drops its cluster identity, store and keys and starts
/// over as a fresh single node.
pub(super) async fn leave(d: Arc<Daemon>, who: Peer, q: LeaveQuery) -> Result<Response> {
    let cluster = d.cluster_or_err()?;
    let cfg = cluster.config();
    if cfg.role == NodeRole::Manager && !truthy(&q.force) {
        return Err(ApiError::bad_request(
            "You are attempting to leave the cluster on a node that is participating as a manager. Removing this node leaves the remaining managers with fewer members of the raft quorum. Demote it first ('lockbox node demote') or use --force to ignore this message.",
        ));
    }
    cluster.stop();
    (d.agent_hooks().stop)(&d);
    if let Ok(mut c) = d.cluster_slot().0.write() {
        *c = None;
    }
    let old = d.store.write().ok().and_then(|mut s| s.take());
    if let Some(old) = old {
        lockbox_core::close_store(old).await;
    }
    let _ = fs::remove_file(d.data_dir.join("store.redb"));
    let _ = fs::remove_dir_all(dir(&d.data_dir));
    // A fresh key ring: the cluster's KEK stays with the cluster.
    let ring = KeyRing::generate()?;
    RingFile::write(&d.ring_path, &ring, None)?;
    if let Ok(mut keys) = d.keys.write() {
        *keys = Keys::Unlocked {
            ring,
            mode: KeyMode::File,
            unlock: None,
        };
    }
    let replica = Replica::open(&d.data_dir.join("store.redb"), ReplicaConfig::default()).await?;
    if let Ok(mut s) = d.store.write() {
        *s = Some(Arc::new(NodeStore {
            reader: Reader::new(replica.db()),
            replica,
        }));
    }
    d.audit_event(
        Event::new("cluster-leave", &Caller::uid(who.uid).actor)
            .detail("cluster_id", &cfg.cluster_id)
            .detail("node", &node_id_text(cfg.node_id)),
    )?;
    Ok(StatusCode::OK.into_response())
}

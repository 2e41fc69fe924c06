//! Who may use the node API: a peer's certificate checked against the store's node
//! records (role, revocation), the raft RPCs, and `/cluster/admit` (a manager caught up as
//! a learner, promoted, and only then given the keys).
//!
//! Owns: node-API authorization. Touches: the core's replica and keys.
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lockbox_audit::Event;
use lockbox_cluster::Role;
use lockbox_store::{NodeRecord, NodeRole, node_id_text};

use crate::ApiError;
use crate::body::json_response;
use crate::peers::NodePeer;
use lockbox_core::{Daemon, Keys};

#[allow(unused_imports)]
use super::*;

/// Who a node-API caller is, checked against the store (the node gate attaches it to
/// every request it passes).
#[derive(Clone)]
pub(crate) struct Authorized {
    pub(crate) node: NodeRecord,
}

/// Checks a peer's certificate against the cluster's records: same cluster, not revoked,
/// the node's current certificate. Refusals of a known identity are audited. (Which role a
/// route needs is the node gate's business.)
pub(crate) fn authorize(d: &Daemon, peer: &NodePeer) -> Result<Authorized> {
    let Some(id) = &peer.identity else {
        return Err(ApiError::new(
            401,
            "a certificate of this cluster is required (this endpoint needs mutual TLS)",
        ));
    };
    let refuse = |why: &str| {
        let _ = d.audit_event(
            Event::new(
                "node-refused",
                &format!("node:{}", node_id_text(id.node_id)),
            )
            .detail("reason", why)
            .detail("peer", &peer.addr),
        );
        ApiError::new(
            403,
            format!("node {} refused: {why}", node_id_text(id.node_id)),
        )
    };
    let c = d.cluster_record()?;
    if id.cluster_id != c.cluster_id {
        return Err(refuse("its certificate is for another cluster"));
    }
    if c.revoked.iter().any(|r| r[..] == id.fingerprint[..]) {
        return Err(refuse("its certificate was revoked (the node was removed)"));
    }
    let Some(node) = d.reader()?.node(id.node_id)? else {
        return Err(refuse("it is not a member of this cluster"));
    };
    if node.cert_fingerprint[..] != id.fingerprint[..]
        && node.prev_fingerprint[..] != id.fingerprint[..]
    {
        return Err(refuse("its certificate is not the node's current one"));
    }
    Ok(Authorized { node })
}

/// Raft traffic: any manager certificate of this cluster that is not revoked. (A joining
/// manager's store is empty until the leader catches it up, so this cannot require the
/// leader's node record to be known yet.)
pub(crate) fn authorize_raft(d: &Daemon, peer: &NodePeer) -> Result<()> {
    let id = peer
        .identity
        .as_ref()
        .ok_or_else(|| ApiError::new(401, "raft traffic needs a node certificate"))?;
    let Some(cluster) = d.cluster() else {
        return Err(ApiError::new(503, "not in a cluster"));
    };
    // The store's role wins over the certificate's (a promoted worker keeps its worker
    // certificate until it renews).
    let record_role = d
        .reader()
        .ok()
        .and_then(|r| r.node(id.node_id).ok().flatten())
        .map(|n| n.role);
    let manager = match record_role {
        Some(role) => role == NodeRole::Manager,
        None => id.role == Role::Manager,
    };
    if id.cluster_id != cluster.config().cluster_id || !manager {
        return Err(ApiError::new(
            403,
            "raft traffic from a node that is not a manager of this cluster",
        ));
    }
    if let Ok(Some(c)) = d.reader().and_then(|r| Ok(r.cluster()?))
        && c.revoked.iter().any(|r| r[..] == id.fingerprint[..])
    {
        return Err(ApiError::new(403, "certificate revoked"));
    }
    Ok(())
}

/// Raft RPCs (authorized by the node gate, [`authorize_raft`]).
pub(super) async fn raft_rpc(
    State(d): State<Arc<Daemon>>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    let handler = match d.store() {
        Ok(s) => s.replica.rpc_handler(),
        Err(e) => return e.into_response(),
    };
    match lockbox_replication::rpc::serve_rpc(&handler, uri.path(), body).await {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.to_string(),
        )
            .into_response(),
    }
}

/// `/cluster/admit`: a node that got its certificate asks to be let in. Managers are added to
/// raft (caught up as a learner, then made a voter) and only then get the keys.
pub(super) async fn admit(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<NodePeer>,
    Extension(who): Extension<Authorized>,
) -> Result<Response> {
    let store = d.require_leader()?;
    let node = who.node;
    let mut resp = AdmitResponse::default();
    resp.managers = manager_addrs(&store.reader);
    if node.role == NodeRole::Manager {
        // One membership change at a time: raft refuses a change while another is in
        // flight, and two nodes may ask to be admitted at once.
        let _serial = MEMBERSHIP.lock().await;
        let members = store.replica.members();
        if !members.iter().any(|m| m.id == node.id) {
            store.replica.add_learner(node.id, &node.addr, true).await?;
        }
        if !store
            .replica
            .members()
            .iter()
            .any(|m| m.id == node.id && m.voter)
        {
            store.replica.promote(node.id).await?;
        }
        let keys = d
            .keys
            .read()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        match &*keys {
            Keys::Unlocked { ring, unlock, .. } => {
                resp.ring = Some(b64(&ring.export()?));
                resp.unlock_key = unlock.as_ref().map(|k| k.to_text().to_string());
            }
            Keys::Locked { .. } => return Err(ApiError::locked()),
        }
        drop(keys);
        d.audit_event(
            Event::new("kek-handout", &format!("node:{}", node_id_text(node.id)))
                .detail("peer", &peer.addr),
        )?;
    }
    d.audit_event(
        Event::new("node-admit", &format!("node:{}", node_id_text(node.id)))
            .detail("role", node.role.as_str()),
    )?;
    Ok(json_response(StatusCode::OK, &resp))
}

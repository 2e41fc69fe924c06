//! The authorization gate of the node API: every request peers send over mutual TLS passes
//! here after rustls verified the client certificate against the cluster's roots and before
//! any handler runs. The rows are [`crate::gate::RULES`]' `Socket::Node` rows, the same
//! table as the Unix sockets'.
//!
//! Caller classes (SECURITY.md, "The node API"):
//! * **manager** / **worker** — a current, unrevoked certificate of this cluster whose node
//!   record (authoritative, not the certificate's OU) says that role;
//! * **no certificate** — a node that is joining (only `/cluster/join`, which checks the
//!   token in its body);
//! * a certificate from another CA never gets here: the TLS handshake fails.
//!
//! The gate puts the verified node's record ([`crate::cluster::Authorized`]) in the
//! request's extensions; handlers take the caller's node ID from there and nowhere else,
//! so no node can act for another. Every refusal is audited with the certificate's node ID.
//!
//! Owns: the node API's decision. Touches: the cluster's authorization (certificate against
//! the store's records), the audit log.
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lockbox_audit::Event;
use lockbox_store::{NodeRole, node_id_text};

use crate::ApiError;
use crate::gate::{Need, RULES, Socket, need};
use crate::peers::{NodePeer, RAFT_AUTH_TTL};
use lockbox_core::Daemon;

fn actor_of(peer: &NodePeer) -> String {
    match &peer.identity {
        Some(id) => format!("node:{}", node_id_text(id.node_id)),
        None => format!("peer:{}", peer.addr),
    }
}

fn audit_refusal(d: &Daemon, peer: &NodePeer, req: &Request, need: Need, why: &str) {
    if let Err(e) = d.audit_event(refusal(peer, req, need, why)) {
        tracing::warn!("cannot audit a refused node request: {e}");
    }
}

fn refusal(peer: &NodePeer, req: &Request, need: Need, why: &str) -> Event {
    Event::new("access-denied", &actor_of(peer))
        .detail("socket", Socket::Node.name())
        .detail("method", req.method().as_str())
        .detail("path", req.uri().path())
        .detail("needs", need.name())
        .detail("reason", why)
        .detail("peer", &peer.addr)
}

/// Raft traffic: authorized once per connection and [`RAFT_AUTH_TTL`] (see `NodePeer`).
fn check_raft(d: &Daemon, peer: &NodePeer, req: &Request) -> Result<(), ApiError> {
    let now = Instant::now();
    let cached = peer
        .raft_ok_until
        .lock()
        .ok()
        .and_then(|t| *t)
        .is_some_and(|until| now < until);
    if cached {
        return Ok(());
    }
    match crate::cluster::authorize_raft(d, peer) {
        Ok(()) => {
            if let Ok(mut t) = peer.raft_ok_until.lock() {
                *t = Some(now + RAFT_AUTH_TTL);
            }
            Ok(())
        }
        Err(e) => {
            // A removed manager keeps sending raft traffic many times a second, and each
            // record is an fsync: the refusal throttle every socket shares.
            let route = format!("node {} {}", req.method(), req.uri().path());
            let event = refusal(peer, req, Need::RaftPeer, &e.message);
            crate::refusals::record_for(d, &actor_of(peer), &route, event);
            Err(e)
        }
    }
}

/// The middleware: look the route up, check the certificate against the store, refuse
/// (audited) or pass with the caller's node record attached.
pub(crate) async fn check(State(d): State<Arc<Daemon>>, mut req: Request, next: Next) -> Response {
    let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<NodePeer>>()
        .map(|c| c.0.clone())
    else {
        return ApiError::internal("node request without a peer").into_response();
    };
    let need = need(Socket::Node, req.method().as_str(), req.uri().path());
    let role = match need {
        Need::JoinToken => return next.run(req).await,
        Need::RaftPeer => {
            return match check_raft(&d, &peer, &req) {
                Ok(()) => next.run(req).await,
                Err(e) => e.into_response(),
            };
        }
        Need::NodeCert => None,
        Need::ManagerCert => Some(NodeRole::Manager),
        Need::WorkerCert => Some(NodeRole::Worker),
        // A Unix-socket need on the node API is a table error: closed.
        other => {
            audit_refusal(&d, &peer, &req, other, "no node may call this route");
            return ApiError::new(403, "no node may call this route").into_response();
        }
    };
    // A worker takes "not a member" as the revocation of everything it holds (agent.rs), so
    // the agent's routes are decided on everything committed, not on a lagging manager's
    // applied state. Without a quorum nothing new can be committed: the applied state serves.
    if req.uri().path().starts_with("/agent/") && peer.identity.is_some() {
        let _ = d.fresh_reader().await;
    }
    // Revoked, foreign, stale or unknown certificates are refused (and audited as
    // `node-refused`) by the cluster's own check; a missing one is audited here.
    let who = match crate::cluster::authorize(&d, &peer) {
        Ok(w) => w,
        Err(e) => {
            if peer.identity.is_none() {
                audit_refusal(&d, &peer, &req, need, &e.message);
            }
            return e.into_response();
        }
    };
    if let Some(role) = role
        && who.node.role != role
    {
        let why = format!(
            "{} {} on the node API needs a {} certificate; node {} is a {}",
            req.method(),
            req.uri().path(),
            role.as_str(),
            node_id_text(who.node.id),
            who.node.role.as_str()
        );
        audit_refusal(&d, &peer, &req, need, &why);
        return ApiError::new(403, format!("permission denied: {why}")).into_response();
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

/// Installs the gate as the outermost layer of the node API's router.
pub(crate) fn layer(router: axum::Router, daemon: Arc<Daemon>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(daemon, check))
}

/// The node API's matrix as SECURITY.md shows it, made from the `Socket::Node` rows of
/// [`RULES`]: a column per kind of caller. The trust-boundary tests check SECURITY.md holds
/// exactly this text and drive every cell against real daemons.
pub fn markdown_matrix() -> String {
    let mut out = String::from(
        "| method | route | manager certificate | worker certificate | no certificate | certificate of another CA |\n|---|---|---|---|---|---|\n",
    );
    for r in RULES.iter().filter(|r| r.socket == Socket::Node) {
        let (manager, worker, none) = match r.need {
            Need::JoinToken => ("yes (token)", "yes (token)", "yes (token)"),
            Need::RaftPeer | Need::ManagerCert => ("yes", "403", "401"),
            Need::NodeCert => ("yes", "yes", "401"),
            Need::WorkerCert => ("403", "yes", "401"),
            _ => ("403", "403", "401"),
        };
        out.push_str(&format!(
            "| {} | `{}` | {manager} | {worker} | {none} | TLS refused |\n",
            r.method, r.path
        ));
    }
    out
}

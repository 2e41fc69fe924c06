//! The cluster's routes: the local socket's `/v1/cluster` and `/v1/nodes`, and the node API
//! that peers reach over mutual TLS.
//!
//! Owns: routing only; every handler lives in the concern's own file.
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::ApiError;
use crate::body::json_response;
use crate::identity::Peer;
use lockbox_core::Daemon;

#[allow(unused_imports)]
use super::*;

/// Routes under `/v1/cluster` and `/v1/nodes` (local socket).
pub(crate) fn local_routes() -> Router<Arc<Daemon>> {
    type App = State<Arc<Daemon>>;
    type Who = ConnectInfo<Peer>;
    Router::new()
        .route(
            "/cluster",
            get(|State(d): App| async move { cluster_inspect(d).await }),
        )
        .route(
            "/cluster/init",
            post(|State(d): App, ConnectInfo(w): Who, b: Bytes| async move { init(d, w, b).await }),
        )
        .route(
            "/cluster/join",
            post(|State(d): App, ConnectInfo(w): Who, b: Bytes| async move { local_join(d, w, b).await }),
        )
        .route(
            "/cluster/leave",
            post(|State(d): App, ConnectInfo(w): Who, Query(q): Query<LeaveQuery>| async move { leave(d, w, q).await }),
        )
        .route(
            "/cluster/ca",
            get(|State(d): App| async move { ca_inspect(d).await }),
        )
        .route(
            "/cluster/ca/rotate",
            post(|State(d): App, ConnectInfo(w): Who| async move { ca_rotate(d, w).await }),
        )
        .route(
            "/cluster/join-token/{role}",
            get(|State(d): App, ConnectInfo(w): Who, UrlPath(role): UrlPath<String>, Query(q): Query<TokenQuery>| async move {
                join_token(d, w, role, q).await
            }),
        )
        .route(
            "/cluster/unlock-key",
            post(|State(d): App, ConnectInfo(w): Who, Query(q): Query<UnlockKeyQuery>| async move {
                cluster_unlock_key(d, w, q).await
            }),
        )
        .route(
            "/nodes",
            get(|State(d): App, Query(q): Query<BTreeMap<String, String>>| async move {
                d.cluster_or_err()?;
                d.check_unlocked()?;
                let store = d.store()?;
                let filters = node_filters(q.get("filters").map(String::as_str))?;
                let list: Vec<_> = store
                    .reader
                    .nodes()?
                    .iter()
                    .filter(|n| node_matches(n, &filters))
                    .map(|n| node_json(&d, n, &store))
                    .collect();
                Ok::<_, ApiError>(json_response(StatusCode::OK, &list))
            }),
        )
        .route(
            "/nodes/{id}",
            get(|State(d): App, UrlPath(id): UrlPath<String>| async move {
                d.cluster_or_err()?;
                d.check_unlocked()?;
                let store = d.store()?;
                let n = resolve_node(&store.reader, &id)?;
                Ok::<_, ApiError>(json_response(StatusCode::OK, &node_json(&d, &n, &store)))
            })
            .delete(|State(d): App, ConnectInfo(w): Who, UrlPath(id): UrlPath<String>, Query(q): Query<ForceQuery>| async move {
                node_rm(d, w, id, q).await
            }),
        )
        .route(
            "/nodes/{id}/update",
            post(|State(d): App, ConnectInfo(w): Who, UrlPath(id): UrlPath<String>, b: Bytes| async move {
                node_update(d, w, id, b).await
            }),
        )
}

/// The node API: what peers reach over mutual TLS, every route behind the node gate.
pub(super) fn node_router(d: Arc<Daemon>) -> Router {
    let gate = d.extensions.get_or_init(NodeGate::default).layer;
    let router = Router::new()
        .route("/raft/{op}", post(raft_rpc))
        .route("/cluster/join", post(join_request))
        .route("/cluster/admit", post(admit))
        .route("/cluster/membership", post(membership))
        .route("/cluster/renew", post(renew))
        .nest("/agent", (d.agent_hooks().node_routes)())
        .fallback(|| async { ApiError::new(404, "page not found") })
        .with_state(d.clone());
    gate(router, d)
}

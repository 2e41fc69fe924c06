//! The native HTTP/JSON API under `/v1/`. Handlers only translate: every decision is in
//! [`lockbox_core::Daemon`]. Errors are Docker's: a status and `{"message": …}` with a
//! trailing newline and `Content-Type: application/json`.
use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lockbox_proto::{RollbackRequest, RotateRequest, Spec, UnlockKeyResponse, UnlockRequest};
use lockbox_store::Kind;
use serde::Serialize;

use crate::ApiError;
use crate::body::{json_body, json_response, parse_body, parse_required};
use crate::identity::{Grantee, Peer};
use lockbox_core::{Caller, Daemon};

type App = State<Arc<Daemon>>;
type Who = ConnectInfo<Peer>;
/// Set by the gate when a member was let in on its grants.
type Granted = Option<Extension<Grantee>>;
type Result<T> = std::result::Result<T, ApiError>;

fn ok_empty(status: StatusCode) -> Response {
    status.into_response()
}

/// A member admitted on its grants sees only the objects they cover (a grant is no
/// listing of everything else); everyone else gets the list streamed from the store.
async fn list(
    kind: Kind,
    d: &Daemon,
    q: &HashMap<String, String>,
    grantee: Option<Grantee>,
) -> Result<Response> {
    let filters = q.get("filters").map(String::as_str);
    let body = match grantee {
        None => d.list_json(kind, filters)?,
        Some(g) => {
            let grants = d.grant_view();
            d.list_json_where(kind, filters, |name| grants.allows(g.uid, &g.gids, name))?
        }
    };
    Ok(json_body(body.into()))
}

async fn create(kind: Kind, d: &Daemon, who: Peer, body: &Bytes) -> Result<Response> {
    let spec: Spec = parse_body(body)?;
    Ok(json_response(
        StatusCode::CREATED,
        &d.create(kind, spec, &Caller::uid(who.uid)).await?,
    ))
}

async fn update(
    kind: Kind,
    d: &Daemon,
    who: Peer,
    id: &str,
    q: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response> {
    let spec: Spec = parse_body(body)?;
    d.update(
        kind,
        id,
        q.get("version").map(String::as_str),
        spec,
        &Caller::uid(who.uid),
    )
    .await?;
    Ok(ok_empty(StatusCode::OK))
}

async fn remove(kind: Kind, d: &Daemon, who: Peer, id: &str) -> Result<Response> {
    d.remove(kind, id, &Caller::uid(who.uid)).await?;
    Ok(ok_empty(StatusCode::NO_CONTENT))
}

/// The native inspect answer: Docker's object plus `CurrentVersion`, the number of the version
/// whose value a config's `Spec.Data` shows. Docker's `Version.Index` is the raft index of the
/// object's last write, not a version number; `GET {id}/versions` names the current one but in
/// a second request, which a rotation can overtake. Clients that deserialize into `Object` (the
/// CLI) ignore the extra field; the Docker API (docker.rs) does not carry it.
#[derive(Serialize)]
struct NativeObject {
    #[serde(flatten)]
    object: lockbox_proto::Object,
    #[serde(rename = "CurrentVersion")]
    current_version: u64,
}

/// Routes shared by both kinds, generated per kind so the two stay identical.
fn kind_routes(kind: Kind) -> Router<Arc<Daemon>> {
    Router::new()
        .route("/", get(move |State(d): App, g: Granted, Query(q): Query<HashMap<String, String>>| async move { list(kind, &d, &q, g.map(|Extension(g)| g)).await }))
        .route(
            "/create",
            post(move |State(d): App, ConnectInfo(who): Who, body: Bytes| async move { create(kind, &d, who, &body).await }),
        )
        .route(
            "/{id}",
            get(move |State(d): App, g: Granted, Path(id): Path<String>| async move {
                let (object, current_version) = d.inspect_current(kind, &id)?;
                // Not covered: the same answer as a missing object, so nothing is learnt.
                if let Some(Extension(g)) = g
                    && !d.allows(g.uid, &g.gids, &object.spec.name)
                {
                    return Err(lockbox_store::StoreError::NotFound(kind, id).into());
                }
                Ok::<_, ApiError>(json_response(StatusCode::OK, &NativeObject { object, current_version }))
            })
            .delete(move |State(d): App, ConnectInfo(who): Who, Path(id): Path<String>| async move {
                remove(kind, &d, who, &id).await
            }),
        )
        .route(
            "/{id}/update",
            post(
                move |State(d): App,
                      ConnectInfo(who): Who,
                      Path(id): Path<String>,
                      Query(q): Query<HashMap<String, String>>,
                      body: Bytes| async move { update(kind, &d, who, &id, &q, &body).await },
            ),
        )
        .route(
            "/{id}/rotate",
            post(move |State(d): App, ConnectInfo(who): Who, Path(id): Path<String>, body: Bytes| async move {
                let req: RotateRequest = parse_required(&body)?;
                let r = d.rotate(kind, &id, &req.data, req.keep, &Caller::uid(who.uid)).await?;
                Ok::<_, ApiError>(json_response(StatusCode::OK, &r))
            }),
        )
        .route(
            "/{id}/rollback",
            post(move |State(d): App, ConnectInfo(who): Who, Path(id): Path<String>, body: Bytes| async move {
                let req: RollbackRequest = parse_required(&body)?;
                let r = d.rollback(kind, &id, req.version, &Caller::uid(who.uid)).await?;
                Ok::<_, ApiError>(json_response(StatusCode::OK, &r))
            }),
        )
        .route(
            "/{id}/versions",
            get(move |State(d): App, Path(id): Path<String>| async move {
                d.versions(kind, &id).map(|v| json_response(StatusCode::OK, &v))
            }),
        )
}

#[derive(serde::Deserialize, Default)]
struct AutolockRequest {
    #[serde(rename = "Enable")]
    enable: bool,
}

/// The native API router.
/// In a cluster, a read of secrets, configs or services must not be stale: before answering
/// it, the node confirms with the leader (a raft ReadIndex) and waits until it applied
/// everything committed so far. Single-node stores skip this (they are always current).
pub(crate) async fn read_barrier(
    State(d): App,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let data_read = req.method() == axum::http::Method::GET
        && ["/secrets", "/configs", "/services"]
            .iter()
            .any(|p| path.contains(p));
    // A worker (no store) falls through: the handler answers "not a manager".
    if data_read
        && d.store().is_ok()
        && let Err(e) = d.fresh_reader().await
    {
        return e.into_response();
    }
    next.run(req).await
}

pub(crate) fn router(d: Arc<Daemon>) -> Router {
    let v1 = Router::new()
        .nest("/secrets", kind_routes(Kind::Secret))
        .nest("/configs", kind_routes(Kind::Config))
        .route(
            "/info",
            get(|State(d): App| async move { d.info().map(|i| json_response(StatusCode::OK, &i)) }),
        )
        .route(
            "/version",
            get(|| async {
                json_response(
                    StatusCode::OK,
                    &serde_json::json!({"Version": env!("CARGO_PKG_VERSION"), "ApiVersion": "1"}),
                )
            }),
        )
        .route(
            "/unlock",
            post(
                |State(d): App, ConnectInfo(who): Who, body: Bytes| async move {
                    let req: UnlockRequest = parse_required(&body)
                        .map_err(|_| ApiError::bad_request("invalid key string"))?;
                    if req.shares.is_empty() {
                        d.unlock(&req.unlock_key, &Caller::uid(who.uid))?;
                    } else {
                        d.unlock_with_shares(&req.shares, &Caller::uid(who.uid))?;
                    }
                    Ok::<_, ApiError>(ok_empty(StatusCode::OK))
                },
            ),
        )
        .route(
            "/autolock",
            post(
                |State(d): App, ConnectInfo(who): Who, body: Bytes| async move {
                    let req: AutolockRequest = parse_body(&body)?;
                    let key = d.autolock(req.enable, &Caller::uid(who.uid)).await?;
                    Ok::<_, ApiError>(json_response(
                        StatusCode::OK,
                        &serde_json::json!({"UnlockKey": key.as_deref().map(String::as_str)}),
                    ))
                },
            ),
        )
        .route(
            "/unlockkey",
            get(|State(d): App, ConnectInfo(who): Who| async move {
                let k = d.unlock_key(false, &Caller::uid(who.uid))?;
                Ok::<_, ApiError>(json_response(
                    StatusCode::OK,
                    &UnlockKeyResponse {
                        unlock_key: k.to_string(),
                    },
                ))
            }),
        )
        .route(
            "/unlockkey/rotate",
            post(|State(d): App, ConnectInfo(who): Who| async move {
                let k = d.rotate_unlock_key(&Caller::uid(who.uid)).await?;
                Ok::<_, ApiError>(json_response(
                    StatusCode::OK,
                    &UnlockKeyResponse {
                        unlock_key: k.to_string(),
                    },
                ))
            }),
        )
        .route(
            "/kek/rotate",
            post(|State(d): App, ConnectInfo(who): Who| async move {
                let (id, n) = d.rotate_kek(&Caller::uid(who.uid)).await?;
                Ok::<_, ApiError>(json_response(
                    StatusCode::OK,
                    &serde_json::json!({"KekID": id, "Rewrapped": n}),
                ))
            }),
        )
        .route(
            "/audit",
            get(
                |State(d): App, Query(q): Query<HashMap<String, String>>| async move {
                    d.audit_list(q.get("since").map(String::as_str))
                        .map(|r| json_response(StatusCode::OK, &r))
                },
            ),
        )
        .route(
            "/audit/verify",
            get(|State(d): App| async move {
                d.audit_verify().map(|r| json_response(StatusCode::OK, &r))
            }),
        )
        .route("/events", get(events))
        .route("/backup", post(crate::backup::handler))
        .nest("/services", crate::services::routes())
        .nest("/workloads", crate::workloads::routes())
        .nest("/policies", crate::policy::routes())
        .merge(crate::cluster::local_routes());
    let app = Router::new()
        .route(
            "/_ping",
            get(|| async { "OK" }).head(|| async { StatusCode::OK }),
        )
        .nest("/v1", v1)
        .fallback(|| async { ApiError::new(404, "page not found") })
        .layer(axum::middleware::from_fn_with_state(
            d.clone(),
            read_barrier,
        ))
        .with_state(d.clone());
    crate::gate::layer(app, d, crate::gate::Socket::Native)
}

/// `GET /v1/events`: one JSON object a line, for as long as the client stays.
async fn events(State(d): App) -> Response {
    let rx = d.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) => {
                    return Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(line + "\n")),
                        rx,
                    ));
                }
                // A slow reader misses events rather than slowing the daemon down.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

//! The Docker Engine API subset (secrets, configs, ping, version, info, events) that lets
//! the stock `docker secret …` / `docker config …` commands work against lockbox, and the
//! Swarm secret-driver plugin protocol. Handlers call [`lockbox_core::Daemon`] like the native
//! API; this file only speaks Docker's wire dialect (version prefixes, headers, messages).
use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lockbox_store::Kind;
use serde::{Deserialize, Serialize};
use tower::ServiceExt as _;

use crate::ApiError;
use crate::body::{json_body, json_response, plugin_json};
use crate::identity::Peer;
use lockbox_core::{Caller, Daemon};

/// Docker has no body bound of its own; the largest legitimate body is a config of just
/// under 1000 KiB, base64-encoded (4/3) inside a small JSON object.
use crate::body::BODY_LIMIT;
use crate::docker_request::{API_VERSION, MIN_API_VERSION, RequestedVersion, check_version};
/// What Docker says on every manager route of a locked Swarm. `docker swarm unlock` works
/// here too (`POST /swarm/unlock`), so the advice is true.
const DOCKER_LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.";

type App = State<Arc<Daemon>>;
type Who = ConnectInfo<Peer>;
type Result<T> = std::result::Result<T, ApiError>;

/// Marks the unknown-route 404, which Docker sends without its usual API headers.
#[derive(Clone, Copy)]
struct NoApiHeaders;

fn server_header() -> HeaderValue {
    HeaderValue::from_static(concat!("lockbox/", env!("CARGO_PKG_VERSION"), " (linux)"))
}

async fn not_found() -> Response {
    page_not_found()
}

/// Docker's 404 for an unknown route.
fn page_not_found() -> Response {
    let mut r = ApiError::new(404, "page not found").into_response();
    r.extensions_mut().insert(NoApiHeaders);
    r
}

/// lockbox's own locked message becomes Docker's (the stock CLI can unlock lockbox).
fn dockerize(e: ApiError) -> ApiError {
    if e == ApiError::locked() {
        ApiError::new(503, DOCKER_LOCKED)
    } else {
        e
    }
}

/// Splits `/v1.41/secrets` into `Some("1.41")` and `/secrets`. Like Docker's router, the
/// version is `[0-9.]+` and must be followed by a path.
fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (v, tail) = rest.split_at(end);
        if !v.is_empty() && tail.starts_with('/') {
            return (Some(v), tail);
        }
    }
    (None, path)
}

/// Every Docker API request: strip and check the version prefix, route, add Docker's headers.
async fn dispatch(inner: Router, mut req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let (version, rest) = split_version(&path);
    if let Some(v) = version {
        if let Err(e) = check_version(v) {
            return with_api_headers(e.into_response());
        }
        let pq = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        match pq.parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return page_not_found(),
        }
    }
    let asked = version.unwrap_or(API_VERSION).to_owned();
    req.extensions_mut().insert(RequestedVersion(asked));
    let r = match inner.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if r.extensions().get::<NoApiHeaders>().is_some() {
        return r;
    }
    with_api_headers(r)
}

fn with_api_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(header::SERVER, server_header());
    r
}

/// The Docker Engine API router.
pub(crate) fn router(d: Arc<Daemon>) -> Router {
    let inner = api_routes()
        .layer(Extension(crate::docker_events::EventHistory::start(&d)))
        .layer(axum::middleware::from_fn_with_state(
            d.clone(),
            crate::http::read_barrier,
        ))
        .with_state(d.clone());
    let app = Router::new().fallback(move |req: Request| dispatch(inner.clone(), req));
    crate::gate::layer(app, d, crate::gate::Socket::Docker)
}

fn api_routes() -> Router<Arc<Daemon>> {
    let mut r = Router::new()
        .route("/_ping", get(ping).head(ping).fallback(not_found))
        .route("/version", get(version).fallback(not_found))
        .route("/info", get(info).fallback(not_found))
        .route("/events", get(events).fallback(not_found))
        .route("/swarm/unlock", post(swarm_unlock).fallback(not_found));
    for kind in [Kind::Secret, Kind::Config] {
        r = kind_routes(r, kind);
    }
    // Docker routes lockbox does not serve: a clear refusal rather than a bare 404, so
    // `docker ps` against this socket explains itself.
    for area in [
        "containers",
        "images",
        "build",
        "networks",
        "volumes",
        "services",
        "tasks",
        "nodes",
        "swarm",
        "plugins",
        "system",
        "exec",
        "session",
        "distribution",
        "auth",
        "commit",
        "grpc",
    ] {
        r = r
            .route(&format!("/{area}"), axum::routing::any(not_served))
            .route(
                &format!("/{area}/{{*rest}}"),
                axum::routing::any(not_served),
            );
    }
    r.fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

async fn not_served(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        501,
        format!(
            "lockbox {} serves only Docker's secret and config API (with ping, version, info and events); {method} {} is not implemented here: point this command at a Docker engine",
            env!("CARGO_PKG_VERSION"),
            uri.path()
        ),
    )
}

/// `HEAD`/`GET /_ping`.
async fn ping(State(d): App, method: Method) -> Response {
    let body = if method == Method::HEAD { "" } else { "OK" };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        "Swarm",
        HeaderValue::from_static(if d.is_locked() {
            "locked"
        } else {
            "active/manager"
        }),
    );
    r
}

fn proc_text(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn kernel_version() -> String {
    proc_text("/proc/sys/kernel/osrelease")
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// `GET /version`, shaped like Engine's so `docker version` prints a Server section.
async fn version() -> Response {
    let v = env!("CARGO_PKG_VERSION");
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "Platform": {"Name": "lockbox"},
            "Components": [{
                "Name": "Engine",
                "Version": v,
                "Details": {
                    "ApiVersion": API_VERSION,
                    "Arch": go_arch(),
                    "Experimental": "false",
                    "KernelVersion": kernel_version(),
                    "MinAPIVersion": MIN_API_VERSION,
                    "Os": "linux",
                },
            }],
            "Version": v,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": go_arch(),
            "KernelVersion": kernel_version(),
        }),
    )
}

/// `GET /info`: an engine with no containers whose Swarm section is an unlocked
/// single-node manager (or a locked one, with Docker's message).
async fn info(State(d): App) -> Result<Response> {
    let i = d.info()?;
    let locked = i.lock_state == "locked";
    let swarm = if locked {
        serde_json::json!({
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "locked",
            "ControlAvailable": false,
            "Error": DOCKER_LOCKED,
            "RemoteManagers": null,
        })
    } else {
        serde_json::json!({
            "NodeID": i.node_id,
            "NodeAddr": "127.0.0.1",
            "LocalNodeState": "active",
            "ControlAvailable": true,
            "Error": "",
            "RemoteManagers": [{"NodeID": i.node_id, "Addr": "127.0.0.1:2377"}],
            "Nodes": 1,
            "Managers": 1,
            "Cluster": {
                "ID": i.cluster_id,
                "Version": {"Index": i.raft_index},
                "Spec": {
                    "Name": "default",
                    "Labels": {},
                    "Orchestration": {"TaskHistoryRetentionLimit": 5},
                    "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500, "ElectionTick": 10, "HeartbeatTick": 1},
                    "Dispatcher": {"HeartbeatPeriod": 5_000_000_000u64},
                    "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000u64},
                    "TaskDefaults": {},
                    "EncryptionConfig": {"AutoLockManagers": i.key_mode == "autolock"},
                },
                "TLSInfo": {},
                "RootRotationInProgress": false,
                "DefaultAddrPool": [],
                "SubnetSize": 0,
                "DataPathPort": 0,
            },
        })
    };
    let hostname = proc_text("/proc/sys/kernel/hostname");
    let mut warnings = Vec::new();
    if let Some(w) = &i.key_warning {
        warnings.push(format!("WARNING: lockbox: {w}"));
    }
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "ID": i.node_id,
            "Containers": 0,
            "ContainersRunning": 0,
            "ContainersPaused": 0,
            "ContainersStopped": 0,
            "Images": 0,
            "Driver": "",
            "Plugins": {"Volume": null, "Network": null, "Authorization": null, "Log": null},
            "Debug": false,
            "SystemTime": jiff::Timestamp::now().to_string(),
            "KernelVersion": kernel_version(),
            "OperatingSystem": "lockbox",
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "DockerRootDir": i.data_dir,
            "Name": hostname,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": format!("lockbox-{}", i.version),
            "Swarm": swarm,
            "Warnings": if warnings.is_empty() { serde_json::Value::Null } else { serde_json::json!(warnings) },
        }),
    ))
}

#[derive(Deserialize)]
struct UnlockBody {
    #[serde(rename = "UnlockKey", default)]
    unlock_key: String,
}

/// `POST /swarm/unlock` (what `docker swarm unlock` sends), so Docker's locked message
/// gives advice that works.
async fn swarm_unlock(
    State(d): App,
    ConnectInfo(who): Who,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = read_json_body(&headers, body)?;
    let req: UnlockBody = lockbox_proto::go_json::from_slice(&body, lockbox_proto::go_json::UNLOCK)
        .map_err(|e| ApiError::bad_request(lockbox_store::validate::go_json_error(&e)))?;
    d.unlock(&req.unlock_key, &Caller::uid(who.uid))
        .map_err(|e| match e.status {
            401 => ApiError::new(401, "swarm could not be unlocked: invalid key provided"),
            400 if e.message == "lockbox is not locked" => {
                ApiError::bad_request("swarm is not locked")
            }
            _ => e,
        })?;
    Ok(StatusCode::OK.into_response())
}

/// The body, refused cleanly when too large or not JSON (Engine 23+'s Content-Type rule;
/// a body without a Content-Type is accepted as JSON, as Docker does).
fn read_json_body(
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Bytes> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                413,
                format!("request body too large: lockbox accepts at most {BODY_LIMIT} bytes"),
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })?;
    if !body.is_empty()
        && let Some(ct) = headers.get(header::CONTENT_TYPE)
    {
        let raw = String::from_utf8_lossy(ct.as_bytes()).into_owned();
        let media = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != "application/json" {
            return Err(ApiError::bad_request(format!(
                "unsupported Content-Type header ({raw}): must be 'application/json'"
            )));
        }
    }
    Ok(body)
}

type Body_ = std::result::Result<Bytes, BytesRejection>;

async fn list(kind: Kind, d: &Daemon, q: &HashMap<String, String>) -> Result<Response> {
    let json = d
        .list_json(kind, q.get("filters").map(String::as_str))
        .map_err(dockerize)?;
    Ok(json_body(json.into()))
}

async fn create(
    kind: Kind,
    d: &Daemon,
    who: Peer,
    (headers, version): (&HeaderMap, RequestedVersion),
    body: Body_,
) -> Result<Response> {
    let body = read_json_body(headers, body)?;
    let spec = crate::docker_request::parse_spec(&body)?;
    crate::docker_request::check_create(kind, &version.0, &spec)?;
    let r = d
        .create(kind, spec, &Caller::uid(who.uid))
        .await
        .map_err(dockerize)?;
    Ok(json_response(StatusCode::CREATED, &r))
}

async fn inspect(kind: Kind, d: &Daemon, id: &str) -> Result<Response> {
    let o = d.inspect(kind, id).map_err(dockerize)?;
    Ok(json_response(StatusCode::OK, &o))
}

async fn remove(kind: Kind, d: &Daemon, who: Peer, id: &str) -> Result<Response> {
    d.remove(kind, id, &Caller::uid(who.uid))
        .await
        .map_err(dockerize)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn update(
    kind: Kind,
    d: &Daemon,
    who: Peer,
    id: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body_,
) -> Result<Response> {
    let body = read_json_body(headers, body)?;
    let spec = crate::docker_request::parse_spec(&body)?;
    d.update(
        kind,
        id,
        q.get("version").map(String::as_str),
        spec,
        &Caller::uid(who.uid),
    )
    .await
    .map_err(dockerize)?;
    // Docker answers 200 with no body and no Content-Type.
    Ok(StatusCode::OK.into_response())
}

/// The five routes of one kind. `GET`/`DELETE /secrets/create` resolve "create" as an
/// `{id}`, as Docker's router does; other methods on known paths are Docker's 404.
fn kind_routes(r: Router<Arc<Daemon>>, kind: Kind) -> Router<Arc<Daemon>> {
    let base = match kind {
        Kind::Secret => "/secrets",
        Kind::Config => "/configs",
    };
    let by_id = |fixed: Option<&'static str>| -> MethodRouter<Arc<Daemon>> {
        get(move |State(d): App, id: Option<Path<String>>| async move {
            let id = fixed.map_or_else(|| id.map(|p| p.0).unwrap_or_default(), str::to_owned);
            inspect(kind, &d, &id).await
        })
        .delete(
            move |State(d): App, ConnectInfo(who): Who, id: Option<Path<String>>| async move {
                let id = fixed.map_or_else(|| id.map(|p| p.0).unwrap_or_default(), str::to_owned);
                remove(kind, &d, who, &id).await
            },
        )
        .fallback(not_found)
    };
    r.route(
        base,
        get(
            move |State(d): App, Query(q): Query<HashMap<String, String>>| async move {
                list(kind, &d, &q).await
            },
        )
        .fallback(not_found),
    )
    .route(
        &format!("{base}/create"),
        by_id(Some("create")).post(
            move |State(d): App,
                  ConnectInfo(who): Who,
                  Extension(v): Extension<RequestedVersion>,
                  headers: HeaderMap,
                  body: Body_| async move {
                create(kind, &d, who, (&headers, v), body).await
            },
        ),
    )
    .route(&format!("{base}/{{id}}"), by_id(None))
    .route(
        &format!("{base}/{{id}}/update"),
        post(
            move |State(d): App,
                  ConnectInfo(who): Who,
                  Path(id): Path<String>,
                  Query(q): Query<HashMap<String, String>>,
                  headers: HeaderMap,
                  body: Body_| async move {
                update(kind, &d, who, &id, &q, &headers, body).await
            },
        )
        .fallback(not_found),
    )
}

/// `GET /events`: replay from `since`, live until `until`, filtered (`docker_events`).
async fn events(
    State(d): App,
    Extension(h): Extension<Arc<crate::docker_events::EventHistory>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response> {
    crate::docker_events::events(&d, &h, &q)
}

// ---------------------------------------------------------------------------------------
// The Swarm secret-driver plugin (Docker's plugin protocol, §6.4 of the reference).

/// The label on a Swarm secret naming the lockbox secret to hand out.
const SECRET_LABEL: &str = "lockbox.secret";

#[derive(Deserialize, Default)]
#[serde(default)]
struct GetSecretRequest {
    #[serde(rename = "SecretName")]
    secret_name: String,
    #[serde(rename = "SecretLabels")]
    secret_labels: Option<HashMap<String, String>>,
    #[serde(rename = "ServiceID")]
    service_id: String,
    #[serde(rename = "ServiceName")]
    service_name: String,
    #[serde(rename = "TaskID")]
    task_id: String,
    #[serde(rename = "TaskName")]
    task_name: String,
    #[serde(rename = "TaskImage")]
    task_image: String,
    #[serde(rename = "NodeID")]
    node_id: String,
}

#[derive(Serialize, Default)]
struct GetSecretResponse {
    #[serde(rename = "Value", skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(rename = "Err", skip_serializing_if = "String::is_empty")]
    err: String,
    #[serde(rename = "DoNotReuse")]
    do_not_reuse: bool,
}

fn plugin_err(msg: String) -> Response {
    plugin_json(&GetSecretResponse {
        err: msg,
        ..Default::default()
    })
}

async fn get_secret(State(d): App, ConnectInfo(who): ConnectInfo<Peer>, body: Body_) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return plugin_err(format!("lockbox: cannot read the request: {e}")),
    };
    let req: GetSecretRequest =
        match lockbox_proto::go_json::from_slice(&body, lockbox_proto::go_json::GET_SECRET) {
            Ok(r) => r,
            Err(e) => {
                return plugin_err(format!(
                    "lockbox: malformed GetSecret request: {}",
                    lockbox_store::validate::go_json_error(&e)
                ));
            }
        };
    let wanted = req
        .secret_labels
        .as_ref()
        .and_then(|l| l.get(SECRET_LABEL))
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| req.secret_name.clone());
    if wanted.is_empty() {
        return plugin_err("lockbox: the request names no secret".into());
    }
    // The actor is who the kernel says connected (the gate let only uid 0, dockerd, in);
    // the Swarm fields below are what dockerd claims about the task, recorded beside it.
    let caller = Caller { actor: who.actor() };
    let detail = [
        ("via", "swarm-secret-driver"),
        ("swarm_secret", req.secret_name.as_str()),
        ("task_id", req.task_id.as_str()),
        ("task_name", req.task_name.as_str()),
        ("task_image", req.task_image.as_str()),
        ("service_id", req.service_id.as_str()),
        ("service_name", req.service_name.as_str()),
        ("node_id", req.node_id.as_str()),
    ];
    match d.reveal(Kind::Secret, &wanted, None, &caller, &detail) {
        Ok((_, _, data)) => plugin_json(&GetSecretResponse {
            value: Some(STANDARD.encode(&data[..])),
            err: String::new(),
            // Tasks started later must ask again, so that rotations reach them: Swarm
            // re-asks per task assignment either way; reuse is about one task's lifetime.
            do_not_reuse: false,
        }),
        Err(e) if e.status == 404 => plugin_err(format!(
            "lockbox: no secret named {wanted:?} (from the Swarm secret's label {SECRET_LABEL:?}, or its name): create it with 'lockbox secret create {wanted} -'"
        )),
        Err(e) => plugin_err(format!("lockbox: {}", e.message)),
    }
}

/// Which of Docker's plugin protocols a plugin socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PluginRoles {
    /// The Swarm secret driver (`SecretProvider.GetSecret`).
    pub(crate) secret_driver: bool,
    /// The volume driver (`VolumeDriver.*`, `volumes.rs`).
    pub(crate) volume_driver: bool,
}

/// The plugin router: `/Plugin.Activate` naming what this socket implements, then the
/// Swarm secret driver's and the volume driver's routes as `roles` asks.
pub(crate) fn plugin_router(d: Arc<Daemon>, roles: PluginRoles) -> Router {
    let mut implements = Vec::new();
    let mut app = Router::new();
    if roles.secret_driver {
        implements.push("secretprovider");
        app = app.route("/SecretProvider.GetSecret", post(get_secret));
    }
    if roles.volume_driver {
        implements.push("VolumeDriver");
        app = app.merge(crate::volumes::plugin_routes());
    }
    let activate = serde_json::json!({ "Implements": implements });
    let app = app
        .route(
            "/Plugin.Activate",
            post(move || async move { plugin_json(&activate) }),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(d.clone());
    crate::gate::layer(app, d, crate::gate::Socket::Plugin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_is_split_only_before_a_path() {
        assert_eq!(split_version("/v1.41/secrets"), (Some("1.41"), "/secrets"));
        assert_eq!(split_version("/v1/secrets"), (Some("1"), "/secrets"));
        assert_eq!(split_version("/version"), (None, "/version"));
        assert_eq!(split_version("/v1.41"), (None, "/v1.41"));
        assert_eq!(split_version("/vx/secrets"), (None, "/vx/secrets"));
    }
}

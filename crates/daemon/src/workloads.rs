//! Workloads: the running consumers of secrets on this node (`lockbox run` processes and
//! `lockbox docker run` containers), and live rotation into them.
//!
//! ```text
//! lockbox run ──POST /v1/workloads {Kind: process}──► daemon: resolve, reveal (audited), push
//!              ◄── JSON lines: initial files, then every new set ── (Supervisor::rotate)
//! lockbox docker run ──POST /v1/workloads {Kind: container}──► daemon: Staging tmpfs, write
//!              ◄── {Workload, Published} ── docker run --mount …,readonly --label lockbox.workload=ID
//!              ──POST /v1/workloads/ID/release──► keep if the container runs (detached), else reap
//! docker events (destroy, label lockbox.workload) ──► reap
//! ```
//!
//! Why the daemon owns container staging, foreground and detached alike: a detached
//! `docker run -d` outlives the CLI, so someone must keep rotating its files and reap them when
//! the container goes; doing it in one place for both means one code path for rotation,
//! policies and crash recovery. Process workloads live in their own mount namespace, which only
//! their supervisor can write into, so the daemon pushes the new set down the open stream
//! instead. An open stream is also how the daemon knows a process workload is alive.
//!
//! Only container workloads are persisted (`workloads.json` in the data dir: IDs, service and
//! references, never values): after a restart the daemon re-attaches to staging tmpfs whose
//! container still exists and reaps the rest. Process supervisors re-register by themselves
//! with their workload ID when their stream breaks.
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Extension, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lockbox_audit::Event;
use lockbox_keyring::Zeroizing;
use lockbox_store::{Kind, ServiceSecret};
use lockbox_tmpfs::{SecretFile, Staging};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use futures_util::future::BoxFuture;

use crate::ApiError;
use crate::body::{json_response, parse_required};
use crate::confine::Confined;
use crate::identity::{Grantee, Peer};
use crate::services::ServiceRecords;
use crate::services::{OnRotate, RefRequest};
use lockbox_core::{Caller, Daemon};

/// Label that ties a container to its workload.
pub(crate) const WORKLOAD_LABEL: &str = "lockbox.workload";
/// Where absolute targets of a container workload live inside the published directory: the
/// container gets each one bound over its absolute path.
pub(crate) const ABS_DIR: &str = ".lockbox-abs";

#[derive(Debug, Default, Deserialize)]
struct WorkloadRequest {
    /// `process` or `container`.
    #[serde(rename = "Kind", default)]
    kind: String,
    #[serde(rename = "Service", default)]
    service: Option<String>,
    #[serde(rename = "Secrets", default)]
    secrets: Vec<RefRequest>,
    /// Re-register an existing process workload (its supervisor lost the daemon).
    #[serde(rename = "Workload", default)]
    reattach: Option<String>,
    /// Values the caller read itself (`lockbox compose`: `file:`/`environment:` secrets,
    /// configs), delivered with the references; container workloads only. They do not
    /// rotate.
    #[serde(rename = "Inline", default)]
    inline: Vec<InlineRequest>,
}

/// `POST /v1/workloads/{id}/release`: `Foreground` when the CLI's foreground run returned
/// (its container has exited, whatever the engine lists for a moment).
#[derive(Debug, Default, Deserialize)]
struct ReleaseRequest {
    #[serde(rename = "Foreground", default)]
    foreground: bool,
}

/// How long a foreground release waits for the engine to stop listing an exited container
/// as running.
const FOREGROUND_EXIT_LAG: Duration = Duration::from_secs(5);

/// One inline file of a workload request (`Data` in base64).
#[derive(Debug, Default, Deserialize)]
struct InlineRequest {
    #[serde(rename = "Target", default)]
    target: String,
    #[serde(rename = "UID", default)]
    uid: u32,
    #[serde(rename = "GID", default)]
    gid: u32,
    #[serde(rename = "Mode", default)]
    mode: Option<u32>,
    #[serde(rename = "Data", default)]
    data: String,
}

/// An inline file: its reference (no secret behind it) and its value.
struct Inline {
    r: ServiceSecret,
    data: Zeroizing<Vec<u8>>,
}

/// The name inline files carry in conflicts and listings.
const INLINE_SOURCE: &str = "(inline)";

fn inline_ref(target: &str, uid: u32, gid: u32, mode: u32) -> ServiceSecret {
    ServiceSecret {
        secret_id: String::new(),
        secret_name: INLINE_SOURCE.to_owned(),
        target: target.to_owned(),
        uid,
        gid,
        mode,
        version: None,
    }
}

/// What a workload is made of (persisted for containers; no values).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Persisted {
    id: String,
    container: bool,
    service: Option<String>,
    adhoc: Vec<ServiceSecret>,
    refs: Vec<ServiceSecret>,
    on_rotate: String,
    /// Inline files' targets and owners only: after a restart their bytes are read back
    /// from the staging tmpfs, never from disk.
    #[serde(default)]
    inline: Vec<ServiceSecret>,
    /// Who started it (`uid:N pid:P`), the actor of its hand-outs' audit records.
    #[serde(default)]
    owner: Option<String>,
    /// Started by anyone but root: its owner and groups (see confine.rs).
    #[serde(default)]
    confined: Option<Confined>,
    /// A mount of the volume driver (then `container` is true: it has a staging tmpfs).
    #[serde(default)]
    volume: Option<VolumeMount>,
}

/// A workload that is one mount of a volume of the volume driver (`volumes.rs`): dockerd
/// binds its staging tmpfs into a container, and it ends at `Unmount`, not with a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VolumeMount {
    /// The volume's name.
    pub(crate) volume: String,
    /// The mount ID dockerd chose (`VolumeDriver.Mount`'s `ID`).
    pub(crate) mount_id: String,
}

/// One file as a consumer gets it: reference, version and value.
#[derive(Clone)]
pub(crate) struct Delivered {
    pub(crate) r: ServiceSecret,
    pub(crate) version: u64,
    pub(crate) data: Zeroizing<Vec<u8>>,
}

/// On a worker: what a manager handed out for one service placed on this node (in memory
/// only; dropped when the last workload of the service ends).
pub(crate) struct Handout {
    pub(crate) service: String,
    pub(crate) on_rotate: String,
    pub(crate) files: Vec<Delivered>,
}

/// Where a workload's references and values come from: the local store on a manager (or a
/// single node), the agent's hand-outs on a worker, which holds no store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Local,
    Agent,
}

impl Source {
    fn of(d: &Daemon) -> Self {
        if d.store().is_ok() {
            Source::Local
        } else {
            Source::Agent
        }
    }
}

struct State_ {
    refs: Vec<ServiceSecret>,
    on_rotate: String,
    /// What the consumer has now; `None` after a daemon restart (the files are on tmpfs, the
    /// values are not in memory until the next change).
    delivered: Option<Vec<Delivered>>,
    staging: Option<Staging>,
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    /// The last rotation that did not reach the consumer, until one does (`GET /v1/workloads`).
    rotation_error: Option<String>,
}

struct Workload {
    id: String,
    /// Who started it (`uid:N pid:P`, from the socket): every hand-out to the workload is
    /// recorded with this actor beside the workload's ID.
    owner: String,
    /// Started by anyone but root: only granted secrets, as the caller's own files.
    confined: Option<Confined>,
    container: bool,
    service: Option<String>,
    adhoc: Vec<ServiceSecret>,
    inline: Vec<Inline>,
    volume: Option<VolumeMount>,
    state: tokio::sync::Mutex<State_>,
}

impl Workload {
    /// Whether `who` may see or release it: root and administrators (no `Grantee`) any, a
    /// member its own.
    fn visible_to(&self, grantee: Option<&Grantee>) -> bool {
        grantee.is_none_or(|g| self.confined.as_ref().is_some_and(|c| c.uid == g.uid))
    }
}

/// Every workload on this node.
pub(crate) struct Workloads {
    root: PathBuf,
    state_path: PathBuf,
    map: Mutex<HashMap<String, Arc<Workload>>>,
    /// Worker only: hand-outs per service name.
    handouts: Mutex<HashMap<String, Arc<Handout>>>,
    /// Worker only: workloads being started (workload ID → service), already registered
    /// with the manager but not in `map` yet.
    pending: Mutex<HashMap<String, String>>,
    /// Notified whenever a workload ends, so the agent re-registers without it.
    pub(crate) changed: tokio::sync::Notify,
}

/// This node's workloads, kept in the core's extensions.
pub(crate) trait WorkloadsState {
    /// This node's workloads (kept in the core's extensions).
    fn workloads(&self) -> Arc<Workloads>;
}

impl WorkloadsState for Daemon {
    /// This node's workloads (kept in the core's extensions).
    fn workloads(&self) -> Arc<Workloads> {
        self.extensions
            .get_or_init(|| Workloads::new(&self.data_dir))
    }
}

/// Registers a workload of a service with a manager and fetches its files: `(daemon,
/// workload ID, service name)`.
pub(crate) type Acquire = for<'a> fn(
    &'a Arc<Daemon>,
    &'a str,
    &'a str,
) -> BoxFuture<'a, Result<(Arc<Handout>, Pending), ApiError>>;

/// Where a worker's workloads get their service's values: from a manager, through the
/// worker agent (a feature built on top of workloads, installed by serve.rs).
#[derive(Clone, Copy)]
pub(crate) struct RemoteHandouts {
    /// Registers workload `.1` of service `.2` with a manager and fetches its files.
    pub(crate) acquire: Acquire,
}

impl Default for RemoteHandouts {
    fn default() -> Self {
        Self {
            acquire: |_, _, _| {
                Box::pin(async { Err(ApiError::new(503, "this node has no worker agent")) })
            },
        }
    }
}

/// A workload being started on a worker: drops its pending registration; unless
/// [`Pending::started`] was called, the start failed and the agent re-registers without it.
pub(crate) struct Pending {
    ws: Arc<Workloads>,
    id: String,
    started: bool,
}

impl Pending {
    fn started(mut self) {
        self.started = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut p) = self.ws.pending.lock() {
            p.remove(&self.id);
        }
        if !self.started {
            self.ws.forget_unused();
            self.ws.changed.notify_one();
        }
    }
}

impl Workloads {
    /// On a clean stop, keeps every container workload's tmpfs mounted (instead of letting
    /// `Staging`'s drop unmount it), so the next start re-attaches to the running containers
    /// exactly as it does after a crash, and they go on getting rotations.
    pub(crate) async fn keep_for_restart(&self) {
        let all: Vec<Arc<Workload>> = match self.map.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return,
        };
        for w in all.iter().filter(|w| w.container) {
            if let Some(s) = w.state.lock().await.staging.take() {
                let _ = s.persist();
            }
        }
    }
}

fn new_workload_id() -> Result<String, ApiError> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The file a reference becomes in a container's published directory.
fn container_name(r: &ServiceSecret) -> PathBuf {
    let sr = crate::services::to_ref(r);
    match sr.relative_target() {
        Some(p) => p,
        None => Path::new(ABS_DIR).join(r.target.trim_start_matches('/')),
    }
}

/// Percent-encodes a query value.
fn q(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sends one request to the Docker Engine API and returns the response (the Engine API
/// directly rather than the docker CLI: a Go binary's start costs tens of milliseconds, paid
/// on every foreground run's release).
async fn engine_request(
    method: &str,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    use http_body_util::Full;
    let sock = docker_socket();
    let stream = tokio::net::UnixStream::connect(&sock)
        .await
        .map_err(|e| format!("{}: {e}", sock.display()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "docker")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{method} {path}: HTTP {}", resp.status()));
    }
    Ok(resp)
}

/// A short Engine API call: the JSON body of a 2xx answer (`Null` when empty).
async fn engine(method: &str, path: &str) -> Result<serde_json::Value, String> {
    use http_body_util::BodyExt as _;
    let resp = engine_request(method, path).await?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(serde_json::from_slice(&body).unwrap_or_default())
}

impl Workloads {
    pub(crate) fn new(data_dir: &Path) -> Self {
        Workloads {
            root: data_dir.join("workloads"),
            state_path: data_dir.join("workloads.json"),
            map: Mutex::new(HashMap::new()),
            handouts: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// (workload ID, service) of every workload of a service on this node, running or
    /// being started: what the agent registers with the manager.
    pub(crate) fn registrations(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .all()
            .into_iter()
            .filter_map(|w| Some((w.id.clone(), w.service.clone()?)))
            .collect();
        if let Ok(p) = self.pending.lock() {
            out.extend(p.iter().map(|(id, s)| (id.clone(), s.clone())));
        }
        out.sort();
        out
    }

    /// Marks workload `id` of `service` as being started (see [`Pending`]).
    pub(crate) fn pending(self: &Arc<Self>, id: &str, service: &str) -> Pending {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id.to_owned(), service.to_owned());
        }
        Pending {
            ws: self.clone(),
            id: id.to_owned(),
            started: false,
        }
    }

    pub(crate) fn handout(&self, service: &str) -> Option<Arc<Handout>> {
        self.handouts.lock().ok()?.get(service).cloned()
    }

    /// Keeps a hand-out, unless no workload of its service is left.
    pub(crate) fn put_handout(&self, h: Arc<Handout>) {
        let used = self.registrations().iter().any(|(_, s)| *s == h.service);
        if used && let Ok(mut m) = self.handouts.lock() {
            m.insert(h.service.clone(), h);
        }
    }

    /// Drops the values of services no workload on this node uses any more.
    fn forget_unused(&self) {
        let used: Vec<String> = self.registrations().into_iter().map(|(_, s)| s).collect();
        if let Ok(mut m) = self.handouts.lock() {
            m.retain(|s, _| used.contains(s));
        }
    }

    fn get(&self, id: &str) -> Option<Arc<Workload>> {
        self.map.lock().ok()?.get(id).cloned()
    }

    fn all(&self) -> Vec<Arc<Workload>> {
        self.map
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Writes the container workloads' descriptions (no values), atomically.
    async fn persist(&self) {
        let mut list = Vec::new();
        for w in self.all() {
            if !w.container {
                continue;
            }
            let st = w.state.lock().await;
            list.push(Persisted {
                id: w.id.clone(),
                container: true,
                service: w.service.clone(),
                adhoc: w.adhoc.clone(),
                refs: st.refs.clone(),
                on_rotate: st.on_rotate.clone(),
                inline: w.inline.iter().map(|i| i.r.clone()).collect(),
                owner: Some(w.owner.clone()),
                volume: w.volume.clone(),
                confined: w.confined.clone(),
            });
        }
        let tmp = self.state_path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&list).unwrap_or_default();
        if fs::write(&tmp, body)
            .and_then(|()| fs::rename(&tmp, &self.state_path))
            .is_err()
        {
            tracing::warn!(path = %self.state_path.display(), "cannot record workloads");
        }
    }

    async fn container_id(&self, id: &str, running_only: bool) -> Option<String> {
        let filters = serde_json::json!({"label": [format!("{WORKLOAD_LABEL}={id}")]});
        let path = format!(
            "/containers/json?all={}&filters={}",
            if running_only { 0 } else { 1 },
            q(&filters.to_string())
        );
        match engine("GET", &path).await {
            Ok(v) => v[0]["Id"].as_str().map(str::to_owned),
            Err(e) => {
                tracing::warn!(workload = id, "cannot list containers: {e}");
                None
            }
        }
    }

    /// Drops a workload and its staging tmpfs.
    async fn remove(&self, id: &str) {
        let w = self.map.lock().ok().and_then(|mut m| m.remove(id));
        if let Some(w) = w {
            let mut st = w.state.lock().await;
            if let Some(s) = st.staging.take()
                && let Err(e) = s.remove()
            {
                tracing::warn!(workload = id, "cannot remove staging: {e}");
            }
            st.delivered = None;
            st.tx = None;
            drop(st);
            tracing::info!(workload = id, "workload ended");
            self.forget_unused();
            self.changed.notify_one();
            if w.container {
                self.persist().await;
            }
        }
    }

    /// A container workload whose CLI is done with it: kept while its container runs
    /// (detached), reaped otherwise (foreground run ended, `docker run` failed, Ctrl-C).
    ///
    /// After a foreground run the container has exited, but Engine 26 can list it as
    /// running for a moment: the release waits (bounded) until the engine agrees, here over
    /// the Engine API rather than in the CLI through `docker ps`, whose start alone cost
    /// more than the rest of a delivery.
    async fn release(&self, id: &str, foreground: bool) {
        let Some(w) = self.get(id) else { return };
        if w.container && foreground {
            let deadline = tokio::time::Instant::now() + FOREGROUND_EXIT_LAG;
            while tokio::time::Instant::now() < deadline
                && self.container_id(id, true).await.is_some()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if w.container && self.container_id(id, true).await.is_some() {
            tracing::info!(
                workload = id,
                "container runs detached; keeping its secrets"
            );
            return;
        }
        self.remove(id).await;
    }

    /// Brings one workload to the references and versions it should have now; pushes or
    /// writes the files if anything changed, then runs the rotation policy.
    async fn sync(&self, d: &Daemon, w: &Workload, initial: bool) -> Result<(), ApiError> {
        let mut st = w.state.lock().await;
        let old = st.delivered.take();
        let new = match (Source::of(d), &w.service) {
            (Source::Local, _) => local_files(d, w, &mut st, old.as_deref())?,
            (Source::Agent, None) => Vec::new(),
            (Source::Agent, Some(name)) => match self.handout(name) {
                Some(h) => {
                    st.refs = h.files.iter().map(|x| x.r.clone()).collect();
                    st.on_rotate = h.on_rotate.clone();
                    h.files.clone()
                }
                None if initial => {
                    return Err(ApiError::new(
                        503,
                        format!("the secrets of service {name} are not held on this node"),
                    ));
                }
                // Dropped or not fetched: the consumer keeps what it has.
                None => {
                    st.delivered = old;
                    return Ok(());
                }
            },
        };
        let same = old.as_ref().is_some_and(|o| {
            o.len() == new.len()
                && o.iter()
                    .zip(&new)
                    .all(|(a, b)| a.r == b.r && a.version == b.version)
        });
        if same && !initial {
            st.delivered = old;
            return Ok(());
        }
        let policy = OnRotate::parse(&st.on_rotate).unwrap_or(OnRotate::None);
        if w.container {
            let files: Vec<SecretFile> = new
                .iter()
                .map(|x| (&x.r, &x.data))
                .chain(w.inline.iter().map(|i| (&i.r, &i.data)))
                .map(|(r, data)| {
                    SecretFile::new(container_name(r), data.clone())
                        .owner(r.uid, r.gid)
                        .mode(r.mode)
                })
                .collect();
            let staging = st
                .staging
                .as_ref()
                .ok_or_else(|| ApiError::internal("workload has no staging"))?;
            staging
                .write(&files)
                .map_err(|e| ApiError::internal(format!("cannot write the secrets: {e}")))?;
            let published = staging.published_dir();
            // Only absolute targets whose file changed need their bind swapped (inline files
            // never change after the start); unknown history (a restart) means all of them.
            let abs: Vec<(PathBuf, String)> = new
                .iter()
                .filter(|x| x.r.target.starts_with('/'))
                .filter(|x| {
                    !old.iter()
                        .flatten()
                        .any(|o| o.r == x.r && o.version == x.version && o.data == x.data)
                })
                .map(|x| (published.join(container_name(&x.r)), x.r.target.clone()))
                .collect();
            st.delivered = Some(new);
            drop(st);
            if !initial {
                self.after_container_rotation(&w.id, abs, policy).await;
            }
        } else {
            let line = files_line(&new, &st.on_rotate, initial, &w.id);
            st.delivered = Some(new);
            if let Some(tx) = &st.tx {
                let _ = tx.send(line);
            }
        }
        Ok(())
    }

    /// Absolute targets are single-file binds inside the container, which a `..data` swap
    /// cannot reach: a helper enters the container's mount namespace and swaps each bind
    /// (beneath, then unmount: atomic for readers). Then the policy runs.
    async fn after_container_rotation(
        &self,
        id: &str,
        abs: Vec<(PathBuf, String)>,
        policy: OnRotate,
    ) {
        if abs.is_empty() && policy == OnRotate::None {
            return;
        }
        let Some(cid) = self.container_id(id, true).await else {
            return;
        };
        if !abs.is_empty() {
            let pid = engine("GET", &format!("/containers/{cid}/json"))
                .await
                .ok()
                .and_then(|v| v["State"]["Pid"].as_u64())
                .filter(|p| *p > 0)
                .map(|p| p.to_string());
            match (pid, std::env::current_exe()) {
                (Some(pid), Ok(exe)) => {
                    let mut cmd = tokio::process::Command::new(exe);
                    cmd.arg("__nsbind").arg(&pid);
                    for (src, dst) in &abs {
                        cmd.arg(src).arg(dst);
                    }
                    match cmd.output().await {
                        Ok(o) if o.status.success() => {}
                        Ok(o) => tracing::warn!(
                            workload = id,
                            "cannot swap absolute targets: {}",
                            String::from_utf8_lossy(&o.stderr).trim()
                        ),
                        Err(e) => tracing::warn!(workload = id, "cannot run the bind helper: {e}"),
                    }
                }
                _ => tracing::warn!(workload = id, "cannot find the container's process"),
            }
        }
        let id = id.to_owned();
        // The policy may take seconds (a restart); the rotation is already visible.
        tokio::spawn(async move {
            let r = match policy {
                OnRotate::None => return,
                OnRotate::Signal(n) => {
                    engine("POST", &format!("/containers/{cid}/kill?signal={n}")).await
                }
                OnRotate::Restart => engine("POST", &format!("/containers/{cid}/restart")).await,
            };
            if let Err(e) = r {
                tracing::warn!(
                    workload = id,
                    "rotation policy failed for container {cid}: {e}"
                );
            }
        });
    }

    /// Records how a rotation into `w` ended. A failure — here (a staging write) or reported
    /// by the consumer (`lockbox run`'s shim could not swap its files) — is logged, audited,
    /// emitted on `/events` (type `workload`, action `rotate-failed`) and kept as the
    /// workload's `RotationError` until a later rotation reaches it: a consumer must never
    /// be left on an old value with the only trace on its own stderr.
    async fn rotation_result(&self, d: &Daemon, w: &Workload, actor: &str, error: Option<String>) {
        // The audit record (an fsync) is written before the workload's lock is taken, so a
        // slow disk never holds up the workload's own syncs.
        match error {
            None => w.state.lock().await.rotation_error = None,
            Some(error) => {
                let service = w.service.clone().unwrap_or_default();
                tracing::error!(workload = w.id, service, "rotation failed: {error}");
                if let Err(e) = d.audit_event(
                    Event::new("rotate-failed", actor)
                        .detail("workload", &w.id)
                        .detail("service", &service)
                        .detail("error", &error),
                ) {
                    tracing::error!("cannot audit a failed rotation: {e}");
                }
                d.emit_typed("workload", "rotate-failed", &w.id, &service);
                w.state.lock().await.rotation_error = Some(error);
            }
        }
    }

    /// Moves every workload of `service` to its current references.
    pub(crate) async fn sync_service(&self, d: &Daemon, service: &str) {
        for w in self.all() {
            if w.service.as_deref() == Some(service) {
                let r = self.sync(d, &w, false).await;
                self.rotation_result(d, &w, "daemon", r.err().map(|e| e.message))
                    .await;
            }
        }
    }

    /// Takes a service's files back from its workloads on this worker (its hand-out was
    /// emptied, revocation.rs): each workload is synced to the empty set, so its tmpfs
    /// loses them; a container that had an absolute target is stopped, since a single-file
    /// bind inside a running container cannot be taken back.
    pub(crate) async fn revoke_service(&self, d: &Daemon, service: &str) {
        for w in self.all() {
            if w.service.as_deref() != Some(service) {
                continue;
            }
            let absolute = w.container && {
                let st = w.state.lock().await;
                st.refs.iter().any(|r| r.target.starts_with('/'))
            };
            let r = self.sync(d, &w, false).await;
            self.rotation_result(d, &w, "daemon", r.err().map(|e| e.message))
                .await;
            if absolute && let Some(cid) = self.container_id(&w.id, true).await {
                tracing::warn!(
                    workload = w.id,
                    "stopping the container: its secrets were revoked"
                );
                if let Err(e) = engine("POST", &format!("/containers/{cid}/stop?t=1")).await {
                    tracing::error!(workload = w.id, "cannot stop container {cid}: {e}");
                }
            }
        }
    }

    /// Moves every workload that follows secret `secret_id` to its current version.
    async fn sync_secret(&self, d: &Daemon, secret_id: Option<&str>) {
        for w in self.all() {
            let uses = {
                let st = w.state.lock().await;
                st.refs
                    .iter()
                    .any(|r| r.version.is_none() && secret_id.is_none_or(|s| r.secret_id == s))
            };
            if uses {
                let r = self.sync(d, &w, false).await;
                self.rotation_result(d, &w, "daemon", r.err().map(|e| e.message))
                    .await;
            }
        }
    }
}

/// Whether a running container uses volume `name` (Docker's `volume` filter). When the
/// engine cannot be asked, the answer is yes: a mount is never reaped on a guess.
async fn volume_in_use(name: &str) -> bool {
    let filters = serde_json::json!({"volume": [name]});
    match engine(
        "GET",
        &format!("/containers/json?filters={}", q(&filters.to_string())),
    )
    .await
    {
        Ok(v) => v.as_array().is_some_and(|a| !a.is_empty()),
        Err(e) => {
            tracing::warn!(volume = name, "cannot ask Docker who uses the volume: {e}");
            true
        }
    }
}

impl Workloads {
    /// Mounts of volume `volume` on this node: (mount ID, published directory).
    pub(crate) async fn volume_mounts(&self, volume: &str) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for w in self.all() {
            let Some(v) = w.volume.as_ref().filter(|v| v.volume == volume) else {
                continue;
            };
            let st = w.state.lock().await;
            if let Some(s) = &st.staging {
                out.push((v.mount_id.clone(), s.published_dir()));
            }
        }
        out.sort();
        out
    }

    /// One mount of a volume: a new workload with its own staging tmpfs holding `refs`,
    /// revealed now (audited with the volume and the mount ID). Answers the directory
    /// dockerd binds. On any error nothing is left: no workload, no tmpfs.
    pub(crate) async fn mount_volume(
        &self,
        d: &Daemon,
        owner: String,
        mount: VolumeMount,
        refs: Vec<ServiceSecret>,
    ) -> Result<PathBuf, ApiError> {
        let id = new_workload_id()?;
        let staging = Staging::create(&self.root, &id)
            .map_err(|e| ApiError::internal(format!("cannot prepare the volume's tmpfs: {e}")))?;
        let w = Arc::new(Workload {
            id: id.clone(),
            owner,
            container: true,
            service: None,
            adhoc: refs.clone(),
            inline: Vec::new(),
            volume: Some(mount.clone()),
            confined: None,
            state: tokio::sync::Mutex::new(State_ {
                refs,
                on_rotate: "none".to_string(),
                delivered: None,
                staging: Some(staging),
                tx: None,
                rotation_error: None,
            }),
        });
        // The check and the insert under one lock: two Mounts of one ID cannot both pass.
        let taken = match self.map.lock() {
            Ok(mut m) => {
                let taken = m.values().any(|o| {
                    o.volume
                        .as_ref()
                        .is_some_and(|v| v.mount_id == mount.mount_id)
                });
                if !taken {
                    m.insert(id.clone(), w.clone());
                }
                taken
            }
            Err(_) => true,
        };
        if taken {
            if let Some(s) = w.state.lock().await.staging.take() {
                let _ = s.remove();
            }
            return Err(ApiError::new(
                409,
                format!(
                    "mount ID {} of volume {} is already mounted: Unmount it first",
                    mount.mount_id, mount.volume
                ),
            ));
        }
        if let Err(e) = self.sync(d, &w, true).await {
            self.remove(&id).await;
            return Err(e);
        }
        let published = w
            .state
            .lock()
            .await
            .staging
            .as_ref()
            .map(|s| s.published_dir());
        self.persist().await;
        published.ok_or_else(|| ApiError::internal("the volume's mount has no tmpfs"))
    }

    /// Ends the mount `mount_id` of a volume: its tmpfs is unmounted and removed. False
    /// when no such mount exists here.
    pub(crate) async fn unmount_volume(&self, volume: &str, mount_id: &str) -> bool {
        let id = self.all().into_iter().find_map(|w| {
            w.volume
                .as_ref()
                .filter(|v| v.volume == volume && v.mount_id == mount_id)
                .map(|_| w.id.clone())
        });
        match id {
            Some(id) => {
                self.remove(&id).await;
                true
            }
            None => false,
        }
    }
}

/// On a manager or single node: the files a workload should have now, from the store. Only
/// what changed is revealed (audited, with service, workload and target).
fn local_files(
    d: &Daemon,
    w: &Workload,
    st: &mut State_,
    old: Option<&[Delivered]>,
) -> Result<Vec<Delivered>, ApiError> {
    // One read of the grants for the whole set (a confined workload's references are
    // checked again at every sync).
    let grants = w.confined.as_ref().map(|_| d.grant_view());
    if let Some(name) = &w.service {
        // A removed service leaves its workloads with what they had.
        if let Ok(s) = d.service(name) {
            let extra: Vec<_> = w
                .adhoc
                .iter()
                .filter(|a| !s.secrets.contains(a))
                .cloned()
                .collect();
            let refs = s.secrets.into_iter().chain(extra);
            st.refs = match &w.confined {
                Some(c) => refs
                    .filter(|r| grants.as_ref().is_some_and(|g| c.allows(g, r)))
                    .map(|r| c.own(r))
                    .collect(),
                None => refs.collect(),
            };
            st.on_rotate = s.on_rotate;
        }
    }
    let mut new = Vec::with_capacity(st.refs.len());
    let caller = Caller {
        actor: format!("{} workload:{}", w.owner, w.id),
    };
    let mut templates = Vec::new();
    for r in &st.refs {
        // A revoked grant: nothing new for that reference (the consumer keeps what it had).
        if let (Some(c), Some(g)) = (&w.confined, &grants)
            && !c.allows(g, r)
        {
            continue;
        }
        let prev = old
            .into_iter()
            .flatten()
            .find(|x| x.r.secret_id == r.secret_id && x.r.target == r.target);
        let found = crate::services::referenced(d, &r.secret_id)?;
        let kind = found.as_ref().map_or(Kind::Secret, |(k, _)| *k);
        let rec = found.map(|(_, rec)| rec);
        let version = match (r.version, &rec) {
            (Some(v), _) => v,
            (None, Some(rec)) => rec.current,
            // Removed (an ad-hoc reference): the consumer keeps what it has.
            (None, None) => match prev {
                Some(p) => p.version,
                None => continue,
            },
        };
        // A template's file depends on the secrets it includes: it is rendered anew on
        // every sync (a sync runs when one of them rotates), never reused.
        let templated = rec.filter(crate::templating::is_templated);
        let reuse = old
            .into_iter()
            .flatten()
            .filter(|_| templated.is_none())
            .find(|x| x.r.secret_id == r.secret_id && x.version == version);
        let data = match reuse {
            Some(x) => x.data.clone(),
            None => {
                let mut detail = vec![
                    ("service", w.service.as_deref().unwrap_or("")),
                    ("workload", w.id.as_str()),
                    ("target", r.target.as_str()),
                ];
                if let Some(v) = &w.volume {
                    detail.push(("volume", v.volume.as_str()));
                    detail.push(("mount_id", v.mount_id.as_str()));
                }
                // Audited (on disk) before the value comes back, so before any write.
                d.reveal(kind, &r.secret_id, Some(version), &caller, &detail)?
                    .2
            }
        };
        if let Some(rec) = templated {
            templates.push((new.len(), rec));
        }
        new.push(Delivered {
            r: r.clone(),
            version,
            data,
        });
    }
    if !templates.is_empty() {
        let consumer = crate::templating::Consumer {
            workload: &w.id,
            service: w.service.as_deref(),
            caller: &caller,
            node: None,
        };
        // All rendered before any file is written.
        let files: Vec<_> = new.iter().map(|x| (&x.r, x.version, &x.data[..])).collect();
        for (i, data) in crate::templating::render_set(d, &consumer, &files, &templates)? {
            new[i].data = data;
        }
    }
    Ok(new)
}

/// One line of a process workload's stream. The buffer is zeroized when hyper drops it.
fn files_line(files: &[Delivered], on_rotate: &str, initial: bool, id: &str) -> Bytes {
    let list: Vec<serde_json::Value> = files.iter().map(|x| file_json(x, true)).collect();
    // The policy travels parsed, so the supervisor needs no signal table of its own.
    let (policy, signal) = match OnRotate::parse(on_rotate).unwrap_or(OnRotate::None) {
        OnRotate::None => ("none", 0),
        OnRotate::Signal(n) => ("signal", n),
        OnRotate::Restart => ("restart", 0),
    };
    let v = serde_json::json!({
        "Workload": id, "Initial": initial, "Policy": policy, "Signal": signal, "Files": list,
    });
    // The JSON value above held base64 copies too; serde_json's strings are freed, not wiped,
    // which is the one place plaintext-derived bytes outlive this call unzeroized.
    json_line_zeroized(&v)
}

/// One delivered file as JSON (`Data` in base64 when `with_data`).
pub(crate) fn file_json(x: &Delivered, with_data: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "Target": x.r.target, "UID": x.r.uid, "GID": x.r.gid, "Mode": x.r.mode,
        "Secret": x.r.secret_name, "Version": x.version,
    });
    if with_data {
        v["Data"] = STANDARD.encode(&x.data[..]).into();
    }
    v
}

/// `v` as one JSON line in a buffer that is zeroized when hyper drops it.
pub(crate) fn json_line_zeroized(v: &serde_json::Value) -> Bytes {
    let mut buf = Zeroizing::new(serde_json::to_vec(v).unwrap_or_default());
    buf.push(b'\n');
    Bytes::from_owner(ZeroOwner(buf))
}

struct ZeroOwner(Zeroizing<Vec<u8>>);
impl AsRef<[u8]> for ZeroOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn stream_response(rx: mpsc::UnboundedReceiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    crate::body::json_body(Body::from_stream(stream))
}

const ON_A_WORKER: &str = "on a worker, secrets come through a service placed on this node: use --service (a --secret reference outside the service needs a manager)";

/// Whether a reference given with a request is `r` (same secret name, target, owner, mode
/// and pin): on a worker, which cannot resolve names, only such repeats are accepted.
fn same_ref(a: &RefRequest, r: &ServiceSecret) -> bool {
    let f = a.file.as_ref();
    let id = |s: Option<&String>| match s.map(String::as_str) {
        None | Some("") => Some(0),
        Some(v) => v.parse::<u32>().ok(),
    };
    a.secret_name == r.secret_name
        && f.is_some_and(|f| f.name == r.target)
        && id(f.map(|f| &f.uid)) == Some(r.uid)
        && id(f.map(|f| &f.gid)) == Some(r.gid)
        && f.and_then(|f| f.mode)
            .unwrap_or(lockbox_proto::reference::DEFAULT_MODE)
            == r.mode
        && a.version == r.version
}

async fn create(d: Arc<Daemon>, who: Peer, body: Bytes) -> Result<Response, ApiError> {
    let source = Source::of(&d);
    if source == Source::Local {
        d.check_unlocked()?;
    }
    let confined = Confined::of(&who)?;
    let req: WorkloadRequest = parse_required(&body)?;
    if let Some(c) = &confined {
        c.check_owner(&d, &who, &req.secrets)?;
        c.check_names(&d, &who, req.secrets.iter().map(|r| r.secret_name.as_str()))?;
    }
    let container = match req.kind.as_str() {
        "process" => false,
        "container" => true,
        k => {
            return Err(ApiError::bad_request(format!(
                "unknown workload kind {k:?}"
            )));
        }
    };
    let ws = d.workloads().clone();
    // Only its starter (or root) may take a workload's ID over.
    if let (Some(id), Some(c)) = (&req.reattach, &confined)
        && ws
            .get(id)
            .is_some_and(|w| w.confined.as_ref().is_none_or(|o| o.uid != c.uid))
    {
        return Err(ApiError::new(
            403,
            format!(
                "permission denied: workload {id} was not started by uid {}",
                c.uid
            ),
        ));
    }
    let id = match &req.reattach {
        Some(id) if !container && valid_id(id) => id.clone(),
        Some(id) => {
            return Err(ApiError::bad_request(format!(
                "cannot re-attach workload {id:?}"
            )));
        }
        None => new_workload_id()?,
    };
    let mut pending = None;
    let (adhoc, refs, on_rotate, service) = match (source, &req.service) {
        (Source::Local, Some(name)) => {
            let adhoc = d.resolve_refs(&req.secrets)?;
            let s = d.service(name)?;
            crate::placement::check_here(&d, &s)?;
            // The same reference given again on the command line (e.g. by --secret-env) is
            // one file, not a conflict.
            let extra = adhoc.iter().filter(|a| !s.secrets.contains(a)).cloned();
            let refs: Vec<_> = s.secrets.iter().cloned().chain(extra).collect();
            (adhoc, refs, s.on_rotate, Some(s.name))
        }
        (Source::Local, None) => {
            let adhoc = d.resolve_refs(&req.secrets)?;
            (adhoc.clone(), adhoc, "none".to_string(), None)
        }
        (Source::Agent, None) if !req.secrets.is_empty() => {
            return Err(ApiError::bad_request(ON_A_WORKER));
        }
        (Source::Agent, None) => (Vec::new(), Vec::new(), "none".to_string(), None),
        (Source::Agent, Some(name)) => {
            let acquire = d.extensions.get_or_init(RemoteHandouts::default).acquire;
            let (h, p) = acquire(&d, &id, name).await?;
            pending = Some(p);
            // A reference repeated on the command line (--secret-env) must be one of the
            // service's: anything else would need the store.
            let refs: Vec<ServiceSecret> = h.files.iter().map(|x| x.r.clone()).collect();
            if !req
                .secrets
                .iter()
                .all(|a| refs.iter().any(|r| same_ref(a, r)))
            {
                return Err(ApiError::bad_request(ON_A_WORKER));
            }
            (
                Vec::new(),
                refs,
                h.on_rotate.clone(),
                Some(h.service.clone()),
            )
        }
    };
    // A confined caller: every secret named (its own and its service's) needs a grant, and
    // every file becomes the caller's.
    let (adhoc, refs) = match &confined {
        Some(c) => {
            // The service's references too (the request's were checked before lookup).
            c.check_names(&d, &who, refs.iter().map(|r| r.secret_name.as_str()))?;
            (
                adhoc.into_iter().map(|r| c.own(r)).collect::<Vec<_>>(),
                refs.into_iter().map(|r| c.own(r)).collect::<Vec<_>>(),
            )
        }
        None => (adhoc, refs),
    };
    if !container && !req.inline.is_empty() {
        return Err(ApiError::bad_request(
            "inline files are for container workloads",
        ));
    }
    let mut inline = Vec::with_capacity(req.inline.len());
    for f in &req.inline {
        let r = inline_ref(
            &f.target,
            f.uid,
            f.gid,
            f.mode.unwrap_or(lockbox_proto::reference::DEFAULT_MODE),
        );
        // The caller's own bytes, but still never a file owned by someone else.
        let r = match &confined {
            Some(c) => c.own(r),
            None => r,
        };
        crate::services::to_ref(&r)
            .validate()
            .map_err(|e| ApiError::bad_request(format!("inline file {:?}: {e}", f.target)))?;
        let data = Zeroizing::new(
            STANDARD
                .decode(&f.data)
                .map_err(|_| ApiError::bad_request("inline file data is not base64"))?,
        );
        inline.push(Inline { r, data });
    }
    drop(req.inline);
    let all: Vec<ServiceSecret> = refs
        .iter()
        .cloned()
        .chain(inline.iter().map(|i| i.r.clone()))
        .collect();
    crate::services::check_conflicts(&all)?;
    let staging =
        if container {
            Some(Staging::create(&ws.root, &id).map_err(|e| {
                ApiError::internal(format!("cannot prepare the secrets tmpfs: {e}"))
            })?)
        } else {
            None
        };
    let (tx, rx) = mpsc::unbounded_channel();
    let w = Arc::new(Workload {
        id: id.clone(),
        owner: who.actor(),
        confined,
        container,
        service,
        adhoc,
        inline,
        volume: None,
        state: tokio::sync::Mutex::new(State_ {
            refs,
            on_rotate,
            delivered: None,
            staging,
            tx: Some(tx.clone()),
            rotation_error: None,
        }),
    });
    if let Ok(mut m) = ws.map.lock() {
        m.insert(id.clone(), w.clone());
    }
    if let Some(p) = pending {
        p.started();
    }
    if let Err(e) = ws.sync(&d, &w, true).await {
        ws.remove(&id).await;
        return Err(e);
    }
    if container {
        let st = w.state.lock().await;
        let published = st.staging.as_ref().map(|s| s.published_dir());
        let abs: Vec<_> = st
            .refs
            .iter()
            .chain(w.inline.iter().map(|i| &i.r))
            .filter(|r| r.target.starts_with('/'))
            .map(|r| {
                serde_json::json!({
                    "Source": published.as_ref().map(|p| p.join(container_name(r))),
                    "Target": r.target,
                })
            })
            .collect();
        let mut line = serde_json::to_vec(&serde_json::json!({
            "Workload": id, "Published": published, "Absolute": abs,
        }))
        .unwrap_or_default();
        line.push(b'\n');
        let _ = tx.send(Bytes::from(line));
        drop(st);
        ws.persist().await;
    }
    // The stream's end (the CLI exited, crashed, or lost us) ends a process workload and
    // releases a container one.
    let ws2 = ws.clone();
    tokio::spawn(async move {
        tx.closed().await;
        let Some(w) = ws2.get(&id) else { return };
        if w.container {
            ws2.release(&id, false).await;
        } else {
            let mine = w
                .state
                .lock()
                .await
                .tx
                .as_ref()
                .is_none_or(|t| t.same_channel(&tx));
            if mine {
                ws2.remove(&id).await;
            }
        }
    });
    Ok(stream_response(rx))
}

/// The Docker engine's socket: `DOCKER_HOST` when it is a unix:// address, else the default.
fn docker_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// Opens Docker's event stream for container destroys (the Engine API directly, not a
/// `docker events` child: a child would outlive a daemon killed with SIGKILL).
async fn docker_events() -> Result<hyper::body::Incoming, String> {
    let filters = r#"{"type":["container"],"event":["destroy"]}"#;
    Ok(
        engine_request("GET", &format!("/events?filters={}", q(filters)))
            .await?
            .into_body(),
    )
}

/// Follows Docker's event stream and reaps the staging of destroyed containers; re-checks
/// every container workload whenever the stream (re)starts, in case a destroy was missed.
async fn follow_docker(ws: Arc<Workloads>) {
    use http_body_util::BodyExt as _;
    let mut warned = false;
    loop {
        let mut body = match docker_events().await {
            Ok(b) => b,
            Err(e) => {
                if !warned {
                    tracing::warn!("cannot follow Docker's events ({e}); retrying");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        warned = false;
        for w in ws.all() {
            if w.container && w.volume.is_none() && ws.container_id(&w.id, false).await.is_none() {
                let attached = w
                    .state
                    .lock()
                    .await
                    .tx
                    .as_ref()
                    .is_some_and(|t| !t.is_closed());
                if !attached {
                    ws.remove(&w.id).await;
                }
            }
        }
        let mut buf = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Some(d) = frame.data_ref() else { continue };
            buf.extend_from_slice(d);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
                // A workload may have several containers (the replicas of a Compose
                // service): it ends with the last one.
                if let Some(id) = v["Actor"]["Attributes"][WORKLOAD_LABEL].as_str()
                    && ws.container_id(id, false).await.is_none()
                {
                    ws.remove(id).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Applies rotations and rollbacks to the workloads that follow the rotated secret.
async fn follow_rotations(d: Arc<Daemon>) {
    let mut rx = d.subscribe();
    loop {
        match rx.recv().await {
            Ok(line) => {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if v["Type"] == "secret"
                    && v["Action"] == "rotate"
                    && let Some(id) = v["Actor"]["ID"].as_str()
                {
                    d.workloads().sync_secret(&d, Some(id)).await;
                }
            }
            // Missed events: bring everyone up to date.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                d.workloads().sync_secret(&d, None).await;
            }
            Err(_) => return,
        }
    }
}

/// At daemon start: re-attach container workloads whose container still exists, reap every
/// other staging tmpfs (what a crash left behind), then follow Docker and rotations.
pub(crate) async fn start(d: Arc<Daemon>) {
    let ws = d.workloads().clone();
    let saved: Vec<Persisted> = fs::read(&ws.state_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for p in saved {
        if !p.container || !valid_id(&p.id) {
            continue;
        }
        let alive = match &p.volume {
            Some(v) => volume_in_use(&v.volume).await,
            None => ws.container_id(&p.id, false).await.is_some(),
        };
        if !alive {
            if let Some(v) = &p.volume {
                tracing::info!(
                    volume = v.volume,
                    mount_id = v.mount_id,
                    "no running container uses the volume any more: its mount is reaped"
                );
            }
            continue;
        }
        match Staging::open(&ws.root, &p.id) {
            Ok(staging) => {
                let published = staging.published_dir();
                let inline = p
                    .inline
                    .into_iter()
                    .filter_map(|r| {
                        let data = fs::read(published.join(container_name(&r))).ok()?;
                        Some(Inline {
                            r,
                            data: Zeroizing::new(data),
                        })
                    })
                    .collect();
                let w = Arc::new(Workload {
                    id: p.id.clone(),
                    owner: p.owner.clone().unwrap_or_else(|| "uid:unknown".to_string()),
                    confined: p.confined.clone(),
                    container: true,
                    service: p.service,
                    adhoc: p.adhoc,
                    inline,
                    volume: p.volume,
                    state: tokio::sync::Mutex::new(State_ {
                        refs: p.refs,
                        on_rotate: p.on_rotate,
                        delivered: None,
                        staging: Some(staging),
                        tx: None,
                        rotation_error: None,
                    }),
                });
                if let Ok(mut m) = ws.map.lock() {
                    m.insert(p.id.clone(), w);
                }
                tracing::info!(workload = p.id, "re-attached to a running container");
            }
            Err(e) => tracing::warn!(workload = p.id, "cannot re-attach: {e}"),
        }
    }
    let keep: Vec<String> = ws.all().iter().map(|w| w.id.clone()).collect();
    match lockbox_tmpfs::reap(&ws.root, |n| keep.iter().any(|k| k == n)) {
        Ok(gone) if !gone.is_empty() => tracing::info!(?gone, "reaped staging left by a crash"),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot reap staging: {e}"),
    }
    ws.persist().await;
    tokio::spawn(follow_docker(ws));
    tokio::spawn(follow_rotations(d));
}

type App = State<Arc<Daemon>>;

/// Routes under `/v1/workloads`.
pub(crate) fn routes() -> Router<Arc<Daemon>> {
    Router::new()
        .route(
            "/",
            post(
                |State(d): App, ConnectInfo(who): ConnectInfo<Peer>, body: Bytes| async move {
                    create(d, who, body).await
                },
            )
            .get(
                |State(d): App, grantee: Option<Extension<Grantee>>| async move {
                    let mut out = Vec::new();
                    let grantee = grantee.map(|Extension(g)| g);
                    for w in d.workloads().all() {
                        if !w.visible_to(grantee.as_ref()) {
                            continue;
                        }
                        let st = w.state.lock().await;
                        out.push(serde_json::json!({
                            "ID": w.id,
                            "Kind": match (&w.volume, w.container) {
                                (Some(_), _) => "volume",
                                (None, true) => "container",
                                (None, false) => "process",
                            },
                            "Service": w.service,
                            "Secrets": st.refs.iter().map(|r| &r.secret_name).collect::<Vec<_>>(),
                            "Staging": st.staging.as_ref().map(|s| s.path().to_path_buf()),
                            "RotationError": st.rotation_error,
                        }));
                    }
                    json_response(StatusCode::OK, &out)
                },
            ),
        )
        .route(
            "/{id}/rotation",
            post(
                |State(d): App,
                 ConnectInfo(who): ConnectInfo<Peer>,
                 grantee: Option<Extension<Grantee>>,
                 UrlPath(id): UrlPath<String>,
                 body: Bytes| async move {
                    report_rotation(d, who, grantee.map(|Extension(g)| g), id, body).await
                },
            ),
        )
        .route(
            "/{id}/release",
            post(
                |State(d): App,
                 grantee: Option<Extension<Grantee>>,
                 UrlPath(id): UrlPath<String>,
                 body: Bytes| async move {
                    let grantee = grantee.map(|Extension(g)| g);
                    let ws = d.workloads();
                    match ws.get(&id) {
                        Some(w) if !w.visible_to(grantee.as_ref()) => {
                            return not_found(&id);
                        }
                        _ => {}
                    }
                    let req: ReleaseRequest = match crate::body::parse_body(&body) {
                        Ok(r) => r,
                        Err(e) => return e.into_response(),
                    };
                    ws.release(&id, req.foreground).await;
                    StatusCode::NO_CONTENT.into_response()
                },
            ),
        )
        .route(
            "/{id}",
            get(
                |State(d): App,
                 grantee: Option<Extension<Grantee>>,
                 UrlPath(id): UrlPath<String>| async move {
                    let grantee = grantee.map(|Extension(g)| g);
                    match d.workloads().get(&id) {
                        Some(w) if w.visible_to(grantee.as_ref()) => {
                            json_response(StatusCode::OK, &serde_json::json!({"ID": w.id}))
                        }
                        _ => not_found(&id),
                    }
                },
            ),
        )
}

/// What a consumer says about a rotation it was handed (`POST /v1/workloads/{id}/rotation`).
#[derive(Debug, Deserialize)]
struct RotationReport {
    #[serde(rename = "Ok")]
    ok: bool,
    #[serde(rename = "Error", default)]
    error: String,
}

/// A workload that does not exist, or one a member may not see (the same answer, so a
/// member cannot probe others' workload IDs).
fn not_found(id: &str) -> Response {
    ApiError::new(404, format!("workload {id} not found")).into_response()
}

async fn report_rotation(
    d: Arc<Daemon>,
    who: Peer,
    grantee: Option<Grantee>,
    id: String,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Whose it is first: a member learns nothing about another's workload from a parse error.
    let ws = d.workloads();
    let w = ws
        .get(&id)
        .filter(|w| w.visible_to(grantee.as_ref()))
        .ok_or_else(|| ApiError::new(404, format!("workload {id} not found")))?;
    let report: RotationReport = parse_required(&body)?;
    let error = (!report.ok).then(|| {
        if report.error.is_empty() {
            "the consumer could not take the new files".to_string()
        } else {
            report.error
        }
    });
    ws.rotation_result(&d, &w, &who.actor(), error).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

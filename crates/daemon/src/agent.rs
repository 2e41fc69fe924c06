//! The agent: what a worker node runs to stay in touch with the managers, and the managers'
//! side of it, including need-to-know distribution of secrets to workers.
//!
//! A worker holds no store. Its agent keeps one watch stream open to a manager (any of them,
//! trying the next when one fails): the manager sends a heartbeat every few seconds (so a
//! dead manager is noticed and the agent moves on), a `rotate` line when a service this
//! node runs workloads of changed (its references, or a new version of a secret it follows),
//! and a `revoke` line when the node stopped qualifying for one (revocation.rs).
//!
//! ```text
//! worker agent                                        manager (node API, mutual TLS)
//!  │ /agent/watch {Workloads: [(ID, service)]} ──────► registrations of this node (in memory,
//!  │ ◄── heartbeat, rotate S, revoke S (reason) ─────┘  gone when the stream ends; every
//!  │                                                   stream re-sends all of them)
//!  │ /agent/register {Workloads} (a workload started or ended) ──► replaces them
//!  │ /agent/fetch {Service, Workload, Have} ─────────► node authorized (certificate vs. record),
//!  │                                                   service exists, placement admits the node,
//!  │                                                   a registered workload of it runs there;
//!  │ ◄── files of the service (values only of the    each value revealed through the audited
//!  │     versions it does not hold yet) ─────────────┘ hand-out first; refusals audited (403)
//! ```
//!
//! **Invariant (need-to-know):** a worker gets the value of a secret only through a service
//! whose placement admits it and of which it runs a workload right now; the worker keeps it
//! in memory only ([`crate::workloads::Handout`]) and drops it with the last workload of the
//! service, or when the manager says it no longer qualifies. A worker whose managers are all unreachable keeps serving its running workloads
//! from memory; new workloads fail (503) until a manager answers.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt as _;
use lockbox_audit::Event;
use lockbox_keyring::Zeroizing;
use lockbox_store::{Kind, NodeRecord, NodeRole, ServiceSecret, node_id_text};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::body::{json_body, json_response, parse_body, parse_required};
use crate::cluster::{Authorized, ClusterRecords};
use crate::peers::{self, NodePeer};
use crate::services::ServiceRecords;
use crate::workloads::WorkloadsState;
use crate::workloads::{Delivered, Handout, Pending};
use lockbox_core::{Caller, Daemon};

const HEARTBEAT: Duration = Duration::from_secs(2);
/// A worker not heard from for this long is shown `down`.
const SEEN_WINDOW: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

const NO_MANAGER: &str = "no lockbox manager is reachable from this worker: running workloads keep their secrets, but a new workload cannot get its secrets until a manager answers; try again";

/// Both sides of the agent protocol.
#[derive(Default)]
pub(crate) struct Agents {
    /// Manager side: when each worker's agent was last heard from.
    seen: Mutex<HashMap<u64, Instant>>,
    /// Manager side: per node, what its live watch stream registered.
    registered: Mutex<HashMap<u64, Registration>>,
    /// Worker side: the agent task.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Worker side: the manager the watch stream is open to; `None` while none answers.
    manager: Mutex<Option<String>>,
    /// Worker side: one registration in flight at a time, so the manager sees them in order.
    registering: tokio::sync::Mutex<()>,
}

/// Manager side: the workloads a node's agent registered on its current watch stream.
struct Registration {
    /// The watch stream that owns it (a newer stream of the same node replaces it).
    stream: u64,
    /// Workload ID → service name.
    workloads: BTreeMap<String, String>,
    /// Per registered service, its state as last announced (see [`fingerprint`]).
    marks: HashMap<String, Mark>,
    /// Services whose values this stream announced as revoked (revocation.rs), until the
    /// node qualifies again.
    revoked: BTreeSet<String>,
}

/// A registered service as last announced: its fingerprint and the secrets it hands out.
#[derive(Clone, PartialEq, Eq)]
struct Mark {
    fp: String,
    secrets: BTreeSet<String>,
}

/// This node's agent state, kept in the core's extensions.
pub(crate) trait AgentState {
    /// This node's agent state (kept in the core's extensions).
    fn agents(&self) -> Arc<Agents>;
}

impl AgentState for Daemon {
    /// This node's agent state (kept in the core's extensions).
    fn agents(&self) -> Arc<Agents> {
        self.extensions.get_or_init(Agents::default)
    }
}

static STREAMS: AtomicU64 = AtomicU64::new(1);

pub(crate) fn agent_connected(d: &Daemon, node: u64) -> bool {
    d.agents()
        .seen
        .lock()
        .ok()
        .and_then(|m| m.get(&node).copied())
        .is_some_and(|t| t.elapsed() < SEEN_WINDOW)
}

fn mark_seen(d: &Daemon, node: u64) {
    if let Ok(mut m) = d.agents().seen.lock() {
        m.insert(node, Instant::now());
    }
}

/// One registered workload.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Registered {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Service")]
    service: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RegisterBody {
    #[serde(rename = "Workloads", default)]
    workloads: Vec<Registered>,
}

/// A version the agent already holds: the manager sends no value for it.
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    #[serde(rename = "SecretID")]
    secret_id: String,
    #[serde(rename = "Version")]
    version: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct FetchRequest {
    #[serde(rename = "Service")]
    service: String,
    #[serde(rename = "Workload")]
    workload: String,
    #[serde(rename = "Have", default)]
    have: Vec<Held>,
}

/// One file of a fetch answer (`Data` absent for a version the agent holds).
#[derive(Debug, Deserialize)]
struct FetchedFile {
    #[serde(rename = "SecretID")]
    secret_id: String,
    #[serde(rename = "Secret")]
    secret_name: String,
    #[serde(rename = "Target")]
    target: String,
    #[serde(rename = "UID")]
    uid: u32,
    #[serde(rename = "GID")]
    gid: u32,
    #[serde(rename = "Mode")]
    mode: u32,
    #[serde(rename = "Pinned", default)]
    pinned: Option<u64>,
    #[serde(rename = "Version")]
    version: u64,
    #[serde(rename = "Data", default)]
    data: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FetchAnswer {
    #[serde(rename = "Service")]
    service: String,
    #[serde(rename = "OnRotate")]
    on_rotate: String,
    #[serde(rename = "Files")]
    files: Vec<FetchedFile>,
}

// ---------------------------------------------------------------------------------------
// manager side

/// Registrations with service names as the store spells them (an ID or an unambiguous
/// prefix becomes the name; an unknown service stays as given and is refused at fetch).
fn canonical(d: &Daemon, list: Vec<Registered>) -> BTreeMap<String, String> {
    list.into_iter()
        .map(|r| {
            let name = d.service(&r.service).map(|s| s.name).unwrap_or(r.service);
            (r.id, name)
        })
        .collect()
}

/// What a registered service's workloads depend on: the service record's index and the
/// current version of every secret it follows. A change means the agent must re-fetch.
fn fingerprint(d: &Daemon, service: &str) -> Mark {
    let (Ok(s), Ok(reader)) = (d.service(service), d.reader()) else {
        return Mark {
            fp: "-".into(),
            secrets: BTreeSet::new(),
        };
    };
    let mut fp = s.index.to_string();
    for r in s.secrets.iter().filter(|r| r.version.is_none()) {
        let current = [Kind::Secret, Kind::Config]
            .into_iter()
            .find_map(|k| reader.get(k, &r.secret_id).ok().flatten())
            .map_or(0, |rec| rec.current);
        fp.push_str(&format!(" {}:{current}", r.secret_id));
    }
    Mark {
        fp,
        secrets: s.secrets.iter().map(|r| r.secret_name.clone()).collect(),
    }
}

/// Replaces node `node`'s registrations (of stream `stream`, or of whichever stream is
/// live when `None`); services seen for the first time get their baseline now, before the
/// agent fetches, so a rotation after that fetch is never missed.
fn set_registrations(
    d: &Daemon,
    node: u64,
    stream: Option<u64>,
    workloads: BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let services: BTreeSet<String> = workloads.values().cloned().collect();
    let baselines: Vec<(String, Mark)> = services
        .iter()
        .map(|s| (s.clone(), fingerprint(d, s)))
        .collect();
    let agents = d.agents();
    let mut all = agents
        .registered
        .lock()
        .map_err(|_| ApiError::internal("agent state poisoned"))?;
    let reg = match stream {
        Some(id) => all.entry(node).or_insert_with(|| Registration {
            stream: id,
            workloads: BTreeMap::new(),
            marks: HashMap::new(),
            revoked: BTreeSet::new(),
        }),
        None => all.get_mut(&node).ok_or_else(|| {
            ApiError::new(
                409,
                format!(
                    "node {} has no watch stream open to this manager: open /agent/watch first",
                    node_id_text(node)
                ),
            )
        })?,
    };
    if let Some(id) = stream {
        reg.stream = id;
    }
    for (s, fp) in baselines {
        reg.marks.entry(s).or_insert(fp);
    }
    reg.marks.retain(|s, _| services.contains(s));
    reg.revoked.retain(|s| services.contains(s));
    reg.workloads = workloads;
    Ok(())
}

/// Ends a node's registrations when the watch stream that owns them ends.
struct StreamGuard {
    d: Arc<Daemon>,
    node: u64,
    stream: u64,
}

impl StreamGuard {
    fn live(&self) -> bool {
        self.d
            .agents()
            .registered
            .lock()
            .is_ok_and(|m| m.get(&self.node).is_some_and(|r| r.stream == self.stream))
    }

    /// The registered services whose fingerprint moved since last announced (not those
    /// revoked on this stream); secrets detached from one are audited as revoked.
    fn rotated(&self) -> Vec<String> {
        let services: BTreeSet<String> = match self.d.agents().registered.lock() {
            Ok(m) => m
                .get(&self.node)
                .map(|r| r.workloads.values().cloned().collect())
                .unwrap_or_default(),
            Err(_) => return Vec::new(),
        };
        let now: Vec<(String, Mark)> = services
            .into_iter()
            .map(|s| {
                let fp = fingerprint(&self.d, &s);
                (s, fp)
            })
            .collect();
        let agents = self.d.agents();
        let Ok(mut m) = agents.registered.lock() else {
            return Vec::new();
        };
        let Some(reg) = m.get_mut(&self.node).filter(|r| r.stream == self.stream) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut detached = Vec::new();
        for (s, mark) in now {
            if let Some(old) = reg.marks.get(&s).filter(|old| **old != mark) {
                let gone: Vec<&str> = old
                    .secrets
                    .difference(&mark.secrets)
                    .map(String::as_str)
                    .collect();
                if !gone.is_empty() && !reg.revoked.contains(&s) {
                    detached.push((s.clone(), gone.join(",")));
                }
                if !reg.revoked.contains(&s) {
                    out.push(s.clone());
                }
            }
            reg.marks.insert(s, mark);
        }
        drop(m);
        for (s, gone) in detached {
            crate::revocation::audit_on_manager(
                &self.d,
                self.node,
                &s,
                "detached from the service (service update --secret-rm)",
                &gone,
            );
        }
        out
    }

    /// Services this node stopped qualifying for (`node`: its record, `None` once removed)
    /// since the last check, each audited and marked, with the reason; and the revoked ones
    /// it qualifies for again, unmarked (to be re-fetched).
    fn requalified(&self, node: Option<&NodeRecord>) -> (Vec<(String, String)>, Vec<String>) {
        let services: BTreeSet<String> = match self.d.agents().registered.lock() {
            Ok(m) => m
                .get(&self.node)
                .filter(|r| r.stream == self.stream)
                .map(|r| r.workloads.values().cloned().collect())
                .unwrap_or_default(),
            Err(_) => return (Vec::new(), Vec::new()),
        };
        let verdicts: Vec<(String, Option<String>)> = services
            .into_iter()
            .map(|s| {
                let why = crate::revocation::disqualified(&self.d, node, &s);
                (s, why)
            })
            .collect();
        let agents = self.d.agents();
        let Ok(mut m) = agents.registered.lock() else {
            return (Vec::new(), Vec::new());
        };
        let Some(reg) = m.get_mut(&self.node).filter(|r| r.stream == self.stream) else {
            return (Vec::new(), Vec::new());
        };
        let (mut revoked, mut restored) = (Vec::new(), Vec::new());
        for (s, why) in verdicts {
            match why {
                Some(why) if reg.revoked.insert(s.clone()) => {
                    let secrets = reg
                        .marks
                        .get(&s)
                        .map(|m| m.secrets.iter().cloned().collect::<Vec<_>>().join(","))
                        .unwrap_or_default();
                    revoked.push((s, why, secrets));
                }
                None if reg.revoked.remove(&s) => restored.push(s),
                _ => {}
            }
        }
        drop(m);
        let revoked = revoked
            .into_iter()
            .map(|(s, why, secrets)| {
                crate::revocation::audit_on_manager(&self.d, self.node, &s, &why, &secrets);
                (s, why)
            })
            .collect();
        (revoked, restored)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.d.agents().registered.lock()
            && m.get(&self.node).is_some_and(|r| r.stream == self.stream)
        {
            m.remove(&self.node);
        }
    }
}

fn line(v: &serde_json::Value) -> String {
    v.to_string() + "\n"
}

/// `/agent/watch`: a stream of JSON lines for one node. The body registers the workloads
/// the node runs.
async fn watch(
    State(d): State<Arc<Daemon>>,
    Extension(who): Extension<Authorized>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let node_id = who.node.id;
    let req: RegisterBody = parse_body(&body)?;
    let stream = STREAMS.fetch_add(1, Ordering::Relaxed);
    set_registrations(&d, node_id, Some(stream), canonical(&d, req.workloads))?;
    mark_seen(&d, node_id);
    let guard = StreamGuard {
        d,
        node: node_id,
        stream,
    };
    let stream = futures_util::stream::unfold(
        (guard, Instant::now(), false),
        move |(g, heartbeat_due, ended)| async move {
            loop {
                // The node's record as this manager sees it; a removed node is told that
                // its values are revoked, then its stream ends, and so does one replaced by
                // a newer stream of the same node.
                let node = g.d.reader().ok()?.node(g.node).ok()?;
                if ended || !g.live() {
                    return None;
                }
                let (revoked, restored) = g.requalified(node.as_ref());
                let revoke_lines: String = revoked
                    .iter()
                    .map(|(s, why)| {
                        line(&serde_json::json!({"Type": "revoke", "Service": s, "Reason": why}))
                    })
                    .collect();
                let Some(node) = node else {
                    let out = revoke_lines + &line(&serde_json::json!({"Type": "removed"}));
                    return Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(out)),
                        (g, heartbeat_due, true),
                    ));
                };
                let mut rotated = g.rotated();
                rotated.extend(restored);
                let now = Instant::now();
                if rotated.is_empty() && revoke_lines.is_empty() && now < heartbeat_due {
                    let store = g.d.store().ok()?;
                    store.replica.changed(heartbeat_due - now).await;
                    continue;
                }
                let mut out: String = revoke_lines;
                out += &rotated
                    .iter()
                    .map(|s| line(&serde_json::json!({"Type": "rotate", "Service": s})))
                    .collect::<String>();
                let mut due = heartbeat_due;
                if now >= heartbeat_due {
                    mark_seen(&g.d, g.node);
                    // The trust the node should have: a worker whose own differs (the
                    // cluster's CA is rotating) re-issues its certificate.
                    out += &line(&serde_json::json!({
                        "Type": "heartbeat",
                        "Role": node.role.as_str(),
                        "Trust": crate::cluster::target_trust_tag(&g.d),
                    }));
                    due = now + HEARTBEAT;
                }
                return Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from(out)),
                    (g, due, false),
                ));
            }
        },
    );
    Ok(json_body(Body::from_stream(stream)))
}

/// `/agent/register`: the node's workloads now (replaces what its watch stream registered).
async fn register(
    State(d): State<Arc<Daemon>>,
    Extension(who): Extension<Authorized>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: RegisterBody = parse_required(&body)?;
    set_registrations(&d, who.node.id, None, canonical(&d, req.workloads))?;
    mark_seen(&d, who.node.id);
    Ok(json_response(StatusCode::OK, &serde_json::json!({})))
}

/// `/agent/fetch`: the files of one service for a workload of it on the calling node, if
/// need-to-know allows (see the module docs). Every refusal is audited.
async fn fetch(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<NodePeer>,
    Extension(who): Extension<Authorized>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: FetchRequest = parse_required(&body)?;
    // Decide on everything committed before the request (a revocation, a placement change
    // or a rotation acknowledged elsewhere), not on what this manager has applied so far:
    // the node's record too, read again (the gate read it from what was applied).
    let reader = d.fresh_reader().await?;
    let refuse = |actor: &str, status: u16, why: String| {
        let _ = d.audit_event(
            Event::new("handout-refused", actor)
                .detail("service", &req.service)
                .detail("workload", &req.workload)
                .detail("reason", &why)
                .detail("peer", &peer.addr),
        );
        ApiError::new(status, why)
    };
    let actor = format!("node:{}", node_id_text(who.node.id));
    let Some(node) = reader.node(who.node.id)? else {
        return Err(refuse(
            &actor,
            403,
            format!(
                "need-to-know: node {} is no longer a member of this cluster",
                node_id_text(who.node.id)
            ),
        ));
    };
    let s = match d.service(&req.service) {
        Ok(s) => s,
        Err(e) if e.status == 404 => {
            return Err(refuse(
                &actor,
                403,
                format!(
                    "need-to-know: node {} may not fetch secrets of service {}: no such service",
                    node_id_text(node.id),
                    req.service
                ),
            ));
        }
        Err(e) => return Err(e),
    };
    if let Err(why) = crate::placement::qualifies(&s, &node) {
        return Err(refuse(&actor, 403, format!("need-to-know: {why}")));
    }
    let runs = d.agents().registered.lock().is_ok_and(|m| {
        m.get(&node.id)
            .and_then(|r| r.workloads.get(&req.workload))
            .is_some_and(|svc| *svc == s.name)
    });
    if !runs {
        return Err(refuse(
            &actor,
            403,
            format!(
                "need-to-know: node {} has registered no running workload {} of service {} with this manager",
                node_id_text(node.id),
                req.workload,
                s.name
            ),
        ));
    }
    let caller = Caller {
        actor: actor.clone(),
    };
    let mut out = Vec::with_capacity(s.secrets.len());
    let mut templates = Vec::new();
    for r in &s.secrets {
        let (kind, rec) = crate::services::referenced(&d, &r.secret_id)?
            .ok_or_else(|| ApiError::new(404, format!("secret {} not found", r.secret_name)))?;
        let version = r.version.unwrap_or(rec.current);
        let templated = Some(rec).filter(crate::templating::is_templated);
        // A rendered file changes without its version (an included secret rotated): it is
        // always sent, never taken as held.
        let held = templated.is_none()
            && req
                .have
                .iter()
                .any(|h| h.secret_id == r.secret_id && h.version == version);
        let data = if held {
            Zeroizing::new(Vec::new())
        } else {
            let detail = [
                ("service", s.name.as_str()),
                ("workload", req.workload.as_str()),
                ("target", r.target.as_str()),
                ("node", &actor[5..]),
            ];
            // Audited (on disk) before the value comes back, so before it is sent.
            d.reveal(kind, &r.secret_id, Some(version), &caller, &detail)?
                .2
        };
        if let Some(rec) = templated {
            templates.push((out.len(), rec));
        }
        out.push((
            Delivered {
                r: r.clone(),
                version,
                data,
            },
            held,
        ));
    }
    if !templates.is_empty() {
        // Rendered here, for the worker's node: the worker holds no store to render from.
        let consumer = crate::templating::Consumer {
            workload: &req.workload,
            service: Some(&s.name),
            caller: &caller,
            node: Some((node_id_text(node.id), node.hostname.clone())),
        };
        let files: Vec<_> = out
            .iter()
            .map(|(x, _)| (&x.r, x.version, &x.data[..]))
            .collect();
        for (i, data) in crate::templating::render_set(&d, &consumer, &files, &templates)? {
            out[i].0.data = data;
        }
    }
    let mut files = Vec::with_capacity(out.len());
    for (x, held) in &out {
        let mut v = crate::workloads::file_json(x, !held);
        v["SecretID"] = x.r.secret_id.clone().into();
        if let Some(p) = x.r.version {
            v["Pinned"] = p.into();
        }
        files.push(v);
    }
    let v = serde_json::json!({"Service": s.name, "OnRotate": s.on_rotate, "Files": files});
    Ok(json_body(Body::from(crate::workloads::json_line_zeroized(
        &v,
    ))))
}

pub(crate) fn node_routes() -> Router<Arc<Daemon>> {
    Router::new()
        .route("/watch", post(watch))
        .route("/register", post(register))
        .route("/fetch", post(fetch))
}

// ---------------------------------------------------------------------------------------
// worker side

fn current_manager(d: &Daemon) -> Option<String> {
    d.agents().manager.lock().ok()?.clone()
}

fn set_manager(d: &Daemon, addr: Option<String>) {
    if let Ok(mut m) = d.agents().manager.lock() {
        *m = addr;
    }
}

fn registrations_body(d: &Daemon) -> Vec<u8> {
    let body = RegisterBody {
        workloads: d
            .workloads()
            .registrations()
            .into_iter()
            .map(|(id, service)| Registered { id, service })
            .collect(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// One call to manager `addr` with this node's certificate; a non-200 answer is the error.
async fn call(d: &Daemon, addr: &str, path: &str, body: Vec<u8>) -> Result<Bytes, ApiError> {
    let cluster = d.cluster().ok_or_else(|| ApiError::new(503, NO_MANAGER))?;
    let a = peers::call(
        cluster.tls.get().client.clone(),
        addr,
        path,
        body,
        CALL_TIMEOUT,
    )
    .await
    .map_err(|e| ApiError::new(503, format!("{NO_MANAGER} ({e})")))?;
    if a.status != 200 {
        return Err(ApiError::new(a.status, a.message()));
    }
    Ok(a.body)
}

/// Sends this node's registrations to manager `addr`.
async fn register_with(d: &Daemon, addr: &str) -> Result<(), ApiError> {
    let agents = d.agents();
    let _one = agents.registering.lock().await;
    call(d, addr, "/agent/register", registrations_body(d)).await?;
    Ok(())
}

/// Fetches service `service`'s files for `workload`, sending no value the agent holds in
/// `prev` again.
async fn fetch_from(
    d: &Daemon,
    addr: &str,
    service: &str,
    workload: &str,
    prev: Option<&Handout>,
) -> Result<Arc<Handout>, ApiError> {
    let have = prev
        .map(|h| {
            h.files
                .iter()
                .map(|x| Held {
                    secret_id: x.r.secret_id.clone(),
                    version: x.version,
                })
                .collect()
        })
        .unwrap_or_default();
    let req = FetchRequest {
        service: service.to_owned(),
        workload: workload.to_owned(),
        have,
    };
    let body = serde_json::to_vec(&req).map_err(|e| ApiError::internal(e.to_string()))?;
    let raw = Zeroizing::new(call(d, addr, "/agent/fetch", body).await?.to_vec());
    let answer: FetchAnswer = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::internal(format!("unexpected fetch answer: {e}")))?;
    let mut files = Vec::with_capacity(answer.files.len());
    for f in answer.files {
        let data = match f.data.map(Zeroizing::new) {
            Some(b64) => Zeroizing::new(
                STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| ApiError::internal("undecodable value from the manager"))?,
            ),
            None => prev
                .into_iter()
                .flat_map(|h| &h.files)
                .find(|x| x.r.secret_id == f.secret_id && x.version == f.version)
                .map(|x| x.data.clone())
                .ok_or_else(|| ApiError::internal("the manager sent no value for a new version"))?,
        };
        files.push(Delivered {
            r: ServiceSecret {
                secret_id: f.secret_id,
                secret_name: f.secret_name,
                target: f.target,
                uid: f.uid,
                gid: f.gid,
                mode: f.mode,
                version: f.pinned,
            },
            version: f.version,
            data,
        });
    }
    Ok(Arc::new(Handout {
        service: answer.service,
        on_rotate: answer.on_rotate,
        files,
    }))
}

/// A workload of `service` starts on this worker: registers it with the manager and fetches
/// the service's files. The [`Pending`] keeps the registration until the workload is in the
/// table (or undoes it when dropped otherwise).
pub(crate) async fn acquire(
    d: &Arc<Daemon>,
    workload: &str,
    service: &str,
) -> Result<(Arc<Handout>, Pending), ApiError> {
    let addr = current_manager(d).ok_or_else(|| ApiError::new(503, NO_MANAGER))?;
    let pending = d.workloads().pending(workload, service);
    register_with(d, &addr).await?;
    let epoch = crate::revocation::epoch(d, service);
    let h = fetch_from(d, &addr, service, workload, None).await?;
    if crate::revocation::epoch(d, service) != epoch {
        return Err(ApiError::new(
            403,
            format!(
                "need-to-know: the secrets of service {service} were revoked on this node while the workload started"
            ),
        ));
    }
    d.workloads().put_handout(h.clone());
    Ok((h, pending))
}

/// Re-fetches `service` (a rotation, or a reconnect that may have missed one) and moves its
/// workloads to the new files.
async fn refresh(d: Arc<Daemon>, addr: String, service: String) {
    let Some((workload, _)) = d
        .workloads()
        .registrations()
        .into_iter()
        .find(|(_, s)| *s == service)
    else {
        return;
    };
    let prev = d.workloads().handout(&service);
    let epoch = crate::revocation::epoch(&d, &service);
    match fetch_from(&d, &addr, &service, &workload, prev.as_deref()).await {
        // Revoked while the fetch was on its way: what it brought is not kept.
        Ok(_) if crate::revocation::epoch(&d, &service) != epoch => {}
        Ok(h) => {
            crate::revocation::audit_detached(&d, prev.as_deref(), &h);
            d.workloads().put_handout(h);
            d.workloads().sync_service(&d, &service).await;
        }
        Err(e) => tracing::warn!(
            service,
            "cannot re-fetch the service's secrets: {e}; its workloads keep what they have"
        ),
    }
}

/// Starts this worker's agent (once).
pub(crate) fn start(d: Arc<Daemon>) {
    let agents = d.agents();
    let Ok(mut task) = agents.task.lock() else {
        return;
    };
    if task.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    let d2 = d.clone();
    *task = Some(tokio::spawn(async move { run(d2).await }));
}

/// Stops this node's agent (leave).
pub(crate) fn stop(d: &Daemon) {
    if let Ok(mut task) = d.agents().task.lock()
        && let Some(t) = task.take()
    {
        t.abort();
    }
}

async fn run(d: Arc<Daemon>) {
    let mut i = 0usize;
    loop {
        let Some(cluster) = d.cluster() else { return };
        let cfg = cluster.config();
        if cfg.role == NodeRole::Manager {
            return;
        }
        if cfg.managers.is_empty() {
            tokio::time::sleep(HEARTBEAT).await;
            continue;
        }
        let addr = cfg.managers[i % cfg.managers.len()].clone();
        i += 1;
        let followed = follow(&d, &cluster, &addr).await;
        set_manager(&d, None);
        match followed {
            Ok(Promoted) => {
                tracing::info!("this worker was promoted; becoming a manager");
                if let Err(e) = crate::cluster::become_manager(&d).await {
                    tracing::warn!("promotion failed: {e}");
                    tokio::time::sleep(HEARTBEAT).await;
                    continue;
                }
                return;
            }
            Err(e) => {
                tracing::info!(manager = %addr, "agent: {e}; trying the next manager");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

struct Promoted;

async fn follow(
    d: &Arc<Daemon>,
    cluster: &crate::cluster::Cluster,
    addr: &str,
) -> Result<Promoted, String> {
    let (status, mut body) = {
        // No registration may overtake the one this stream carries.
        let agents = d.agents();
        let _one = agents.registering.lock().await;
        peers::open_stream(
            cluster.tls.get().client.clone(),
            addr,
            "/agent/watch",
            registrations_body(d),
        )
        .await?
    };
    if status != 200 {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&bytes).trim().to_owned();
        // The cluster itself refused this node (removed, certificate revoked): nothing it
        // holds may stay. (The gate's role refusals say "permission denied" and are not
        // about membership.)
        if status == 403 && !message.contains("permission denied") {
            crate::revocation::revoke_all(d, &format!("the cluster refused this node: {message}"))
                .await;
        }
        return Err(format!("manager refused the watch ({status}): {message}"));
    }
    set_manager(d, Some(addr.to_owned()));
    tracing::info!(manager = addr, "agent: following the manager");
    // Rotations may have happened while no manager was followed.
    for (_, service) in d.workloads().registrations() {
        tokio::spawn(refresh(d.clone(), addr.to_owned(), service));
    }
    let mut buf = Vec::new();
    loop {
        let workloads = d.workloads();
        let frame = tokio::select! {
            f = tokio::time::timeout(HEARTBEAT * 3, body.frame()) => f,
            () = workloads.changed.notified() => {
                register_with(d, addr).await.map_err(|e| e.to_string())?;
                continue;
            }
        };
        let frame = frame.map_err(|_| "no heartbeat from the manager".to_string())?;
        let Some(frame) = frame else {
            return Err("the manager ended the watch".into());
        };
        let frame = frame.map_err(|e| e.to_string())?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
            if v["Role"] == "manager" {
                return Ok(Promoted);
            }
            if let Some(target) = v["Trust"].as_str()
                && cluster.tls.get().trust.tag() != target
            {
                let (d, target) = (d.clone(), target.to_owned());
                tokio::spawn(async move {
                    if let Some(c) = d.cluster() {
                        crate::cluster::ensure_trust(&d, &c, &target).await;
                    }
                });
            }
            if v["Type"] == "revoke"
                && let Some(service) = v["Service"].as_str()
            {
                let reason = v["Reason"].as_str().unwrap_or("revoked by the manager");
                crate::revocation::revoke(d, service, reason).await;
            }
            if v["Type"] == "removed" {
                crate::revocation::revoke_all(d, "the node was removed from the cluster").await;
                return Err("this node was removed from the cluster".into());
            }
            if v["Type"] == "rotate"
                && let Some(service) = v["Service"].as_str()
            {
                tokio::spawn(refresh(d.clone(), addr.to_owned(), service.to_owned()));
            }
        }
    }
}

//! Services: named sets of secret references with a rotation policy (`lockbox service …`),
//! validated the way SwarmKit validates `services/create` and `services/update`
//! (`docker-secrets-api.md` §2.3, §4.4), and their native API under `/v1/services`.
//!
//! Changing a service's references moves its running workloads to the new file set
//! ([`crate::workloads::Workloads::sync_service`]), which is Docker's rotation recipe
//! (`--secret-rm old --secret-add source=new,target=x`) without restarting anything.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lockbox_audit::Event;
use lockbox_store::{Command, Kind, ServiceRecord, ServiceSecret, StoreError};
use serde::{Deserialize, Serialize};

use futures_util::future::BoxFuture;

use crate::ApiError;
use crate::body::{json_response, parse_body, parse_required};
use crate::identity::Peer;
use lockbox_core::{Caller, Daemon, now_ns, rfc3339};

/// The gRPC prefix of SwarmKit's validation messages, which Docker's CLI shows.
pub(crate) const INVALID: &str = "rpc error: code = InvalidArgument desc = ";

/// A reference as a raw API caller may send it (every field optional, so that each gap gets
/// Docker's own message instead of a JSON decoding error).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct RefRequest {
    #[serde(rename = "SecretName", default)]
    pub secret_name: String,
    #[serde(rename = "File", default)]
    pub file: Option<FileRequest>,
    #[serde(rename = "Version", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `config` for a reference to a config (`lockbox compose` sends its lockbox configs
    /// this way, so that a templated one is rendered); absent or `secret` otherwise.
    #[serde(rename = "Kind", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl RefRequest {
    fn object_kind(&self) -> Result<Kind, ApiError> {
        match self.kind.as_deref() {
            None | Some("") | Some("secret") => Ok(Kind::Secret),
            Some("config") => Ok(Kind::Config),
            Some(other) => Err(ApiError::bad_request(format!(
                "{INVALID}invalid reference kind {other:?}: expected \"secret\" or \"config\""
            ))),
        }
    }
}

/// Which kind of object a stored reference names, with its record. A reference keeps the
/// object's ID only (its stored form predates configs in workloads, and records are not
/// self-describing); IDs are random and unique across kinds, so the ID tells the kind.
pub(crate) fn referenced(
    d: &Daemon,
    id: &str,
) -> Result<Option<(Kind, lockbox_store::ObjectRecord)>, ApiError> {
    let reader = d.reader()?;
    for kind in [Kind::Secret, Kind::Config] {
        if let Some(rec) = reader.get(kind, id)? {
            return Ok(Some((kind, rec)));
        }
    }
    Ok(None)
}

/// `File` of a reference: Docker's strings for UID/GID, a decimal `Mode`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct FileRequest {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "UID", default)]
    pub uid: String,
    #[serde(rename = "GID", default)]
    pub gid: String,
    #[serde(rename = "Mode", default)]
    pub mode: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct CreateRequest {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Labels", default)]
    labels: BTreeMap<String, String>,
    #[serde(rename = "Secrets", default)]
    secrets: Vec<RefRequest>,
    #[serde(rename = "Constraints", default)]
    constraints: Vec<String>,
    #[serde(rename = "OnRotate", default)]
    on_rotate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct UpdateRequest {
    #[serde(rename = "SecretAdd", default)]
    secret_add: Vec<RefRequest>,
    #[serde(rename = "SecretRm", default)]
    secret_rm: Vec<String>,
    #[serde(rename = "ConstraintAdd", default)]
    constraint_add: Vec<String>,
    #[serde(rename = "ConstraintRm", default)]
    constraint_rm: Vec<String>,
    #[serde(rename = "OnRotate", default)]
    on_rotate: Option<String>,
    #[serde(rename = "LabelAdd", default)]
    label_add: BTreeMap<String, String>,
}

/// A rotation policy: what a running workload gets after its files changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnRotate {
    None,
    Signal(i32),
    Restart,
}

/// Signal names as `docker kill -s` takes them (with or without `SIG`), or a number.
pub(crate) fn signal_number(name: &str) -> Option<i32> {
    const NAMES: [(&str, i32); 15] = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("KILL", 9),
        ("USR1", 10),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("WINCH", 28),
        ("PWR", 30),
    ];
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = name.to_ascii_uppercase();
    let bare = up.strip_prefix("SIG").unwrap_or(&up);
    NAMES.iter().find(|(n, _)| *n == bare).map(|(_, v)| *v)
}

impl OnRotate {
    pub(crate) fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "" | "none" => Ok(OnRotate::None),
            "restart" => Ok(OnRotate::Restart),
            _ => s
                .strip_prefix("signal:")
                .and_then(signal_number)
                .map(OnRotate::Signal)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid --on-rotate {s:?}: use none, restart, or signal:SIG (e.g. signal:HUP)"
                    ))
                }),
        }
    }
}

fn check_constraint(c: &str) -> Result<(), ApiError> {
    let (k, v) = c
        .split_once("==")
        .or_else(|| c.split_once("!="))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{INVALID}constraint expected one operator from ==, !=: {c}"
            ))
        })?;
    let k = k.trim();
    if !k.starts_with("node.") || k == "node.labels." || v.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "{INVALID}invalid constraint {c:?}: use node.labels.KEY==VALUE or node.labels.KEY!=VALUE"
        )));
    }
    Ok(())
}

fn parse_id(field: &str, v: &str) -> Result<u32, ApiError> {
    // Docker accepts anything here and fails the task later with strconv.Atoi; refusing at
    // parse time is the point of this check.
    match v.parse::<u32>() {
        Ok(n) if n != u32::MAX => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "{INVALID}invalid {field} {v:?} in secret reference: a numeric id is required"
        ))),
    }
}

/// Service records in the store, through the core's proposals and reads.
pub(crate) trait ServiceRecords {
    /// Turns references into stored ones: Docker's messages for malformed references,
    /// unknown secrets (all of them named at once) and conflicting targets.
    fn resolve_refs(&self, refs: &[RefRequest]) -> Result<Vec<ServiceSecret>, ApiError>;
    fn service(&self, name: &str) -> Result<ServiceRecord, ApiError>;
    fn audit_service(
        &self,
        action: &str,
        caller: &Caller,
        s: &ServiceRecord,
    ) -> Result<(), ApiError>;
    async fn put_service(&self, s: ServiceRecord) -> Result<(), ApiError>;
}

impl ServiceRecords for Daemon {
    /// Turns references into stored ones: Docker's messages for malformed references,
    /// unknown secrets (all of them named at once) and conflicting targets.
    fn resolve_refs(&self, refs: &[RefRequest]) -> Result<Vec<ServiceSecret>, ApiError> {
        let mut out = Vec::with_capacity(refs.len());
        let mut missing: BTreeMap<Kind, BTreeSet<String>> = BTreeMap::new();
        for r in refs {
            let kind = r.object_kind()?;
            if r.secret_name.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "{INVALID}malformed secret reference"
                )));
            }
            let Some(f) = &r.file else {
                return Err(ApiError::bad_request(format!(
                    "{INVALID}malformed secret reference, no target provided"
                )));
            };
            if f.name.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "{INVALID}malformed file secret reference, invalid target file name provided"
                )));
            }
            let sr = lockbox_proto::reference::SecretRef {
                source: r.secret_name.clone(),
                target: f.name.clone(),
                uid: parse_id("UID", if f.uid.is_empty() { "0" } else { &f.uid })?,
                gid: parse_id("GID", if f.gid.is_empty() { "0" } else { &f.gid })?,
                mode: f.mode.unwrap_or(lockbox_proto::reference::DEFAULT_MODE),
                version: r.version,
            };
            sr.validate()
                .map_err(|e| ApiError::bad_request(format!("{INVALID}{e}")))?;
            // Exact, case-sensitive name (a prefix or case-folded hit does not count).
            let rec = match self.reader()?.resolve(kind, &r.secret_name) {
                Ok(rec) if rec.name == r.secret_name => rec,
                Ok(_) | Err(StoreError::NotFound(..)) | Err(StoreError::Ambiguous(..)) => {
                    missing
                        .entry(kind)
                        .or_default()
                        .insert(r.secret_name.clone());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(v) = r.version
                && !rec.versions.iter().any(|m| m.number == v)
            {
                return Err(StoreError::NoSuchVersion(kind, rec.name.clone(), v).into());
            }
            out.push(ServiceSecret {
                secret_id: rec.id,
                secret_name: rec.name,
                target: sr.target,
                uid: sr.uid,
                gid: sr.gid,
                mode: sr.mode,
                version: sr.version,
            });
        }
        // Secrets first, as Docker reports them; configs after.
        if let Some((kind, names)) = missing.into_iter().next() {
            let names: Vec<_> = names.into_iter().collect();
            let what = kind.as_str();
            let s = if names.len() > 1 { "s" } else { "" };
            return Err(ApiError::bad_request(format!(
                "{INVALID}{what}{s} not found: {}",
                names.join(", ")
            )));
        }
        check_conflicts(&out)?;
        Ok(out)
    }

    fn service(&self, name: &str) -> Result<ServiceRecord, ApiError> {
        let all = self.reader()?.services()?;
        all.iter()
            .find(|s| s.name == name || s.id == name)
            .or_else(|| {
                let mut hits = all.iter().filter(|s| s.id.starts_with(name));
                match (hits.next(), hits.next()) {
                    (Some(s), None) if !name.is_empty() => Some(s),
                    _ => None,
                }
            })
            .cloned()
            .ok_or_else(|| ApiError::new(404, format!("service {name} not found")))
    }

    fn audit_service(
        &self,
        action: &str,
        caller: &Caller,
        s: &ServiceRecord,
    ) -> Result<(), ApiError> {
        self.audit_event(Event::new(action, &caller.actor).object("service", &s.id, &s.name))?;
        Ok(())
    }

    async fn put_service(&self, s: ServiceRecord) -> Result<(), ApiError> {
        self.propose(Command::PutService { service: s }).await?;
        Ok(())
    }
}

/// Two references may not write the same file; Docker's message names both secrets.
/// Relative targets are compared after normalisation, as they land under one directory.
pub(crate) fn check_conflicts(refs: &[ServiceSecret]) -> Result<(), ApiError> {
    let dir = std::path::Path::new(lockbox_proto::reference::DEFAULT_SECRETS_DIR);
    let mut seen: BTreeMap<std::path::PathBuf, &ServiceSecret> = BTreeMap::new();
    for r in refs {
        let sr = to_ref(r);
        let p = sr.resolved_target(dir);
        if let Some(prev) = seen.insert(p, r) {
            return Err(ApiError::bad_request(format!(
                "{INVALID}secret references '{}' and '{}' have a conflicting target: '{}'",
                prev.secret_name, r.secret_name, r.target
            )));
        }
    }
    let all: Vec<_> = refs.iter().map(to_ref).collect();
    lockbox_proto::reference::check_targets(&all, dir)
        .map_err(|e| ApiError::bad_request(format!("{INVALID}{e}")))
}

/// A stored reference as the proto crate's reference type.
pub(crate) fn to_ref(r: &ServiceSecret) -> lockbox_proto::reference::SecretRef {
    lockbox_proto::reference::SecretRef {
        source: r.secret_name.clone(),
        target: r.target.clone(),
        uid: r.uid,
        gid: r.gid,
        mode: r.mode,
        version: r.version,
    }
}

/// Docker's service shape, trimmed to what lockbox services have.
pub(crate) fn service_json(s: &ServiceRecord) -> serde_json::Value {
    let secrets: Vec<_> = s
        .secrets
        .iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "File": {"Name": r.target, "UID": r.uid.to_string(), "GID": r.gid.to_string(), "Mode": r.mode},
                "SecretID": r.secret_id,
                "SecretName": r.secret_name,
            });
            if let Some(n) = r.version {
                v["Version"] = n.into();
            }
            v
        })
        .collect();
    serde_json::json!({
        "ID": s.id,
        "Version": {"Index": s.index},
        "CreatedAt": rfc3339(s.created_ns),
        "UpdatedAt": rfc3339(s.updated_ns),
        "Spec": {
            "Name": s.name,
            "Labels": s.labels,
            "Secrets": secrets,
            "Placement": {"Constraints": s.constraints},
            "OnRotate": if s.on_rotate.is_empty() { "none" } else { &s.on_rotate },
        },
    })
}

type App = State<Arc<Daemon>>;

/// What must happen on this node after a service's definition changed (its workloads move
/// to the new set of files). Installed by the composition root (serve.rs) so that services
/// never name the features that deliver them; by default nothing.
#[derive(Clone, Copy)]
pub(crate) struct ServiceChanged(pub(crate) fn(Arc<Daemon>, String) -> BoxFuture<'static, ()>);

impl Default for ServiceChanged {
    fn default() -> Self {
        Self(|_, _| Box::pin(async {}))
    }
}

async fn create(d: Arc<Daemon>, who: Peer, body: Bytes) -> Result<Response, ApiError> {
    d.check_unlocked()?;
    let req: CreateRequest = parse_body(&body)?;
    lockbox_store::validate::name(&req.name)?;
    if d.reader()?
        .services()?
        .iter()
        .any(|s| s.name.eq_ignore_ascii_case(&req.name))
    {
        return Err(ApiError::new(
            409,
            format!(
                "rpc error: code = AlreadyExists desc = service {} already exists",
                req.name
            ),
        ));
    }
    let on_rotate = req.on_rotate.unwrap_or_default();
    OnRotate::parse(&on_rotate)?;
    for c in &req.constraints {
        check_constraint(c)?;
    }
    let secrets = d.resolve_refs(&req.secrets)?;
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let now = now_ns();
    let s = ServiceRecord {
        id: lockbox_store::object_id(b),
        name: req.name,
        labels: req.labels,
        created_ns: now,
        updated_ns: now,
        index: 0,
        secrets,
        constraints: req.constraints,
        on_rotate: if on_rotate.is_empty() {
            "none".into()
        } else {
            on_rotate
        },
    };
    d.put_service(s.clone()).await?;
    d.audit_service("service-create", &Caller::uid(who.uid), &s)?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({"ID": s.id}),
    ))
}

async fn update(
    d: Arc<Daemon>,
    who: Peer,
    name: String,
    body: Bytes,
) -> Result<Response, ApiError> {
    d.check_unlocked()?;
    let req: UpdateRequest = parse_required(&body)?;
    let mut s = d.service(&name)?;
    if let Some(p) = &req.on_rotate {
        OnRotate::parse(p)?;
        s.on_rotate = p.clone();
    }
    for c in &req.constraint_add {
        check_constraint(c)?;
    }
    // Docker: --secret-rm matches by secret name only and drops every reference with it.
    s.secrets
        .retain(|r| !req.secret_rm.contains(&r.secret_name));
    let added = d.resolve_refs(&req.secret_add)?;
    // An added reference replaces an existing one with the same target (what the client does
    // when it merges the spec before sending it).
    let dir = std::path::Path::new(lockbox_proto::reference::DEFAULT_SECRETS_DIR);
    for a in &added {
        let t = to_ref(a).resolved_target(dir);
        s.secrets.retain(|r| to_ref(r).resolved_target(dir) != t);
    }
    s.secrets.extend(added);
    check_conflicts(&s.secrets)?;
    s.constraints.retain(|c| !req.constraint_rm.contains(c));
    for c in req.constraint_add {
        if !s.constraints.contains(&c) {
            s.constraints.push(c);
        }
    }
    s.labels.extend(req.label_add);
    s.updated_ns = now_ns();
    d.put_service(s.clone()).await?;
    d.audit_service("service-update", &Caller::uid(who.uid), &s)?;
    let changed = d.extensions.get_or_init(ServiceChanged::default).0;
    changed(d.clone(), s.name.clone()).await;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"Warnings": null}),
    ))
}

async fn remove(d: Arc<Daemon>, who: Peer, name: String) -> Result<Response, ApiError> {
    d.check_unlocked()?;
    let s = d.service(&name)?;
    d.propose(Command::RemoveService {
        name: s.name.clone(),
    })
    .await?;
    d.audit_service("service-remove", &Caller::uid(who.uid), &s)?;
    Ok(StatusCode::OK.into_response())
}

/// Routes under `/v1/services`.
pub(crate) fn routes() -> Router<Arc<Daemon>> {
    Router::new()
        .route(
            "/",
            get(|State(d): App| async move {
                d.check_unlocked()?;
                let all: Vec<_> = d.reader()?.services()?.iter().map(service_json).collect();
                Ok::<_, ApiError>(json_response(StatusCode::OK, &all))
            }),
        )
        .route(
            "/create",
            post(
                |State(d): App, ConnectInfo(who): ConnectInfo<Peer>, body: Bytes| async move {
                    create(d, who, body).await
                },
            ),
        )
        .route(
            "/{name}",
            get(|State(d): App, Path(name): Path<String>| async move {
                d.check_unlocked()?;
                let s = d.service(&name)?;
                Ok::<_, ApiError>(json_response(StatusCode::OK, &service_json(&s)))
            })
            .delete(
                |State(d): App, ConnectInfo(who): ConnectInfo<Peer>, Path(name): Path<String>| async move {
                    remove(d, who, name).await
                },
            ),
        )
        .route(
            "/{name}/update",
            post(
                |State(d): App,
                 ConnectInfo(who): ConnectInfo<Peer>,
                 Path(name): Path<String>,
                 body: Bytes| async move { update(d, who, name, body).await },
            ),
        )
}

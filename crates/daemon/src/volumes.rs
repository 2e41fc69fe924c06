//! The volume driver: Docker's volume plugin protocol (`VolumeDriver.*`), so that plain
//! `docker run -v`, any Compose and any tool that can name a volume driver get lockbox
//! secrets without a wrapper.
//!
//! ```text
//! docker volume create -d lockbox -o secret=db_pw NAME ──► Create: parse, resolve, store
//! docker run -v NAME:/run/secrets ──► dockerd ──► Mount{Name, ID} ──► a workload (workloads.rs)
//!        with its own staging tmpfs, values revealed now (audited: volume, mount ID)
//!        ◄── {"Mountpoint": <tmpfs>/secrets} ── dockerd binds it into the container
//! secret rotate ──► the workload's `..data` swap, as for `lockbox docker run`
//! container stops ──► Unmount{Name, ID} ──► the tmpfs is unmounted and removed
//! ```
//!
//! A volume's definition (its name, options and the references they name) is a record
//! replicated with the store (`Command::PutVolume`), never a value: `List`/`Get` answer from
//! the store, so volumes survive restarts of lockbox and of dockerd. Each mount is a
//! workload of its own; mounts are persisted with the other workloads (`workloads.json`),
//! re-attached after a lockbox restart while a running container uses the volume, and
//! reaped otherwise.
//!
//! Options (one syntax for `-o`, `--mount …,volume-opt=` and Compose's `driver_opts`, all
//! of which are maps with one value per key): `secret=REF` and `secret.LABEL=REF`, where
//! REF is a reference in `--secret` syntax, or a comma-separated list of bare secret names.
//!
//! Owns: the plugin routes and option syntax. Touches: the core (store records, audit), the
//! services feature (reference resolution, Docker's messages), workloads (mounts).
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::post;
use lockbox_audit::Event;
use lockbox_proto::reference::SecretRef;
use lockbox_store::{Command, ServiceSecret, VolumeRecord};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::body::plugin_json;
use crate::identity::Peer;
use crate::services::{FileRequest, RefRequest, ServiceRecords as _};
use crate::workloads::{VolumeMount, WorkloadsState as _};
use lockbox_core::{Daemon, now_ns, rfc3339};

/// What the options of a lockbox volume look like, for every message about them.
const SYNTAX: &str = "a lockbox volume takes secret=REF and secret.LABEL=REF (LABEL: any name that keeps the keys apart), where REF is NAME, NAME1,NAME2,… or source=NAME,target=FILE,uid=N,gid=N,mode=0400";

/// The references a volume's driver options name, in key order. Pure: Docker's messages
/// for a malformed reference, lockbox's for everything else the options can get wrong.
pub(crate) fn parse_options(opts: &BTreeMap<String, String>) -> Result<Vec<SecretRef>, String> {
    if opts.is_empty() {
        return Err(format!(
            "the volume names no secret: {SYNTAX} (e.g. docker volume create -d lockbox -o secret=db_password NAME)"
        ));
    }
    let mut out = Vec::new();
    for (key, value) in opts {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        let known = key == "secret" || key.strip_prefix("secret.").is_some_and(label_ok);
        if !known {
            return Err(format!("unknown option {key:?}: {SYNTAX}"));
        }
        if value.trim().is_empty() {
            return Err(format!("option {key} is empty: name a secret ({SYNTAX})"));
        }
        let refs: Vec<SecretRef> = if value.contains('=') {
            vec![
                value
                    .parse()
                    .map_err(|e| format!("option {key}={value}: {e}"))?,
            ]
        } else {
            value
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| n.parse().map_err(|e| format!("option {key}={value}: {e}")))
                .collect::<Result<_, _>>()?
        };
        for r in &refs {
            if r.is_absolute() {
                return Err(format!(
                    "option {key}={value}: target {:?} is absolute; a volume's files are under the directory the container mounts it at (-v NAME:/run/secrets), so targets are relative",
                    r.target
                ));
            }
        }
        out.extend(refs);
    }
    Ok(out)
}

/// A parsed reference as the services feature resolves it.
fn as_request(r: &SecretRef) -> RefRequest {
    RefRequest {
        secret_name: r.source.clone(),
        file: Some(FileRequest {
            name: r.target.clone(),
            uid: r.uid.to_string(),
            gid: r.gid.to_string(),
            mode: Some(r.mode),
        }),
        version: r.version,
        kind: None,
    }
}

/// Whether volume `volume` may name the secrets `refs` refer to: the grant policy's word
/// for volumes (`lockbox policy grant --volumes`, [`lockbox_core::policy::GrantView::volume_allows`]). Every Create
/// and Mount goes through it, so a grant taken back stops the next mount.
fn volume_may_use(d: &Daemon, volume: &str, refs: &[ServiceSecret]) -> Result<(), ApiError> {
    let grants = d.grant_view();
    match refs.iter().find(|r| !grants.volume_allows(&r.secret_name)) {
        None => Ok(()),
        Some(r) => Err(ApiError::new(
            403,
            format!(
                "volume {volume}: secret {} is not granted to volumes (lockbox policy grant --volumes --use PATTERN)",
                r.secret_name
            ),
        )),
    }
}

/// The references of a volume's options, resolved against the store now (names to IDs,
/// unknown secrets and conflicting targets refused with Docker's messages) and allowed by
/// the policy.
fn resolve(
    d: &Daemon,
    volume: &str,
    opts: &BTreeMap<String, String>,
) -> Result<Vec<ServiceSecret>, String> {
    let refs = parse_options(opts)?;
    let requests: Vec<RefRequest> = refs.iter().map(as_request).collect();
    let resolved = d.resolve_refs(&requests).map_err(message)?;
    volume_may_use(d, volume, &resolved).map_err(message)?;
    Ok(resolved)
}

/// An error's text without the gRPC prefix the service messages carry for Docker's CLI.
fn message(e: ApiError) -> String {
    e.message
        .trim_start_matches(crate::services::INVALID)
        .to_owned()
}

/// Every answer of the protocol carries `Err`; empty means success.
#[derive(Debug, Default, Serialize)]
struct Answer {
    #[serde(rename = "Err")]
    err: String,
    #[serde(rename = "Mountpoint", skip_serializing_if = "Option::is_none")]
    mountpoint: Option<String>,
    #[serde(rename = "Volume", skip_serializing_if = "Option::is_none")]
    volume: Option<serde_json::Value>,
    #[serde(rename = "Volumes", skip_serializing_if = "Option::is_none")]
    volumes: Option<Vec<serde_json::Value>>,
}

fn fail(msg: impl std::fmt::Display) -> Response {
    plugin_json(&Answer {
        err: format!("lockbox: {msg}"),
        ..Default::default()
    })
}

fn ok(a: Answer) -> Response {
    plugin_json(&a)
}

/// A request of the protocol: every call names the volume; Create adds options, Mount and
/// Unmount the mount's ID.
#[derive(Debug, Default, Deserialize)]
struct VolumeRequest {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Opts", default)]
    opts: Option<BTreeMap<String, String>>,
    #[serde(rename = "ID", default)]
    id: String,
}

type Body_ = Result<Bytes, BytesRejection>;
type App = State<Arc<Daemon>>;

fn request(body: Body_, call: &str) -> Result<VolumeRequest, String> {
    let body = body.map_err(|e| format!("cannot read the {call} request: {e}"))?;
    let req: VolumeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        VolumeRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            format!(
                "malformed {call} request: {}",
                lockbox_store::validate::go_json_error(&e)
            )
        })?
    };
    if req.name.is_empty() && call != "List" && call != "Capabilities" {
        return Err(format!("the {call} request names no volume"));
    }
    Ok(req)
}

fn unknown(name: &str) -> String {
    format!(
        "no volume named {name} in lockbox: create it with 'docker volume create -d lockbox -o secret=NAME {name}'"
    )
}

fn record(d: &Daemon, name: &str) -> Result<VolumeRecord, String> {
    d.reader()
        .map_err(message)?
        .volume(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| unknown(name))
}

fn audit(
    d: &Daemon,
    action: &str,
    who: &Peer,
    name: &str,
    extra: &[(&str, &str)],
) -> Result<(), String> {
    let mut e = Event::new(action, &who.actor()).object("volume", name, name);
    for (k, v) in extra {
        e = e.detail(k, v);
    }
    d.audit_event(e).map(|_| ()).map_err(message)
}

async fn create(State(d): App, ConnectInfo(who): ConnectInfo<Peer>, body: Body_) -> Response {
    let req = match request(body, "Create") {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let opts = req.opts.unwrap_or_default();
    let run = async {
        d.check_unlocked().map_err(message)?;
        let secrets = resolve(&d, &req.name, &opts)?;
        let names: Vec<&str> = secrets.iter().map(|s| s.secret_name.as_str()).collect();
        let names = names.join(",");
        d.propose(Command::PutVolume {
            volume: VolumeRecord {
                name: req.name.clone(),
                created_ns: now_ns(),
                index: 0,
                options: opts.clone(),
                secrets,
            },
        })
        .await
        .map_err(message)?;
        audit(&d, "volume-create", &who, &req.name, &[("secrets", &names)])
    };
    match run.await {
        Ok(()) => ok(Answer::default()),
        Err(e) => fail(e),
    }
}

async fn remove(State(d): App, ConnectInfo(who): ConnectInfo<Peer>, body: Body_) -> Response {
    let req = match request(body, "Remove") {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mounts = d.workloads().volume_mounts(&req.name).await;
    if !mounts.is_empty() {
        return fail(format!(
            "volume {} is in use ({} mount(s) on this node): remove the containers that use it first",
            req.name,
            mounts.len()
        ));
    }
    let run = async {
        match record(&d, &req.name) {
            Ok(_) => {}
            // Already gone: the state Docker asks for holds.
            Err(_)
                if d.reader()
                    .is_ok_and(|r| r.volume(&req.name).is_ok_and(|v| v.is_none())) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        d.propose(Command::RemoveVolume {
            name: req.name.clone(),
        })
        .await
        .map_err(message)?;
        audit(&d, "volume-remove", &who, &req.name, &[])
    };
    match run.await {
        Ok(()) => ok(Answer::default()),
        Err(e) => fail(e),
    }
}

async fn mount(State(d): App, ConnectInfo(who): ConnectInfo<Peer>, body: Body_) -> Response {
    let req = match request(body, "Mount") {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if req.id.is_empty() {
        return fail("the Mount request has no mount ID");
    }
    let run = async {
        d.check_unlocked().map_err(message)?;
        let rec = record(&d, &req.name)?;
        // Names are resolved again at each mount: a secret removed and created anew under
        // the same name is the one the volume means; one that is gone fails the mount.
        let refs = resolve(&d, &req.name, &rec.options)?;
        let mount = VolumeMount {
            volume: req.name.clone(),
            mount_id: req.id.clone(),
        };
        let path = d
            .workloads()
            .mount_volume(
                &d,
                format!("{} volume:{}", who.actor(), req.name),
                mount,
                refs,
            )
            .await
            .map_err(|e| e.message)?;
        if let Err(e) = audit(
            &d,
            "volume-mount",
            &who,
            &req.name,
            &[("mount_id", &req.id)],
        ) {
            d.workloads().unmount_volume(&req.name, &req.id).await;
            return Err(e);
        }
        Ok(path)
    };
    match run.await {
        Ok(path) => ok(Answer {
            mountpoint: Some(path.display().to_string()),
            ..Default::default()
        }),
        Err(e) => fail(e),
    }
}

async fn unmount(State(d): App, ConnectInfo(who): ConnectInfo<Peer>, body: Body_) -> Response {
    let req = match request(body, "Unmount") {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    // An unknown mount ID (reaped after a restart, or never mounted) is already in the state
    // Docker asks for: success, so that a container's removal never stalls on it.
    if d.workloads().unmount_volume(&req.name, &req.id).await
        && let Err(e) = audit(
            &d,
            "volume-unmount",
            &who,
            &req.name,
            &[("mount_id", &req.id)],
        )
    {
        tracing::warn!(volume = req.name, "cannot audit an unmount: {e}");
    }
    ok(Answer::default())
}

/// Where the volume is mounted: each mount has its own tmpfs, so with several mounts this
/// is the first one's (Docker uses it for `docker volume inspect`; containers get the path
/// their own Mount answered). Empty when not mounted.
async fn mountpoint(d: &Daemon, name: &str) -> String {
    d.workloads()
        .volume_mounts(name)
        .await
        .into_iter()
        .next()
        .map(|(_, p)| p.display().to_string())
        .unwrap_or_default()
}

async fn path(State(d): App, body: Body_) -> Response {
    let req = match request(body, "Path") {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match record(&d, &req.name) {
        Ok(_) => ok(Answer {
            mountpoint: Some(mountpoint(&d, &req.name).await),
            ..Default::default()
        }),
        Err(e) => fail(e),
    }
}

async fn volume_json(d: &Daemon, v: &VolumeRecord) -> serde_json::Value {
    let mounts = d.workloads().volume_mounts(&v.name).await;
    let secrets: Vec<&str> = v.secrets.iter().map(|s| s.secret_name.as_str()).collect();
    serde_json::json!({
        "Name": v.name,
        "Mountpoint": mounts.first().map(|(_, p)| p.display().to_string()).unwrap_or_default(),
        "CreatedAt": rfc3339(v.created_ns),
        "Status": {"Secrets": secrets, "Mounts": mounts.len()},
    })
}

async fn get(State(d): App, body: Body_) -> Response {
    let req = match request(body, "Get") {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match record(&d, &req.name) {
        Ok(v) => ok(Answer {
            volume: Some(volume_json(&d, &v).await),
            ..Default::default()
        }),
        Err(e) => fail(e),
    }
}

async fn list(State(d): App) -> Response {
    let all = match d
        .reader()
        .map_err(message)
        .and_then(|r| r.volumes().map_err(|e| e.to_string()))
    {
        Ok(all) => all,
        Err(e) => return fail(e),
    };
    let mut out = Vec::with_capacity(all.len());
    for v in &all {
        out.push(volume_json(&d, v).await);
    }
    ok(Answer {
        volumes: Some(out),
        ..Default::default()
    })
}

/// The volume driver's routes (Docker's plugin protocol: every call is a POST).
pub(crate) fn plugin_routes() -> Router<Arc<Daemon>> {
    Router::new()
        .route("/VolumeDriver.Create", post(create))
        .route("/VolumeDriver.Remove", post(remove))
        .route("/VolumeDriver.Mount", post(mount))
        .route("/VolumeDriver.Unmount", post(unmount))
        .route("/VolumeDriver.Path", post(path))
        .route("/VolumeDriver.Get", post(get))
        .route("/VolumeDriver.List", post(list))
        .route(
            "/VolumeDriver.Capabilities",
            // Mounts are made on the node dockerd runs on, from this node's store.
            post(|| async {
                plugin_json(&serde_json::json!({"Capabilities": {"Scope": "local"}}))
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_take_names_lists_and_full_references() {
        let refs = parse_options(&opts(&[
            ("secret", "db_password,api_key"),
            (
                "secret.tls",
                "source=tls_key,target=tls/key,uid=101,gid=102,mode=0400",
            ),
        ]))
        .unwrap();
        let got: Vec<_> = refs
            .iter()
            .map(|r| format!("{} {} {}:{} {:o}", r.source, r.target, r.uid, r.gid, r.mode))
            .collect();
        assert_eq!(
            got,
            [
                "db_password db_password 0:0 444",
                "api_key api_key 0:0 444",
                "tls_key tls/key 101:102 400"
            ]
        );
    }

    #[test]
    fn bad_options_are_named() {
        let err = |kv: &[(&str, &str)]| parse_options(&opts(kv)).unwrap_err();
        assert!(err(&[]).starts_with("the volume names no secret"));
        assert!(err(&[("secrets", "a")]).starts_with("unknown option \"secrets\""));
        assert!(err(&[("secret.", "a")]).starts_with("unknown option \"secret.\""));
        assert!(err(&[("secret", " ")]).starts_with("option secret is empty"));
        assert!(err(&[("secret", "source=a,target=/etc/x")]).contains("is absolute"));
        assert!(
            err(&[("secret", "source=a,mode=999")])
                .starts_with("option secret=source=a,mode=999: ")
        );
        assert!(
            err(&[("secret", "source=a,target=../x")])
                .starts_with("option secret=source=a,target=../x: ")
        );
    }
}

//! Certificates: the CA as users inspect it, root CA rotation (start, follow, finish) and
//! each node's certificate renewal over the node API.
//!
//! Owns: node certificates and the CA's lifecycle. Touches: the core, `record`, the peers
//! layer's TLS state.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use lockbox_audit::Event;
use lockbox_cluster::pki::{ClusterCa, NodeKey, PeerIdentity};
use lockbox_store::cluster::CA_KEY_OBJECT;
use lockbox_store::{CaRotation, ClusterRecord, Command, node_id_text};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::body::json_response;
use crate::identity::Peer;
use crate::peers;
use lockbox_core::{Caller, Daemon, NodeStore, now_ns, rfc3339};

#[allow(unused_imports)]
use super::*;

/// `GET /v1/cluster/ca`: the cluster's root CA certificate (PEM) and the rotation in
/// progress, with which nodes it still waits for.
pub(super) async fn ca_inspect(d: Arc<Daemon>) -> Result<Response> {
    d.cluster_or_err()?;
    d.check_unlocked()?;
    let (c, rotation) = d.cluster_and_rotation()?;
    let nodes = d.reader()?.nodes()?;
    let rotation = rotation.map(|r| {
        let waiting: Vec<String> = nodes
            .iter()
            .filter(|n| !r.has_rotated(n))
            .map(|n| node_id_text(n.id))
            .collect();
        serde_json::json!({
            "Digest": sha256_text(&r.new_cert),
            "StartedAt": rfc3339(r.started_ns),
            "Nodes": nodes.len(),
            "Rotated": nodes.len() - waiting.len(),
            "Waiting": waiting,
        })
    });
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "Cert": lockbox_cluster::pki::pem_encode("CERTIFICATE", &c.ca_cert),
            "Digest": sha256_text(&c.ca_cert),
            "Version": c.ca_version,
            "Rotation": rotation,
        }),
    ))
}

/// `POST /v1/cluster/ca/rotate`: starts a root CA rotation (see ARCHITECTURE.md, "CA
/// rotation"). A rotation in progress is replaced, as Docker does: its new root was never
/// anything but a second trusted root, and nodes that moved to it move again.
pub(super) async fn ca_rotate(d: Arc<Daemon>, who: Peer) -> Result<Response> {
    d.cluster_or_err()?;
    d.check_unlocked()?;
    let (c, previous) = d.cluster_and_rotation()?;
    let current = d.issuing_ca(&c, None)?;
    let internal = |e: lockbox_cluster::Error| ApiError::internal(e.to_string());
    let new = ClusterCa::generate(&c.cluster_id).map_err(internal)?;
    let rotation = CaRotation {
        new_cert: new.cert_der().to_vec(),
        new_key: d.seal_cluster_secret(&new.key_der(), CA_KEY_OBJECT, c.ca_version + 1)?,
        cross_cert: current.cross_sign(&new, &c.cluster_id).map_err(internal)?,
        started_ns: now_ns(),
        rotated: BTreeMap::new(),
    };
    d.propose(Command::StartCaRotation {
        rotation,
        expected_ca_version: c.ca_version,
    })
    .await?;
    let mut event = Event::new("ca-rotate", &Caller::uid(who.uid).actor)
        .detail("from", &sha256_text(&c.ca_cert))
        .detail("to", &sha256_text(new.cert_der()));
    if let Some(p) = &previous {
        event = event.detail("replaces", &sha256_text(&p.new_cert));
    }
    d.audit_event(event)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "Digest": sha256_text(new.cert_der()),
            "Replaced": previous.map(|p| sha256_text(&p.new_cert)),
        }),
    ))
}

/// A certificate's digest as users see it: `sha256:<hex>`.
pub(super) fn sha256_text(der: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex_lower(&lockbox_cluster::pki::cert_digest(der))
    )
}

pub(super) fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The watcher's part of a CA rotation: this manager re-issues its own certificate when its
/// trust is not what the cluster's state asks for (a rotation started, was replaced, or
/// finished), and the leader finishes the rotation once every node's current certificate
/// is from the new root.
pub(super) async fn follow_ca_rotation(
    d: &Arc<Daemon>,
    cluster: &Arc<Cluster>,
    store: &NodeStore,
    c: &ClusterRecord,
    rotation: Option<&CaRotation>,
    retry_at: &mut tokio::time::Instant,
) {
    let target = Trust::of(c, rotation).tag();
    let now = tokio::time::Instant::now();
    if cluster.tls.get().trust.tag() != target && now >= *retry_at {
        // In the background: the renewal goes through a manager, maybe this one, whose
        // proposals must not wait for this loop.
        *retry_at = now + Duration::from_secs(2);
        let (d, cluster) = (d.clone(), cluster.clone());
        tokio::spawn(async move { ensure_trust(&d, &cluster, &target).await });
    }
    let Some(r) = rotation else { return };
    if !store.replica.is_leader() {
        return;
    }
    let Ok(nodes) = store.reader.nodes() else {
        return;
    };
    if !nodes.iter().all(|n| r.has_rotated(n)) {
        return;
    }
    let finish = Command::FinishCaRotation {
        rotation_started_ns: r.started_ns,
        time_ns: now_ns(),
    };
    match d.propose(finish).await {
        Ok(_) => {
            let _ = d.audit_event(
                Event::new(
                    "ca-rotate-finish",
                    &format!("node:{}", node_id_text(store.replica.node_id())),
                )
                .detail("ca", &sha256_text(&r.new_cert))
                .detail("nodes", &nodes.len().to_string()),
            );
        }
        Err(e) => tracing::info!("the CA rotation cannot finish yet: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// certificate renewal

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RenewRequest {
    pub(super) csr: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RenewResponse {
    pub(super) cert: String,
    /// Absent from managers that predate CA rotations: the node keeps its trust.
    #[serde(default)]
    pub(super) trust: Option<Trust>,
}

/// `/cluster/renew`: a node presents its current certificate and a new CSR; the CA issues a
/// certificate for the same identity, and the node record accepts the old one until it
/// expires (so connections opened before the swap keep working).
pub(super) async fn renew(
    State(d): State<Arc<Daemon>>,
    Extension(who): Extension<Authorized>,
    body: Bytes,
) -> Result<Response> {
    let req: RenewRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed renew request: {e}")))?;
    let (c, rotation) = d.cluster_and_rotation()?;
    let ca = d.issuing_ca(&c, rotation.as_ref())?;
    let mut node = who.node;
    let cert = ca
        .issue(
            &unb64(&req.csr, "csr")?,
            node.id,
            to_role(node.role),
            &c.cluster_id,
            SystemTime::now(),
            Duration::from_secs(c.cert_validity_s),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let ident =
        PeerIdentity::from_cert_der(&cert).map_err(|e| ApiError::internal(e.to_string()))?;
    node.prev_fingerprint =
        std::mem::replace(&mut node.cert_fingerprint, ident.fingerprint.to_vec());
    node.cert_not_after_ns = system_time_ns(ident.not_after);
    node.updated_ns = now_ns();
    let id = node.id;
    d.put_issued(node, &c, rotation.as_ref()).await?;
    let trust = Trust::of(&c, rotation.as_ref());
    d.audit_event(
        Event::new("cert-renew", &format!("node:{}", node_id_text(id))).detail("ca", &trust.issuer),
    )?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"cert": b64(&cert), "trust": trust}),
    ))
}

/// Renews this node's certificate at a random point between 50 % and 80 % of its life, then
/// again for the new one; on failure it retries every minute.
pub(super) async fn renewal(d: Arc<Daemon>) {
    loop {
        let Some(c) = d.cluster() else { return };
        if *c.stop.borrow() {
            return;
        }
        let tls = c.tls.get();
        let at =
            lockbox_cluster::pki::renew_at_random(tls.identity.not_before, tls.identity.not_after)
                .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(3600));
        let mut wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        // Tests cannot wait 45 days (nor the 30 minutes of the shortest certificate):
        // `LOCKBOX_CERT_RENEW_AFTER_MS` renews that many milliseconds after each start.
        if let Some(ms) = std::env::var("LOCKBOX_CERT_RENEW_AFTER_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            wait = Duration::from_millis(ms);
        }
        drop(tls);
        let mut stop = c.stop.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match renew_once(&d, &c).await {
            Ok(()) => tracing::info!("node certificate renewed"),
            Err(e) => {
                tracing::warn!("certificate renewal failed: {e}; retrying in a minute");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}

pub(super) async fn renew_once(d: &Arc<Daemon>, c: &Cluster) -> Result<()> {
    let _one = c.renewing.lock().await;
    renew_locked(d, c).await
}

/// Renews now if this node's trust is not `target` (the tag of [`Trust::of`] the cluster's
/// state: a CA rotation started or finished), unless a renewal is already running.
pub(crate) async fn ensure_trust(d: &Arc<Daemon>, c: &Cluster, target: &str) {
    let Ok(_one) = c.renewing.try_lock() else {
        return;
    };
    if c.tls.get().trust.tag() == target {
        return;
    }
    match renew_locked(d, c).await {
        Ok(()) => tracing::info!("node certificate re-issued: the cluster's CA is rotating"),
        Err(e) => tracing::warn!("certificate re-issue for the CA rotation failed: {e}"),
    }
}

/// The tag of the trust a node of this cluster should have now (`None` off a manager).
pub(crate) fn target_trust_tag(d: &Daemon) -> Option<String> {
    let (c, rotation) = d.cluster_and_rotation().ok()?;
    Some(Trust::of(&c, rotation.as_ref()).tag())
}

pub(super) async fn renew_locked(d: &Arc<Daemon>, c: &Cluster) -> Result<()> {
    let key = NodeKey::generate().map_err(|e| ApiError::internal(e.to_string()))?;
    let csr = key
        .csr_der()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let body = serde_json::to_vec(&RenewRequest { csr: b64(&csr) })
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let cfg = c.config();
    let current = c.tls.get();
    let mut last = ApiError::new(503, "no manager known");
    for addr in &cfg.managers {
        match peers::call(
            current.client.clone(),
            addr,
            "/cluster/renew",
            body.clone(),
            CALL_TIMEOUT,
        )
        .await
        {
            Ok(a) if a.status == 200 => {
                let renewed: RenewResponse = serde_json::from_slice(&a.body)
                    .map_err(|e| ApiError::internal(format!("unexpected renew answer: {e}")))?;
                let cert = unb64(&renewed.cert, "certificate")?;
                let trust = renewed.trust.unwrap_or_else(|| current.trust.clone());
                let tls = tls_from(&key.key_der(), &cert, &trust).map_err(ApiError::internal)?;
                save_files(&d.data_dir, &cfg, &key.key_der(), &cert, &trust)?;
                c.tls.set(tls);
                return Ok(());
            }
            Ok(a) => last = remote_error(&a),
            Err(e) => last = ApiError::new(503, e),
        }
    }
    Err(last)
}

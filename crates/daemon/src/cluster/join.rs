//! Joining, both sides: the joining node's local `cluster join` and the manager's
//! `/cluster/join` on the node API (token checked in constant time, certificate issued,
//! node record proposed).
//!
//! Owns: the join handshake. Touches: the core, `record` (tokens, CA), `state`.
use std::fs;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lockbox_audit::Event;
use lockbox_cluster::pki::{NodeKey, PeerIdentity};
use lockbox_cluster::token::JoinToken;
use lockbox_keyring::{KeyMode, KeyRing, RingFile, UnlockKey, Zeroizing};
use lockbox_replication::Bootstrap;
use lockbox_store::{Kind, NodeRole, Reader, node_id_text};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::body::{json_response, parse_body};
use crate::identity::Peer;
use crate::peers::{self, NodePeer, TlsState};
use lockbox_core::{Caller, Daemon, Keys, now_ns};

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// join: the joining node's side (local API) and the manager's side (node API)

#[derive(Default, Deserialize)]
pub(super) struct LocalJoinRequest {
    #[serde(rename = "Token", default)]
    pub(super) token: String,
    #[serde(rename = "RemoteAddr", default)]
    pub(super) remote_addr: String,
    #[serde(rename = "ListenAddr", default)]
    pub(super) listen_addr: Option<String>,
    #[serde(rename = "AdvertiseAddr", default)]
    pub(super) advertise_addr: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct JoinRequest {
    pub(super) token: String,
    pub(super) csr: String,
    pub(super) addr: String,
    pub(super) hostname: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct JoinResponse {
    pub(super) node_id: u64,
    pub(super) role: NodeRole,
    pub(super) cluster_id: String,
    pub(super) cert: String,
    pub(super) ca: String,
    /// What the node trusts and presents (see [`Trust`]); `ca` alone from older managers.
    #[serde(default)]
    pub(super) trust: Option<Trust>,
    pub(super) managers: Vec<String>,
}

/// No `Debug`: it carries the KEK ring and the unlock key (like the two join requests, which
/// carry a token), so no log line or panic message can print it by accident.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct AdmitResponse {
    /// Managers only: the KEK ring (plaintext key material; only ever inside mutual TLS).
    pub(super) ring: Option<String>,
    /// Managers of an autolocked cluster: the unlock key that seals the ring on disk.
    pub(super) unlock_key: Option<String>,
    pub(super) managers: Vec<String>,
}

impl Drop for AdmitResponse {
    /// The base64 ring and the unlock key are key material: wiped when the answer goes.
    fn drop(&mut self) {
        drop(Zeroizing::new(self.ring.take().unwrap_or_default()));
        drop(Zeroizing::new(self.unlock_key.take().unwrap_or_default()));
    }
}

pub(super) fn b64(b: &[u8]) -> String {
    STANDARD.encode(b)
}

pub(super) fn unb64(s: &str, what: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(s)
        .map_err(|_| ApiError::bad_request(format!("{what} is not base64")))
}

/// Calls the leader: follows one 421 redirect from a follower.
pub(super) async fn call_leader(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(String, peers::Answer)> {
    let mut target = addr.to_string();
    for _ in 0..3 {
        let a = peers::call(config.clone(), &target, path, body.clone(), CALL_TIMEOUT)
            .await
            .map_err(|e| ApiError::new(503, e))?;
        if a.status == 421 {
            let msg = a.message();
            if let Some(leader) = msg.rsplit("the leader is at ").next().filter(|l| *l != msg) {
                target = leader.trim().to_string();
                continue;
            }
        }
        return Ok((target, a));
    }
    Err(ApiError::new(
        503,
        "the managers keep redirecting; no stable leader",
    ))
}

pub(super) fn remote_error(a: &peers::Answer) -> ApiError {
    ApiError::new(a.status, a.message())
}

pub(super) async fn local_join(d: Arc<Daemon>, who: Peer, body: Bytes) -> Result<Response> {
    let req: LocalJoinRequest = parse_body(&body)?;
    let caller = Caller::uid(who.uid);
    if d.cluster().is_some() {
        return Err(ApiError::bad_request(ALREADY_IN));
    }
    if req.remote_addr.is_empty() {
        return Err(ApiError::bad_request(
            "the address of a manager is required",
        ));
    }
    let token =
        JoinToken::from_str(req.token.trim()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Ok(reader) = d.reader() {
        let held = reader.count(Kind::Secret)?
            + reader.count(Kind::Config)?
            + reader.services()?.len() as u64;
        if held > 0 {
            return Err(ApiError::bad_request(format!(
                "this node holds {held} secrets, configs or services of its own; joining a cluster replaces its store. Back them up ('lockbox backup') and start from an empty data directory, or remove them first"
            )));
        }
    }
    let (listen_addr, advertise_addr) = addrs(req.listen_addr, req.advertise_addr)?;
    let remote = with_port(&req.remote_addr);
    // Bind first: a port in use must fail before the cluster records this node.
    let probe = std::net::TcpListener::bind(&listen_addr).map_err(|e| {
        ApiError::bad_request(format!(
            "cannot listen on {listen_addr} for cluster traffic: {e}"
        ))
    })?;
    drop(probe);

    let key = NodeKey::generate().map_err(|e| ApiError::internal(e.to_string()))?;
    let csr = key
        .csr_der()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let bootstrap = lockbox_cluster::tls::bootstrap_client_config(token.digest)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let ask = serde_json::to_vec(&JoinRequest {
        token: req.token.trim().to_string(),
        csr: b64(&csr),
        addr: advertise_addr.clone(),
        hostname: hostname(),
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let (leader, answer) = call_leader(bootstrap, &remote, "/cluster/join", ask).await?;
    if answer.status != 200 {
        return Err(remote_error(&answer));
    }
    let joined: JoinResponse = serde_json::from_slice(&answer.body)
        .map_err(|e| ApiError::internal(format!("unexpected join answer: {e}")))?;
    let cert = unb64(&joined.cert, "certificate")?;
    let ca = unb64(&joined.ca, "CA certificate")?;
    if lockbox_cluster::pki::cert_digest(&ca) != token.digest {
        return Err(ApiError::new(
            502,
            "the manager sent a CA that does not match the join token",
        ));
    }
    let cfg = NodeConfig {
        node_id: joined.node_id,
        cluster_id: joined.cluster_id.clone(),
        role: joined.role,
        listen_addr,
        advertise_addr,
        managers: joined.managers.clone(),
    };
    let trust = joined.trust.clone().unwrap_or_else(|| Trust::single(&ca));
    let tls = TlsState::new(tls_from(&key.key_der(), &cert, &trust).map_err(ApiError::internal)?);
    save_files(&d.data_dir, &cfg, &key.key_der(), &cert, &trust)?;

    // This node's single-node store is replaced: by an empty cluster store (managers) or by
    // nothing (workers hold no store).
    let old = d.store.write().ok().and_then(|mut s| s.take());
    if let Some(old) = old {
        lockbox_core::close_store(old).await;
    }
    let _ = fs::remove_file(d.data_dir.join("store.redb"));
    if joined.role == NodeRole::Manager {
        let store = open_store(
            &d.data_dir,
            &cfg,
            &tls,
            Bootstrap::Join,
            crate::budget::cache_size(&d),
        )
        .await?;
        if let Ok(mut s) = d.store.write() {
            *s = Some(Arc::new(store));
        }
    }
    activate(&d, cfg.clone(), tls.clone()).await?;

    // Admission is idempotent; a leader change while the new node catches up makes the
    // leader give up, so ask again (the new leader resumes where the old one stopped).
    let mut answer = None;
    let mut last_err = None;
    for attempt in 0..4 {
        let targets: Vec<String> = std::iter::once(leader.clone())
            .chain(joined.managers.iter().cloned())
            .collect();
        let target = &targets[attempt % targets.len()];
        match call_leader(
            tls.get().client.clone(),
            target,
            "/cluster/admit",
            b"{}".to_vec(),
        )
        .await
        {
            Ok((_, a)) if a.status == 200 => {
                answer = Some(a);
                break;
            }
            Ok((_, a)) => last_err = Some(remote_error(&a)),
            Err(e) => last_err = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(answer) = answer else {
        return Err(last_err.unwrap_or_else(|| ApiError::new(503, "admission failed")));
    };
    let admitted = install_keys(&d, &answer.body)?;
    if !admitted.managers.is_empty() {
        set_managers(&d, admitted.managers.clone());
    }
    d.audit_event(
        Event::new("cluster-join", &caller.actor)
            .detail("cluster_id", &joined.cluster_id)
            .detail("node", &node_id_text(joined.node_id))
            .detail("role", joined.role.as_str()),
    )?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"NodeID": node_id_text(joined.node_id), "Role": joined.role.as_str()}),
    ))
}

/// Takes an admission answer: a manager seals the cluster's KEK ring on its own disk exactly
/// like the first manager (under autolock, with the cluster's unlock key) and unlocks with it.
pub(super) fn install_keys(d: &Daemon, body: &[u8]) -> Result<AdmitResponse> {
    let admitted: AdmitResponse = serde_json::from_slice(body)
        .map_err(|e| ApiError::internal(format!("unexpected admit answer: {e}")))?;
    if let Some(ring) = &admitted.ring {
        let raw = Zeroizing::new(unb64(ring, "key ring")?);
        let ring = KeyRing::import(&raw)?;
        let unlock = admitted
            .unlock_key
            .as_deref()
            .map(UnlockKey::parse)
            .transpose()?;
        RingFile::write(&d.ring_path, &ring, unlock.as_ref())?;
        let mode = if unlock.is_some() {
            KeyMode::Autolock
        } else {
            KeyMode::File
        };
        if let Ok(mut keys) = d.keys.write() {
            *keys = Keys::Unlocked { ring, mode, unlock };
        }
    }
    Ok(admitted)
}

pub(super) fn set_managers(d: &Daemon, managers: Vec<String>) {
    if let Some(c) = d.cluster() {
        let cfg = {
            let Ok(mut cfg) = c.config.write() else {
                return;
            };
            if cfg.managers == managers {
                return;
            }
            cfg.managers = managers;
            cfg.clone()
        };
        if let Err(e) = save_config(&d.data_dir, &cfg) {
            tracing::warn!("cannot record the managers' addresses: {e}");
        }
    }
}

pub(super) fn manager_addrs(reader: &Reader) -> Vec<String> {
    reader
        .nodes()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.role == NodeRole::Manager)
        .map(|n| n.addr)
        .collect()
}

/// `/cluster/join` on a manager: a node without a certificate presents a token and a CSR.
pub(super) async fn join_request(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<NodePeer>,
    body: Bytes,
) -> Result<Response> {
    let req: JoinRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed join request: {e}")))?;
    let store = d.require_leader()?;
    let (c, rotation) = d.cluster_and_rotation()?;
    let refuse = |d: &Daemon, why: &str| {
        let _ = d.audit_event(
            Event::new("node-join-refused", &format!("peer:{}", peer.addr))
                .detail("reason", why)
                .detail("addr", &req.addr),
        );
    };
    let token = match JoinToken::from_str(req.token.trim()) {
        Ok(t) => t,
        Err(e) => {
            refuse(&d, "malformed token");
            return Err(ApiError::bad_request(e.to_string()));
        }
    };
    if token.digest != lockbox_cluster::pki::cert_digest(&c.ca_cert) {
        refuse(&d, "token for another CA");
        return Err(ApiError::bad_request(
            "the join token is for a different cluster (its CA digest does not match this cluster's CA; if the cluster's CA was rotated, get the current token with 'lockbox cluster join-token')",
        ));
    }
    let role = if token.secret_matches(&d.join_token(&c, NodeRole::Manager)?.secret) {
        NodeRole::Manager
    } else if token.secret_matches(&d.join_token(&c, NodeRole::Worker)?.secret) {
        NodeRole::Worker
    } else {
        refuse(&d, "wrong or rotated token");
        return Err(ApiError::new(
            401,
            "invalid join token: it is not this cluster's current worker or manager token (rotated?)",
        ));
    };
    let csr = unb64(&req.csr, "csr")?;
    let existing: Vec<u64> = store.reader.nodes()?.iter().map(|n| n.id).collect();
    let node_id = loop {
        // 53 bits: the ID survives JSON number handling in any client.
        let id = u64::from_be_bytes(*lockbox_keyring::random_bytes::<8>()?) >> 11;
        if id > 1 && !existing.contains(&id) {
            break id;
        }
    };
    let ca = d.issuing_ca(&c, rotation.as_ref())?;
    let cert = ca
        .issue(
            &csr,
            node_id,
            to_role(role),
            &c.cluster_id,
            SystemTime::now(),
            Duration::from_secs(c.cert_validity_s),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let ident =
        PeerIdentity::from_cert_der(&cert).map_err(|e| ApiError::internal(e.to_string()))?;
    let t = now_ns();
    let node = new_node(
        node_id,
        role,
        &with_port(&req.addr),
        &req.hostname,
        &ident,
        t,
    );
    d.put_issued(node, &c, rotation.as_ref()).await?;
    d.audit_event(
        Event::new("node-join", &format!("node:{}", node_id_text(node_id)))
            .detail("role", role.as_str())
            .detail("addr", &req.addr)
            .detail("peer", &peer.addr),
    )?;
    Ok(json_response(
        StatusCode::OK,
        &JoinResponse {
            node_id,
            role,
            cluster_id: c.cluster_id.clone(),
            cert: b64(&cert),
            ca: b64(&c.ca_cert),
            trust: Some(Trust::of(&c, rotation.as_ref())),
            managers: manager_addrs(&store.reader),
        },
    ))
}

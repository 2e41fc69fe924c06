//! `cluster init`: a single node becomes the first manager of a new cluster (CA, tokens,
//! its certificate, the store reopened as a one-voter raft group).
//!
//! Owns: bootstrap. Touches: the core (keys, store), `state` to write the node's files.
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use lockbox_audit::Event;
use lockbox_cluster::Role;
use lockbox_cluster::pki::{ClusterCa, NodeKey, PeerIdentity};
use lockbox_keyring::KeyMode;
use lockbox_replication::Bootstrap;
use lockbox_store::cluster::{
    CA_KEY_OBJECT, MANAGER_TOKEN_OBJECT, UNLOCK_KEY_OBJECT, WORKER_TOKEN_OBJECT,
};
use lockbox_store::{ClusterRecord, Command, NodeRole, node_id_text};
use serde::Deserialize;

use crate::ApiError;
use crate::body::{json_response, parse_body};
use crate::identity::Peer;
use crate::peers::TlsState;
use lockbox_core::{Caller, Daemon, now_ns};

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// cluster init

#[derive(Debug, Default, Deserialize)]
pub(super) struct InitRequest {
    #[serde(rename = "AdvertiseAddr", default)]
    pub(super) advertise_addr: Option<String>,
    #[serde(rename = "ListenAddr", default)]
    pub(super) listen_addr: Option<String>,
    #[serde(rename = "Autolock", default)]
    pub(super) autolock: bool,
    #[serde(rename = "CertExpirySeconds", default)]
    pub(super) cert_expiry_s: Option<u64>,
}

pub(super) fn addrs(listen: Option<String>, advertise: Option<String>) -> Result<(String, String)> {
    let listen = with_port(listen.as_deref().unwrap_or("0.0.0.0"));
    let advertise = match advertise {
        Some(a) => with_port(&a),
        None => {
            let (host, port) = listen.rsplit_once(':').unwrap_or((&listen, ""));
            if host == "0.0.0.0" || host == "[::]" || host.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "could not choose an address to advertise: the listen address {listen} is not a specific IP; use --advertise-addr"
                )));
            }
            format!("{host}:{port}")
        }
    };
    Ok((listen, advertise))
}

pub(super) const NOT_IN_CLUSTER: &str = "This node is not part of a cluster. Use \"lockbox cluster init\" or \"lockbox cluster join\" to connect this node to a cluster and try again.";

pub(super) const ALREADY_IN: &str = "This node is already part of a cluster. Use \"lockbox cluster leave\" to leave this cluster and join another one.";

pub(super) async fn init(d: Arc<Daemon>, who: Peer, body: Bytes) -> Result<Response> {
    let req: InitRequest = parse_body(&body)?;
    let caller = Caller::uid(who.uid);
    if d.cluster().is_some() || d.reader()?.cluster()?.is_some() {
        return Err(ApiError::bad_request(ALREADY_IN));
    }
    d.check_unlocked()?;
    let validity = Duration::from_secs(req.cert_expiry_s.unwrap_or(90 * 24 * 3600));
    if validity < Duration::from_secs(3600) {
        return Err(ApiError::bad_request(
            "minimum certificate expiry time is: 1h0m0s",
        ));
    }
    let (listen_addr, advertise_addr) = addrs(req.listen_addr, req.advertise_addr)?;
    let store = d.store()?;
    let node_id = store.replica.node_id();
    let cluster_id = d.cluster_id.clone();

    let ca = ClusterCa::generate(&cluster_id).map_err(|e| ApiError::internal(e.to_string()))?;
    let key = NodeKey::generate().map_err(|e| ApiError::internal(e.to_string()))?;
    let csr = key
        .csr_der()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let cert = ca
        .issue(
            &csr,
            node_id,
            Role::Manager,
            &cluster_id,
            SystemTime::now(),
            validity,
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let ident =
        PeerIdentity::from_cert_der(&cert).map_err(|e| ApiError::internal(e.to_string()))?;

    // Autolock: the cluster's unlock key is this node's (made now if it has none).
    let shown_key = if req.autolock && !matches!(d.key_mode(), Some(KeyMode::Autolock)) {
        d.set_autolock(true, &caller)?
    } else {
        None
    };
    let unlock_sealed = match d.unlock_key_bytes()? {
        Some(raw) => Some(d.seal_cluster_secret(&raw[..], UNLOCK_KEY_OBJECT, 1)?),
        None => None,
    };
    let t = now_ns();
    let record = ClusterRecord {
        cluster_id: cluster_id.clone(),
        created_ns: t,
        updated_ns: t,
        ca_cert: ca.cert_der().to_vec(),
        ca_key: d.seal_cluster_secret(&ca.key_der(), CA_KEY_OBJECT, 1)?,
        ca_version: 1,
        worker_token: d.seal_cluster_secret(&random_secret16()?[..], WORKER_TOKEN_OBJECT, 1)?,
        manager_token: d.seal_cluster_secret(&random_secret16()?[..], MANAGER_TOKEN_OBJECT, 1)?,
        token_version: 1,
        unlock_key: unlock_sealed,
        unlock_version: 1,
        keks: Vec::new(),
        cert_validity_s: validity.as_secs(),
        revoked: Vec::new(),
    };
    let node = new_node(
        node_id,
        NodeRole::Manager,
        &advertise_addr,
        &hostname(),
        &ident,
        t,
    );
    let cfg = NodeConfig {
        node_id,
        cluster_id: cluster_id.clone(),
        role: NodeRole::Manager,
        listen_addr,
        advertise_addr: advertise_addr.clone(),
        managers: vec![advertise_addr.clone()],
    };
    let trust = Trust::single(ca.cert_der());
    let tls = TlsState::new(tls_from(&key.key_der(), &cert, &trust).map_err(ApiError::internal)?);
    // Bind first: a port in use must fail before anything is committed.
    let probe = std::net::TcpListener::bind(&cfg.listen_addr).map_err(|e| {
        ApiError::bad_request(format!(
            "cannot listen on {} for cluster traffic: {e}",
            cfg.listen_addr
        ))
    })?;
    drop(probe);
    d.propose(Command::InitCluster {
        cluster: record,
        node,
    })
    .await?;
    save_files(&d.data_dir, &cfg, &key.key_der(), &cert, &trust)?;
    // The single-node replica has no transport: reopen the same file on the cluster's.
    drop(store);
    reopen_store(&d, &cfg, &tls, Bootstrap::SingleVoter).await?;
    d.store()?.replica.change_own_addr(&advertise_addr).await?;
    activate(&d, cfg, tls).await?;
    d.audit_event(
        Event::new("cluster-init", &caller.actor)
            .detail("cluster_id", &cluster_id)
            .detail("node", &node_id_text(node_id))
            .detail("addr", &advertise_addr),
    )?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "ClusterID": cluster_id,
            "NodeID": node_id_text(node_id),
            "UnlockKey": shown_key.as_ref().map(|k| k.as_str()),
        }),
    ))
}

/// Replaces the daemon's store with `store.redb` opened on the cluster transport.
pub(super) async fn reopen_store(
    d: &Arc<Daemon>,
    cfg: &NodeConfig,
    tls: &TlsState,
    bootstrap: Bootstrap,
) -> Result<()> {
    let old = d.store.write().ok().and_then(|mut s| s.take());
    if let Some(old) = old {
        lockbox_core::close_store(old).await;
    }
    let store = open_store(
        &d.data_dir,
        cfg,
        tls,
        bootstrap,
        crate::budget::cache_size(d),
    )
    .await?;
    if let Ok(mut s) = d.store.write() {
        *s = Some(Arc::new(store));
    }
    Ok(())
}

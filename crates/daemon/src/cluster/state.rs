//! The node's cluster files under `cluster/` (node.json, key, certificate, trust) and
//! turning them into a running store and node listener.
//!
//! Owns: the on-disk layout of a node's membership. Touches: the core's store slot and
//! the peers layer's TLS state; nothing that answers a request.
use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use lockbox_cluster::pki::PeerIdentity;
use lockbox_keyring::Zeroizing;
use lockbox_replication::{Bootstrap, Replica, ReplicaConfig};
use lockbox_store::{CaRotation, ClusterRecord, NodeRole, Reader};

use crate::ApiError;
use crate::peers::{self, Tls, TlsDialer, TlsState};
use lockbox_core::{Daemon, NodeStore};

#[allow(unused_imports)]
use super::*;

pub(super) fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster")
}

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

pub(super) fn io(what: &str) -> impl FnOnce(std::io::Error) -> ApiError + '_ {
    move |e| ApiError::internal(format!("{what}: {e}"))
}

/// Saves the node's identity: key (0600), certificate, the cluster's root (`ca.crt`), what
/// it trusts and presents (`trust.json`), and `node.json`.
pub(super) fn save_files(
    data_dir: &Path,
    cfg: &NodeConfig,
    key_der: &[u8],
    cert_der: &[u8],
    trust: &Trust,
) -> Result<()> {
    let d = dir(data_dir);
    fs::create_dir_all(&d).map_err(io("cannot create the cluster directory"))?;
    write_private(&d.join("node.key"), key_der).map_err(io("cannot write the node key"))?;
    write_private(&d.join("node.crt"), cert_der)
        .map_err(io("cannot write the node certificate"))?;
    let roots = trust.roots()?;
    write_private(&d.join("ca.crt"), &roots[0]).map_err(io("cannot write the CA certificate"))?;
    let json = serde_json::to_vec_pretty(trust).map_err(|e| ApiError::internal(e.to_string()))?;
    write_private(&d.join("trust.json"), &json).map_err(io("cannot write cluster/trust.json"))?;
    save_config(data_dir, cfg)
}

pub(super) fn save_config(data_dir: &Path, cfg: &NodeConfig) -> Result<()> {
    let json = serde_json::to_vec_pretty(cfg).map_err(|e| ApiError::internal(e.to_string()))?;
    write_private(&dir(data_dir).join("node.json"), &json)
        .map_err(io("cannot write cluster/node.json"))
}

impl Trust {
    /// What a certificate issued now goes with: see [`Trust`].
    pub(super) fn of(c: &ClusterRecord, rotation: Option<&CaRotation>) -> Trust {
        match rotation {
            None => Trust::single(&c.ca_cert),
            Some(r) => Trust {
                roots: vec![b64(&c.ca_cert), b64(&r.new_cert)],
                chain: vec![b64(&r.cross_cert), b64(&c.ca_cert)],
                issuer: hex_lower(&lockbox_cluster::pki::cert_digest(&r.new_cert)),
            },
        }
    }

    /// One root, no rotation (also what a node that predates rotations has on disk).
    pub(super) fn single(ca_der: &[u8]) -> Trust {
        Trust {
            roots: vec![b64(ca_der)],
            chain: vec![b64(ca_der)],
            issuer: hex_lower(&lockbox_cluster::pki::cert_digest(ca_der)),
        }
    }

    pub(super) fn roots(&self) -> Result<Vec<Vec<u8>>> {
        let roots: Vec<Vec<u8>> = self
            .roots
            .iter()
            .map(|r| unb64(r, "a root certificate"))
            .collect::<Result<_>>()?;
        if roots.is_empty() {
            return Err(ApiError::internal("the trust list has no root"));
        }
        Ok(roots)
    }

    pub(super) fn chain(&self) -> Result<Vec<Vec<u8>>> {
        self.chain
            .iter()
            .map(|r| unb64(r, "a chain certificate"))
            .collect()
    }
}

/// Builds the TLS configurations from key, certificate and trust.
pub(super) fn tls_from(key_der: &[u8], cert_der: &[u8], trust: &Trust) -> Result<Tls, String> {
    let identity = PeerIdentity::from_cert_der(cert_der).map_err(|e| e.to_string())?;
    let roots = trust.roots().map_err(|e| e.message)?;
    let roots: Vec<&[u8]> = roots.iter().map(Vec::as_slice).collect();
    let mut chain = vec![cert_der.to_vec()];
    chain.extend(trust.chain().map_err(|e| e.message)?);
    let server = lockbox_cluster::tls::server_config_roots(&roots, chain.clone(), key_der)
        .map_err(|e| e.to_string())?;
    let client = lockbox_cluster::tls::client_config_roots(&roots, chain, key_der)
        .map_err(|e| e.to_string())?;
    Ok(Tls {
        server,
        client,
        identity,
        trust: trust.clone(),
    })
}

/// Reads `cluster/` at daemon start: `None` for a node that is in no cluster.
pub(crate) fn load(data_dir: &Path) -> Result<Option<(NodeConfig, Tls)>, String> {
    let d = dir(data_dir);
    let cfg_path = d.join("node.json");
    let raw = match fs::read(&cfg_path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", cfg_path.display())),
    };
    let cfg: NodeConfig =
        serde_json::from_slice(&raw).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
    let read = |name: &str| fs::read(d.join(name)).map_err(|e| format!("cluster/{name}: {e}"));
    let key = Zeroizing::new(read("node.key")?);
    // Written since CA rotations exist; before, `ca.crt` was all a node trusted.
    let trust = match fs::read(d.join("trust.json")) {
        Ok(raw) => serde_json::from_slice(&raw).map_err(|e| format!("cluster/trust.json: {e}"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Trust::single(&read("ca.crt")?),
        Err(e) => return Err(format!("cluster/trust.json: {e}")),
    };
    let tls = tls_from(&key, &read("node.crt")?, &trust)?;
    Ok(Some((cfg, tls)))
}

/// Raft timing. Tests shorten it with `LOCKBOX_RAFT_TIMING=heartbeat,min,max` (ms).
pub(super) fn replica_config(cfg: &NodeConfig, bootstrap: Bootstrap) -> ReplicaConfig {
    let mut rc = ReplicaConfig {
        node_id: cfg.node_id,
        advertise_addr: cfg.advertise_addr.clone(),
        cluster_name: cfg.cluster_id.clone(),
        bootstrap,
        heartbeat_interval: Duration::from_millis(100),
        election_timeout_min: Duration::from_millis(1000),
        election_timeout_max: Duration::from_millis(2000),
        ..ReplicaConfig::default()
    };
    if let Ok(t) = std::env::var("LOCKBOX_RAFT_TIMING") {
        let ms: Vec<u64> = t.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        if let [h, lo, hi] = ms[..] {
            rc.heartbeat_interval = Duration::from_millis(h);
            rc.election_timeout_min = Duration::from_millis(lo);
            rc.election_timeout_max = Duration::from_millis(hi);
        }
    }
    rc
}

/// Opens this manager's store on the cluster transport.
pub(crate) async fn open_store(
    data_dir: &Path,
    cfg: &NodeConfig,
    tls: &TlsState,
    bootstrap: Bootstrap,
    cache_size: usize,
) -> Result<NodeStore, lockbox_replication::ReplicationError> {
    let replica = Replica::open_with(
        &data_dir.join("store.redb"),
        ReplicaConfig {
            cache_size,
            ..replica_config(cfg, bootstrap)
        },
        TlsDialer(tls.clone()),
    )
    .await?;
    Ok(NodeStore {
        reader: Reader::new(replica.db()),
        replica,
    })
}

/// Starts the node listener and installs the cluster state.
pub(crate) async fn activate(d: &Arc<Daemon>, cfg: NodeConfig, tls: TlsState) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&cfg.listen_addr)
        .await
        .map_err(|e| {
            ApiError::bad_request(format!(
                "cannot listen on {} for cluster traffic: {e}",
                cfg.listen_addr
            ))
        })?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(peers::serve(
        listener,
        tls.clone(),
        node_router(d.clone()),
        stop_rx,
    ));
    let cluster = Arc::new(Cluster {
        config: RwLock::new(cfg),
        tls,
        renewing: tokio::sync::Mutex::new(()),
        stop,
    });
    let role = cluster.config().role;
    if let Ok(mut c) = d.cluster_slot().0.write()
        && let Some(old) = c.replace(cluster)
    {
        old.stop();
    }
    tokio::spawn(renewal(d.clone()));
    match role {
        NodeRole::Manager => drop(tokio::spawn(watch(d.clone()))),
        NodeRole::Worker => (d.agent_hooks().start)(d.clone()),
    }
    Ok(())
}

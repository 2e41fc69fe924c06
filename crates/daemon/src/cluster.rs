//! The cluster: bootstrap (`cluster init`), joining, membership, tokens, autolock across
//! managers, and the node API that peers reach over mutual TLS.
//!
//! How a node joins (the token's CA digest is checked before anything is sent):
//!
//! ```text
//! joiner                                   manager (leader)
//!  │ TLS, server pinned by token digest ──► /cluster/join {token, CSR, addr}
//!  │                                        check token (sealed in the store, constant time),
//!  │                                        issue the certificate, propose PutNode
//!  │ ◄── {node id, role, certificate, CA} ──┘
//!  │ writes cluster/, opens its store empty (raft Join), starts its node listener
//!  │ mutual TLS ─────────────────────────► /cluster/admit
//!  │                                        managers: add_learner (catch up) + promote;
//!  │ ◄── managers only: KEK ring, unlock ───┘ the KEK never travels before admission
//!  │ seals the ring like the first node (autolock: with the cluster's unlock key)
//! ```
//!
//! The store's node records are authoritative: a certificate proves *who* a peer is, the
//! record says what it may do (its role) and whether the certificate is still its current
//! one; `node rm` revokes a node's certificates in the replicated cluster record, so every
//! manager refuses them from then on.
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lockbox_audit::Event;
use lockbox_cluster::Role;
use lockbox_cluster::pki::{ClusterCa, NodeKey, PeerIdentity};
use lockbox_cluster::token::JoinToken;
use lockbox_keyring::{KeyMode, KeyRing, RingFile, Sealed, UnlockKey, Zeroizing};
use lockbox_replication::{Bootstrap, Replica, ReplicaConfig};
use lockbox_store::cluster::{
    CA_KEY_OBJECT, MANAGER_TOKEN_OBJECT, UNLOCK_KEY_OBJECT, WORKER_TOKEN_OBJECT,
};
use lockbox_store::{
    CaRotation, ClusterRecord, Command, Kind, NodeRecord, NodeRole, Reader, node_id_text,
    parse_node_id,
};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::http::{Peer, json_response, parse_body};
use crate::ops::{Caller, Daemon, Keys, NodeStore, now_ns, rfc3339};
use crate::peers::{self, NodePeer, Tls, TlsDialer, TlsState};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Serializes raft membership changes made by this node (as leader).
static MEMBERSHIP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The default port of the node API (raft, join, agents).
pub(crate) const DEFAULT_PORT: u16 = 4377;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a node remembers about its cluster membership (`cluster/node.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeConfig {
    pub(crate) node_id: u64,
    pub(crate) cluster_id: String,
    pub(crate) role: NodeRole,
    pub(crate) listen_addr: String,
    pub(crate) advertise_addr: String,
    /// The managers' addresses as last known: where a worker's agent and a restarted node
    /// look for the cluster.
    pub(crate) managers: Vec<String>,
}

/// A node's live cluster state.
pub(crate) struct Cluster {
    pub(crate) config: RwLock<NodeConfig>,
    pub(crate) tls: TlsState,
    /// Held while the node's certificate is being renewed (by its schedule or because the
    /// cluster's CA is rotating): one renewal at a time.
    renewing: tokio::sync::Mutex<()>,
    /// Stops the node listener.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Cluster {
    pub(crate) fn config(&self) -> NodeConfig {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster")
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

fn io(what: &str) -> impl FnOnce(std::io::Error) -> ApiError + '_ {
    move |e| ApiError::internal(format!("{what}: {e}"))
}

/// Saves the node's identity: key (0600), certificate, the cluster's root (`ca.crt`), what
/// it trusts and presents (`trust.json`), and `node.json`.
fn save_files(
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

fn save_config(data_dir: &Path, cfg: &NodeConfig) -> Result<()> {
    let json = serde_json::to_vec_pretty(cfg).map_err(|e| ApiError::internal(e.to_string()))?;
    write_private(&dir(data_dir).join("node.json"), &json)
        .map_err(io("cannot write cluster/node.json"))
}

/// The roots a node accepts peers under, the certificates it presents after its own, and
/// which root issued its own. Outside a CA rotation: the cluster's root, and the same root
/// after the leaf. During one: both roots, and `[cross-signed new root, old root]` after a
/// leaf from the new root, so that a peer trusting only the old root still builds a path
/// (leaf → cross-signed → old), and a node joining with a token (which pins the old root's
/// digest) finds the pinned root in the chain. Certificates as base64 DER, as on the wire
/// and in `cluster/trust.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Trust {
    roots: Vec<String>,
    chain: Vec<String>,
    /// SHA-256 (hex) of the root that issued the node's certificate.
    issuer: String,
}

impl Trust {
    /// What a certificate issued now goes with: see [`Trust`].
    fn of(c: &ClusterRecord, rotation: Option<&CaRotation>) -> Trust {
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
    fn single(ca_der: &[u8]) -> Trust {
        Trust {
            roots: vec![b64(ca_der)],
            chain: vec![b64(ca_der)],
            issuer: hex_lower(&lockbox_cluster::pki::cert_digest(ca_der)),
        }
    }

    fn roots(&self) -> Result<Vec<Vec<u8>>> {
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

    fn chain(&self) -> Result<Vec<Vec<u8>>> {
        self.chain
            .iter()
            .map(|r| unb64(r, "a chain certificate"))
            .collect()
    }

    /// A short name for this trust: equal tags, equal trust. Workers get the managers'
    /// current one with every heartbeat and renew when theirs differs.
    pub(crate) fn tag(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex_lower(&lockbox_cluster::pki::cert_digest(&json))
    }
}

/// Builds the TLS configurations from key, certificate and trust.
fn tls_from(key_der: &[u8], cert_der: &[u8], trust: &Trust) -> Result<Tls, String> {
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
fn replica_config(cfg: &NodeConfig, bootstrap: Bootstrap) -> ReplicaConfig {
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
) -> Result<NodeStore, lockbox_replication::ReplicationError> {
    let replica = Replica::open_with(
        &data_dir.join("store.redb"),
        replica_config(cfg, bootstrap),
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
    if let Ok(mut c) = d.cluster.write()
        && let Some(old) = c.replace(cluster)
    {
        old.stop();
    }
    tokio::spawn(renewal(d.clone()));
    match role {
        NodeRole::Manager => drop(tokio::spawn(watch(d.clone()))),
        NodeRole::Worker => crate::agent::start(d.clone()),
    }
    Ok(())
}

impl Daemon {
    pub(crate) fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster.read().ok().and_then(|c| c.clone())
    }

    fn cluster_or_err(&self) -> Result<Arc<Cluster>> {
        self.cluster()
            .ok_or_else(|| ApiError::new(503, NOT_IN_CLUSTER))
    }

    fn cluster_record(&self) -> Result<ClusterRecord> {
        self.reader()?
            .cluster()?
            .ok_or_else(|| ApiError::new(503, NOT_IN_CLUSTER))
    }

    /// The cluster record with the CA rotation in progress, if any.
    fn cluster_and_rotation(&self) -> Result<(ClusterRecord, Option<CaRotation>)> {
        self.reader()?
            .cluster_and_rotation()?
            .ok_or_else(|| ApiError::new(503, NOT_IN_CLUSTER))
    }

    /// The CA that issues node certificates now: the new root while a rotation is in
    /// progress (its key is sealed for the CA version it will have), else the cluster's.
    fn issuing_ca(&self, c: &ClusterRecord, rotation: Option<&CaRotation>) -> Result<ClusterCa> {
        let (cert, key) = match rotation {
            Some(r) => (
                &r.new_cert,
                self.open_cluster_secret(&r.new_key, CA_KEY_OBJECT, c.ca_version + 1)?,
            ),
            None => (
                &c.ca_cert,
                self.open_cluster_secret(&c.ca_key, CA_KEY_OBJECT, c.ca_version)?,
            ),
        };
        ClusterCa::from_parts(cert.clone(), key).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Records a node whose certificate [`Daemon::issuing_ca`] just issued from `c` and
    /// `rotation`; during a rotation the same entry counts it as rotated. Refused if the
    /// cluster's CA changed meanwhile (this node's tables may lag the leader's).
    async fn put_issued(
        &self,
        node: NodeRecord,
        c: &ClusterRecord,
        rotation: Option<&CaRotation>,
    ) -> Result<()> {
        self.propose(Command::PutIssuedNode {
            node,
            ca_version: c.ca_version,
            rotation_started_ns: rotation.map(|r| r.started_ns),
        })
        .await?;
        Ok(())
    }

    fn open_cluster_secret(
        &self,
        sealed: &Sealed,
        object: &str,
        version: u64,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let keys = self
            .keys
            .read()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        match &*keys {
            Keys::Unlocked { ring, .. } => {
                Ok(sealed.open(ring.get(sealed.kek_id)?, object, version)?)
            }
            Keys::Locked { .. } => Err(ApiError::locked()),
        }
    }

    fn seal_cluster_secret(&self, data: &[u8], object: &str, version: u64) -> Result<Sealed> {
        let keys = self
            .keys
            .read()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        match &*keys {
            Keys::Unlocked { ring, .. } => Ok(Sealed::seal(ring.current(), object, version, data)?),
            Keys::Locked { .. } => Err(ApiError::locked()),
        }
    }

    /// The leader's address when this manager is not the leader (for a 421 redirect).
    fn require_leader(&self) -> Result<Arc<NodeStore>> {
        let store = self.store()?;
        match store.replica.leader() {
            Some((id, _)) if id == store.replica.node_id() => Ok(store),
            Some((_, addr)) => Err(ApiError::new(
                421,
                format!("not the leader; the leader is at {addr}"),
            )),
            None => Err(ApiError::new(
                503,
                "the cluster has no leader right now (no quorum of managers?); try again",
            )),
        }
    }

    fn join_token(&self, c: &ClusterRecord, role: NodeRole) -> Result<JoinToken> {
        let (sealed, object) = match role {
            NodeRole::Worker => (&c.worker_token, WORKER_TOKEN_OBJECT),
            NodeRole::Manager => (&c.manager_token, MANAGER_TOKEN_OBJECT),
        };
        let secret = self.open_cluster_secret(sealed, object, c.token_version)?;
        let secret: [u8; 16] = secret[..]
            .try_into()
            .map_err(|_| ApiError::internal("a sealed join token has the wrong size"))?;
        Ok(JoinToken {
            digest: lockbox_cluster::pki::cert_digest(&c.ca_cert),
            secret,
        })
    }
}

fn system_time_ns(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn random_secret16() -> Result<Zeroizing<[u8; 16]>> {
    Ok(lockbox_keyring::random_bytes::<16>()?)
}

/// A node's first record, for the certificate just issued to it.
fn new_node(
    id: u64,
    role: NodeRole,
    addr: &str,
    hostname: &str,
    cert: &PeerIdentity,
    t: i64,
) -> NodeRecord {
    NodeRecord {
        id,
        role,
        addr: addr.to_string(),
        hostname: hostname.to_string(),
        labels: BTreeMap::new(),
        availability: "active".into(),
        cert_fingerprint: cert.fingerprint.to_vec(),
        prev_fingerprint: Vec::new(),
        cert_not_after_ns: system_time_ns(cert.not_after),
        created_ns: t,
        updated_ns: t,
        index: 0,
    }
}

fn to_role(r: NodeRole) -> Role {
    match r {
        NodeRole::Manager => Role::Manager,
        NodeRole::Worker => Role::Worker,
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn with_port(addr: &str) -> String {
    if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

// ---------------------------------------------------------------------------------------
// cluster init

#[derive(Debug, Default, Deserialize)]
struct InitRequest {
    #[serde(rename = "AdvertiseAddr", default)]
    advertise_addr: Option<String>,
    #[serde(rename = "ListenAddr", default)]
    listen_addr: Option<String>,
    #[serde(rename = "Autolock", default)]
    autolock: bool,
    #[serde(rename = "CertExpirySeconds", default)]
    cert_expiry_s: Option<u64>,
}

fn addrs(listen: Option<String>, advertise: Option<String>) -> Result<(String, String)> {
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

const NOT_IN_CLUSTER: &str = "This node is not part of a cluster. Use \"lockbox cluster init\" or \"lockbox cluster join\" to connect this node to a cluster and try again.";

const ALREADY_IN: &str = "This node is already part of a cluster. Use \"lockbox cluster leave\" to leave this cluster and join another one.";

async fn init(d: Arc<Daemon>, who: Peer, body: Bytes) -> Result<Response> {
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
async fn reopen_store(
    d: &Arc<Daemon>,
    cfg: &NodeConfig,
    tls: &TlsState,
    bootstrap: Bootstrap,
) -> Result<()> {
    let old = d.store.write().ok().and_then(|mut s| s.take());
    if let Some(old) = old {
        crate::serve::close_store(old).await;
    }
    let store = open_store(&d.data_dir, cfg, tls, bootstrap).await?;
    if let Ok(mut s) = d.store.write() {
        *s = Some(Arc::new(store));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// join: the joining node's side (local API) and the manager's side (node API)

#[derive(Default, Deserialize)]
struct LocalJoinRequest {
    #[serde(rename = "Token", default)]
    token: String,
    #[serde(rename = "RemoteAddr", default)]
    remote_addr: String,
    #[serde(rename = "ListenAddr", default)]
    listen_addr: Option<String>,
    #[serde(rename = "AdvertiseAddr", default)]
    advertise_addr: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct JoinRequest {
    token: String,
    csr: String,
    addr: String,
    hostname: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct JoinResponse {
    node_id: u64,
    role: NodeRole,
    cluster_id: String,
    cert: String,
    ca: String,
    /// What the node trusts and presents (see [`Trust`]); `ca` alone from older managers.
    #[serde(default)]
    trust: Option<Trust>,
    managers: Vec<String>,
}

/// No `Debug`: it carries the KEK ring and the unlock key (like the two join requests, which
/// carry a token), so no log line or panic message can print it by accident.
#[derive(Default, Serialize, Deserialize)]
struct AdmitResponse {
    /// Managers only: the KEK ring (plaintext key material; only ever inside mutual TLS).
    ring: Option<String>,
    /// Managers of an autolocked cluster: the unlock key that seals the ring on disk.
    unlock_key: Option<String>,
    managers: Vec<String>,
}

impl Drop for AdmitResponse {
    /// The base64 ring and the unlock key are key material: wiped when the answer goes.
    fn drop(&mut self) {
        drop(Zeroizing::new(self.ring.take().unwrap_or_default()));
        drop(Zeroizing::new(self.unlock_key.take().unwrap_or_default()));
    }
}

fn b64(b: &[u8]) -> String {
    STANDARD.encode(b)
}

fn unb64(s: &str, what: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(s)
        .map_err(|_| ApiError::bad_request(format!("{what} is not base64")))
}

/// Calls the leader: follows one 421 redirect from a follower.
async fn call_leader(
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

fn remote_error(a: &peers::Answer) -> ApiError {
    ApiError::new(a.status, a.message())
}

async fn local_join(d: Arc<Daemon>, who: Peer, body: Bytes) -> Result<Response> {
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
        crate::serve::close_store(old).await;
    }
    let _ = fs::remove_file(d.data_dir.join("store.redb"));
    if joined.role == NodeRole::Manager {
        let store = open_store(&d.data_dir, &cfg, &tls, Bootstrap::Join).await?;
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
fn install_keys(d: &Daemon, body: &[u8]) -> Result<AdmitResponse> {
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

fn set_managers(d: &Daemon, managers: Vec<String>) {
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

fn manager_addrs(reader: &Reader) -> Vec<String> {
    reader
        .nodes()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.role == NodeRole::Manager)
        .map(|n| n.addr)
        .collect()
}

/// `/cluster/join` on a manager: a node without a certificate presents a token and a CSR.
async fn join_request(
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

/// Who a node-API caller is, checked against the store.
pub(crate) struct Authorized {
    pub(crate) node: NodeRecord,
}

/// Checks a peer's certificate against the cluster's records: same cluster, not revoked,
/// the node's current certificate, and (if `manager`) a manager. Refusals of a known
/// identity are audited.
pub(crate) fn authorize(d: &Daemon, peer: &NodePeer, manager: bool) -> Result<Authorized> {
    let Some(id) = &peer.identity else {
        return Err(ApiError::new(
            401,
            "a certificate of this cluster is required (this endpoint needs mutual TLS)",
        ));
    };
    let refuse = |why: &str| {
        let _ = d.audit_event(
            Event::new(
                "node-refused",
                &format!("node:{}", node_id_text(id.node_id)),
            )
            .detail("reason", why)
            .detail("peer", &peer.addr),
        );
        ApiError::new(
            403,
            format!("node {} refused: {why}", node_id_text(id.node_id)),
        )
    };
    let c = d.cluster_record()?;
    if id.cluster_id != c.cluster_id {
        return Err(refuse("its certificate is for another cluster"));
    }
    if c.revoked.iter().any(|r| r[..] == id.fingerprint[..]) {
        return Err(refuse("its certificate was revoked (the node was removed)"));
    }
    let Some(node) = d.reader()?.node(id.node_id)? else {
        return Err(refuse("it is not a member of this cluster"));
    };
    if node.cert_fingerprint[..] != id.fingerprint[..]
        && node.prev_fingerprint[..] != id.fingerprint[..]
    {
        return Err(refuse("its certificate is not the node's current one"));
    }
    if manager && node.role != NodeRole::Manager {
        return Err(refuse("it is not a manager"));
    }
    Ok(Authorized { node })
}

/// Raft traffic: any manager certificate of this cluster that is not revoked. (A joining
/// manager's store is empty until the leader catches it up, so this cannot require the
/// leader's node record to be known yet.)
fn authorize_raft(d: &Daemon, peer: &NodePeer) -> Result<()> {
    let id = peer
        .identity
        .as_ref()
        .ok_or_else(|| ApiError::new(401, "raft traffic needs a node certificate"))?;
    let Some(cluster) = d.cluster() else {
        return Err(ApiError::new(503, "not in a cluster"));
    };
    // The store's role wins over the certificate's (a promoted worker keeps its worker
    // certificate until it renews).
    let record_role = d
        .reader()
        .ok()
        .and_then(|r| r.node(id.node_id).ok().flatten())
        .map(|n| n.role);
    let manager = match record_role {
        Some(role) => role == NodeRole::Manager,
        None => id.role == Role::Manager,
    };
    if id.cluster_id != cluster.config().cluster_id || !manager {
        return Err(ApiError::new(
            403,
            "raft traffic from a node that is not a manager of this cluster",
        ));
    }
    if let Ok(Some(c)) = d.reader().and_then(|r| Ok(r.cluster()?))
        && c.revoked.iter().any(|r| r[..] == id.fingerprint[..])
    {
        return Err(ApiError::new(403, "certificate revoked"));
    }
    Ok(())
}

async fn raft_rpc(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<NodePeer>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    let now = std::time::Instant::now();
    let cached = peer
        .raft_ok_until
        .lock()
        .ok()
        .and_then(|t| *t)
        .is_some_and(|until| now < until);
    if !cached {
        if let Err(e) = authorize_raft(&d, &peer) {
            return e.into_response();
        }
        if let Ok(mut t) = peer.raft_ok_until.lock() {
            *t = Some(now + peers::RAFT_AUTH_TTL);
        }
    }
    let handler = match d.store() {
        Ok(s) => s.replica.rpc_handler(),
        Err(e) => return e.into_response(),
    };
    match lockbox_replication::rpc::serve_rpc(&handler, uri.path(), body).await {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.to_string(),
        )
            .into_response(),
    }
}

/// `/cluster/admit`: a node that got its certificate asks to be let in. Managers are added to
/// raft (caught up as a learner, then made a voter) and only then get the keys.
async fn admit(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<NodePeer>,
) -> Result<Response> {
    let store = d.require_leader()?;
    let who = authorize(&d, &peer, false)?;
    let node = who.node;
    let mut resp = AdmitResponse::default();
    resp.managers = manager_addrs(&store.reader);
    if node.role == NodeRole::Manager {
        // One membership change at a time: raft refuses a change while another is in
        // flight, and two nodes may ask to be admitted at once.
        let _serial = MEMBERSHIP.lock().await;
        let members = store.replica.members();
        if !members.iter().any(|m| m.id == node.id) {
            store.replica.add_learner(node.id, &node.addr, true).await?;
        }
        if !store
            .replica
            .members()
            .iter()
            .any(|m| m.id == node.id && m.voter)
        {
            store.replica.promote(node.id).await?;
        }
        let keys = d
            .keys
            .read()
            .map_err(|_| ApiError::internal("key state poisoned"))?;
        match &*keys {
            Keys::Unlocked { ring, unlock, .. } => {
                resp.ring = Some(b64(&ring.export()?));
                resp.unlock_key = unlock.as_ref().map(|k| k.to_text().to_string());
            }
            Keys::Locked { .. } => return Err(ApiError::locked()),
        }
        drop(keys);
        d.audit_event(
            Event::new("kek-handout", &format!("node:{}", node_id_text(node.id)))
                .detail("peer", &peer.addr),
        )?;
    }
    d.audit_event(
        Event::new("node-admit", &format!("node:{}", node_id_text(node.id)))
            .detail("role", node.role.as_str()),
    )?;
    Ok(json_response(StatusCode::OK, &resp))
}

// ---------------------------------------------------------------------------------------
// membership changes (leader only; other managers forward them)

#[derive(Debug, Serialize, Deserialize)]
enum MembershipOp {
    Promote,
    Demote,
    Remove {
        force: bool,
    },
    Update {
        labels_add: BTreeMap<String, String>,
        labels_rm: Vec<String>,
        availability: Option<String>,
    },
}

async fn membership(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<NodePeer>,
    body: Bytes,
) -> Result<Response> {
    let who = authorize(&d, &peer, true)?;
    let (id, op): (u64, MembershipOp) = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed membership request: {e}")))?;
    apply_membership(&d, id, op, &format!("node:{}", node_id_text(who.node.id))).await?;
    Ok(StatusCode::OK.into_response())
}

async fn apply_membership(d: &Arc<Daemon>, id: u64, op: MembershipOp, actor: &str) -> Result<()> {
    let store = match d.require_leader() {
        Ok(s) => s,
        Err(e) if e.status == 421 => {
            // Forward to the leader over mutual TLS.
            let c = d.cluster_or_err()?;
            let leader = e
                .message
                .rsplit("the leader is at ")
                .next()
                .unwrap_or("")
                .to_string();
            let body =
                serde_json::to_vec(&(id, op)).map_err(|e| ApiError::internal(e.to_string()))?;
            let (_, a) = call_leader(
                c.tls.get().client.clone(),
                &leader,
                "/cluster/membership",
                body,
            )
            .await?;
            return if a.status == 200 {
                Ok(())
            } else {
                Err(remote_error(&a))
            };
        }
        Err(e) => return Err(e),
    };
    let mut node = store
        .reader
        .node(id)?
        .ok_or_else(|| ApiError::new(404, format!("node {} not found", node_id_text(id))))?;
    let nodes = store.reader.nodes()?;
    let managers = nodes.iter().filter(|n| n.role == NodeRole::Manager).count();
    let action;
    match op {
        MembershipOp::Promote => {
            action = "node-promote";
            if node.role == NodeRole::Manager {
                return Ok(());
            }
            node.role = NodeRole::Manager;
            node.updated_ns = now_ns();
            // The node notices (its agent watches its own record), opens a store and asks
            // to be admitted: raft membership follows then.
            d.propose(Command::PutNode { node: node.clone() }).await?;
        }
        MembershipOp::Demote => {
            action = "node-demote";
            if node.role == NodeRole::Worker {
                return Ok(());
            }
            if managers <= 1 {
                return Err(ApiError::bad_request(format!(
                    "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the cluster ({})",
                    node_id_text(id)
                )));
            }
            if id == store.replica.node_id() {
                return Err(ApiError::bad_request(
                    "the leader cannot demote itself; run the command on another manager, or stop this one so another takes over",
                ));
            }
            // The record first, while the node still receives the log: its watcher sees the
            // new role and drops its store; then it leaves raft.
            node.role = NodeRole::Worker;
            node.updated_ns = now_ns();
            let (index, response) = store
                .replica
                .propose_forwarded_indexed(Command::PutNode { node: node.clone() })
                .await?;
            response.into_result()?;
            // Give the node a moment to *apply* it, not only receive it: a follower learns
            // that an entry is committed from the next append it gets, so wait until it holds
            // an entry proposed after this one. (A node out of reach learns its new role from
            // its agent later, once it reconnects as a worker.)
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let reached = |at: u64| store.replica.matched_index(id).is_some_and(|m| m >= at);
            while !reached(index) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if let Ok((after, _)) = store.replica.propose_forwarded_indexed(Command::Noop).await {
                while !reached(after) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let _serial = MEMBERSHIP.lock().await;
            store.replica.remove_node(id).await?;
        }
        MembershipOp::Remove { force } => {
            action = "node-rm";
            if node.role == NodeRole::Manager && !force {
                return Err(ApiError::bad_request(format!(
                    "rpc error: code = FailedPrecondition desc = node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                    node_id_text(id)
                )));
            }
            if id == store.replica.node_id() {
                return Err(ApiError::bad_request(
                    "a manager cannot remove itself; use 'lockbox cluster leave --force' on it, or remove it from another manager",
                ));
            }
            if node.role == NodeRole::Manager && managers <= 1 {
                return Err(ApiError::bad_request("cannot remove the last manager"));
            }
            if store.replica.members().iter().any(|m| m.id == id) {
                let _serial = MEMBERSHIP.lock().await;
                store.replica.remove_node(id).await?;
            }
            d.propose(Command::RemoveNode {
                id,
                time_ns: now_ns(),
            })
            .await?;
        }
        MembershipOp::Update {
            labels_add,
            labels_rm,
            availability,
        } => {
            action = "node-update";
            for k in &labels_rm {
                if node.labels.remove(k).is_none() && !labels_add.contains_key(k) {
                    return Err(ApiError::bad_request(format!(
                        "key {k} doesn't exist in node's labels"
                    )));
                }
            }
            node.labels.extend(labels_add);
            if let Some(a) = availability {
                if !matches!(a.as_str(), "active" | "pause" | "drain") {
                    return Err(ApiError::bad_request(format!(
                        "invalid availability {a:?}: active, pause or drain"
                    )));
                }
                node.availability = a;
            }
            node.updated_ns = now_ns();
            d.propose(Command::PutNode { node: node.clone() }).await?;
        }
    }
    d.audit_event(Event::new(action, actor).detail("node", &node_id_text(id)))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// local API: tokens, inspect, nodes, leave, unlock key

#[derive(Debug, Default, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    rotate: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | "True" | "yes"))
}

async fn join_token(d: Arc<Daemon>, who: Peer, role: String, q: TokenQuery) -> Result<Response> {
    let role = match role.as_str() {
        "worker" => NodeRole::Worker,
        "manager" => NodeRole::Manager,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown role {other}: worker or manager"
            )));
        }
    };
    let cluster = d.cluster_or_err()?;
    let mut c = d.cluster_record()?;
    if truthy(&q.rotate) {
        let expected = c.updated_ns;
        let version = c.token_version + 1;
        // Both secrets are re-sealed under the new version; only `role`'s changes.
        let (w, m) = (
            d.open_cluster_secret(&c.worker_token, WORKER_TOKEN_OBJECT, c.token_version)?,
            d.open_cluster_secret(&c.manager_token, MANAGER_TOKEN_OBJECT, c.token_version)?,
        );
        let fresh = random_secret16()?;
        let (w, m): (&[u8], &[u8]) = match role {
            NodeRole::Worker => (&fresh[..], &m),
            NodeRole::Manager => (&w, &fresh[..]),
        };
        c.worker_token = d.seal_cluster_secret(w, WORKER_TOKEN_OBJECT, version)?;
        c.manager_token = d.seal_cluster_secret(m, MANAGER_TOKEN_OBJECT, version)?;
        c.token_version = version;
        c.updated_ns = now_ns();
        d.propose(Command::UpdateCluster {
            cluster: c.clone(),
            expected_updated_ns: expected,
        })
        .await?;
        d.audit_event(
            Event::new("join-token-rotate", &Caller::uid(who.uid).actor)
                .detail("role", role.as_str()),
        )?;
    }
    let token = d.join_token(&c, role)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"Token": token.to_string(), "Addr": cluster.config().advertise_addr}),
    ))
}

fn status_of(d: &Daemon, n: &NodeRecord, store: &NodeStore) -> (&'static str, &'static str) {
    let st = store.replica.status();
    match n.role {
        NodeRole::Manager => {
            if st.leader == Some(n.id) {
                ("ready", "Leader")
            } else if st.voters.contains(&n.id) {
                let seen = d.peer_seen(n.id);
                if n.id == st.node_id || seen {
                    ("ready", "Reachable")
                } else {
                    ("down", "Unreachable")
                }
            } else {
                ("unknown", "")
            }
        }
        NodeRole::Worker => {
            if crate::agent::agent_connected(d, n.id) {
                ("ready", "")
            } else {
                ("down", "")
            }
        }
    }
}

fn node_json(d: &Daemon, n: &NodeRecord, store: &NodeStore) -> serde_json::Value {
    let (status, manager_status) = status_of(d, n, store);
    serde_json::json!({
        "ID": node_id_text(n.id),
        "Hostname": n.hostname,
        "Role": n.role.as_str(),
        "Addr": n.addr,
        "Status": status,
        "Availability": n.availability,
        "ManagerStatus": manager_status,
        "Labels": n.labels,
        "CertNotAfter": rfc3339(n.cert_not_after_ns),
        "CreatedAt": rfc3339(n.created_ns),
        "UpdatedAt": rfc3339(n.updated_ns),
        "Self": n.id == store.replica.node_id(),
        "Version": {"Index": n.index},
    })
}

/// `docker node ls` filters: id, name (hostname), role, label / node.label (`K` or `K=V`).
fn node_filters(json: Option<&str>) -> Result<lockbox_store::Filters> {
    let f = lockbox_store::validate::parse_filter_map(json)?;
    for k in f.keys() {
        if !matches!(k.as_str(), "id" | "name" | "role" | "label" | "node.label") {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    Ok(f)
}

fn node_matches(n: &NodeRecord, f: &lockbox_store::Filters) -> bool {
    let label_ok = |v: &String| match v.split_once('=') {
        Some((k, want)) => n.labels.get(k).is_some_and(|have| have == want),
        None => n.labels.contains_key(v.as_str()),
    };
    f.iter().all(|(k, vals)| match k.as_str() {
        "id" => vals
            .iter()
            .any(|v| node_id_text(n.id).starts_with(v.as_str())),
        "name" => vals.iter().any(|v| n.hostname.starts_with(v.as_str())),
        "role" => vals.iter().any(|v| v == n.role.as_str()),
        _ => vals.iter().all(label_ok),
    })
}

fn resolve_node(reader: &Reader, input: &str) -> Result<NodeRecord> {
    let nodes = reader.nodes()?;
    if let Some(id) = parse_node_id(input)
        && let Some(n) = nodes.iter().find(|n| n.id == id)
    {
        return Ok(n.clone());
    }
    let hits: Vec<_> = nodes
        .iter()
        .filter(|n| node_id_text(n.id).starts_with(input) || n.hostname == input)
        .collect();
    match hits.len() {
        1 => Ok(hits[0].clone()),
        0 => Err(ApiError::new(404, format!("node {input} not found"))),
        n => Err(ApiError::new(
            400,
            format!("node {input} is ambiguous ({n} matches found)"),
        )),
    }
}

#[derive(Debug, Default, Deserialize)]
struct NodeUpdate {
    #[serde(rename = "LabelAdd", default)]
    label_add: BTreeMap<String, String>,
    #[serde(rename = "LabelRm", default)]
    label_rm: Vec<String>,
    #[serde(rename = "Availability", default)]
    availability: Option<String>,
    #[serde(rename = "Role", default)]
    role: Option<String>,
}

async fn node_update(d: Arc<Daemon>, who: Peer, input: String, body: Bytes) -> Result<Response> {
    d.cluster_or_err()?;
    let u: NodeUpdate = parse_body(&body)?;
    let actor = Caller::uid(who.uid).actor;
    let n = resolve_node(&d.reader()?, &input)?;
    match u.role.as_deref() {
        None => {}
        Some("manager") => apply_membership(&d, n.id, MembershipOp::Promote, &actor).await?,
        Some("worker") => apply_membership(&d, n.id, MembershipOp::Demote, &actor).await?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid role {other:?}: manager or worker"
            )));
        }
    }
    if !u.label_add.is_empty() || !u.label_rm.is_empty() || u.availability.is_some() {
        apply_membership(
            &d,
            n.id,
            MembershipOp::Update {
                labels_add: u.label_add,
                labels_rm: u.label_rm,
                availability: u.availability,
            },
            &actor,
        )
        .await?;
    }
    Ok(StatusCode::OK.into_response())
}

#[derive(Debug, Default, Deserialize)]
struct ForceQuery {
    #[serde(default)]
    force: Option<String>,
}

async fn node_rm(d: Arc<Daemon>, who: Peer, input: String, q: ForceQuery) -> Result<Response> {
    d.cluster_or_err()?;
    let n = resolve_node(&d.reader()?, &input)?;
    apply_membership(
        &d,
        n.id,
        MembershipOp::Remove {
            force: truthy(&q.force),
        },
        &Caller::uid(who.uid).actor,
    )
    .await?;
    Ok(StatusCode::OK.into_response())
}

async fn cluster_inspect(d: Arc<Daemon>) -> Result<Response> {
    d.cluster_or_err()?;
    d.check_unlocked()?;
    let store = d.store()?;
    let (c, rotation) = d.cluster_and_rotation()?;
    let nodes = store.reader.nodes()?;
    let leader = store.replica.leader();
    let leader_id = leader.as_ref().map(|(id, _)| *id);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "ID": c.cluster_id,
            "CreatedAt": rfc3339(c.created_ns),
            "UpdatedAt": rfc3339(c.updated_ns),
            "CADigest": sha256_text(&c.ca_cert),
            "RootRotationInProgress": rotation.is_some(),
            "Leader": leader.map(|(id, addr)| serde_json::json!({"ID": node_id_text(id), "Addr": addr})),
            "Managers": nodes.iter().filter(|n| n.role == NodeRole::Manager).count(),
            "Workers": nodes.iter().filter(|n| n.role == NodeRole::Worker).count(),
            "Autolock": c.unlock_key.is_some(),
            "CertExpirySeconds": c.cert_validity_s,
            "RaftTerm": store.replica.status().term,
            "Self": {"ID": node_id_text(store.replica.node_id()), "IsLeader": leader_id == Some(store.replica.node_id())},
        }),
    ))
}

/// `GET /v1/cluster/ca`: the cluster's root CA certificate (PEM) and the rotation in
/// progress, with which nodes it still waits for.
async fn ca_inspect(d: Arc<Daemon>) -> Result<Response> {
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
async fn ca_rotate(d: Arc<Daemon>, who: Peer) -> Result<Response> {
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
fn sha256_text(der: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex_lower(&lockbox_cluster::pki::cert_digest(der))
    )
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Debug, Default, Deserialize)]
struct UnlockKeyQuery {
    #[serde(default)]
    rotate: Option<String>,
    #[serde(default)]
    split: Option<String>,
}

fn parse_split(s: &str) -> Result<(u8, u8)> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid --split {s:?}: use K/N with 2 <= K <= N <= 255"
        ))
    };
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (u8, u8) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k < 2 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// `lockbox cluster unlock-key [--rotate] [--split K/N]`: a rotation reaches every manager
/// through the store (sealed under the KEK); each re-seals its own ring file with it.
async fn cluster_unlock_key(d: Arc<Daemon>, who: Peer, q: UnlockKeyQuery) -> Result<Response> {
    let caller = Caller::uid(who.uid);
    let split = q.split.as_deref().map(parse_split).transpose()?;
    let key = if truthy(&q.rotate) {
        let text = d.unlock_key(true, &caller)?;
        if d.cluster().is_some() {
            let mut c = d.cluster_record()?;
            let expected = c.updated_ns;
            let raw = d
                .unlock_key_bytes()?
                .ok_or_else(|| ApiError::internal("no unlock key after rotation"))?;
            c.unlock_version += 1;
            c.unlock_key =
                Some(d.seal_cluster_secret(&raw[..], UNLOCK_KEY_OBJECT, c.unlock_version)?);
            c.updated_ns = now_ns();
            d.propose(Command::UpdateCluster {
                cluster: c,
                expected_updated_ns: expected,
            })
            .await?;
        }
        text
    } else {
        d.unlock_key(false, &caller)?
    };
    let shares = match split {
        Some((k, n)) => {
            let parsed = UnlockKey::parse(&key)?;
            let shares = lockbox_keyring::shamir::split(parsed.raw(), k, n)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            d.audit_event(
                Event::new("unlock-key-split", &caller.actor)
                    .detail("threshold", &k.to_string())
                    .detail("shares", &n.to_string()),
            )?;
            Some(
                shares
                    .iter()
                    .map(|s| s.to_text().to_string())
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "UnlockKey": if shares.is_some() { None } else { Some(key.as_str()) },
            "Shares": shares,
        }),
    ))
}

#[derive(Debug, Default, Deserialize)]
struct LeaveQuery {
    #[serde(default)]
    force: Option<String>,
}

/// `lockbox cluster leave`: the node drops its cluster identity, store and keys and starts
/// over as a fresh single node.
async fn leave(d: Arc<Daemon>, who: Peer, q: LeaveQuery) -> Result<Response> {
    let cluster = d.cluster_or_err()?;
    let cfg = cluster.config();
    if cfg.role == NodeRole::Manager && !truthy(&q.force) {
        return Err(ApiError::bad_request(
            "You are attempting to leave the cluster on a node that is participating as a manager. Removing this node leaves the remaining managers with fewer members of the raft quorum. Demote it first ('lockbox node demote') or use --force to ignore this message.",
        ));
    }
    cluster.stop();
    crate::agent::stop(&d);
    if let Ok(mut c) = d.cluster.write() {
        *c = None;
    }
    let old = d.store.write().ok().and_then(|mut s| s.take());
    if let Some(old) = old {
        crate::serve::close_store(old).await;
    }
    let _ = fs::remove_file(d.data_dir.join("store.redb"));
    let _ = fs::remove_dir_all(dir(&d.data_dir));
    // A fresh key ring: the cluster's KEK stays with the cluster.
    let ring = KeyRing::generate()?;
    RingFile::write(&d.ring_path, &ring, None)?;
    if let Ok(mut keys) = d.keys.write() {
        *keys = Keys::Unlocked {
            ring,
            mode: KeyMode::File,
            unlock: None,
        };
    }
    let replica = Replica::open(&d.data_dir.join("store.redb"), ReplicaConfig::default()).await?;
    if let Ok(mut s) = d.store.write() {
        *s = Some(Arc::new(NodeStore {
            reader: Reader::new(replica.db()),
            replica,
        }));
    }
    d.audit_event(
        Event::new("cluster-leave", &Caller::uid(who.uid).actor)
            .detail("cluster_id", &cfg.cluster_id)
            .detail("node", &node_id_text(cfg.node_id)),
    )?;
    Ok(StatusCode::OK.into_response())
}

/// Routes under `/v1/cluster` and `/v1/nodes` (local socket).
pub(crate) fn local_routes() -> Router<Arc<Daemon>> {
    type App = State<Arc<Daemon>>;
    type Who = ConnectInfo<Peer>;
    Router::new()
        .route(
            "/cluster",
            get(|State(d): App| async move { cluster_inspect(d).await }),
        )
        .route(
            "/cluster/init",
            post(|State(d): App, ConnectInfo(w): Who, b: Bytes| async move { init(d, w, b).await }),
        )
        .route(
            "/cluster/join",
            post(|State(d): App, ConnectInfo(w): Who, b: Bytes| async move { local_join(d, w, b).await }),
        )
        .route(
            "/cluster/leave",
            post(|State(d): App, ConnectInfo(w): Who, Query(q): Query<LeaveQuery>| async move { leave(d, w, q).await }),
        )
        .route(
            "/cluster/ca",
            get(|State(d): App| async move { ca_inspect(d).await }),
        )
        .route(
            "/cluster/ca/rotate",
            post(|State(d): App, ConnectInfo(w): Who| async move { ca_rotate(d, w).await }),
        )
        .route(
            "/cluster/join-token/{role}",
            get(|State(d): App, ConnectInfo(w): Who, UrlPath(role): UrlPath<String>, Query(q): Query<TokenQuery>| async move {
                join_token(d, w, role, q).await
            }),
        )
        .route(
            "/cluster/unlock-key",
            post(|State(d): App, ConnectInfo(w): Who, Query(q): Query<UnlockKeyQuery>| async move {
                cluster_unlock_key(d, w, q).await
            }),
        )
        .route(
            "/nodes",
            get(|State(d): App, Query(q): Query<BTreeMap<String, String>>| async move {
                d.cluster_or_err()?;
                d.check_unlocked()?;
                let store = d.store()?;
                let filters = node_filters(q.get("filters").map(String::as_str))?;
                let list: Vec<_> = store
                    .reader
                    .nodes()?
                    .iter()
                    .filter(|n| node_matches(n, &filters))
                    .map(|n| node_json(&d, n, &store))
                    .collect();
                Ok::<_, ApiError>(json_response(StatusCode::OK, &list))
            }),
        )
        .route(
            "/nodes/{id}",
            get(|State(d): App, UrlPath(id): UrlPath<String>| async move {
                d.cluster_or_err()?;
                d.check_unlocked()?;
                let store = d.store()?;
                let n = resolve_node(&store.reader, &id)?;
                Ok::<_, ApiError>(json_response(StatusCode::OK, &node_json(&d, &n, &store)))
            })
            .delete(|State(d): App, ConnectInfo(w): Who, UrlPath(id): UrlPath<String>, Query(q): Query<ForceQuery>| async move {
                node_rm(d, w, id, q).await
            }),
        )
        .route(
            "/nodes/{id}/update",
            post(|State(d): App, ConnectInfo(w): Who, UrlPath(id): UrlPath<String>, b: Bytes| async move {
                node_update(d, w, id, b).await
            }),
        )
}

/// The node API: what peers reach over mutual TLS.
fn node_router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route("/raft/{op}", post(raft_rpc))
        .route("/cluster/join", post(join_request))
        .route("/cluster/admit", post(admit))
        .route("/cluster/membership", post(membership))
        .route("/cluster/renew", post(renew))
        .nest("/agent", crate::agent::node_routes())
        .fallback(|| async { ApiError::new(404, "page not found") })
        .with_state(d)
}

// ---------------------------------------------------------------------------------------
// the watcher: what a manager does when the replicated cluster state changes

/// Follows applied changes on this node: re-seals the local key ring when the cluster's
/// unlock key was rotated elsewhere, keeps the managers list current, and turns a demoted
/// manager into a worker.
async fn watch(d: Arc<Daemon>) {
    let mut seen_unlock_version = 0u64;
    // A node promoted a moment ago still reads its old (worker) record until its store has
    // caught up: only a worker record seen *after* a manager record is a demotion.
    let mut seen_as_manager = false;
    let mut retry_trust_at = tokio::time::Instant::now();
    loop {
        let Some(cluster) = d.cluster() else { return };
        if *cluster.stop.borrow() || cluster.config().role != NodeRole::Manager {
            tracing::debug!("cluster watcher ends (not a manager, or stopped)");
            return;
        }
        let store = match d.store() {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Ok(Some((c, rotation))) = store.reader.cluster_and_rotation() {
            follow_ca_rotation(
                &d,
                &cluster,
                &store,
                &c,
                rotation.as_ref(),
                &mut retry_trust_at,
            )
            .await;
            if c.unlock_version > seen_unlock_version {
                if let Some(sealed) = &c.unlock_key
                    && let Ok(raw) =
                        d.open_cluster_secret(sealed, UNLOCK_KEY_OBJECT, c.unlock_version)
                    && let Ok(key) = UnlockKey::from_raw(&raw)
                {
                    d.adopt_unlock_key(key);
                    seen_unlock_version = c.unlock_version;
                } else if c.unlock_key.is_none() {
                    seen_unlock_version = c.unlock_version;
                }
            }
            d.adopt_keks(&c.keks);
            let managers = manager_addrs(&store.reader);
            if !managers.is_empty() {
                set_managers(&d, managers);
            }
            let me = cluster.config().node_id;
            let role = store.reader.node(me).ok().flatten().map(|n| n.role);
            seen_as_manager |= role == Some(NodeRole::Manager);
            if seen_as_manager && role == Some(NodeRole::Worker) {
                tracing::info!(
                    "this manager was demoted; dropping the store and running as a worker"
                );
                become_worker(&d).await;
                return;
            }
        }
        drop(store);
        // Debounced: raft's state changes several times per write, and none of what this
        // loop follows is urgent (a KEK a value needs is also adopted on demand).
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(store) = d.store() {
            store.replica.changed(Duration::from_secs(2)).await;
        }
    }
}

/// The watcher's part of a CA rotation: this manager re-issues its own certificate when its
/// trust is not what the cluster's state asks for (a rotation started, was replaced, or
/// finished), and the leader finishes the rotation once every node's current certificate
/// is from the new root.
async fn follow_ca_rotation(
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

async fn become_worker(d: &Arc<Daemon>) {
    let old = d.store.write().ok().and_then(|mut s| s.take());
    if let Some(old) = old {
        crate::serve::close_store(old).await;
    }
    let _ = fs::remove_file(d.data_dir.join("store.redb"));
    if let Some(c) = d.cluster() {
        let cfg = {
            let Ok(mut cfg) = c.config.write() else {
                return;
            };
            cfg.role = NodeRole::Worker;
            cfg.clone()
        };
        let _ = save_config(&d.data_dir, &cfg);
    }
    crate::agent::start(d.clone());
}

/// A worker promoted to manager: open an empty store, ask to be admitted, take the keys.
pub(crate) async fn become_manager(d: &Arc<Daemon>) -> Result<()> {
    let c = d.cluster_or_err()?;
    let mut cfg = c.config();
    cfg.role = NodeRole::Manager;
    // A retry after a failed admission reuses the store it opened.
    if d.store().is_err() {
        let store = open_store(&d.data_dir, &cfg, &c.tls, Bootstrap::Join).await?;
        if let Ok(mut s) = d.store.write() {
            *s = Some(Arc::new(store));
        }
    }
    let mut last = None;
    for addr in &cfg.managers {
        match call_leader(
            c.tls.get().client.clone(),
            addr,
            "/cluster/admit",
            b"{}".to_vec(),
        )
        .await
        {
            Ok((_, a)) if a.status == 200 => {
                let admitted = install_keys(d, &a.body)?;
                if let Ok(mut w) = c.config.write() {
                    w.role = NodeRole::Manager;
                    if !admitted.managers.is_empty() {
                        w.managers = admitted.managers.clone();
                    }
                }
                save_config(&d.data_dir, &c.config())?;
                tokio::spawn(watch(d.clone()));
                // A certificate that says what the node now is (in the background: the
                // node already works with the one it has).
                let d2 = d.clone();
                tokio::spawn(async move {
                    if let Some(c) = d2.cluster()
                        && let Err(e) = renew_once(&d2, &c).await
                    {
                        tracing::warn!("could not renew the certificate after promotion: {e}");
                    }
                });
                return Ok(());
            }
            Ok((_, a)) => last = Some(remote_error(&a)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ApiError::new(503, "no manager known")))
}

impl Daemon {
    /// Whether the leader heard from manager `id` recently (true when this node is not the
    /// leader and cannot tell).
    fn peer_seen(&self, id: u64) -> bool {
        let Ok(store) = self.store() else {
            return false;
        };
        if !store.replica.is_leader() {
            return true;
        }
        store
            .replica
            .heartbeat_age(id)
            .is_some_and(|age| age < Duration::from_secs(5))
    }
}

// ---------------------------------------------------------------------------------------
// certificate renewal

#[derive(Debug, Serialize, Deserialize)]
struct RenewRequest {
    csr: String,
}

#[derive(Debug, Deserialize)]
struct RenewResponse {
    cert: String,
    /// Absent from managers that predate CA rotations: the node keeps its trust.
    #[serde(default)]
    trust: Option<Trust>,
}

/// `/cluster/renew`: a node presents its current certificate and a new CSR; the CA issues a
/// certificate for the same identity, and the node record accepts the old one until it
/// expires (so connections opened before the swap keep working).
async fn renew(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<NodePeer>,
    body: Bytes,
) -> Result<Response> {
    let who = authorize(&d, &peer, false)?;
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
async fn renewal(d: Arc<Daemon>) {
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

async fn renew_once(d: &Arc<Daemon>, c: &Cluster) -> Result<()> {
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

async fn renew_locked(d: &Arc<Daemon>, c: &Cluster) -> Result<()> {
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

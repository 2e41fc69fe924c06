//! Node-to-node transport: mutual TLS over TCP, HTTP/1.1 inside.
//!
//! * [`TlsDialer`] gives the replication crate its raft connections (it knows nothing of TLS).
//! * [`call`] is a one-shot request to another node (join, admit, membership, agent calls).
//! * [`serve`] accepts TLS connections for the node API, attaching the verified peer
//!   identity (or none: the join endpoint is reached by nodes without a certificate yet) to
//!   every request as `ConnectInfo<NodePeer>`.
//!
//! The TLS configurations live behind [`TlsState`], swapped whole when the node's certificate
//! is renewed: a connection uses the configuration current when it was opened.
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use lockbox_cluster::pki::PeerIdentity;
use lockbox_replication::network::Dialer;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

/// How long a TLS handshake plus the request headers may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN: Duration = Duration::from_secs(5);

/// This node's TLS material, as configurations ready to use.
pub(crate) struct Tls {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: Arc<rustls::ClientConfig>,
    pub(crate) identity: PeerIdentity,
    pub(crate) trust: Trust,
}

/// The roots a node accepts peers under, the certificates it presents after its own, and
/// which root issued its own. Outside a CA rotation: the cluster's root, and the same root
/// after the leaf. During one: both roots, and `[cross-signed new root, old root]` after a
/// leaf from the new root, so that a peer trusting only the old root still builds a path
/// (leaf → cross-signed → old), and a node joining with a token (which pins the old root's
/// digest) finds the pinned root in the chain. Certificates as base64 DER, as on the wire
/// and in `cluster/trust.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Trust {
    pub(crate) roots: Vec<String>,
    pub(crate) chain: Vec<String>,
    /// SHA-256 (hex) of the root that issued the node's certificate.
    pub(crate) issuer: String,
}

impl Trust {
    /// A short name for this trust: equal tags, equal trust. Workers get the managers'
    /// current one with every heartbeat and renew when theirs differs.
    pub(crate) fn tag(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        lockbox_cluster::pki::cert_digest(&json)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }
}

/// The current [`Tls`], replaced on certificate renewal.
#[derive(Clone)]
pub(crate) struct TlsState(Arc<RwLock<Arc<Tls>>>);

impl TlsState {
    pub(crate) fn new(tls: Tls) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(tls))))
    }
    pub(crate) fn get(&self) -> Arc<Tls> {
        match self.0.read() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
    pub(crate) fn set(&self, tls: Tls) {
        match self.0.write() {
            Ok(mut t) => *t = Arc::new(tls),
            Err(p) => *p.into_inner() = Arc::new(tls),
        }
    }
}

/// Who is on the other end of a node-API connection.
#[derive(Clone, Debug)]
pub(crate) struct NodePeer {
    /// From the client certificate, verified against the cluster CA by rustls; `None` when
    /// the client presented none (a joining node).
    pub(crate) identity: Option<PeerIdentity>,
    pub(crate) addr: String,
    /// Until when this connection's raft traffic is known to be authorized: raft sends
    /// thousands of requests a second down one connection, and re-reading the cluster's
    /// records for each costs more than the request. A revocation takes effect on the next
    /// check (at most [`RAFT_AUTH_TTL`] later; raft membership is changed first anyway).
    pub(crate) raft_ok_until: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// How long one raft authorization of a connection holds.
pub(crate) const RAFT_AUTH_TTL: Duration = Duration::from_secs(1);

async fn connect_tls(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(lockbox_cluster::tls::SERVER_NAME)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Raft connections over mutual TLS.
#[derive(Clone)]
pub(crate) struct TlsDialer(pub(crate) TlsState);

impl Dialer for TlsDialer {
    type Stream = tokio_rustls::client::TlsStream<TcpStream>;

    async fn dial(&self, _target: u64, addr: &str) -> std::io::Result<Self::Stream> {
        connect_tls(self.0.get().client.clone(), addr).await
    }
}

/// What a node answered: status and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The `message` of an error body, or the body as text.
    pub(crate) fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_string())
    }
}

/// Sends one POST over a fresh TLS connection and returns the response, body unread.
async fn send(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<hyper::Response<Incoming>, String> {
    let tls = connect_tls(config, addr)
        .await
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, "lockbox-node")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("{addr}: {e}"))
}

/// One request to another node over TLS (`config` decides whether it is mutual).
pub(crate) async fn call(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, String> {
    let work = async {
        let resp = send(config, addr, path, body).await?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{addr}: {e}"))?
            .to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("{addr} did not answer within {timeout:?}"))?
}

/// A long-lived request (the agent's watch stream): returns the response body to read from.
pub(crate) async fn open_stream(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Incoming), String> {
    let resp = tokio::time::timeout(HANDSHAKE_TIMEOUT, send(config, addr, path, body))
        .await
        .map_err(|_| format!("{addr} did not answer"))??;
    Ok((resp.status().as_u16(), resp.into_body()))
}

/// Serves the node API on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: TlsState,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, addr) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("node listener: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.get().server.clone());
                let app = app.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::info!(peer = %addr, "node listener: TLS handshake refused: {e}");
                            return;
                        }
                        Err(_) => return,
                    };
                    let identity = lockbox_cluster::tls::peer_identity(stream.get_ref().1);
                    let peer = NodePeer {
                        identity,
                        addr: addr.to_string(),
                        raft_ok_until: Default::default(),
                    };
                    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer.clone()));
                        app.clone().oneshot(req.map(axum::body::Body::new))
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HANDSHAKE_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!("node connection ended: {e}");
                    }
                });
            }
            () = async { drop(stop.wait_for(|s| *s).await) } => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

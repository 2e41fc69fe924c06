//! The raft transport, server side: framework-agnostic.
//!
//! The daemon mounts [`serve_rpc`] under `/raft/` in its own HTTP server, behind mTLS, and
//! checks the caller's certificate (and that it matches the [`crate::network::NODE_HEADER`]
//! the caller claims) before calling it: this module authenticates nothing. A peer that may
//! call it can rewrite the cluster's log, so only cluster members may reach it.
//! [`serve_plain_tcp`] is a ready-made plain-TCP server for tests and benchmarks.
//!
//! The wire format is in the [`crate::network`] module docs.

use std::fmt;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lockbox_store::{Command, Response};
use serde::{Deserialize, Serialize};

use crate::ReplicationError;
use crate::network::{NODE_HEADER, encode_request};
use crate::replica::Shared;
use crate::types::{NodeId, Snapshot, SnapshotMeta, Vote};

/// `POST` path of `append_entries`.
pub const PATH_APPEND: &str = "/raft/append";
/// `POST` path of `vote`.
pub const PATH_VOTE: &str = "/raft/vote";
/// `POST` path of `pre_vote`.
pub const PATH_PRE_VOTE: &str = "/raft/pre-vote";
/// `POST` path of a full snapshot install.
pub const PATH_SNAPSHOT: &str = "/raft/snapshot";
/// `POST` path of a proposal forwarded by a follower to the leader.
pub const PATH_PROPOSE: &str = "/raft/propose";
/// `POST` path of a read-index request (a follower's linearizable read).
pub const PATH_READ_INDEX: &str = "/raft/read-index";

/// The largest request body [`serve_plain_tcp`] accepts (snapshots are sent whole).
pub const MAX_BODY: usize = 1 << 30;

/// A failure a peer reports inside a `200` answer (`postcard(Result<Resp, WireError>)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The peer is not the leader (proposals and read-index only).
    #[error("not the leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader {
        /// The leader the peer knows of.
        leader_id: Option<NodeId>,
        /// Its address.
        leader_addr: Option<String>,
    },
    /// The peer (a leader) cannot reach a quorum.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// A proposal may or may not have committed.
    #[error("outcome unknown")]
    OutcomeUnknown,
    /// The peer's raft stopped.
    #[error("raft stopped: {0}")]
    Fatal(String),
    /// Anything else, as text.
    #[error("{0}")]
    Other(String),
}

impl From<ReplicationError> for WireError {
    fn from(e: ReplicationError) -> Self {
        match e {
            ReplicationError::NotLeader {
                leader_id,
                leader_addr,
            } => WireError::NotLeader {
                leader_id,
                leader_addr,
            },
            ReplicationError::NoQuorum(m) => WireError::NoQuorum(m),
            ReplicationError::OutcomeUnknown => WireError::OutcomeUnknown,
            ReplicationError::Fatal(m) => WireError::Fatal(m),
            other => WireError::Other(other.to_string()),
        }
    }
}

impl From<WireError> for ReplicationError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::NotLeader {
                leader_id,
                leader_addr,
            } => ReplicationError::NotLeader {
                leader_id,
                leader_addr,
            },
            WireError::NoQuorum(m) => ReplicationError::NoQuorum(m),
            WireError::OutcomeUnknown => ReplicationError::OutcomeUnknown,
            WireError::Fatal(m) => {
                ReplicationError::Raft(format!("the leader's raft stopped: {m}"))
            }
            WireError::Other(m) => ReplicationError::Raft(format!("the leader answered: {m}")),
        }
    }
}

/// The body of [`PATH_SNAPSHOT`], as sent (borrowed).
#[derive(Serialize)]
pub(crate) struct SnapshotRequestRef<'a> {
    pub(crate) vote: &'a Vote,
    pub(crate) meta: &'a SnapshotMeta,
    pub(crate) data: &'a [u8],
}

/// The body of [`PATH_SNAPSHOT`], as received.
#[derive(Deserialize)]
struct SnapshotRequest {
    vote: Vote,
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Why [`serve_rpc`] could not handle a request at all (raft-level failures are answers, see
/// [`WireError`]). Answer with [`RpcError::status`] and the message.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Not one of the `PATH_*` paths: answer `404`.
    #[error("no raft RPC at {0}")]
    NotFound(String),
    /// The body does not decode: answer `400`.
    #[error("bad raft RPC body for {path}: {reason}")]
    BadRequest {
        /// The path called.
        path: String,
        /// The decode error.
        reason: String,
    },
}

impl RpcError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            RpcError::NotFound(_) => 404,
            RpcError::BadRequest { .. } => 400,
        }
    }
}

/// A cheap, clonable handle that answers raft RPCs for one [`crate::Replica`]
/// ([`crate::Replica::rpc_handler`]). It keeps the raft running only as long as the replica
/// does: after [`crate::Replica::shutdown`] every call answers `WireError::Fatal`.
#[derive(Clone)]
pub struct RpcHandler {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for RpcHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcHandler")
            .field("node_id", &self.shared.node_id)
            .finish_non_exhaustive()
    }
}

fn decode<'a, T: Deserialize<'a>>(path: &str, body: &'a [u8]) -> Result<T, RpcError> {
    postcard::from_bytes(body).map_err(|e| RpcError::BadRequest {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

fn answer<T: Serialize, E: fmt::Display>(result: Result<T, E>) -> Vec<u8> {
    let wire: Result<T, WireError> = result.map_err(|e| WireError::Fatal(e.to_string()));
    encode_request(&wire)
}

/// Handles one raft RPC: `path` is one of the `PATH_*` constants, `body` the request body.
/// Returns the body of a `200` answer. The caller (the daemon's router) has authenticated the
/// peer already.
pub async fn serve_rpc(handler: &RpcHandler, path: &str, body: Bytes) -> Result<Vec<u8>, RpcError> {
    let shared = &handler.shared;
    let raft = &shared.raft;
    Ok(match path {
        PATH_APPEND => answer(raft.append_entries(decode(path, &body)?).await),
        PATH_VOTE => answer(raft.vote(decode(path, &body)?).await),
        PATH_PRE_VOTE => answer(raft.pre_vote(decode(path, &body)?).await),
        PATH_SNAPSHOT => {
            let req: SnapshotRequest = decode(path, &body)?;
            let snapshot = Snapshot {
                meta: req.meta,
                snapshot: req.data,
            };
            answer(raft.install_full_snapshot(req.vote, snapshot).await)
        }
        PATH_PROPOSE => {
            let cmd: Command = decode(path, &body)?;
            let result: Result<(u64, Response), WireError> = shared
                .propose_local(cmd, shared.write_timeout)
                .await
                .map_err(WireError::from);
            encode_request(&result)
        }
        PATH_READ_INDEX => {
            let (): () = decode(path, &body)?;
            let result: Result<u64, WireError> = shared
                .read_index_local(shared.write_timeout)
                .await
                .map_err(WireError::from);
            encode_request(&result)
        }
        other => return Err(RpcError::NotFound(other.to_string())),
    })
}

/// Serves raft RPCs over plain HTTP/1.1 on `listener` until the future is dropped (abort
/// its task to stop; that closes every connection it accepted too). No TLS, no
/// authentication: for tests and benchmarks.
pub async fn serve_plain_tcp(
    listener: tokio::net::TcpListener,
    handler: RpcHandler,
) -> std::io::Result<()> {
    serve_plain_tcp_with(listener, handler, |_| true).await
}

/// [`serve_plain_tcp`], dropping the connection of any request for which `accept(caller)` is
/// false (`caller` from [`NODE_HEADER`]). Tests use it to cut links.
pub async fn serve_plain_tcp_with(
    listener: tokio::net::TcpListener,
    handler: RpcHandler,
    accept: impl Fn(Option<NodeId>) -> bool + Send + Sync + 'static,
) -> std::io::Result<()> {
    let accept = Arc::new(accept);
    // Dropping this future (aborting the task) drops the set, which aborts every
    // connection: a stopped server leaves no connection answering for it.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Per-connection failures (the peer reset before accept, fd pressure): keep going.
            Err(e) => {
                tracing::debug!(error = %e, "raft RPC accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        stream.set_nodelay(true).ok();
        let handler = handler.clone();
        let accept = accept.clone();
        connections.spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let handler = handler.clone();
                let accept = accept.clone();
                async move { handle_http(&handler, &*accept, req).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Refusing a caller: the error makes hyper close the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("raft RPC from a refused caller")]
struct Refused;

async fn handle_http(
    handler: &RpcHandler,
    accept: &(dyn Fn(Option<NodeId>) -> bool + Send + Sync),
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Refused> {
    let caller = req
        .headers()
        .get(NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<NodeId>().ok());
    if !accept(caller) {
        return Err(Refused);
    }
    let reply = |status: u16, body: Vec<u8>| {
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
        response
    };
    if req.method() != hyper::Method::POST {
        return Ok(reply(405, b"raft RPCs are POST".to_vec()));
    }
    let path = req.uri().path().to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return Ok(reply(
                400,
                format!("cannot read the body: {e}").into_bytes(),
            ));
        }
    };
    // Re-check after the (possibly long) body read: a link cut meanwhile drops the request.
    if !accept(caller) {
        return Err(Refused);
    }
    Ok(match serve_rpc(handler, &path, body).await {
        Ok(bytes) => reply(200, bytes),
        Err(e) => reply(e.status(), e.to_string().into_bytes()),
    })
}

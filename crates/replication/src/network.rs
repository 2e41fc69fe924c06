//! The raft transport, client side: HTTP/1.1 over whatever byte stream a [`Dialer`] opens.
//!
//! This crate knows no TLS. The daemon supplies a [`Dialer`] that opens mTLS streams (and
//! checks the peer's certificate against the node it meant to reach); tests and benchmarks use
//! [`TcpDialer`]; single-node mode uses [`NoDialer`], for which every peer is unreachable.
//!
//! # Wire format
//!
//! Every RPC is `POST <path>` with a postcard body and the caller's raft id in the
//! [`NODE_HEADER`] header. A `200` answer's body is postcard `Result<Resp, WireError>`
//! (see [`crate::rpc`], which is the server side); any other status is a transport failure.
//!
//! | path                | request                         | response (inside `Result`)   |
//! |---------------------|---------------------------------|------------------------------|
//! | `/raft/append`      | `AppendEntriesRequest`          | `AppendEntriesResponse`      |
//! | `/raft/vote`        | `VoteRequest`                   | `VoteResponse`               |
//! | `/raft/pre-vote`    | `VoteRequest`                   | `VoteResponse`               |
//! | `/raft/snapshot`    | vote, `SnapshotMeta`, bytes     | `SnapshotResponse`           |
//! | `/raft/propose`     | `Command`                       | `(index, Response)`          |
//! | `/raft/read-index`  | `()`                            | read index (`u64`)           |
//!
//! # Connections and errors
//!
//! Each raft client ([`PeerClient`], one per target and replication stream) keeps one
//! persistent HTTP/1.1 connection, dialed lazily and re-dialed after any error or timeout.
//! Every call is bounded by [`RPCOption::hard_ttl`]. A failed dial or a broken connection is
//! [`Unreachable`] (raft backs off), an elapsed `hard_ttl` is [`Timeout`]. A raft error on
//! the remote side can only be `Fatal` for these RPCs (the remote raft stopped); openraft's
//! `RPCError` for them has no remote-error payload to carry it (`RemoteError<_, Infallible>`),
//! so it is reported as [`Unreachable`] with the remote message.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use openraft::OptionalSend;
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::rpc::{self, SnapshotRequestRef, WireError};
use crate::types::{Node, NodeId, Snapshot, TypeConfig, Vote};

/// The request header carrying the caller's raft node id. The daemon's server side should
/// check it against the caller's certificate before it calls [`crate::rpc::serve_rpc`].
pub const NODE_HEADER: &str = "x-lockbox-raft-node";

/// Opens a byte stream to a peer. The daemon's implementation does mTLS; this crate only
/// speaks HTTP/1.1 over whatever comes back.
pub trait Dialer: Clone + Send + Sync + 'static {
    /// The connected stream (a `TcpStream`, a TLS stream over one, ...).
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Connects to node `target`, advertised at `addr` in the membership.
    fn dial(
        &self,
        target: NodeId,
        addr: &str,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Plain TCP (`addr` is `host:port`), with `TCP_NODELAY`. For tests and benchmarks: it
/// neither encrypts nor authenticates.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    type Stream = tokio::net::TcpStream;

    async fn dial(&self, _target: NodeId, addr: &str) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// No transport: every dial fails. Single-node mode ([`crate::Replica::open`]), where a
/// one-voter cluster never sends an RPC.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDialer;

impl Dialer for NoDialer {
    type Stream = tokio::io::DuplexStream;

    async fn dial(&self, target: NodeId, addr: &str) -> io::Result<Self::Stream> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "node {target} ({addr}) is unreachable: this replica runs without a raft transport (single-node mode)"
            ),
        ))
    }
}

/// Why one HTTP call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The dial failed: nothing was sent.
    Dial(io::Error),
    /// The connection failed after the request may have been sent.
    Io(String),
    /// The call did not finish within its deadline (it may have been sent).
    Timeout,
    /// The peer answered with a status other than 200.
    Status(u16, String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Dial(e) => write!(f, "cannot connect: {e}"),
            CallError::Io(e) => write!(f, "connection failed: {e}"),
            CallError::Timeout => f.write_str("timed out"),
            CallError::Status(code, body) => write!(f, "answered HTTP {code}: {body}"),
        }
    }
}

impl CallError {
    /// True when the request certainly did not reach the peer.
    pub(crate) fn not_sent(&self) -> bool {
        matches!(self, CallError::Dial(_))
    }
}

/// One persistent HTTP/1.1 connection to one peer, re-dialed on demand.
pub(crate) struct Conn<D: Dialer> {
    dialer: D,
    from: NodeId,
    target: NodeId,
    addr: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl<D: Dialer> Conn<D> {
    pub(crate) fn new(dialer: D, from: NodeId, target: NodeId, addr: String) -> Self {
        Self {
            dialer,
            from,
            target,
            addr,
            sender: None,
        }
    }

    /// `POST path` with `body`, within `timeout`; returns the 200 answer's body. Any failure
    /// drops the connection (the next call re-dials).
    pub(crate) async fn call(
        &mut self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        match tokio::time::timeout(timeout, self.call_inner(path, body)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(CallError::Timeout)
            }
        }
    }

    async fn call_inner(&mut self, path: &str, body: Vec<u8>) -> Result<Bytes, CallError> {
        // A pooled connection the peer closed (restart, idle timeout) is re-dialed: nothing
        // was sent on it yet.
        if let Some(sender) = &mut self.sender
            && (sender.is_closed() || sender.ready().await.is_err())
        {
            self.sender = None;
        }
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => {
                let stream = self
                    .dialer
                    .dial(self.target, &self.addr)
                    .await
                    .map_err(CallError::Dial)?;
                let (sender, conn) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| CallError::Dial(io::Error::other(e)))?;
                tokio::spawn(async move {
                    // Ends when the sender is dropped or the peer goes; errors surface on
                    // the next request.
                    let _ = conn.await;
                });
                self.sender.insert(sender)
            }
        };
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, self.addr.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/x-postcard")
            .header(NODE_HEADER, self.from.to_string())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Io(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| {
            if e.is_canceled() {
                // hyper never wrote it: the connection was gone first.
                CallError::Dial(io::Error::other(e))
            } else {
                CallError::Io(e.to_string())
            }
        })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Io(e.to_string()))?
            .to_bytes();
        if status != hyper::StatusCode::OK {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(CallError::Status(status.as_u16(), text));
        }
        Ok(bytes)
    }
}

/// A call that came back with a decoded body: the remote raft's `Result`.
pub(crate) fn decode_answer<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<Result<T, WireError>, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("cannot decode the answer: {e}"))
}

pub(crate) fn encode_request<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serializing our own types into a Vec cannot fail.
    postcard::to_stdvec(value).expect("postcard encoding of an RPC request")
}

/// openraft's network factory over a [`Dialer`]: one [`PeerClient`] per target and stream.
#[derive(Clone)]
pub struct Network<D: Dialer> {
    from: NodeId,
    dialer: D,
}

impl<D: Dialer> fmt::Debug for Network<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl<D: Dialer> Network<D> {
    /// The transport of node `from` (sent in [`NODE_HEADER`] with every request).
    pub fn new(from: NodeId, dialer: D) -> Self {
        Self { from, dialer }
    }
}

impl<D: Dialer> RaftNetworkFactory<TypeConfig> for Network<D> {
    type Network = PeerClient<D>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerClient {
            conn: Conn::new(self.dialer.clone(), self.from, target, node.addr.clone()),
        }
    }
}

/// openraft's client for one peer: one persistent connection (see the module docs).
pub struct PeerClient<D: Dialer> {
    conn: Conn<D>,
}

impl<D: Dialer> PeerClient<D> {
    async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        path: &str,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let timeout = option.hard_ttl();
        let bytes = self
            .conn
            .call(path, encode_request(req), timeout)
            .await
            .map_err(|e| self.rpc_error(e, action, timeout))?;
        match decode_answer::<Resp>(&bytes) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => {
                // The remote raft stopped: a restarted one may be behind a new connection.
                self.conn.sender = None;
                Err(RPCError::Unreachable(
                    self.unreachable(&format!("remote raft refused: {remote}")),
                ))
            }
            Err(e) => Err(RPCError::Network(NetworkError::from_string(format!(
                "node {} ({}): {e}",
                self.conn.target, self.conn.addr
            )))),
        }
    }

    fn unreachable(&self, why: &str) -> Unreachable<TypeConfig> {
        Unreachable::from_string(format!(
            "node {} ({}): {why}",
            self.conn.target, self.conn.addr
        ))
    }

    fn rpc_error(&self, e: CallError, action: RPCTypes, timeout: Duration) -> RPCError<TypeConfig> {
        match e {
            CallError::Timeout => RPCError::Timeout(Timeout {
                action,
                id: self.conn.from,
                target: self.conn.target,
                timeout,
            }),
            other => RPCError::Unreachable(self.unreachable(&other.to_string())),
        }
    }
}

impl<D: Dialer> RaftNetworkV2<TypeConfig> for PeerClient<D> {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(rpc::PATH_APPEND, RPCTypes::AppendEntries, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(rpc::PATH_VOTE, RPCTypes::Vote, &rpc, &option)
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(rpc::PATH_PRE_VOTE, RPCTypes::Vote, &rpc, &option)
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = SnapshotRequestRef {
            vote: &vote,
            meta: &snapshot.meta,
            data: &snapshot.snapshot,
        };
        let send = self.rpc::<_, SnapshotResponse<TypeConfig>>(
            rpc::PATH_SNAPSHOT,
            RPCTypes::InstallSnapshot,
            &req,
            &option,
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = send => result.map_err(|e| match e {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(r) => match r.source {},
            }),
        }
    }
}

/// Type-erased calls to any peer, for forwarding proposals and read-index requests: the
/// [`crate::Replica`] is not generic over the [`Dialer`]. Keeps idle connections per peer.
pub(crate) trait Forwarder: Send + Sync {
    fn call<'a>(
        &'a self,
        target: NodeId,
        addr: &'a str,
        path: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, CallError>> + Send + 'a>>;
}

/// [`Forwarder`] over a [`Dialer`]: a small pool of idle connections per `(target, addr)`, so
/// concurrent forwarded writes do not queue behind one HTTP/1.1 connection.
pub(crate) struct Pool<D: Dialer> {
    from: NodeId,
    dialer: D,
    idle: Mutex<IdleConns<D>>,
}

impl<D: Dialer> Pool<D> {
    pub(crate) fn new(from: NodeId, dialer: D) -> Arc<Self> {
        Arc::new(Self {
            from,
            dialer,
            idle: Mutex::new(HashMap::new()),
        })
    }
}

/// Idle connections by `(target, addr)`.
type IdleConns<D> = HashMap<(NodeId, String), Vec<Conn<D>>>;

/// Idle connections kept per peer.
const POOL_IDLE_MAX: usize = 8;

impl<D: Dialer> Forwarder for Pool<D> {
    fn call<'a>(
        &'a self,
        target: NodeId,
        addr: &'a str,
        path: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, CallError>> + Send + 'a>> {
        Box::pin(async move {
            let key = (target, addr.to_string());
            let pooled = self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&key)
                .and_then(Vec::pop);
            let mut conn = pooled.unwrap_or_else(|| {
                Conn::new(self.dialer.clone(), self.from, target, addr.to_string())
            });
            let result = conn.call(path, body, timeout).await;
            if result.is_ok() {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let list = idle.entry(key).or_default();
                if list.len() < POOL_IDLE_MAX {
                    list.push(conn);
                }
            }
            result
        })
    }
}

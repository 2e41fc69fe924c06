//! The agent: what a worker node runs to stay in touch with the managers, and the managers'
//! side of it.
//!
//! A worker holds no store. Its agent keeps one watch stream open to a manager (any of them,
//! trying the next when one fails): the manager sends a line when something concerning this
//! node changed (its role, a secret it holds) and a heartbeat every few seconds, so a dead
//! manager is noticed and the agent moves on. A worker whose managers are all unreachable
//! keeps serving its running workloads from memory.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::post;
use http_body_util::BodyExt as _;
use lockbox_store::NodeRole;

use crate::ApiError;
use crate::ops::Daemon;
use crate::peers::{self, NodePeer};

const HEARTBEAT: Duration = Duration::from_secs(2);
/// A worker not heard from for this long is shown `down`.
const SEEN_WINDOW: Duration = Duration::from_secs(10);

/// Manager side: when each worker's agent was last heard from, and the agent task of this
/// node when it is a worker.
#[derive(Default)]
pub(crate) struct Agents {
    seen: Mutex<HashMap<u64, Instant>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

pub(crate) fn agent_connected(d: &Daemon, node: u64) -> bool {
    d.agents
        .seen
        .lock()
        .ok()
        .and_then(|m| m.get(&node).copied())
        .is_some_and(|t| t.elapsed() < SEEN_WINDOW)
}

fn mark_seen(d: &Daemon, node: u64) {
    if let Ok(mut m) = d.agents.seen.lock() {
        m.insert(node, Instant::now());
    }
}

/// `/agent/watch`: a stream of JSON lines for one node.
async fn watch(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<NodePeer>,
) -> Result<Response, ApiError> {
    let who = crate::cluster::authorize(&d, &peer, false)?;
    let node_id = who.node.id;
    mark_seen(&d, node_id);
    let stream = futures_util::stream::unfold((d, true), move |(d, first)| async move {
        if !first {
            tokio::time::sleep(HEARTBEAT).await;
        }
        // The node's record as this manager sees it; a removed node's stream ends.
        let reader = d.reader().ok()?;
        let node = reader.node(node_id).ok()??;
        mark_seen(&d, node_id);
        let line = serde_json::json!({"Type": "heartbeat", "Role": node.role.as_str()});
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(line.to_string() + "\n")),
            (d, false),
        ))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

pub(crate) fn node_routes() -> Router<Arc<Daemon>> {
    Router::new().route("/watch", post(watch))
}

/// Starts this worker's agent (once).
pub(crate) fn start(d: Arc<Daemon>) {
    let Ok(mut task) = d.agents.task.lock() else {
        return;
    };
    if task.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    let d2 = d.clone();
    *task = Some(tokio::spawn(async move { run(d2).await }));
}

/// Stops this node's agent (leave).
pub(crate) fn stop(d: &Daemon) {
    if let Ok(mut task) = d.agents.task.lock()
        && let Some(t) = task.take()
    {
        t.abort();
    }
}

async fn run(d: Arc<Daemon>) {
    let mut i = 0usize;
    loop {
        let Some(cluster) = d.cluster() else { return };
        let cfg = cluster.config();
        if cfg.role == NodeRole::Manager {
            return;
        }
        if cfg.managers.is_empty() {
            tokio::time::sleep(HEARTBEAT).await;
            continue;
        }
        let addr = cfg.managers[i % cfg.managers.len()].clone();
        i += 1;
        match follow(&d, &cluster, &addr).await {
            Ok(Promoted) => {
                tracing::info!("this worker was promoted; becoming a manager");
                if let Err(e) = crate::cluster::become_manager(&d).await {
                    tracing::warn!("promotion failed: {e}");
                    tokio::time::sleep(HEARTBEAT).await;
                    continue;
                }
                return;
            }
            Err(e) => {
                tracing::info!(manager = %addr, "agent: {e}; trying the next manager");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

struct Promoted;

async fn follow(
    d: &Arc<Daemon>,
    cluster: &crate::cluster::Cluster,
    addr: &str,
) -> Result<Promoted, String> {
    let (status, mut body) = peers::open_stream(
        cluster.tls.get().client.clone(),
        addr,
        "/agent/watch",
        Vec::new(),
    )
    .await?;
    if status != 200 {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(format!(
            "manager refused the watch ({status}): {}",
            String::from_utf8_lossy(&bytes).trim()
        ));
    }
    let _ = d;
    let mut buf = Vec::new();
    loop {
        let frame = tokio::time::timeout(HEARTBEAT * 3, body.frame())
            .await
            .map_err(|_| "no heartbeat from the manager".to_string())?;
        let Some(frame) = frame else {
            return Err("the manager ended the watch".into());
        };
        let frame = frame.map_err(|e| e.to_string())?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
            if v["Role"] == "manager" {
                return Ok(Promoted);
            }
        }
    }
}

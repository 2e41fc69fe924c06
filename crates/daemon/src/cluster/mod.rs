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

mod admission;
mod bootstrap;
mod certs;
mod join;
mod membership;
mod node_api;
mod record;
mod state;
mod tokens;
mod watcher;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use lockbox_store::NodeRole;
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::peers::{TlsState, Trust};
use lockbox_core::Daemon;

#[allow(unused_imports)]
use self::admission::*;
pub(crate) use self::admission::{Authorized, authorize, authorize_raft};
#[allow(unused_imports)]
use self::bootstrap::*;
#[allow(unused_imports)]
use self::certs::*;
pub(crate) use self::certs::{ensure_trust, target_trust_tag};
#[allow(unused_imports)]
use self::join::*;
#[allow(unused_imports)]
use self::membership::*;
pub(crate) use self::node_api::local_routes;
#[allow(unused_imports)]
use self::node_api::*;
pub(crate) use self::record::ClusterRecords;
#[allow(unused_imports)]
use self::record::*;
#[allow(unused_imports)]
use self::state::*;
pub(crate) use self::state::{activate, load, open_store};
#[allow(unused_imports)]
use self::tokens::*;
pub(crate) use self::watcher::PeerHealth;
pub(crate) use self::watcher::become_manager;
#[allow(unused_imports)]
use self::watcher::*;

pub(super) type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Serializes raft membership changes made by this node (as leader).
pub(super) static MEMBERSHIP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The default port of the node API (raft, join, agents).
pub(crate) const DEFAULT_PORT: u16 = 4377;
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The node's cluster, once it is in one: the slot the core keeps for this feature.
#[derive(Default)]
pub(crate) struct ClusterSlot(pub(crate) RwLock<Option<Arc<Cluster>>>);

/// What the cluster needs from the worker agent, a feature built on top of it. The
/// composition root (serve.rs) installs the agent's functions; until then (and in a
/// daemon without agents) these do nothing, so the cluster never names the agent.
#[derive(Clone, Copy)]
pub(crate) struct AgentHooks {
    /// Start this worker's agent (once).
    pub(crate) start: fn(Arc<Daemon>),
    /// Stop this node's agent (leave).
    pub(crate) stop: fn(&Daemon),
    /// Whether the worker `node`'s agent was heard from recently (manager side).
    pub(crate) connected: fn(&Daemon, u64) -> bool,
    /// The agent's routes, nested under `/agent` on the node API.
    pub(crate) node_routes: fn() -> Router<Arc<Daemon>>,
}

impl Default for AgentHooks {
    fn default() -> Self {
        Self {
            start: |_| {},
            stop: |_| {},
            connected: |_, _| false,
            node_routes: Router::new,
        }
    }
}

/// The node API's authorization gate, installed by the composition root (serve.rs): the
/// cluster builds the router but may not name the gate above it. Until it is installed
/// every node request is refused, so a router without its gate is closed, not open.
#[derive(Clone, Copy)]
pub(crate) struct NodeGate {
    /// Wraps the node API's router in the gate (its outermost layer).
    pub(crate) layer: fn(Router, Arc<Daemon>) -> Router,
}

impl Default for NodeGate {
    fn default() -> Self {
        Self {
            layer: |router, _| {
                router.layer(axum::middleware::from_fn(
                    |_: axum::extract::Request, _: axum::middleware::Next| async {
                        ApiError::new(503, "the node API's gate is not installed")
                    },
                ))
            },
        }
    }
}

/// The cluster feature's slot and hooks, kept in the core's extensions.
pub(crate) trait ClusterState {
    fn cluster_slot(&self) -> Arc<ClusterSlot>;
    fn agent_hooks(&self) -> AgentHooks;
}

impl ClusterState for Daemon {
    fn cluster_slot(&self) -> Arc<ClusterSlot> {
        self.extensions.get_or_init(ClusterSlot::default)
    }
    fn agent_hooks(&self) -> AgentHooks {
        *self.extensions.get_or_init(AgentHooks::default)
    }
}

/// A node's live cluster state.
pub(crate) struct Cluster {
    pub(crate) config: RwLock<NodeConfig>,
    pub(crate) tls: TlsState,
    /// Held while the node's certificate is being renewed (by its schedule or because the
    /// cluster's CA is rotating): one renewal at a time.
    pub(super) renewing: tokio::sync::Mutex<()>,
    /// Stops the node listener.
    pub(super) stop: tokio::sync::watch::Sender<bool>,
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

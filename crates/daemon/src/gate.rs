//! The authorization gate: every request on every Unix socket passes here after the kernel
//! told who is calling (`SO_PEERCRED`, listen.rs) and before any handler runs. Handlers
//! cannot skip it: the transports install it as the outermost layer of their router
//! ([`layer`]), and a route missing from the table below needs an administrator.
//!
//! Caller classes (see SECURITY.md, "Who may do what"):
//! * **admin** — uid 0, the daemon's own user, or a member of `--admin-group`;
//! * **member** — anyone else the socket's mode let in (the `--group` of the socket). A
//!   member may ask who the daemon is and, once an administrator granted it the use of some
//!   secrets (`lockbox policy grant`), start and manage its own workloads with those
//!   (`Need::Grant`); everything else is refused with 403, audited (repeats throttled, see
//!   refusals.rs). Unlike Docker's socket group, membership is not root-equivalent.
//!
//! The plugin socket (the Swarm secret driver, the volume driver) answers uid 0 only: dockerd
//! is its one client.
//!
//! The node API's rows (`Socket::Node`) live in the same table; its identity is a verified
//! certificate, not a uid, so its middleware is `node_gate.rs`.
//!
//! Owns: the route table and the decision. Touches: the core's audit log (every refusal is
//! recorded), identity (who is asking).
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lockbox_audit::Event;

use crate::ApiError;
use crate::identity::{Grantee, Peer};
use lockbox_core::Daemon;

/// Who a caller is, for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// uid 0 (dockerd, the system's administrator).
    Root,
    /// The daemon's own user or a member of the admin group.
    Admin,
    /// Let in by the socket's group, and nothing more.
    Member,
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone who could connect: liveness and version, nothing about the data.
    Anyone,
    /// An administrator (or root).
    Admin,
    /// uid 0 only.
    Root,
    /// Node API: no certificate needed; the handler checks the join token in the body.
    JoinToken,
    /// Node API: a manager certificate of this cluster, not revoked (a joining manager's
    /// record may not have reached this store yet, so the certificate's role counts then).
    RaftPeer,
    /// Node API: any current, unrevoked node certificate of this cluster, acting for the
    /// node it names (handlers take the node from the gate, never from the body).
    NodeCert,
    /// Node API: a node whose record says manager.
    ManagerCert,
    /// Node API: a node whose record says worker (the agent's routes).
    WorkerCert,
    /// An administrator, or a member holding at least one grant; the handler then serves a
    /// member only what its grants cover (it finds an `identity::Grantee` on the request)
    /// and hands plaintext to no one but root without a grant for each name.
    Grant,
}

impl Need {
    fn admits(self, class: Class) -> bool {
        match self {
            Need::Anyone => true,
            Need::Admin => matches!(class, Class::Root | Class::Admin),
            Need::Root => class == Class::Root,
            // A member's grants are looked up by `check`, not here.
            Need::Grant => matches!(class, Class::Root | Class::Admin),
            // Node-API needs are met by certificates, never by a Unix-socket caller.
            _ => false,
        }
    }

    /// The words SECURITY.md's table uses.
    pub fn name(self) -> &'static str {
        match self {
            Need::Anyone => "anyone",
            Need::Admin => "admin",
            Need::Root => "root",
            Need::JoinToken => "join token",
            Need::RaftPeer => "manager (raft)",
            Need::NodeCert => "node",
            Need::ManagerCert => "manager",
            Need::WorkerCert => "worker",
            Need::Grant => "grant",
        }
    }
}

/// Which socket a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// lockbox's own API (`/v1/…`).
    Native,
    /// The Docker Engine API subset (`/v1.NN/…` or unversioned).
    Docker,
    /// Docker's plugin protocols: the Swarm secret driver and the volume driver.
    Plugin,
    /// The node API peers reach over mutual TLS (identity: the verified certificate).
    Node,
}

impl Socket {
    pub fn name(self) -> &'static str {
        match self {
            Socket::Native => "native",
            Socket::Docker => "docker",
            Socket::Plugin => "plugin",
            Socket::Node => "node",
        }
    }
}

/// One row of the route table: a method (`*` for any), a path pattern with `{x}` for one
/// segment and `{*x}` for the rest, and what it needs.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub socket: Socket,
    pub method: &'static str,
    pub path: &'static str,
    pub need: Need,
}

const fn rule(socket: Socket, method: &'static str, path: &'static str, need: Need) -> Rule {
    Rule {
        socket,
        method,
        path,
        need,
    }
}

use Need::{Admin, Anyone, Grant, JoinToken, ManagerCert, NodeCert, RaftPeer, Root, WorkerCert};
use Socket::{Docker, Native, Plugin};

/// Every route of every socket. SECURITY.md's matrix is checked against this table by
/// the daemon's tests (`tests/daemon.rs`), and the authorization matrix test drives each
/// row as each caller class.
pub const RULES: &[Rule] = &[
    // native API
    rule(Native, "GET", "/_ping", Anyone),
    rule(Native, "HEAD", "/_ping", Anyone),
    rule(Native, "GET", "/v1/version", Anyone),
    rule(Native, "GET", "/v1/info", Admin),
    // What `lockbox run`, `lockbox docker run` and `lockbox compose` call: a member with a
    // grant starts workloads with granted secrets only, delivered as files it owns, and sees
    // and releases only its own workloads.
    rule(Native, "POST", "/v1/workloads", Grant),
    rule(Native, "GET", "/v1/workloads", Grant),
    rule(Native, "GET", "/v1/workloads/{id}", Grant),
    rule(Native, "POST", "/v1/workloads/{id}/release", Grant),
    rule(Native, "POST", "/v1/workloads/{id}/rotation", Grant),
    // Lists and inspects of secrets and configs (`lockbox compose` resolves names with
    // them): a member sees only the objects its grants cover, never a value of a secret.
    rule(Native, "GET", "/v1/secrets", Grant),
    rule(Native, "GET", "/v1/configs", Grant),
    rule(Native, "GET", "/v1/secrets/{id}", Grant),
    rule(Native, "GET", "/v1/configs/{id}", Grant),
    // Grants themselves are administered.
    rule(Native, "*", "/v1/policies/{*rest}", Admin),
    rule(Native, "GET", "/v1/{kind}", Admin),
    rule(Native, "POST", "/v1/{kind}/create", Admin),
    rule(Native, "GET", "/v1/{kind}/{id}", Admin),
    rule(Native, "DELETE", "/v1/{kind}/{id}", Admin),
    rule(Native, "POST", "/v1/{kind}/{id}/update", Admin),
    rule(Native, "POST", "/v1/{kind}/{id}/rotate", Admin),
    rule(Native, "POST", "/v1/{kind}/{id}/rollback", Admin),
    rule(Native, "GET", "/v1/{kind}/{id}/versions", Admin),
    rule(Native, "POST", "/v1/unlock", Admin),
    rule(Native, "POST", "/v1/autolock", Admin),
    rule(Native, "GET", "/v1/unlockkey", Admin),
    rule(Native, "POST", "/v1/unlockkey/rotate", Admin),
    rule(Native, "POST", "/v1/kek/rotate", Admin),
    rule(Native, "GET", "/v1/audit", Admin),
    rule(Native, "GET", "/v1/audit/verify", Admin),
    rule(Native, "GET", "/v1/events", Admin),
    // A backup holds every sealed value and the keys that open them: root's alone (the
    // handler says why in its own words).
    rule(Native, "POST", "/v1/backup", Root),
    rule(Native, "*", "/v1/services/{*rest}", Admin),
    rule(Native, "*", "/v1/workloads/{*rest}", Admin),
    rule(Native, "*", "/v1/cluster/{*rest}", Admin),
    rule(Native, "*", "/v1/nodes/{*rest}", Admin),
    // Docker Engine API (version prefix removed before matching)
    rule(Docker, "GET", "/_ping", Anyone),
    rule(Docker, "HEAD", "/_ping", Anyone),
    rule(Docker, "GET", "/version", Anyone),
    rule(Docker, "GET", "/info", Admin),
    rule(Docker, "GET", "/events", Admin),
    rule(Docker, "POST", "/swarm/unlock", Admin),
    rule(Docker, "GET", "/{kind}", Admin),
    rule(Docker, "POST", "/{kind}/create", Admin),
    rule(Docker, "GET", "/{kind}/{id}", Admin),
    rule(Docker, "DELETE", "/{kind}/{id}", Admin),
    rule(Docker, "POST", "/{kind}/{id}/update", Admin),
    // Swarm secret-driver plugin: dockerd only
    rule(Plugin, "POST", "/Plugin.Activate", Root),
    rule(Plugin, "POST", "/SecretProvider.GetSecret", Root),
    // Volume driver: dockerd only (anyone who can drive dockerd can create such a volume,
    // as they can mount the host's disk)
    rule(Plugin, "POST", "/VolumeDriver.Create", Root),
    rule(Plugin, "POST", "/VolumeDriver.Remove", Root),
    rule(Plugin, "POST", "/VolumeDriver.Mount", Root),
    rule(Plugin, "POST", "/VolumeDriver.Unmount", Root),
    rule(Plugin, "POST", "/VolumeDriver.Path", Root),
    rule(Plugin, "POST", "/VolumeDriver.Get", Root),
    rule(Plugin, "POST", "/VolumeDriver.List", Root),
    rule(Plugin, "POST", "/VolumeDriver.Capabilities", Root),
    // Node API (mutual TLS; identity from the verified certificate): node_gate.rs
    rule(Socket::Node, "POST", "/raft/{op}", RaftPeer),
    rule(Socket::Node, "POST", "/cluster/join", JoinToken),
    rule(Socket::Node, "POST", "/cluster/admit", NodeCert),
    rule(Socket::Node, "POST", "/cluster/renew", NodeCert),
    rule(Socket::Node, "POST", "/cluster/membership", ManagerCert),
    // Any node: a worker promoted while its stream was down learns it from the heartbeat.
    rule(Socket::Node, "POST", "/agent/watch", NodeCert),
    rule(Socket::Node, "POST", "/agent/register", WorkerCert),
    rule(Socket::Node, "POST", "/agent/fetch", WorkerCert),
];

fn segment_matches(pattern: &str, segment: &str) -> bool {
    pattern.starts_with('{') && pattern.ends_with('}') || pattern == segment
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.trim_end_matches('/').split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(rest), _) if rest.starts_with("{*") => return true,
            (Some(a), Some(b)) if segment_matches(a, b) => {}
            _ => return false,
        }
    }
}

/// The Docker API's optional version prefix (`/v1.45/secrets` → `/secrets`).
fn without_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else {
        return path;
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        &rest[end..]
    } else {
        path
    }
}

/// What `method path` on `socket` needs; a route not in the table needs an administrator
/// (so a route added without a row is closed, not open).
pub fn need(socket: Socket, method: &str, path: &str) -> Need {
    need_and_route(socket, method, path).0
}

/// The row that decides `method path` on `socket`: the first that matches, so an earlier,
/// narrower row (`GET /v1/secrets`) wins over a later pattern (`GET /v1/{kind}`).
pub fn rule_for(socket: Socket, method: &str, path: &str) -> Option<&'static Rule> {
    let path = if socket == Socket::Docker {
        without_version(path)
    } else {
        path
    };
    RULES.iter().find(|r| {
        r.socket == socket
            && (r.method == "*" || r.method.eq_ignore_ascii_case(method))
            && path_matches(r.path, path)
    })
}

/// [`need`], and the route's name for the refusal throttle: the matching row (so one
/// caller cycling through IDs is one route), or the method and path of an unlisted one.
fn need_and_route(socket: Socket, method: &str, path: &str) -> (Need, String) {
    rule_for(socket, method, path).map_or_else(
        || {
            let need = match socket {
                Socket::Plugin => Need::Root,
                Socket::Node => Need::ManagerCert,
                _ => Need::Admin,
            };
            // One key for every unlisted path: cycling through made-up paths is one route.
            (need, format!("{} unlisted", socket.name()))
        },
        |r| (r.need, format!("{} {} {}", socket.name(), r.method, r.path)),
    )
}

/// The authorization matrix as SECURITY.md shows it, made from [`RULES`]: a row per
/// route, a column per caller class. The trust-boundary tests check that SECURITY.md holds
/// exactly this text, and drive every cell against a real daemon.
pub fn markdown_matrix() -> String {
    let mut out = String::from(
        "| socket | method | route | root | admin | socket group, granted | socket group, no grant | other users |\n|---|---|---|---|---|---|---|---|\n",
    );
    // The node API's rows have caller classes of their own (node_gate::markdown_matrix).
    for r in RULES.iter().filter(|r| r.socket != Socket::Node) {
        let cell = |ok: bool| if ok { "yes" } else { "403" };
        let (admin, granted, member) = match r.need {
            Need::Anyone => (cell(true), cell(true), cell(true)),
            Need::Admin => (cell(true), cell(false), cell(false)),
            // Plaintext reaches no one but root without a grant: a non-root administrator's
            // workload is held to grants too (confine.rs); its lists are not.
            Need::Grant => (
                "yes (a workload's secrets need a grant)",
                "granted names, own workloads",
                cell(false),
            ),
            // The plugin socket is 0600 root: nobody else even connects.
            Need::Root if r.socket == Socket::Plugin => {
                ("cannot connect", "cannot connect", "cannot connect")
            }
            Need::Root => (cell(false), cell(false), cell(false)),
            _ => ("403", "403", "403"),
        };
        out.push_str(&format!(
            "| {} | {} | `{}` | yes | {admin} | {granted} | {member} | cannot connect |\n",
            r.socket.name(),
            r.method,
            r.path
        ));
    }
    out
}

/// Who may administer the daemon besides root.
#[derive(Debug, Clone, Default)]
pub(crate) struct Admins {
    /// The daemon's effective uid (a user's own daemon is administered by that user).
    pub(crate) daemon_uid: u32,
    /// `--admin-group`: its members administer.
    pub(crate) group: Option<u32>,
}

impl Admins {
    pub(crate) fn classify(&self, peer: &Peer) -> Option<Class> {
        let uid = peer.uid?;
        if uid == 0 {
            return Some(Class::Root);
        }
        if uid == self.daemon_uid {
            return Some(Class::Admin);
        }
        if let Some(g) = self.group
            && (peer.gid == Some(g) || crate::identity::user_in_group(uid, g))
        {
            return Some(Class::Admin);
        }
        Some(Class::Member)
    }
}

/// The gate's state: the daemon and the socket's name.
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) daemon: Arc<Daemon>,
    pub(crate) socket: Socket,
}

/// The middleware: classify the caller, look the route up, refuse (403, audited) or pass.
pub(crate) async fn check(State(g): State<Gate>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0)
        .unwrap_or_default();
    let admins = g.daemon.extensions.get_or_init(Admins::default);
    let (need, route) = need_and_route(g.socket, req.method().as_str(), req.uri().path());
    let class = admins.classify(&peer);
    if class.is_some_and(|c| need.admits(c)) {
        return next.run(req).await;
    }
    if let (Need::Grant, Some(Class::Member), Some(uid)) = (need, class, peer.uid) {
        let gids = crate::identity::groups_of(&peer);
        if g.daemon.has_grant(uid, &gids) {
            let mut req = req;
            req.extensions_mut().insert(Grantee { uid, gids });
            return next.run(req).await;
        }
    }
    let who = peer.uid.map_or_else(
        || "an unidentified caller".to_string(),
        |u| format!("uid {u}"),
    );
    let message = match need {
        Need::Grant => format!(
            "permission denied: {} {} on the {} socket needs a grant; {who} holds none (an administrator gives one with: lockbox policy grant --uid {} --use PATTERN)",
            req.method(),
            req.uri().path(),
            g.socket.name(),
            peer.uid
                .map_or_else(|| "UID".to_string(), |u| u.to_string()),
        ),
        _ => format!(
            "permission denied: {} {} on the {} socket needs {}; {who} is {}",
            req.method(),
            req.uri().path(),
            g.socket.name(),
            match need {
                Need::Root => "uid 0 (root)",
                _ => "an administrator (root, the daemon's user, or a member of its --admin-group)",
            },
            match class {
                Some(Class::Member) => "only a member of the socket's group",
                _ => "not one",
            }
        ),
    };
    let record = Event::new("access-denied", &peer.actor())
        .detail("socket", g.socket.name())
        .detail("method", req.method().as_str())
        .detail("path", req.uri().path())
        .detail("needs", need.name());
    crate::refusals::record(&g.daemon, peer.uid, &route, record);
    ApiError::new(403, message).into_response()
}

/// Installs the gate as the outermost layer of `router`, so that no route runs before it.
pub(crate) fn layer(router: axum::Router, daemon: Arc<Daemon>, socket: Socket) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(
        Gate { daemon, socket },
        check,
    ))
}

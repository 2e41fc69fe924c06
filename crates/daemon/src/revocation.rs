//! Revocation at the edge: when a worker stops qualifying for a service whose workloads it
//! runs, the values already handed to it are taken back.
//!
//! A node qualifies for a service while it is a member, is not drained, and the service's
//! placement admits it ([`crate::placement::qualifies`]). The manager that holds the
//! worker's watch stream re-checks every registered service whenever its store applies a
//! change (and at least every heartbeat); a service that no longer qualifies is announced
//! once on the stream (`{"Type":"revoke","Service":S,"Reason":R}`) and audited there
//! (`revoke`, with the node). A node removed from the cluster gets a `revoke` line for each
//! service before its stream ends, and every later watch it opens is refused (403): the
//! worker takes that refusal as the revocation of everything it holds. A secret detached
//! from a service (`service update --secret-rm`) changes the service's record, so the
//! worker re-fetches and the new set no longer carries it; the manager audits the detach.
//!
//! On the worker the service's hand-out is replaced by an empty one (the values leave its
//! memory) and its workloads are synced to it: their tmpfs loses the files (`..data` is
//! swapped to a set without them). A container whose revoked files include an absolute
//! target is stopped instead, since a single-file bind inside a running container cannot
//! be taken back. Each revocation is audited on the worker too. A service that qualifies
//! again is re-fetched (the manager sends `rotate`).
//!
//! Bound: while any manager is reachable from the worker, within 10 seconds of the change
//! being committed (one store apply on the stream's manager; if that manager died, the
//! worker notices within three heartbeats, 6 s, and the next manager re-checks as soon as
//! the stream opens). A worker that reaches no manager cannot be told and keeps serving
//! its running workloads (the availability choice documented in agent.rs); it is revoked
//! on the first reconnect.
//!
//! Owns: the qualification check, the epoch that stops an in-flight fetch from undoing a
//! revocation, the worker's revocation. Touches: workloads, placement, audit.
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use lockbox_audit::Event;
use lockbox_store::{NodeRecord, node_id_text};

use crate::services::ServiceRecords;
use crate::workloads::{Handout, WorkloadsState};
use lockbox_core::Daemon;

/// Worker side: per service, how many times it was revoked. A fetch started before a
/// revocation must not put the values back when it answers after it.
#[derive(Default)]
struct Epochs(Mutex<HashMap<String, u64>>);

/// The revocation epoch of `service` on this worker.
pub(crate) fn epoch(d: &Daemon, service: &str) -> u64 {
    d.extensions
        .get_or_init(Epochs::default)
        .0
        .lock()
        .ok()
        .and_then(|m| m.get(service).copied())
        .unwrap_or(0)
}

fn bump(d: &Daemon, service: &str) {
    if let Ok(mut m) = d.extensions.get_or_init(Epochs::default).0.lock() {
        *m.entry(service.to_owned()).or_default() += 1;
    }
}

/// Manager side: why `node` (`None`: removed) no longer qualifies for `service`, or `None`
/// while it does. A service that no longer exists takes nothing back: its workloads keep
/// what they have, as on a manager (workloads.rs).
pub(crate) fn disqualified(d: &Daemon, node: Option<&NodeRecord>, service: &str) -> Option<String> {
    let Some(node) = node else {
        return Some("the node was removed from the cluster".into());
    };
    let s = d.service(service).ok()?;
    crate::placement::qualifies(&s, node).err()
}

/// Manager side: records that `node`'s values of `service` are being taken back.
pub(crate) fn audit_on_manager(d: &Daemon, node: u64, service: &str, reason: &str, what: &str) {
    let record = Event::new("revoke", "daemon")
        .detail("node", &node_id_text(node))
        .detail("service", service)
        .detail("secrets", what)
        .detail("reason", reason);
    if let Err(e) = d.audit_event(record) {
        tracing::error!("cannot audit a revocation: {e}");
    }
}

/// Worker side: takes back every value of `service` held on this node and removes its
/// files from the service's workloads; audited. Does nothing if nothing is held.
pub(crate) async fn revoke(d: &Arc<Daemon>, service: &str, reason: &str) {
    let ws = d.workloads();
    let held = ws.handout(service);
    let workloads: Vec<String> = ws
        .registrations()
        .into_iter()
        .filter(|(_, s)| s == service)
        .map(|(id, _)| id)
        .collect();
    if held.as_ref().is_some_and(|h| h.files.is_empty()) || (held.is_none() && workloads.is_empty())
    {
        return;
    }
    bump(d, service);
    let secrets: Vec<String> = held
        .iter()
        .flat_map(|h| &h.files)
        .map(|x| x.r.secret_name.clone())
        .collect();
    ws.put_handout(Arc::new(Handout {
        service: service.to_owned(),
        on_rotate: held.map(|h| h.on_rotate.clone()).unwrap_or_default(),
        files: Vec::new(),
    }));
    tracing::warn!(
        service,
        reason,
        "revoking the service's secrets on this node"
    );
    ws.revoke_service(d, service).await;
    let record = Event::new("revoke", "daemon")
        .detail("service", service)
        .detail("secrets", &secrets.join(","))
        .detail("workloads", &workloads.join(","))
        .detail("reason", reason);
    if let Err(e) = d.audit_event(record) {
        tracing::error!("cannot audit a revocation: {e}");
    }
}

/// Worker side: a re-fetch of `new` replaced `prev`; secrets it no longer carries (detached
/// from the service) leave with the sync that follows, and are audited here.
pub(crate) fn audit_detached(d: &Daemon, prev: Option<&Handout>, new: &Handout) {
    let gone: BTreeSet<&str> = prev
        .iter()
        .flat_map(|h| &h.files)
        .filter(|x| !new.files.iter().any(|n| n.r.secret_id == x.r.secret_id))
        .map(|x| x.r.secret_name.as_str())
        .collect();
    if gone.is_empty() {
        return;
    }
    let workloads: Vec<String> = d
        .workloads()
        .registrations()
        .into_iter()
        .filter(|(_, s)| *s == new.service)
        .map(|(id, _)| id)
        .collect();
    let record = Event::new("revoke", "daemon")
        .detail("service", &new.service)
        .detail("secrets", &gone.into_iter().collect::<Vec<_>>().join(","))
        .detail("workloads", &workloads.join(","))
        .detail("reason", "detached from the service");
    if let Err(e) = d.audit_event(record) {
        tracing::error!("cannot audit a revocation: {e}");
    }
}

/// Worker side: the cluster refused this node (removed, revoked certificate): everything
/// it holds is taken back.
pub(crate) async fn revoke_all(d: &Arc<Daemon>, reason: &str) {
    let services: BTreeSet<String> = d
        .workloads()
        .registrations()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    for s in services {
        revoke(d, &s, reason).await;
    }
}

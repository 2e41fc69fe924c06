//! What the daemon needs to follow a replica without naming openraft types: wait for the
//! next applied change, and how long ago the leader heard from a peer.
use std::time::Duration;

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;

use crate::Replica;
use crate::types::NodeId;

impl Replica {
    /// Returns when raft's state changes (an entry applied, a leader change, ...) after this
    /// call, or after `timeout`, whichever comes first.
    pub async fn changed(&self, timeout: Duration) {
        let mut rx = self.raft().metrics();
        // A clone starts at the version raft's own receiver last saw (the first one), so
        // without this `changed` would return at once, every time: callers looping on it
        // would spin without ever yielding.
        rx.borrow_and_update();
        let _ = tokio::time::timeout(timeout, rx.changed()).await;
    }

    /// On the leader: how long ago peer `id` last acknowledged a heartbeat (`None` if never,
    /// or if this node is not the leader and cannot tell).
    pub fn heartbeat_age(&self, id: NodeId) -> Option<Duration> {
        let metrics = self.raft().metrics();
        let m = metrics.borrow_watched();
        let beats = m.heartbeat.as_ref()?;
        beats.get(&id)?.as_ref().map(|t| (**t).elapsed())
    }

    /// Whether the membership holds any node besides this one (then reads need a read index).
    /// Cheap: no allocation, for the per-request path.
    pub fn has_peers(&self) -> bool {
        let metrics = self.raft().metrics();
        let m = metrics.borrow_watched();
        m.membership_config
            .nodes()
            .any(|(id, _)| *id != self.node_id())
    }

    /// Whether this node currently sees itself as leader.
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft().metrics();
        let m = metrics.borrow_watched();
        m.current_leader == Some(self.node_id())
    }
}

impl Replica {
    /// On the leader: the highest log index peer `id` is known to hold (`None` if unknown).
    pub fn matched_index(&self, id: NodeId) -> Option<u64> {
        let metrics = self.raft().metrics();
        let m = metrics.borrow_watched();
        m.replication.as_ref()?.get(&id)?.as_ref().map(|l| l.index)
    }
}

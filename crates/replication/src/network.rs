//! The raft network of a single-node replica: every peer is unreachable.
//!
//! A one-voter cluster never sends a raft RPC (it is its own quorum), but openraft needs a
//! [`RaftNetworkFactory`] all the same. This one answers every call with
//! [`Unreachable`], which makes openraft back off instead of retrying in a loop if a peer
//! ever shows up in the membership by mistake.
//!
//! **The cluster work replaces this module** with an mTLS transport (tonic, one client per
//! peer, peer identity checked against the certificate in the membership's node record),
//! plus the server side that feeds `Raft::append_entries` / `vote` / `install_full_snapshot`.
//! Nothing else in this crate has to change for that: [`crate::Replica::open`] names
//! [`NoNetwork`] in exactly one place.

use std::future::Future;

use openraft::OptionalSend;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};

use crate::types::{Node, NodeId, Snapshot, TypeConfig, Vote};

/// Hands out [`NoPeer`] clients: single-node mode has no transport.
#[derive(Debug, Clone, Default)]
pub struct NoNetwork;

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        NoPeer {
            target,
            addr: node.addr.clone(),
        }
    }
}

/// A "connection" to a peer that cannot be reached: single-node mode has no transport.
#[derive(Debug, Clone)]
pub struct NoPeer {
    target: NodeId,
    addr: String,
}

impl NoPeer {
    fn unreachable(&self) -> Unreachable<TypeConfig> {
        Unreachable::from_string(format!(
            "node {} ({}) is unreachable: this replica runs without a raft transport (single-node mode)",
            self.target, self.addr
        ))
    }
}

impl RaftNetworkV2<TypeConfig> for NoPeer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn pre_vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(self.unreachable()))
    }
}

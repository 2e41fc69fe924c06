//! Interface the replication layer drives.
use serde::{Deserialize, Serialize};

/// A change to the store. Every field that could differ between replicas (IDs, times,
/// ciphertexts) is chosen before the command is proposed, so applying it is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Placeholder; the real variants land with the store.
    Noop,
}

/// What applying a command returned to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Ok,
}

/// The state machine. Its tables live in the same redb database as the raft log, so that
/// the replication layer can commit an applied entry and its `last_applied` in one
/// transaction.
#[derive(Debug, Clone)]
pub struct Store {}

impl Store {
    /// Creates the state-machine tables in `txn` if they are missing.
    pub fn init_tables(_txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
        Ok(())
    }

    /// Applies one committed command at raft log `index` inside `txn`. Must be
    /// deterministic: the same (index, command) on the same state gives the same bytes.
    pub fn apply(_txn: &redb::WriteTransaction, _index: u64, _cmd: &Command) -> Response {
        Response::Ok
    }

    /// Serialises every state-machine table (a snapshot).
    pub fn export(_txn: &redb::ReadTransaction) -> Result<Vec<u8>, redb::Error> {
        Ok(Vec::new())
    }

    /// Replaces every state-machine table with a snapshot made by [`Store::export`].
    pub fn import(_txn: &redb::WriteTransaction, _data: &[u8]) -> Result<(), redb::Error> {
        Ok(())
    }
}

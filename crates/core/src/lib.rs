//! The core operations of lockbox: the daemon's state and everything a request can do with
//! it — keys, the store and its replica, the audit log, events — independent of how the
//! request arrived.
//!
//! Architecture invariant: this crate names no transport (native API, Docker API, plugin
//! sockets, node API) and no feature built on it (services, workloads, agents, the cluster,
//! backup). Features reach the core through its API; where the core must hold a feature's
//! state it does so in [`Extensions`], typed by the feature. The compiler keeps it so: the
//! daemon crate that holds transports and features depends on this one, not the reverse.
#![forbid(unsafe_code)]

mod daemon;
mod error;
mod extensions;
mod keys;
mod objects;
pub mod policy;

pub use daemon::{
    Caller, Daemon, Keys, NodeStore, close_store, decode_data, now_ns, parse_since, rfc3339,
};
pub use error::ApiError;
pub use extensions::Extensions;

//! The lockbox daemon.
//!
//! ```text
//! unix socket ──► http (axum) ──► ops ──► replica.propose(Command)  (openraft → Store::apply)
//!                                  │  ──► Reader (redb read txns)
//!                                  ├─► keys (KEK ring: seal before proposing, open for hand-outs)
//!                                  └─► audit (appended and fsynced before the response)
//! ```
//!
//! Architecture invariant: HTTP handlers hold no logic; everything a request can do is a
//! method of [`ops::Daemon`], which the Docker-compatible API reuses.
#![forbid(unsafe_code)]

mod agent;
pub mod backup;
mod body;
pub mod budget;
mod cluster;
mod confine;
mod docker;
mod docker_events;
mod docker_request;
pub mod error;
pub mod gate;
mod harden;
mod http;
mod identity;
mod listen;
pub mod node_gate;
pub mod paths;
mod peers;
mod placement;
mod policy;
mod refusals;
mod revocation;
mod serve;
mod services;
mod templating;
mod volumes;
mod workloads;

pub use error::DaemonError;
pub use lockbox_core::ApiError;
pub use serve::{DaemonConfig, run};

//! Wire types shared by the lockbox daemon and its clients: the Docker-shaped JSON objects,
//! the `--secret` reference syntax, and the documented exit codes.
//!
//! Architecture invariant: this crate depends on serde only. Clients (the CLI, the
//! scanner, tests) may use it without pulling in the store, Raft or an HTTP server.
#![forbid(unsafe_code)]

pub mod api;
pub mod exit_codes;
pub mod go_json;
pub mod reference;

pub use api::*;

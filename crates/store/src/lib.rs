//! The deterministic state machine (placeholder while the interface settles).
#![forbid(unsafe_code)]

pub mod machine;
pub use machine::{Command, Response, Store};

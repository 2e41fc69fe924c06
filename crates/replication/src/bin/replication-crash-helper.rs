//! Test-only helper for the kill -9 test in `tests/replication.rs`.
//!
//! Usage: `replication-crash-helper STORE_FILE [ADVERTISE_ADDR]`. Opens the replica, prints `ready`, then
//! proposes `Command::Noop` in a loop and prints `ack INDEX` after each proposal is
//! acknowledged (stdout is flushed per line). The test SIGKILLs it at a random moment and
//! checks that every printed index is applied after a reopen.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use lockbox_replication::{Replica, ReplicaConfig};
use lockbox_store::Command;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: replication-crash-helper STORE_FILE");
        return ExitCode::from(2);
    };
    let advertise_addr = std::env::args()
        .nth(2)
        .unwrap_or_else(|| ReplicaConfig::default().advertise_addr);
    let cfg = ReplicaConfig {
        advertise_addr,
        // Small, so that snapshots and purges also happen under the kill.
        snapshot_every: 50,
        logs_to_keep_after_snapshot: 10,
        ..ReplicaConfig::default()
    };
    let replica = match Replica::open(&path, cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("open failed: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "ready").and_then(|()| out.flush()).is_err() {
        return ExitCode::from(1);
    }
    loop {
        match replica.propose_indexed(Command::Noop).await {
            Ok((index, _)) => {
                if writeln!(out, "ack {index}")
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return ExitCode::from(1);
                }
            }
            Err(e) => {
                eprintln!("propose failed: {e}");
                return ExitCode::from(1);
            }
        }
    }
}

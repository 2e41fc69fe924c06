//! Test-only helper for the kill -9 test in `tests/replication.rs`.
//!
//! Usage: `replication-crash-helper STORE_FILE [ADVERTISE_ADDR]`. Opens the replica, prints
//! `ready`, then proposes secret creates (metadata-only, driver-backed, so no keyring is
//! needed) in a loop and prints `ack INDEX NAME` after each one is acknowledged (stdout is
//! flushed per line). The test SIGKILLs it at a random moment and checks that every printed
//! secret exists, and every printed index is applied, after a reopen.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use lockbox_replication::{Replica, ReplicaConfig};
use lockbox_store::{Command, DriverRec, Kind, Response};

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
    let pid = std::process::id();
    for n in 0u64.. {
        let name = format!("crash-{pid}-{n}");
        let mut random = [0u8; 16];
        random[..4].copy_from_slice(&pid.to_be_bytes());
        random[8..].copy_from_slice(&n.to_be_bytes());
        let cmd = Command::Create {
            kind: Kind::Secret,
            id: lockbox_store::object_id(random),
            name: name.clone(),
            labels: Default::default(),
            time_ns: 0,
            driver: Some(DriverRec {
                name: "crash-test".to_string(),
                options: None,
            }),
            templating: None,
            value: None,
        };
        match replica.propose_indexed(cmd).await {
            Ok((index, Response::Created { .. })) => {
                if writeln!(out, "ack {index} {name}")
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return ExitCode::from(1);
                }
            }
            Ok((index, other)) => {
                eprintln!("create {name} at {index} answered {other:?}");
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("propose failed: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

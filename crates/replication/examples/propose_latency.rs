//! Measures `Replica::propose` latency of a secret create (1 KiB sealed value): N sequential
//! proposals on a fresh store file, against the floor of one fsync'd redb commit of the same
//! size on the same disk; then the throughput of concurrent proposers (group commit).
//!
//! `cargo run --release -p lockbox-replication --example propose_latency -- [DIR] [N]`
//! (DIR defaults to the current directory; use a real disk, not tmpfs, or fsync is free.)
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Instant;

use std::sync::Arc;

use lockbox_replication::{Replica, ReplicaConfig};
use lockbox_store::Response;

mod common;
use common::{create, percentiles};
use redb::{Durability, TableDefinition};

async fn create_ok(replica: &Replica, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    match replica.propose(create(n)).await? {
        Response::Created { .. } => Ok(()),
        other => Err(format!("create {n}: {other:?}").into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let work = tempfile::tempdir_in(&dir)?;

    // Floor: one Immediate commit of a ~100-byte value to a second file on the same disk,
    // which is what a propose costs at the very least (its log append). The two are
    // interleaved so that both see the same disk weather (virtual disks have bimodal
    // fsync times).
    const T: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("t");
    let floor_db = redb::Database::create(work.path().join("floor.redb"))?;
    let value = [7u8; 1200];
    let replica =
        Replica::open(&work.path().join("lockbox.redb"), ReplicaConfig::default()).await?;
    let mut floor = Vec::with_capacity(n);
    let mut propose = Vec::with_capacity(n);
    for i in 0..(n as u64 + 50) {
        let t = Instant::now();
        let mut txn = floor_db.begin_write()?;
        txn.open_table(T)?.insert(i, value.as_slice())?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        let floor_time = t.elapsed();

        let t = Instant::now();
        create_ok(&replica, i).await?;
        let propose_time = t.elapsed();
        if i >= 50 {
            floor.push(floor_time);
            propose.push(propose_time);
        }
    }
    percentiles("redb fsync'd commit (floor)", floor);
    percentiles("Replica::propose(secret create)", propose);

    // Concurrent proposers: openraft batches queued writes into one append, one fsync.
    let replica = Arc::new(replica);
    let tasks = 16u64;
    let per_task = (n as u64 / tasks).max(1);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let replica = replica.clone();
        handles.push(tokio::spawn(async move {
            for k in 0..per_task {
                create_ok(&replica, 1_000_000 + t * per_task + k)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let elapsed = start.elapsed();
    println!(
        "{tasks} concurrent proposers: {} creates in {elapsed:.3?} = {:.0} creates/s",
        tasks * per_task,
        (tasks * per_task) as f64 / elapsed.as_secs_f64()
    );
    let replica = Arc::into_inner(replica).ok_or("replica still shared")?;
    replica.shutdown().await?;
    Ok(())
}

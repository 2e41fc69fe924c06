//! Measures `Replica::propose` latency: N sequential proposals on a fresh store file, against
//! the floor of one fsync'd redb commit of the same size on the same disk.
//!
//! `cargo run --release -p lockbox-replication --example propose_latency -- [DIR] [N]`
//! (DIR defaults to the current directory; use a real disk, not tmpfs, or fsync is free.)
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lockbox_replication::{Replica, ReplicaConfig};
use lockbox_store::Command;
use redb::{Durability, TableDefinition};

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{name:<34} n={:<5} p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        samples[samples.len() - 1]
    );
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
    let value = [7u8; 100];
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
        replica.propose(Command::Noop).await?;
        let propose_time = t.elapsed();
        if i >= 50 {
            floor.push(floor_time);
            propose.push(propose_time);
        }
    }
    percentiles("redb fsync'd commit (floor)", floor);
    percentiles("Replica::propose(Noop)", propose);
    replica.shutdown().await?;
    Ok(())
}

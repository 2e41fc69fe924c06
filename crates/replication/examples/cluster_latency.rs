//! Measures proposal latency in a 3-node cluster on loopback (plain TCP, no TLS): N
//! sequential creates on the leader, then concurrent proposers. Separates raft's own cost
//! from the daemon's (TLS, HTTP, audit).
//!
//! `cargo run --release -p lockbox-replication --example cluster_latency -- [DIR] [N]`
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use lockbox_replication::{Bootstrap, Replica, ReplicaConfig, TcpDialer, serve_plain_tcp};
mod common;
use common::{create, percentiles};

fn config(id: u64, addr: &str, bootstrap: Bootstrap) -> ReplicaConfig {
    ReplicaConfig {
        node_id: id,
        advertise_addr: addr.to_string(),
        bootstrap,
        ..ReplicaConfig::default()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let n: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let work = tempfile::tempdir_in(&dir)?;
    let mut replicas = Vec::new();
    let mut addrs = Vec::new();
    for id in 1..=3u64 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?.to_string();
        let boot = if id == 1 {
            Bootstrap::SingleVoter
        } else {
            Bootstrap::Join
        };
        let r = Replica::open_with(
            &work.path().join(format!("n{id}.redb")),
            config(id, &addr, boot),
            TcpDialer,
        )
        .await?;
        tokio::spawn(serve_plain_tcp(l, r.rpc_handler()));
        replicas.push(r);
        addrs.push(addr);
    }
    let leader = &replicas[0];
    leader.change_own_addr(&addrs[0]).await?;
    for id in 2..=3u64 {
        leader
            .add_learner(id, &addrs[(id - 1) as usize], true)
            .await?;
        leader.promote(id).await?;
    }
    let mut samples = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        leader.propose(create(i)).await?;
        samples.push(t.elapsed());
    }
    percentiles("3 nodes, 1 proposer", samples);
    let leader = Arc::new(replicas.remove(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..64u64 {
        let l = leader.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u64 {
                l.propose(create(1_000_000 + c * 1000 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let el = t.elapsed();
    println!(
        "3 nodes, 64 proposers: {:.0} writes/s",
        3200.0 / el.as_secs_f64()
    );
    std::process::exit(0);
}

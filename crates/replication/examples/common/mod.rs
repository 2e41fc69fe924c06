//! Shared by the latency examples: a secret create as the daemon proposes it, and the
//! percentile line they print.

use std::time::Duration;

use lockbox_keyring::Sealed;
use lockbox_store::{Command, Kind, NewVersion};

/// A secret create as the daemon proposes it (the sealed bytes are opaque to the store).
pub(crate) fn create(n: u64) -> Command {
    let mut random = [0u8; 16];
    random[8..].copy_from_slice(&n.to_be_bytes());
    Command::Create {
        kind: Kind::Secret,
        id: lockbox_store::object_id(random),
        name: format!("bench-{n}"),
        labels: Default::default(),
        time_ns: n as i64,
        driver: None,
        templating: None,
        value: Some(NewVersion {
            number: 1,
            sealed: Sealed {
                kek_id: 1,
                wrapped_dek: vec![1; 72],
                ciphertext: vec![(n % 251) as u8; 1024 + 40],
            },
            size: 1024,
            created_by: "bench".to_string(),
            rollback_of: None,
        }),
    }
}

/// Prints `name`, the sample count and p50/p90/p99/max of `samples`.
pub(crate) fn percentiles(name: &str, mut samples: Vec<Duration>) {
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

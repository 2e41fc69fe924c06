//! The daemon's memory budget: the size of the store's page cache (`--cache-size`).
//!
//! The cache is the one structure that would otherwise grow with the store: records are
//! read from it per request, never kept per secret in the daemon. With the memory locked
//! (see `harden`), an unbounded cache would be locked RAM nobody asked for.
use std::sync::Arc;

use lockbox_core::Daemon;

/// `--cache-size` unless given.
pub const DEFAULT_CACHE_SIZE: u64 = lockbox_replication::DEFAULT_CACHE_SIZE as u64;
/// Below this redb evicts on nearly every read; a smaller value is a typo, not a choice.
pub const MIN_CACHE_SIZE: u64 = 1 << 20;
/// Far beyond any store lockbox is built for; a larger value is a typo.
pub const MAX_CACHE_SIZE: u64 = 64 << 30;

/// The configured cache size, kept beside the core for the cluster code, which reopens the
/// store after the daemon started (join, promotion, `cluster init`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheBudget(pub(crate) usize);

/// The budget the daemon was started with.
pub(crate) fn cache_size(d: &Arc<Daemon>) -> usize {
    d.extensions
        .get::<CacheBudget>()
        .map(|b| b.0)
        .unwrap_or(lockbox_replication::DEFAULT_CACHE_SIZE)
}

/// Parses a size as `--cache-size` takes it: bytes, or a number with a unit `K`/`KiB`,
/// `M`/`MiB`, `G`/`GiB` (powers of 1024, case-insensitive), between 1 MiB and 64 GiB.
pub fn parse_cache_size(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    if num.is_empty() {
        return Err(format!(
            "invalid size {raw:?}: expected a number of bytes, optionally with K, M or G (e.g. 64MiB)"
        ));
    }
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => {
            return Err(format!(
                "invalid size {raw:?}: unknown unit {other:?} (use K, M or G)"
            ));
        }
    };
    let bytes = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .filter(|b| *b <= MAX_CACHE_SIZE)
        .ok_or_else(|| format!("invalid size {raw:?}: larger than the maximum of 64GiB"))?;
    if bytes < MIN_CACHE_SIZE {
        return Err(format!(
            "invalid size {raw:?}: smaller than the minimum of 1MiB"
        ));
    }
    Ok(bytes)
}

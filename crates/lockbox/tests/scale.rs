//! Memory bounded by configuration (`--cache-size`) and the 1,000-secret smoke of
//! `bench/scale` (the full 1k/10k/100k run is a benchmark, not a test).
use std::process::Command;

use crate::support::{BIN, Daemon};

fn daemon_refuses(size: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .arg("daemon")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("-H")
        .arg(dir.path().join("lb.sock"))
        // One argument, so that "-5" reaches the parser instead of looking like a flag.
        .arg(format!("--cache-size={size}"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "--cache-size {size:?} accepted");
    // Refused before anything is created.
    assert!(!dir.path().join("data").exists());
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_bad_cache_size_is_refused_with_the_reason() {
    for (size, why) in [
        ("", "expected a number of bytes"),
        ("MiB", "expected a number of bytes"),
        ("-5", "expected a number of bytes"),
        ("12QB", "unknown unit \"qb\""),
        ("0", "smaller than the minimum of 1MiB"),
        ("1023KiB", "smaller than the minimum of 1MiB"),
        ("65GiB", "larger than the maximum of 64GiB"),
        ("99999999999999999999", "larger than the maximum of 64GiB"),
    ] {
        let err = daemon_refuses(size);
        assert!(
            err.contains("--cache-size") && err.contains(why),
            "{size:?}: {err}"
        );
    }
}

#[test]
fn a_daemon_with_a_small_cache_serves_across_a_restart() {
    let d = Daemon::start_with(&["--cache-size", "2MiB"]);
    for i in 0..50 {
        d.create(&format!("s{i}"), b"value");
    }
    let o = d.lb(&["secret", "ls", "-q"]);
    assert_eq!((o.code, o.stdout.lines().count()), (0, 50), "{o:?}");
    // 1048576 bytes is the smallest budget; the units are powers of 1024.
    let mut d = d;
    d.restart(&["--cache-size", "1m"]);
    assert_eq!(d.lb(&["secret", "ls", "-q"]).stdout.lines().count(), 50);
}

#[test]
fn the_scale_benchmark_smoke_runs_at_1000_secrets() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let o = Command::new(format!("{root}/bench/scale/run"))
        .env("SIZES", "1000")
        .env("SWARM", "0")
        .env("OUT", "-")
        .env("LOCKBOX", BIN)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no result line:\n{out}"));
    let r: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    // Every secret listed; the label filter `team=t7` matches every hundredth.
    assert_eq!(r["list_count"], 1000, "{r}");
    assert_eq!(r["list_label_count"], 10, "{r}");
    for key in [
        "fill_rate",
        "rss_mib",
        "list_p50_ms",
        "inspect_p50_ms",
        "ready_s",
    ] {
        assert!(r[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {r}");
    }
}

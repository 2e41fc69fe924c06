//! Measures what `lockbox run -- true` costs over a plain `true`: shim spawn, pipe handshake,
//! mount namespace, tmpfs, atomic write, read-only binds and the command's exec.
//!
//! ```text
//! cargo build -p lockbox-tmpfs --release --bins --examples
//! target/release/examples/run_overhead [ITERATIONS] [SHIM]
//! ```
//!
//! SHIM defaults to the `lockbox-tmpfs-shim` binary next to the examples directory. Needs root.
//! Rows: plain `true`; the [`Supervisor`] driven from this process (what `lockbox run` does
//! once started); and the test binary's `--supervise` mode as a whole process (a stand-in for
//! the `lockbox` binary minus its CLI parsing and daemon round trip).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use lockbox_tmpfs::{RunOptions, SecretFile, ShimCommand, Supervisor};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    println!(
        "{name:<28} n={:<5} p50={:>8.3} ms  p90={:>8.3} ms  max={:>8.3} ms",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        percentile(&samples, 0.9).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
    p50
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let shim = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("current exe");
        exe.parent()
            .and_then(|p| p.parent())
            .expect("target dir")
            .join("lockbox-tmpfs-shim")
    });
    let shim = ShimCommand::new(shim, Vec::<String>::new());
    let truth = which_true();

    let mut plain = Vec::with_capacity(n);
    let mut run = Vec::with_capacity(n);
    let mut whole = Vec::with_capacity(n);
    for _ in 0..3 {
        let _ = Command::new(&truth).status();
    }
    for _ in 0..n {
        let t = Instant::now();
        let st = Command::new(&truth).status().expect("spawn true");
        plain.push(t.elapsed());
        assert!(st.success());

        let files = vec![SecretFile::new("db_pw", b"hunter2".to_vec()).mode(0o400)];
        let mut opts = RunOptions::new([truth.as_os_str()]);
        opts.forward_signals = false;
        let t = Instant::now();
        let code = Supervisor::spawn(&shim, opts, files)
            .expect("spawn shim")
            .wait()
            .expect("wait");
        run.push(t.elapsed());
        assert_eq!(code, 0);

        // The whole `lockbox run -- true` as a process: supervisor start included.
        let t = Instant::now();
        let st = Command::new(&shim.program)
            .args(["--supervise", "--"])
            .arg(&truth)
            .status()
            .expect("spawn supervise");
        whole.push(t.elapsed());
        assert!(st.success());
    }
    let a = report("true", plain);
    let b = report("Supervisor (in-process)", run);
    let c = report("run -- true (whole process)", whole);
    println!(
        "overhead p50: in-process {:.3} ms, whole process {:.3} ms (target <= 10 ms)",
        (b.saturating_sub(a)).as_secs_f64() * 1e3,
        (c.saturating_sub(a)).as_secs_f64() * 1e3
    );
}

fn which_true() -> PathBuf {
    for p in ["/usr/bin/true", "/bin/true"] {
        if std::path::Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("true")
}

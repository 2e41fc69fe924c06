//! A Docker API client that is not the docker CLI: the Docker SDK for Python (`docker` on
//! PyPI, pinned), in a virtualenv made once under the target directory, runs
//! `docker_sdk.py` against lockbox's Docker API socket — create, list, get, remove and
//! update of secrets and configs, templating (as the SDK spells it, in lower case), API
//! version negotiation and bounds, `/events` with `since`/`until` and filters, and the SDK's
//! errors (`NotFound`, `APIError` with status and message).
//!
//! Needs `python3 -m venv` and PyPI (scripts/prereqs.sh installs python3-venv). Under
//! `CI=true` a missing one is a failure; elsewhere the test says so and returns.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::docker_cli::docker_sock;
use crate::support::Daemon;

/// The SDK version the test pins (the current release).
const SDK: &str = "docker==7.1.0";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A Python with the pinned SDK, or why there is none.
fn python_with_sdk() -> Result<PathBuf, String> {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docker-sdk-venv");
    let py = venv.join("bin/python");
    let has_sdk = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                "import docker, sys; sys.exit(docker.__version__ != '7.1.0')",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_sdk(&py) {
        return Ok(py);
    }
    let o = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "python3 -m venv failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let o = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            SDK,
        ])
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !o.status.success() || !has_sdk(&py) {
        return Err(format!(
            "pip install {SDK} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(py)
}

#[test]
fn python_docker_sdk_drives_secrets_configs_events_and_errors() {
    let py = match python_with_sdk() {
        Ok(py) => py,
        Err(why) => {
            assert!(!ci(), "CI=true and no Docker SDK for Python: {why}");
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let d = Daemon::start();
    let sock = docker_sock(&d);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker_sdk.py");
    let o = Command::new(&py)
        .arg(&script)
        .arg(&sock)
        .arg("sdk")
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_API_VERSION")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "the SDK script failed:\n{stdout}\n{stderr}\ndaemon log:\n{}",
        d.log_text()
    );
    let checks: usize = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_suffix(" checks passed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(checks >= 40, "{stdout}");
}

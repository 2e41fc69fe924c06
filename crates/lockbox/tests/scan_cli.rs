//! `lockbox scan` through the binary: wiring, exit codes, redaction (the rules themselves are
//! tested in `lockbox-scan`).
use std::process::Command;

use crate::support::BIN;

#[test]
fn scan_finds_the_docker_guide_example_and_redacts_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  db:\n    image: mysql\n    environment:\n      MYSQL_ROOT_PASSWORD: foobar\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["scan", "--format", "json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("compose.env-literal-secret"), "{out}");
    assert!(
        !out.contains("foobar"),
        "the secret must be redacted: {out}"
    );

    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  db:\n    image: mysql\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .arg("scan")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let o = Command::new(BIN)
        .args(["scan", "/nonexistent/path"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

//! The scanner's file readers (Compose, Dockerfile, shell, .env, content) on arbitrary bytes.
#![no_main]
use clap::Parser as _;
use libfuzzer_sys::fuzz_target;

#[derive(clap::Parser)]
struct Wrap {
    #[command(flatten)]
    args: lockbox_scan::ScanArgs,
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    for name in ["docker-compose.yml", "Dockerfile", "deploy.sh", ".env", "notes.txt"] {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    let w = Wrap::parse_from(["scan", dir.path().to_str().unwrap(), "--format", "json"]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = lockbox_scan::run(&w.args, &mut out, &mut err);
    assert!(code == 0 || code == 1, "scan of readable files exited {code}: {}", String::from_utf8_lossy(&err));
    // Findings never carry a full secret: the JSON output must parse.
    let _: serde_json::Value = serde_json::from_slice(&out).expect("JSON output parses");
});

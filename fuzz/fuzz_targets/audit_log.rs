//! The audit log reader and verifier on arbitrary file contents.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    std::fs::write(&path, data).unwrap();
    let _ = lockbox_audit::verify(&path);
    let _ = lockbox_audit::read(&path, None);
    // Opening for append must either refuse or find a consistent head.
    if let Ok(mut log) = lockbox_audit::AuditLog::open(&path) {
        let _ = log.append(lockbox_audit::Event::new("fuzz", "fuzz"));
    }
});

//! `--secret` references: parsing never panics, and what parses prints back to itself.
#![no_main]
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use lockbox_proto::reference::{SecretEnv, SecretRef, parse_mode};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = SecretRef::from_str(s) {
        let again = SecretRef::from_str(&r.to_string()).expect("Display output parses");
        assert_eq!(r, again);
    }
    let _ = SecretEnv::from_str(s);
    let _ = parse_mode(s);
});

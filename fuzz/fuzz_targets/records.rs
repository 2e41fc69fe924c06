//! On-disk and replicated records: decoding arbitrary bytes never panics, and a sealed value
//! that decodes never opens under a key it was not sealed with.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lockbox_keyring::{KeyRing, Sealed};
use lockbox_store::{Command, ObjectRecord, ServiceRecord};

fn ring() -> &'static KeyRing {
    static R: OnceLock<KeyRing> = OnceLock::new();
    R.get_or_init(|| KeyRing::generate().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let _ = postcard::from_bytes::<ObjectRecord>(data);
    let _ = postcard::from_bytes::<ServiceRecord>(data);
    let _ = postcard::from_bytes::<Command>(data);
    if let Ok(s) = postcard::from_bytes::<Sealed>(data) {
        let r = ring();
        if s.kek_id == r.current().id() {
            assert!(s.open(r.current(), "id", 1).is_err(), "forged ciphertext opened");
        }
    }
});

//! Unlock keys: parsing never panics; a parsed key prints back to a key that parses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockbox_keyring::UnlockKey;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(k) = UnlockKey::parse(s) {
        let text = k.to_text();
        assert!(UnlockKey::parse(&text).is_ok());
    }
});

//! Request bodies and filters as the native and Docker APIs receive them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockbox_store::{Kind, validate};

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = serde_json::from_slice::<lockbox_proto::Spec>(data) {
        let _ = validate::name(&spec.name);
        if let Some(d) = spec.data.as_deref() {
            if let Ok(v) = lockbox_daemon::ops::decode_data(d) {
                let _ = validate::size(Kind::Secret, v.len());
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        for kind in [Kind::Secret, Kind::Config] {
            let _ = validate::parse_filters(kind, Some(s));
        }
        let _ = lockbox_daemon::ops::parse_since(s);
    }
});

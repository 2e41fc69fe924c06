//! Go templates (`--format`, later templated secrets rendered in the daemon): parsing and
//! running never panic or overflow the stack, with docker's functions and a caller's own.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockbox_gotemplate::{Arity, Funcs, ListFormat, MissingKey, Template, bytes_value};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let mut funcs = Funcs::docker();
    funcs.insert("secret", Arity::Exact(1), |a| Ok(a.str(0)?.into()));
    funcs.insert_method("Label", Arity::Exact(1), |_, a| Ok(a.str(0)?.into()));
    let obj = json!({
        "ID": "x", "Spec": {"Name": "n", "Labels": {"k": "v"}, "Data": bytes_value(b"d\n")},
        "Version": {"Index": 7}, "L": [1, 2.5, "s", null, true], "N": 3,
    });
    if let Ok(t) = Template::parse(src, &funcs) {
        let _ = t.execute(&obj, &funcs);
        let _ = t.missing_key(MissingKey::Error).execute(&obj, &funcs);
    }
    if let Ok(l) = ListFormat::parse(src, &funcs, Some("*secret.secretContext")) {
        let _ = l.render(&[obj.clone(), json!({"ID": "y"})], &funcs, &json!({"ID": "ID"}), &Funcs::docker_header());
    }
});

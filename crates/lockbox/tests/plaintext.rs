//! Invariant 1: plaintext lives only in memory (and consumers' tmpfs). Random markers are
//! looked for, raw and encoded, everywhere the daemon could have put them.
use base64::Engine as _;

use crate::keys::walk;
use crate::support::{Daemon, marker};

fn encodings(m: &str) -> Vec<Vec<u8>> {
    let b = m.as_bytes();
    let utf16: Vec<u8> = m.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    vec![
        b.to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(b)
            .into_bytes(),
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(b)
            .into_bytes(),
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
            .into_bytes(),
        utf16,
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Panics naming the place and encoding if any marker shows up in any of `places`.
pub(crate) fn assert_no_markers(places: &[(String, Vec<u8>)], markers: &[String]) {
    for m in markers {
        for enc in encodings(m) {
            for (place, bytes) in places {
                assert!(
                    !contains(bytes, &enc),
                    "marker found in {place} as {:?}",
                    String::from_utf8_lossy(&enc)
                );
            }
        }
    }
}

#[test]
fn markers_appear_nowhere_on_disk_in_logs_or_process_metadata() {
    let mut d = Daemon::start_with(&["--log-level", "trace"]);
    let markers: Vec<String> = (0..4).map(|_| marker()).collect();
    d.create("m0", markers[0].as_bytes());
    d.create("m1", format!("prefix {} suffix", markers[1]).as_bytes());
    d.lb_in(
        &["secret", "rotate", "m0", "-"],
        Some(markers[2].as_bytes()),
    );
    d.lb(&["secret", "rollback", "m0", "1"]);
    d.lb(&["kek", "rotate"]);
    // An update that sends the (identical) data, as stack deploy does.
    let id = d
        .lb(&["secret", "inspect", "--format", "{{.ID}}", "m1"])
        .stdout
        .trim()
        .to_string();
    let idx = d
        .lb(&["secret", "inspect", "--format", "{{.Version.Index}}", "m1"])
        .stdout
        .trim()
        .to_string();
    let data =
        base64::engine::general_purpose::STANDARD.encode(format!("prefix {} suffix", markers[1]));
    let (st, _) = d.http(
        "POST",
        &format!("/v1/secrets/{id}/update?version={idx}"),
        Some(&format!(r#"{{"Name":"m1","Data":"{data}"}}"#)),
    );
    assert_eq!(st, 200);
    // A failing request that carries a marker must not echo it back or log it.
    let (st, body) = d.http(
        "POST",
        "/v1/secrets/create",
        Some(&format!(r#"{{"Name":"bad name","Data":"{}"}}"#, markers[3])),
    );
    assert_eq!(st, 400);
    assert!(!body.contains(&markers[3]));

    let pid = d.pid();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    d.stop();

    let mut places: Vec<(String, Vec<u8>)> = walk(&d.data())
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    places.push(("daemon log".into(), d.log_text().into_bytes()));
    places.push(("daemon environ".into(), environ));
    places.push(("daemon cmdline".into(), cmdline));
    assert!(places.iter().any(|(p, _)| p.ends_with("store.redb")));
    assert_no_markers(&places, &markers[..3]);
    // The trace log was actually written (so the check above looked at something).
    assert!(d.log_text().len() > 1000);
}

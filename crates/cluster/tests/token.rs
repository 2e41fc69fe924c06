use lockbox_cluster::token::{JoinToken, TokenError};
use proptest::prelude::*;

#[test]
fn display_and_parse_round_trip() {
    let t = JoinToken::generate([7u8; 32]).unwrap();
    let s = t.to_string();
    assert_eq!(s.len(), "LBXTKN-1-".len() + 50 + 1 + 25);
    assert!(s.starts_with("LBXTKN-1-"));
    assert!(
        s[9..]
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || b.is_ascii_lowercase())
    );
    let back: JoinToken = s.parse().unwrap();
    assert_eq!(back, t);
    assert_eq!(back.digest, [7u8; 32]);
    assert_eq!(format!("  {s}\n").parse::<JoinToken>().unwrap(), t);

    let zero = JoinToken {
        digest: [0; 32],
        secret: [0; 16],
    };
    assert_eq!(
        zero.to_string(),
        format!("LBXTKN-1-{}-{}", "0".repeat(50), "0".repeat(25))
    );
    let one = JoinToken {
        digest: {
            let mut d = [0; 32];
            d[31] = 35;
            d
        },
        secret: {
            let mut d = [0; 16];
            d[15] = 36;
            d
        },
    };
    assert_eq!(
        one.to_string(),
        format!("LBXTKN-1-{}z-{}10", "0".repeat(49), "0".repeat(23))
    );
    // The largest values fit, as Swarm's do: 2^256 − 1 and 2^128 − 1.
    let max = JoinToken {
        digest: [0xff; 32],
        secret: [0xff; 16],
    };
    let s = max.to_string();
    assert_eq!(
        s,
        "LBXTKN-1-6dp5qcb22im238nr3wvp0ic7q99w035jmy2iw7i6n43d37jtof-f5lxx1zz5pnorynqglhzmsp33"
    );
    assert_eq!(s.parse::<JoinToken>().unwrap(), max);
}

#[test]
fn secret_matching_and_redaction() {
    let t = JoinToken::generate([1; 32]).unwrap();
    assert!(t.secret_matches(&t.secret));
    let mut other = t.secret;
    other[15] ^= 1;
    assert!(!t.secret_matches(&other));
    let u = JoinToken::generate([1; 32]).unwrap();
    assert_ne!(t.secret, u.secret, "fresh secret each time");
    assert_ne!(t, u);
    let dbg = format!("{t:?}");
    let secret_part = t.to_string().rsplit('-').next().unwrap().to_owned();
    assert!(
        dbg.contains("<redacted>") && !dbg.contains(&secret_part),
        "{dbg}"
    );
}

#[test]
fn malformed_tokens_are_refused_with_what_is_wrong() {
    let good = JoinToken::generate([9; 32]).unwrap().to_string();
    let d = &good[9..59];
    let s = &good[60..];
    let cases: Vec<(String, TokenError)> = vec![
        (String::new(), TokenError::Prefix),
        (format!("SWMTKN-1-{d}-{s}"), TokenError::Prefix),
        (format!("lbxtkn-1-{d}-{s}"), TokenError::Prefix),
        (format!("LBXTKN1-{d}-{s}"), TokenError::Prefix),
        (format!("LBXTKN-2-{d}-{s}"), TokenError::Version("2".into())),
        (
            format!("LBXTKN-2-1-{d}-{s}"),
            TokenError::Version("2".into()),
        ),
        ("LBXTKN-1".into(), TokenError::Parts(2)),
        (format!("LBXTKN-1-{d}"), TokenError::Parts(3)),
        (format!("LBXTKN-1-{d}-{s}-x"), TokenError::Parts(5)),
        (format!("LBXTKN-1-{d}{s}"), TokenError::Parts(3)),
        (
            format!("LBXTKN-1-{}-{s}", &d[1..]),
            TokenError::Length {
                part: "digest",
                expected: 50,
                got: 49,
            },
        ),
        (
            format!("LBXTKN-1-0{d}-{s}"),
            TokenError::Length {
                part: "digest",
                expected: 50,
                got: 51,
            },
        ),
        (
            format!("LBXTKN-1-{d}-{}", &s[1..]),
            TokenError::Length {
                part: "secret",
                expected: 25,
                got: 24,
            },
        ),
        (
            format!("LBXTKN-1-{d}-"),
            TokenError::Length {
                part: "secret",
                expected: 25,
                got: 0,
            },
        ),
        (
            format!("LBXTKN-1-{}A-{s}", &d[1..]),
            TokenError::Character {
                part: "digest",
                ch: 'A',
            },
        ),
        (
            format!("LBXTKN-1-{d}-{}_", &s[1..]),
            TokenError::Character {
                part: "secret",
                ch: '_',
            },
        ),
        (
            format!("LBXTKN-1-{d}-{}é", &s[1..]),
            TokenError::Character {
                part: "secret",
                ch: 'é',
            },
        ),
        (
            format!("LBXTKN-1-{}-{s}", "z".repeat(50)),
            TokenError::Range { part: "digest" },
        ),
        (
            format!("LBXTKN-1-6dp5qcb22im238nr3wvp0ic7q99w035jmy2iw7i6n43d37jtog-{s}"),
            TokenError::Range { part: "digest" },
        ),
        (
            format!("LBXTKN-1-{d}-f5lxx1zz5pnorynqglhzmsp34"),
            TokenError::Range { part: "secret" },
        ),
    ];
    for (text, want) in cases {
        let got = text.parse::<JoinToken>().unwrap_err();
        assert_eq!(got, want, "{text:?}");
        assert!(got.to_string().starts_with("invalid join token: "), "{got}");
    }
    let err = format!("LBXTKN-1-{d}-{}", &s[1..])
        .parse::<JoinToken>()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid join token: the secret part has 24 characters, expected 25"
    );
}

proptest! {
    #[test]
    fn round_trip(digest in any::<[u8; 32]>(), secret in any::<[u8; 16]>()) {
        let t = JoinToken { digest, secret };
        let s = t.to_string();
        prop_assert_eq!(s.len(), 85);
        let back: JoinToken = s.parse().unwrap();
        prop_assert_eq!(back.digest, digest);
        prop_assert_eq!(back.secret, secret);
    }
}

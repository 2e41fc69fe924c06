//! Shamir sharing of the unlock key, at the API boundary.
use lockbox_keyring::UnlockKey;
use lockbox_keyring::shamir::{ShamirError, Share, combine, split};
use proptest::prelude::*;

/// Every subset of `0..n` with `k` members.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..(1 << n))
        .filter(|m| m.count_ones() as usize == k)
        .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
        .collect()
}

#[test]
fn any_k_of_n_rebuild_the_unlock_key_and_k_minus_1_do_not() {
    let key = UnlockKey::generate().unwrap();
    let sealed = key.seal(b"the key ring", b"ring").unwrap();
    let shares = split(key.raw(), 3, 5).unwrap();
    assert_eq!(shares.len(), 5);
    assert_eq!(
        shares.iter().map(Share::index).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    for set in subsets(5, 3)
        .into_iter()
        .chain(subsets(5, 4))
        .chain(subsets(5, 5))
    {
        // Through the printed form, in reverse order, as an operator would type them.
        let picked: Vec<Share> = set
            .iter()
            .rev()
            .map(|&i| Share::parse(&shares[i].to_text()).unwrap())
            .collect();
        let raw = combine(&picked).unwrap();
        let rebuilt = UnlockKey::from_raw(&raw).unwrap();
        assert_eq!(
            &rebuilt.open(&sealed, b"ring").unwrap()[..],
            b"the key ring"
        );
    }
    for set in subsets(5, 2) {
        let picked: Vec<Share> = set.iter().map(|&i| shares[i].clone()).collect();
        assert_eq!(
            combine(&picked).unwrap_err(),
            ShamirError::NotEnough { need: 3, got: 2 }
        );
        assert_eq!(
            combine(&picked).unwrap_err().to_string(),
            "need 3 shares, got 2"
        );
    }
    // K−1 real shares plus one from another split of the same shape: combining "works" but
    // the key it gives does not open the ring, which is the check the daemon relies on.
    let other = split(UnlockKey::generate().unwrap().raw(), 3, 5).unwrap();
    let mixed = vec![shares[0].clone(), shares[1].clone(), other[2].clone()];
    let wrong = UnlockKey::from_raw(&combine(&mixed).unwrap()).unwrap();
    assert!(wrong.open(&sealed, b"ring").is_err());
}

#[test]
fn bad_parameters_are_refused() {
    for (k, n) in [(0, 3), (1, 3), (4, 3), (2, 1), (255, 254), (2, 0)] {
        let err = split(b"secret", k, n).unwrap_err();
        assert_eq!(err, ShamirError::BadParameters { k, n }, "k={k} n={n}");
        assert!(err.to_string().contains("2 ≤ threshold ≤ shares ≤ 255"));
    }
    assert_eq!(split(b"", 2, 3).unwrap_err(), ShamirError::EmptySecret);
    assert_eq!(split(b"x", 255, 255).unwrap().len(), 255);
    assert_eq!(split(b"x", 2, 2).unwrap().len(), 2);
}

#[test]
fn duplicates_mixed_thresholds_and_too_few_are_refused() {
    let a = split(b"0123456789abcdef", 2, 3).unwrap();
    assert_eq!(
        combine(&[a[0].clone(), a[0].clone()]).unwrap_err(),
        ShamirError::DuplicateIndex(1)
    );
    let b = split(b"0123456789abcdef", 3, 3).unwrap();
    let err = combine(&[a[0].clone(), b[1].clone(), b[2].clone()]).unwrap_err();
    assert_eq!(err, ShamirError::MixedThresholds(2, 3));
    assert_eq!(
        combine(&[]).unwrap_err(),
        ShamirError::NotEnough { need: 2, got: 0 }
    );
    assert_eq!(
        combine(&[a[1].clone()]).unwrap_err().to_string(),
        "need 2 shares, got 1"
    );
    let c = split(b"short", 2, 3).unwrap();
    assert_eq!(
        combine(&[a[0].clone(), c[1].clone()]).unwrap_err(),
        ShamirError::MixedLengths
    );
}

#[test]
fn text_form_and_malformed_shares() {
    let shares = split(b"0123456789abcdef0123456789abcdef", 2, 3).unwrap();
    let text = shares[1].to_text();
    assert!(text.starts_with("LBXSHR-1-2-2-"), "{}", &*text);
    assert_eq!(Share::parse(&text).unwrap(), shares[1]);
    assert_eq!(
        format!("  {}\n", &*text).parse::<Share>().unwrap(),
        shares[1]
    );
    // Debug is redacted.
    let dbg = format!("{:?}", shares[1]);
    assert!(
        dbg.contains("<redacted>") && !dbg.contains(&text[13..20]),
        "{dbg}"
    );

    let body = &text["LBXSHR-1-2-2-".len()..];
    for bad in [
        String::new(),
        "LBXSHR-1-".into(),
        format!("LBXSHR-2-2-2-{body}"),
        format!("SWMKEY-1-2-2-{body}"),
        format!("lbxshr-1-2-2-{body}"),
        "LBXSHR-1-2".into(),
        "LBXSHR-1-2-2".into(),
        format!("LBXSHR-1-1-2-{body}"),
        format!("LBXSHR-1-256-2-{body}"),
        format!("LBXSHR-1-+2-2-{body}"),
        format!("LBXSHR-1-x-2-{body}"),
        format!("LBXSHR-1-2-0-{body}"),
        format!("LBXSHR-1-2--{body}"),
        format!("LBXSHR-1-2-2-{body}="),
        format!("LBXSHR-1-2-2-{body}!"),
        "LBXSHR-1-2-2-AAAA".into(),
    ] {
        let err = Share::parse(&bad).unwrap_err();
        assert!(matches!(err, ShamirError::Malformed(_)), "{bad:?}: {err:?}");
        assert!(err.to_string().starts_with("invalid share"), "{err}");
    }
    // Typos in a well-formed share are caught by the checksum, whichever field they hit.
    for bad in [
        format!("LBXSHR-1-3-2-{body}"),
        format!("LBXSHR-1-2-3-{body}"),
    ] {
        assert!(matches!(
            Share::parse(&bad).unwrap_err(),
            ShamirError::Checksum { .. }
        ));
    }
    let mut checked = 0;
    for pos in 0..body.len() {
        let mut typo = body.as_bytes().to_vec();
        typo[pos] = if typo[pos] == b'A' { b'B' } else { b'A' };
        let typo = format!("LBXSHR-1-2-2-{}", String::from_utf8(typo).unwrap());
        match Share::parse(&typo) {
            Err(ShamirError::Checksum { index: 2 }) => checked += 1,
            // The last base64 character may carry unused bits: rejected as non-canonical.
            Err(ShamirError::Malformed(_)) if pos == body.len() - 1 => {}
            other => panic!("typo at {pos} not caught: {other:?}"),
        }
    }
    assert!(checked >= body.len() - 1);
    let err = Share::parse(&format!("LBXSHR-1-2-3-{body}")).unwrap_err();
    assert!(err.to_string().contains("mistyped"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn split_combine_round_trip(
        secret in proptest::collection::vec(any::<u8>(), 1..48),
        k in 2u8..8,
        extra in 0u8..6,
        seed in any::<u64>(),
    ) {
        let n = k + extra;
        let shares = split(&secret, k, n).unwrap();
        prop_assert_eq!(shares.len(), usize::from(n));
        // A pseudo-random choice of k of them, through the text form.
        let mut order: Vec<usize> = (0..usize::from(n)).collect();
        let mut s = seed;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        let picked: Vec<Share> = order[..usize::from(k)]
            .iter()
            .map(|&i| shares[i].to_text().parse().unwrap())
            .collect();
        prop_assert_eq!(&combine(&picked).unwrap()[..], &secret[..]);
        prop_assert_eq!(
            combine(&picked[..usize::from(k) - 1]).unwrap_err(),
            ShamirError::NotEnough { need: k, got: usize::from(k) - 1 }
        );
    }
}

//! The key hierarchy, tested at its API boundary.
use lockbox_keyring::{KeyMode, KeyRing, KeyringError, RingFile, Sealed, UnlockKey};
use proptest::prelude::*;

mod shamir;

#[test]
fn seal_open_round_trip_and_binding() {
    let ring = KeyRing::generate().unwrap();
    let kek = ring.current();
    let s = Sealed::seal(kek, "abc", 1, b"hunter2").unwrap();
    assert_eq!(&s.open(kek, "abc", 1).unwrap()[..], b"hunter2");
    // Bound to the object and the version: moving a sealed value fails closed.
    assert!(matches!(
        s.open(kek, "abd", 1),
        Err(KeyringError::Open { .. })
    ));
    assert!(matches!(
        s.open(kek, "abc", 2),
        Err(KeyringError::Open { .. })
    ));
    // The plaintext is not in the sealed bytes.
    let hay = [s.ciphertext.clone(), s.wrapped_dek.clone()].concat();
    assert!(!hay.windows(7).any(|w| w == b"hunter2"));
    // Two seals of one value differ (fresh DEK and nonce each time).
    let t = Sealed::seal(kek, "abc", 1, b"hunter2").unwrap();
    assert_ne!(s.ciphertext, t.ciphertext);
    assert_ne!(s.wrapped_dek, t.wrapped_dek);
}

#[test]
fn tampering_is_detected() {
    let ring = KeyRing::generate().unwrap();
    let kek = ring.current();
    let mut s = Sealed::seal(kek, "x", 1, b"value").unwrap();
    let last = s.ciphertext.len() - 1;
    s.ciphertext[last] ^= 1;
    assert!(s.open(kek, "x", 1).is_err());
    let mut s = Sealed::seal(kek, "x", 1, b"value").unwrap();
    s.wrapped_dek[30] ^= 1;
    assert!(s.open(kek, "x", 1).is_err());
}

#[test]
fn kek_rotation_rewraps_without_touching_values() {
    let mut ring = KeyRing::generate().unwrap();
    let s = Sealed::seal(ring.current(), "id", 3, b"v").unwrap();
    let old_id = ring.current().id();
    let new_id = ring.rotate().unwrap();
    assert_ne!(old_id, new_id);
    let wrapped = s
        .rewrap(ring.get(old_id).unwrap(), ring.current(), "id", 3)
        .unwrap();
    let s2 = Sealed {
        kek_id: new_id,
        wrapped_dek: wrapped,
        ciphertext: s.ciphertext.clone(),
    };
    ring.retire_old();
    assert_eq!(&s2.open(ring.current(), "id", 3).unwrap()[..], b"v");
    assert!(ring.get(old_id).is_err());
}

#[test]
fn ring_file_modes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    assert!(RingFile::read(&path).unwrap().is_none());
    let ring = KeyRing::generate().unwrap();
    let s = Sealed::seal(ring.current(), "o", 1, b"payload").unwrap();

    RingFile::write(&path, &ring, None).unwrap();
    let mode = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);
    let f = RingFile::read(&path).unwrap().unwrap();
    assert_eq!(f.mode(), KeyMode::File);
    assert_eq!(
        &s.open(f.open_plain().unwrap().current(), "o", 1).unwrap()[..],
        b"payload"
    );

    let key = UnlockKey::generate().unwrap();
    RingFile::write(&path, &ring, Some(&key)).unwrap();
    let f = RingFile::read(&path).unwrap().unwrap();
    assert_eq!(f.mode(), KeyMode::Autolock);
    assert!(matches!(f.open_plain(), Err(KeyringError::Locked)));
    let other = UnlockKey::generate().unwrap();
    assert!(matches!(
        f.unlock(&other),
        Err(KeyringError::WrongUnlockKey)
    ));
    assert_eq!(
        f.unlock(&other).unwrap_err().to_string(),
        "could not be unlocked: invalid key provided"
    );
    let reopened = f
        .unlock(&UnlockKey::parse(&key.to_text()).unwrap())
        .unwrap();
    assert_eq!(&s.open(reopened.current(), "o", 1).unwrap()[..], b"payload");
    // The sealed file holds no key in the clear.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("plain"));
}

#[test]
fn unlock_key_format() {
    let k = UnlockKey::generate().unwrap();
    let t = k.to_text();
    assert!(t.starts_with("LBXKEY-1-"));
    assert_eq!(t.len(), "LBXKEY-1-".len() + 43);
    for bad in [
        "",
        "SWMKEY-1-abc",
        "LBXKEY-1-",
        "LBXKEY-1-!!!!",
        "LBXKEY-1-YWJj",
    ] {
        let e = UnlockKey::parse(bad).unwrap_err();
        assert_eq!(e.to_string(), "invalid key string", "{bad:?}");
    }
    assert!(!format!("{k:?}").contains(&t[9..]));
}

#[test]
fn corrupt_ring_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    std::fs::write(&path, b"{\"format\":1,").unwrap();
    let e = RingFile::read(&path).err().unwrap();
    assert!(e.to_string().contains("malformed"), "{e}");
}

proptest! {
    #[test]
    fn any_value_round_trips(data in proptest::collection::vec(any::<u8>(), 1..4096), version in 1u64..1000) {
        let ring = KeyRing::generate().unwrap();
        let s = Sealed::seal(ring.current(), "obj", version, &data).unwrap();
        prop_assert_eq!(&s.open(ring.current(), "obj", version).unwrap()[..], &data[..]);
    }
}

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use zeroize::Zeroizing;

use crate::{KeyringError, random_bytes};

const PREFIX: &str = "LBXKEY-1-";

/// The autolock unlock key: 32 random bytes, shown to the user once as
/// `LBXKEY-1-<standard base64 without padding>` (Swarm's `SWMKEY-1-` format with lockbox's
/// prefix). Users cannot choose it, so it needs no password hashing.
pub struct UnlockKey(Zeroizing<[u8; 32]>);

impl UnlockKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyringError> {
        Ok(Self(random_bytes::<32>()?))
    }

    /// Parses the printed form; anything else is `invalid key string`.
    pub fn parse(s: &str) -> Result<Self, KeyringError> {
        let body = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(KeyringError::BadUnlockKey)?;
        let bytes = Zeroizing::new(
            STANDARD_NO_PAD
                .decode(body)
                .map_err(|_| KeyringError::BadUnlockKey)?,
        );
        let arr: [u8; 32] = bytes[..]
            .try_into()
            .map_err(|_| KeyringError::BadUnlockKey)?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// The printed form. The caller must treat the string as secret.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{PREFIX}{}", STANDARD_NO_PAD.encode(&self.0[..])))
    }

    /// Seals `data` under this key (XChaCha20-Poly1305, random nonce); `aad` names what it
    /// is, so a blob sealed as one thing cannot be opened as another. For backups.
    pub fn seal(&self, data: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyringError> {
        crate::aead::seal_raw(&self.0, data, aad)
    }

    /// Opens what [`UnlockKey::seal`] sealed with the same `aad`; a wrong key or damaged
    /// bytes give [`KeyringError::WrongUnlockKey`].
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        crate::aead::open_raw(&self.0, sealed, aad, "sealed blob")
            .map_err(|_| KeyringError::WrongUnlockKey)
    }

    /// The raw key (for Shamir splitting).
    pub fn raw(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from its 32 raw bytes (Shamir recombination).
    pub fn from_raw(bytes: &[u8]) -> Result<Self, KeyringError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyringError::BadUnlockKey)?;
        Ok(Self(Zeroizing::new(arr)))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockKey(<redacted>)")
    }
}

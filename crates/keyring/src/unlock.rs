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

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockKey(<redacted>)")
    }
}

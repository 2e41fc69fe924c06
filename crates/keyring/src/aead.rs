use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::random_bytes;
use crate::ring::Kek;

const NONCE: usize = 24;

/// Errors of the key hierarchy. None of them carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The OS random source failed.
    #[error("cannot read random bytes from the OS: {0}")]
    Random(String),
    /// A ciphertext did not authenticate: wrong key, wrong object/version, or tampering.
    #[error("cannot open {what}: authentication failed (wrong key or tampered data)")]
    Open { what: &'static str },
    /// A sealed value names a KEK the ring does not hold.
    #[error("key-encryption key {0} is not in the key ring")]
    UnknownKek(u32),
    /// The unlock key is not of the form `LBXKEY-1-<base64 of 32 bytes>`.
    #[error("invalid key string")]
    BadUnlockKey,
    /// The unlock key is well formed but does not open the key ring.
    #[error("could not be unlocked: invalid key provided")]
    WrongUnlockKey,
    /// The key ring file is missing, unreadable or malformed.
    #[error("key ring {path}: {reason}")]
    RingFile { path: String, reason: String },
    /// The ring is sealed by an unlock key and was not unlocked.
    #[error("the key ring is locked")]
    Locked,
}

/// A value sealed under a per-version data key, with that data key wrapped by a KEK.
/// This is what the store and the raft log hold; it is safe to replicate and persist.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Which KEK wrapped `wrapped_dek`.
    pub kek_id: u32,
    /// nonce ‖ XChaCha20-Poly1305(KEK, DEK, aad = "lockbox/dek" ‖ kek id ‖ object ‖ version)
    pub wrapped_dek: Vec<u8>,
    /// nonce ‖ XChaCha20-Poly1305(DEK, value, aad = "lockbox/value" ‖ object ‖ version)
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("kek_id", &self.kek_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

fn aad(domain: &str, kek_id: Option<u32>, object: &str, version: u64) -> Vec<u8> {
    // Length-prefixed fields so that no two (object, version) pairs share an encoding.
    let mut out = Vec::with_capacity(domain.len() + object.len() + 24);
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    if let Some(k) = kek_id {
        out.extend_from_slice(&k.to_be_bytes());
    }
    out.extend_from_slice(&(object.len() as u32).to_be_bytes());
    out.extend_from_slice(object.as_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out
}

pub(crate) fn seal_raw(key: &[u8; 32], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyringError> {
    let cipher = XChaCha20Poly1305::new_from_slice(key).expect("32-byte key");
    let nonce = random_bytes::<NONCE>()?;
    let xnonce = XNonce::try_from(&nonce[..]).expect("24-byte nonce");
    let ct = cipher
        .encrypt(&xnonce, Payload { msg, aad })
        .map_err(|_| KeyringError::Random("encryption failed".into()))?;
    let mut out = Vec::with_capacity(NONCE + ct.len());
    out.extend_from_slice(&nonce[..]);
    out.extend_from_slice(&ct);
    Ok(out)
}

pub(crate) fn open_raw(
    key: &[u8; 32],
    sealed: &[u8],
    aad: &[u8],
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    if sealed.len() < NONCE + 16 {
        return Err(KeyringError::Open { what });
    }
    let cipher = XChaCha20Poly1305::new_from_slice(key).expect("32-byte key");
    let xnonce = XNonce::try_from(&sealed[..NONCE]).expect("24-byte nonce");
    cipher
        .decrypt(
            &xnonce,
            Payload {
                msg: &sealed[NONCE..],
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| KeyringError::Open { what })
}

impl Sealed {
    /// Seals `plaintext` as version `version` of object `object` under a fresh data key.
    pub fn seal(
        kek: &Kek,
        object: &str,
        version: u64,
        plaintext: &[u8],
    ) -> Result<Self, KeyringError> {
        let dek = random_bytes::<32>()?;
        let ciphertext = seal_raw(
            &dek,
            plaintext,
            &aad("lockbox/value", None, object, version),
        )?;
        let wrapped_dek = seal_raw(
            kek.key(),
            &dek[..],
            &aad("lockbox/dek", Some(kek.id()), object, version),
        )?;
        Ok(Self {
            kek_id: kek.id(),
            wrapped_dek,
            ciphertext,
        })
    }

    /// Opens a value sealed by [`Sealed::seal`] for the same object and version.
    pub fn open(
        &self,
        kek: &Kek,
        object: &str,
        version: u64,
    ) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        if kek.id() != self.kek_id {
            return Err(KeyringError::UnknownKek(self.kek_id));
        }
        let dek = self.unwrap_dek(kek, object, version)?;
        let dek: &[u8; 32] = dek[..]
            .try_into()
            .map_err(|_| KeyringError::Open { what: "data key" })?;
        open_raw(
            dek,
            &self.ciphertext,
            &aad("lockbox/value", None, object, version),
            "secret value",
        )
    }

    fn unwrap_dek(
        &self,
        kek: &Kek,
        object: &str,
        version: u64,
    ) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        open_raw(
            kek.key(),
            &self.wrapped_dek,
            &aad("lockbox/dek", Some(kek.id()), object, version),
            "data key",
        )
    }

    /// Re-wraps the data key under `new` without touching the value's ciphertext
    /// (KEK rotation). Returns the new `wrapped_dek`.
    pub fn rewrap(
        &self,
        old: &Kek,
        new: &Kek,
        object: &str,
        version: u64,
    ) -> Result<Vec<u8>, KeyringError> {
        let dek = self.unwrap_dek(old, object, version)?;
        seal_raw(
            new.key(),
            &dek,
            &aad("lockbox/dek", Some(new.id()), object, version),
        )
    }
}

//! lockbox's key hierarchy.
//!
//! ```text
//! unlock key (autolock, printed once)  ──seals──►  KEK ring (file: keyring.json)
//! KEK (32 random bytes, id N)          ──wraps──►  DEK, one per secret version
//! DEK (32 random bytes)                ──seals──►  the value, AAD = (object ID, version)
//! ```
//!
//! All three layers use XChaCha20-Poly1305 with random 24-byte nonces, which are safe to
//! draw at random for the life of a key. Every ciphertext is bound by its associated data
//! to what it belongs to, so a sealed value moved to another secret or version, or a DEK
//! moved to another version, fails to open instead of decrypting as something else.
//!
//! Architecture invariant: this crate does no I/O except reading and writing the key ring
//! file, and it never logs. Plaintext leaves it only inside [`Zeroizing`] buffers.
#![forbid(unsafe_code)]

mod aead;
mod ring;
mod unlock;

pub mod shamir;

pub use aead::{KeyringError, Sealed};
pub use ring::{Kek, KeyMode, KeyRing, RingFile};
pub use unlock::UnlockKey;
pub use zeroize::Zeroizing;

/// Fills a fresh buffer from the OS's CSPRNG. Key material only; a failure here means the
/// machine cannot give randomness and nothing can be sealed safely, so it is an error.
pub fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, KeyringError> {
    let mut buf = Zeroizing::new([0u8; N]);
    getrandom::fill(buf.as_mut()).map_err(|e| KeyringError::Random(e.to_string()))?;
    Ok(buf)
}

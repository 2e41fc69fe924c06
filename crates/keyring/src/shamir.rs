//! Shamir secret sharing of the unlock key (Vault-style "unseal keys").
//!
//! [`split`] cuts a secret into `n` shares of which any `k` rebuild it ([`combine`]); fewer
//! than `k` say nothing about it. The arithmetic is vsss-rs's GF(256) (`Gf256`), which is
//! audited and constant-time (no lookup tables); each byte of the secret gets its own random
//! polynomial of degree `k − 1` with coefficients drawn from the OS CSPRNG.
//!
//! A share's printed form is
//!
//! ```text
//! LBXSHR-1-<k>-<index>-<standard base64 without padding of: value ‖ checksum>
//! ```
//!
//! where `k` is the threshold and `index` the share's x coordinate (1..=255), both decimal,
//! and the checksum is the first 4 bytes of SHA-256 over a domain tag, `k`, `index` and the
//! value. A mistyped share (any field) is therefore refused on its own, before it is mixed
//! with others and silently gives a wrong key.
//!
//! What sharing cannot detect: shares from two *different* splits with the same threshold
//! combine into garbage. The caller (the daemon) relies on the rebuilt unlock key failing to
//! open the key ring, which is authenticated.
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use getrandom::SysRng;
use getrandom::rand_core::UnwrapErr;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use vsss_rs::Gf256;
use vsss_rs::IdentifierGf256;
use zeroize::Zeroizing;

const PREFIX: &str = "LBXSHR-1-";
const CHECKSUM_LEN: usize = 4;
const CHECKSUM_TAG: &[u8] = b"lockbox/shamir-share/v1\0";

/// Everything that can go wrong splitting, parsing or combining shares.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShamirError {
    /// `k` or `n` out of range.
    #[error("cannot split into {n} shares with threshold {k}: need 2 ≤ threshold ≤ shares ≤ 255")]
    BadParameters { k: u8, n: u8 },
    /// Nothing to split.
    #[error("cannot split an empty secret")]
    EmptySecret,
    /// The OS random source failed.
    #[error("cannot read random bytes from the OS: {0}")]
    Random(String),
    /// The text is not of the form `LBXSHR-1-<k>-<index>-<base64>`.
    #[error("invalid share (expected LBXSHR-1-<threshold>-<index>-<base64>): {0}")]
    Malformed(&'static str),
    /// Well formed, but the checksum does not match: a typo or a damaged share.
    #[error(
        "invalid share {index}: checksum mismatch (the share was mistyped or damaged; check every character)"
    )]
    Checksum { index: u8 },
    /// Two shares with the same index.
    #[error("share {0} was given more than once")]
    DuplicateIndex(u8),
    /// Shares from splits with different thresholds.
    #[error("shares come from different splits: one needs {0} shares, another {1}")]
    MixedThresholds(u8, u8),
    /// Shares of different lengths (so from different splits).
    #[error("shares come from different splits: their lengths differ")]
    MixedLengths,
    /// Fewer shares than the threshold.
    #[error("need {need} shares, got {got}")]
    NotEnough { need: u8, got: usize },
    /// vsss-rs refused (should not happen after our own checks).
    #[error("cannot combine shares: {0}")]
    Combine(String),
}

/// One share: threshold, index (x coordinate, 1..=255) and value (one byte per secret byte).
/// `Debug` is redacted; the printed form ([`Share::to_text`]) is secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Share {
    threshold: u8,
    index: u8,
    value: Zeroizing<Vec<u8>>,
}

impl Share {
    /// How many shares rebuild the secret.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// This share's index (1..=255); distinct within a split.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The printed form `LBXSHR-1-<k>-<index>-<base64>`. The caller must treat it as secret.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut payload = Zeroizing::new(Vec::with_capacity(self.value.len() + CHECKSUM_LEN));
        payload.extend_from_slice(&self.value);
        payload.extend_from_slice(&checksum(self.threshold, self.index, &self.value));
        Zeroizing::new(format!(
            "{PREFIX}{}-{}-{}",
            self.threshold,
            self.index,
            STANDARD_NO_PAD.encode(&payload[..])
        ))
    }

    /// Parses the printed form (surrounding whitespace ignored). Every field is checked,
    /// and the checksum catches typos.
    pub fn parse(s: &str) -> Result<Self, ShamirError> {
        let body = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(ShamirError::Malformed("it does not start with LBXSHR-1-"))?;
        let mut parts = body.splitn(3, '-');
        let k = parts
            .next()
            .ok_or(ShamirError::Malformed("the threshold is missing"))?;
        let index = parts
            .next()
            .ok_or(ShamirError::Malformed("the index is missing"))?;
        let data = parts
            .next()
            .ok_or(ShamirError::Malformed("the share data is missing"))?;
        let k = parse_u8(k).ok_or(ShamirError::Malformed(
            "the threshold is not a number from 2 to 255",
        ))?;
        if k < 2 {
            return Err(ShamirError::Malformed(
                "the threshold is not a number from 2 to 255",
            ));
        }
        let index = parse_u8(index).ok_or(ShamirError::Malformed(
            "the index is not a number from 1 to 255",
        ))?;
        if index == 0 {
            return Err(ShamirError::Malformed(
                "the index is not a number from 1 to 255",
            ));
        }
        let payload = Zeroizing::new(
            STANDARD_NO_PAD
                .decode(data)
                .map_err(|_| ShamirError::Malformed("the share data is not valid base64"))?,
        );
        if payload.len() <= CHECKSUM_LEN {
            return Err(ShamirError::Malformed("the share data is too short"));
        }
        let (value, sum) = payload.split_at(payload.len() - CHECKSUM_LEN);
        if !bool::from(checksum(k, index, value).ct_eq(sum)) {
            return Err(ShamirError::Checksum { index });
        }
        Ok(Self {
            threshold: k,
            index,
            value: Zeroizing::new(value.to_vec()),
        })
    }
}

impl FromStr for Share {
    type Err = ShamirError;
    fn from_str(s: &str) -> Result<Self, ShamirError> {
        Self::parse(s)
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("threshold", &self.threshold)
            .field("index", &self.index)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Decimal digits only (no sign, no spaces), as printed.
fn parse_u8(s: &str) -> Option<u8> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn checksum(k: u8, index: u8, value: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = Sha256::new();
    h.update(CHECKSUM_TAG);
    h.update([k, index]);
    h.update(value);
    let d = h.finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&d[..CHECKSUM_LEN]);
    out
}

/// Splits `secret` into `n` shares, any `k` of which rebuild it: 2 ≤ k ≤ n ≤ 255 and a
/// non-empty secret. Share indices are 1..=n.
pub fn split(secret: &[u8], k: u8, n: u8) -> Result<Vec<Share>, ShamirError> {
    if k < 2 || n < k {
        return Err(ShamirError::BadParameters { k, n });
    }
    if secret.is_empty() {
        return Err(ShamirError::EmptySecret);
    }
    // Probe the OS source first, so the unwrapping adapter below cannot panic in practice.
    getrandom::fill(&mut [0u8; 16]).map_err(|e| ShamirError::Random(e.to_string()))?;
    let ids = (1..=n).map(|i| IdentifierGf256(Gf256::from(i)));
    let raw = Gf256::split_bytes_with_participant_ids_iter(
        usize::from(k),
        usize::from(n),
        secret,
        UnwrapErr(SysRng),
        ids,
    )
    .map_err(|e| ShamirError::Combine(format!("{e:?}")))?;
    Ok(raw
        .into_iter()
        .map(|v| {
            let v = Zeroizing::new(v);
            Share {
                threshold: k,
                index: v[0],
                value: Zeroizing::new(v[1..].to_vec()),
            }
        })
        .collect())
}

/// Rebuilds the secret from at least `k` shares of one split. Refuses duplicate indices,
/// shares of different thresholds or lengths, and too few shares ("need K shares, got M").
/// Shares of two different splits with the same threshold give a wrong secret, not an
/// error: authenticate what the secret opens.
pub fn combine(shares: &[Share]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    let first = shares
        .first()
        .ok_or(ShamirError::NotEnough { need: 2, got: 0 })?;
    let k = first.threshold;
    let len = first.value.len();
    let mut seen = [false; 256];
    for s in shares {
        if s.threshold != k {
            return Err(ShamirError::MixedThresholds(k, s.threshold));
        }
        if s.index == 0 {
            return Err(ShamirError::Malformed(
                "the index is not a number from 1 to 255",
            ));
        }
        if std::mem::replace(&mut seen[usize::from(s.index)], true) {
            return Err(ShamirError::DuplicateIndex(s.index));
        }
        if s.value.len() != len || len == 0 {
            return Err(ShamirError::MixedLengths);
        }
    }
    if shares.len() < usize::from(k) {
        return Err(ShamirError::NotEnough {
            need: k,
            got: shares.len(),
        });
    }
    let raw: Vec<Zeroizing<Vec<u8>>> = shares
        .iter()
        .map(|s| {
            let mut v = Zeroizing::new(Vec::with_capacity(len + 1));
            v.push(s.index);
            v.extend_from_slice(&s.value);
            v
        })
        .collect();
    // vsss-rs takes `&[Vec<u8>]`; build it from clones that we wipe afterwards.
    let mut plain: Vec<Vec<u8>> = raw.iter().map(|v| v.to_vec()).collect();
    let out = Gf256::combine_bytes(&plain).map_err(|e| ShamirError::Combine(format!("{e:?}")));
    for v in &mut plain {
        zeroize::Zeroize::zeroize(v);
    }
    Ok(Zeroizing::new(out?))
}

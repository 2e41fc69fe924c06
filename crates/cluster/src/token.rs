//! Join tokens: `LBXTKN-1-<CA digest>-<secret>`, Swarm's `SWMTKN-1-…` with our prefix.
//!
//! The digest is the SHA-256 of the cluster CA certificate as a base36 number (digits
//! `0-9a-z`), zero-padded to 50 characters; the secret is 128 random bits in base36,
//! zero-padded to 25 characters. The digest lets a node with nothing pin the CA
//! ([`crate::tls::bootstrap_client_config`]); the secret authorizes the join and is compared
//! in constant time. Worker and manager tokens share the digest; rotating a token changes
//! only the secret, rotating the CA only the digest.
use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Result;

const PREFIX: &str = "LBXTKN";
const VERSION: &str = "1";
/// Characters of the digest part.
pub const DIGEST_CHARS: usize = 50;
/// Characters of the secret part.
pub const SECRET_CHARS: usize = 25;

/// Why a string is not a join token. Each names the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// It does not start with `LBXTKN-`.
    #[error("invalid join token: it does not start with LBXTKN-")]
    Prefix,
    /// A version other than 1.
    #[error("invalid join token: unsupported version {0:?} (expected LBXTKN-1-…)")]
    Version(String),
    /// Not four `-`-separated parts.
    #[error(
        "invalid join token: expected LBXTKN-1-<50-character digest>-<25-character secret>, got {0} parts"
    )]
    Parts(usize),
    /// The digest or secret part has the wrong length.
    #[error("invalid join token: the {part} part has {got} characters, expected {expected}")]
    Length {
        part: &'static str,
        expected: usize,
        got: usize,
    },
    /// A character outside `0-9a-z`.
    #[error("invalid join token: the {part} part has the character {ch:?} (only 0-9 and a-z)")]
    Character { part: &'static str, ch: char },
    /// The base36 number does not fit (2^256 for the digest, 2^128 for the secret).
    #[error("invalid join token: the {part} part is out of range")]
    Range { part: &'static str },
}

/// A join token. `Display` gives the secret form; `Debug` redacts the secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate DER.
    pub digest: [u8; 32],
    /// 128 random bits.
    pub secret: [u8; 16],
}

impl JoinToken {
    /// A token for the CA with this digest and a fresh random secret.
    pub fn generate(ca_digest: [u8; 32]) -> Result<JoinToken> {
        Ok(JoinToken {
            digest: ca_digest,
            secret: *crate::random_bytes::<16>()?,
        })
    }

    /// Whether `other` is this token's secret, in constant time.
    pub fn secret_matches(&self, other: &[u8; 16]) -> bool {
        self.secret.ct_eq(other).into()
    }
}

/// Constant time in the secret.
impl PartialEq for JoinToken {
    fn eq(&self, other: &Self) -> bool {
        (self.digest.ct_eq(&other.digest) & self.secret.ct_eq(&other.secret)).into()
    }
}

impl Eq for JoinToken {}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}-{VERSION}-{}-{}",
            to_base36(&self.digest, DIGEST_CHARS),
            to_base36(&self.secret, SECRET_CHARS)
        )
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("digest", &crate::pki::hex(&self.digest))
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    /// Parses `LBXTKN-1-<digest>-<secret>` (surrounding whitespace ignored).
    fn from_str(s: &str) -> Result<Self, TokenError> {
        let s = s.trim();
        let rest = s
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('-'))
            .ok_or(TokenError::Prefix)?;
        let parts: Vec<&str> = rest.split('-').collect();
        if parts[0] != VERSION {
            return Err(TokenError::Version(parts[0].to_owned()));
        }
        if parts.len() != 3 {
            return Err(TokenError::Parts(parts.len() + 1));
        }
        let digest = from_base36::<32>(parts[1], "digest", DIGEST_CHARS)?;
        let secret = from_base36::<16>(parts[2], "secret", SECRET_CHARS)?;
        Ok(JoinToken { digest, secret })
    }
}

const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Big-endian bytes as a base36 number, left-padded with '0' to `width`.
fn to_base36(bytes: &[u8], width: usize) -> String {
    let mut n = bytes.to_vec();
    let mut out = Vec::with_capacity(width);
    while n.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        out.push(DIGITS[rem as usize]);
    }
    n.zeroize();
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn from_base36<const N: usize>(
    s: &str,
    part: &'static str,
    width: usize,
) -> Result<[u8; N], TokenError> {
    let got = s.chars().count();
    if got != width {
        return Err(TokenError::Length {
            part,
            expected: width,
            got,
        });
    }
    let mut n = [0u8; N];
    for ch in s.chars() {
        let d = match ch {
            '0'..='9' => ch as u32 - '0' as u32,
            'a'..='z' => ch as u32 - 'a' as u32 + 10,
            _ => return Err(TokenError::Character { part, ch }),
        };
        // n = n * 36 + d, from the least significant byte up.
        let mut carry = d;
        for b in n.iter_mut().rev() {
            let cur = u32::from(*b) * 36 + carry;
            *b = cur as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            n.zeroize();
            return Err(TokenError::Range { part });
        }
    }
    Ok(n)
}

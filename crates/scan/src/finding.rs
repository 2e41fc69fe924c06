//! The finding model shared by every rule family and every output format.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How bad a finding is. Ordered so `--min-severity` is a plain comparison.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// SARIF only knows note/warning/error; GitHub reads the finer grade from
    /// `security-severity`.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Info | Severity::Low => "note",
            Severity::Medium => "warning",
            Severity::High | Severity::Critical => "error",
        }
    }

    /// The CVSS-like score GitHub code scanning maps to its own severity labels.
    pub fn security_severity(self) -> &'static str {
        match self {
            Severity::Info => "1.0",
            Severity::Low => "3.0",
            Severity::Medium => "5.5",
            Severity::High => "8.0",
            Severity::Critical => "9.5",
        }
    }
}

/// What is shown of a secret: a short prefix and the length, never the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redacted {
    pub prefix: String,
    pub length: usize,
}

impl Redacted {
    /// Shows at most a quarter of the secret (and never more than 4 characters), so a short
    /// password such as `foobar` gives away one character only.
    pub fn of(secret: &str) -> Redacted {
        let length = secret.chars().count();
        let shown = match length {
            0..=7 => 1.min(length),
            8..=15 => 2,
            _ => 4,
        };
        Redacted {
            prefix: secret.chars().take(shown).collect(),
            length,
        }
    }
}

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}… ({} chars)", self.prefix, self.length)
    }
}

/// One problem at one place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    /// Display path: relative to the scan root for files, `docker-image:REF/…` or
    /// `docker-container:NAME` for engine objects.
    pub path: String,
    /// 1-based; 0 when the place has no lines (an image's config, a container).
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub end_column: usize,
    pub message: String,
    pub fix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Redacted>,
    /// Stable across line moves: derived from rule, path and the secret (or the subject of
    /// a structural finding), so a baseline survives edits above the finding.
    pub fingerprint: String,
}

impl Finding {
    /// `key` is what identifies the finding besides rule and path: the secret itself for
    /// value findings, the variable or secret name for structural ones. Only a hash of it is
    /// kept.
    pub fn fingerprint_of(rule: &str, path: &str, key: &str) -> String {
        let mut h = Sha256::new();
        h.update(rule.as_bytes());
        h.update([0]);
        h.update(path.as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        hex::encode(&h.finalize()[..12])
    }
}

/// Shannon entropy in bits per byte.
pub fn shannon_entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let len = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_never_shows_more_than_a_quarter() {
        let r = Redacted::of("foobar");
        assert_eq!(r.prefix, "f");
        assert_eq!(r.length, 6);
        let r = Redacted::of("ghp_0123456789abcdefghijklmnopqrstuvwxyz");
        assert_eq!(r.to_string(), "ghp_… (40 chars)");
        assert_eq!(Redacted::of("").to_string(), "… (0 chars)");
    }

    #[test]
    fn entropy_orders_random_above_repetitive() {
        assert!(shannon_entropy(b"aaaaaaaa") < 0.01);
        assert!(shannon_entropy(b"q8Z3vL0pX7nR2mK5") > 3.9);
    }
}

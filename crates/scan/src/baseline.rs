//! Baseline files: the findings a team accepted when adopting `lockbox scan` on an old
//! repository. Only rule, path and fingerprint are stored — never the secret or its prefix.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::finding::Finding;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("reading baseline {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("baseline {path} is not a lockbox baseline: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("writing baseline {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Entry {
    rule: String,
    path: String,
    fingerprint: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    lockbox_scan_baseline: u32,
    findings: Vec<Entry>,
}

pub struct Baseline {
    keys: BTreeSet<(String, String)>,
}

impl Baseline {
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let p = path.display().to_string();
        let data = std::fs::read(path).map_err(|source| BaselineError::Read {
            path: p.clone(),
            source,
        })?;
        let f: File = serde_json::from_slice(&data)
            .map_err(|source| BaselineError::Parse { path: p, source })?;
        Ok(Baseline {
            keys: f
                .findings
                .into_iter()
                .map(|e| (e.rule, e.fingerprint))
                .collect(),
        })
    }

    pub fn contains(&self, f: &Finding) -> bool {
        self.keys.contains(&(f.rule.clone(), f.fingerprint.clone()))
    }

    pub fn write(path: &Path, findings: &[Finding]) -> Result<(), BaselineError> {
        let mut entries: Vec<Entry> = findings
            .iter()
            .map(|f| Entry {
                rule: f.rule.clone(),
                path: f.path.clone(),
                fingerprint: f.fingerprint.clone(),
            })
            .collect();
        entries.sort_by(|a, b| {
            (&a.path, &a.rule, &a.fingerprint).cmp(&(&b.path, &b.rule, &b.fingerprint))
        });
        entries.dedup_by(|a, b| a.rule == b.rule && a.fingerprint == b.fingerprint);
        let mut body = serde_json::to_vec_pretty(&File {
            lockbox_scan_baseline: 1,
            findings: entries,
        })
        .map_err(|e| BaselineError::Write {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        body.push(b'\n');
        std::fs::write(path, body).map_err(|source| BaselineError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

//! Text, JSON and SARIF 2.1.0 renderings. None of them ever holds a secret: findings carry
//! only a redacted prefix and a length.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

use crate::finding::{Finding, Severity};
use crate::rules::all_rules;

pub struct Summary {
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    pub suppressed_by_baseline: usize,
}

fn counts(findings: &[Finding]) -> BTreeMap<Severity, usize> {
    let mut m = BTreeMap::new();
    for f in findings {
        *m.entry(f.severity).or_insert(0) += 1;
    }
    m
}

pub fn write_text(
    w: &mut dyn Write,
    findings: &[Finding],
    summary: &Summary,
) -> std::io::Result<()> {
    let mut by_path: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        by_path.entry(&f.path).or_default().push(f);
    }
    for (path, fs) in &by_path {
        writeln!(w, "{path}")?;
        for f in fs {
            let pos = if f.line > 0 {
                format!("{}:{}", f.line, f.column)
            } else {
                "-".to_string()
            };
            writeln!(
                w,
                "  {pos:<8} {:<8} {}  {}",
                f.severity.as_str(),
                f.rule,
                f.message
            )?;
            writeln!(w, "           fix: {}", f.fix)?;
        }
        writeln!(w)?;
    }
    let c = counts(findings);
    let detail: Vec<String> = c
        .iter()
        .rev()
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    if findings.is_empty() {
        write!(w, "no findings")?;
    } else {
        write!(
            w,
            "{} finding{} in {} location{} ({})",
            findings.len(),
            if findings.len() == 1 { "" } else { "s" },
            by_path.len(),
            if by_path.len() == 1 { "" } else { "s" },
            detail.join(", ")
        )?;
    }
    write!(w, "; {} files scanned", summary.files_scanned)?;
    if summary.suppressed_by_baseline > 0 {
        write!(w, "; {} in baseline", summary.suppressed_by_baseline)?;
    }
    writeln!(w)
}

pub fn to_json(findings: &[Finding], summary: &Summary) -> Value {
    let c = counts(findings);
    json!({
        "version": 1,
        "tool": {"name": "lockbox scan", "version": env!("CARGO_PKG_VERSION")},
        "findings": findings,
        "summary": {
            "total": findings.len(),
            "by_severity": c.iter().map(|(s, n)| (s.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "files_scanned": summary.files_scanned,
            "bytes_scanned": summary.bytes_scanned,
            "suppressed_by_baseline": summary.suppressed_by_baseline,
        }
    })
}

/// SARIF 2.1.0 as GitHub code scanning ingests it: rules with `security-severity`,
/// relative URIs under `%SRCROOT%`, and `partialFingerprints` for alert tracking.
pub fn to_sarif(findings: &[Finding]) -> Value {
    let rules = all_rules();
    let index: BTreeMap<&str, usize> = rules.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let rule_objs: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id.replace(['.', '-'], "_"),
                "shortDescription": {"text": r.title},
                "fullDescription": {"text": format!("{} Fix: {}", r.title, r.fix)},
                "help": {
                    "text": r.fix,
                    "markdown": format!("**{}**\n\n{}\n\nSee `docs/rules.md#{}`.", r.title, r.fix, r.id.replace('.', "")),
                },
                "defaultConfiguration": {"level": r.severity.sarif_level()},
                "properties": {
                    "tags": ["security", "secrets", r.family.as_str()],
                    "precision": if r.id == crate::content_rules::HIGH_ENTROPY_ID || r.id == "content.secret-assignment" { "medium" } else { "high" },
                    "security-severity": r.severity.security_severity(),
                }
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut region = serde_json::Map::new();
            if f.line > 0 {
                region.insert("startLine".into(), json!(f.line));
                region.insert("startColumn".into(), json!(f.column.max(1)));
                region.insert(
                    "endColumn".into(),
                    json!(f.end_column.max(f.column.max(1) + 1)),
                );
            }
            let mut phys = json!({
                "artifactLocation": artifact_location(&f.path),
            });
            if !region.is_empty() {
                phys["region"] = Value::Object(region);
            }
            let mut r = json!({
                "ruleId": f.rule,
                "level": f.severity.sarif_level(),
                "message": {"text": format!("{}. Fix: {}", f.message, f.fix)},
                "locations": [{"physicalLocation": phys}],
                "partialFingerprints": {"lockboxFingerprint/v1": f.fingerprint},
                "properties": {"severity": f.severity.as_str()},
            });
            if let Some(i) = index.get(f.rule.as_str()) {
                r["ruleIndex"] = json!(i);
            }
            r
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "lockbox-scan",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/lockbox/docs/rules.md",
                "rules": rule_objs,
            }},
            "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "The directory lockbox scan was run on."}}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

/// File findings get a relative URI under `%SRCROOT%`; engine objects (images,
/// containers) an opaque URI of their own scheme.
fn artifact_location(path: &str) -> Value {
    if path.starts_with("docker-image:") || path.starts_with("docker-container:") {
        json!({"uri": percent_encode(path)})
    } else if path.starts_with('/') {
        json!({"uri": format!("file://{}", percent_encode(path))})
    } else {
        json!({"uri": percent_encode(path), "uriBaseId": "%SRCROOT%"})
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'/'
            | b':'
            | b'@'
            | b'!'
            | b'+' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

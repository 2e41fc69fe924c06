//! Kubernetes `Secret` manifests: values under `data:` / `stringData:` of any YAML document
//! whose `kind` is `Secret` — whatever the key order, the case of `kind`, or a block scalar
//! (`.dockercfg: |`). SOPS-encrypted documents and `ENC[…]` values stay quiet; so do
//! ExternalSecret and SealedSecret objects, whose `data` holds references or ciphertext.

use crate::content::make_finding;
use crate::finding::{Finding, Severity};
use crate::names;

pub const RULE_ID: &str = "content.kubernetes-secret-data";
const TITLE: &str = "Kubernetes Secret manifest with an inline value";

/// Whether a file name is YAML (manifests are `.yaml`/`.yml`).
pub fn is_yaml_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn top_level_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?;
    Some(
        rest.split(" #")
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(|c| c == '"' || c == '\''),
    )
}

/// Does the YAML hold ciphertext meant to be committed: a SOPS-encrypted document (top-level
/// `sops:`) or a Bitnami `SealedSecret`? Its generic-rule findings are then dropped.
pub fn holds_ciphertext(text: &str) -> bool {
    text.lines().any(|l| {
        top_level_value(l, "sops").is_some()
            || top_level_value(l, "kind").is_some_and(|k| k.eq_ignore_ascii_case("sealedsecret"))
    })
}

pub fn scan_manifests(display: &str, text: &str, out: &mut Vec<Finding>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    while start < lines.len() {
        let end = (start..lines.len())
            .find(|&i| i > start && lines[i].starts_with("---"))
            .unwrap_or(lines.len());
        scan_document(display, &lines, start, end, out);
        start = end;
    }
}

fn scan_document(display: &str, lines: &[&str], start: usize, end: usize, out: &mut Vec<Finding>) {
    let doc = &lines[start..end];
    let is_secret = doc
        .iter()
        .any(|l| top_level_value(l, "kind").is_some_and(|k| k.eq_ignore_ascii_case("secret")));
    let encrypted = doc.iter().any(|l| top_level_value(l, "sops").is_some());
    if !is_secret || encrypted {
        return;
    }
    let mut i = 0;
    while i < doc.len() {
        let l = doc[i];
        if top_level_value(l, "data").is_some() || top_level_value(l, "stringData").is_some() {
            i = scan_data_block(display, doc, i + 1, start, out);
        } else {
            i += 1;
        }
    }
}

/// Reads the `key: value` children of a `data:` block from `from`; returns the first line
/// after the block.
fn scan_data_block(
    display: &str,
    doc: &[&str],
    from: usize,
    doc_start: usize,
    out: &mut Vec<Finding>,
) -> usize {
    let mut i = from;
    let mut child_indent = None;
    while i < doc.len() {
        let line = doc[i];
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            i += 1;
            continue;
        }
        let ind = indent(line);
        if ind == 0 {
            return i;
        }
        let want = *child_indent.get_or_insert(ind);
        if ind != want {
            i += 1;
            continue;
        }
        let Some((key, value)) = line.trim_start().split_once(':') else {
            i += 1;
            continue;
        };
        let value_raw = value.trim();
        let value_col = line.len() - value.trim_start().len();
        let mut reported_line = i;
        let (value_text, col) = if value_raw.starts_with('|') || value_raw.starts_with('>') {
            // Block scalar: the value is the more-indented lines that follow.
            let mut j = i + 1;
            let mut body = String::new();
            let mut first_col = 0;
            while j < doc.len() && (doc[j].trim().is_empty() || indent(doc[j]) > ind) {
                if body.is_empty() && !doc[j].trim().is_empty() {
                    reported_line = j;
                    first_col = indent(doc[j]);
                }
                body.push_str(doc[j].trim());
                j += 1;
            }
            i = j;
            (body, first_col)
        } else {
            i += 1;
            (
                value_raw
                    .trim_matches(|c| c == '"' || c == '\'')
                    .to_string(),
                value_col,
            )
        };
        if value_text.len() < 4
            || names::is_placeholder(&value_text)
            || value_text.starts_with("ENC[")
        {
            continue;
        }
        let line_text = doc[reported_line];
        let end_col = (col + value_text.len()).min(line_text.len());
        let _ = key;
        out.push(make_finding(
            RULE_ID,
            Severity::Medium,
            TITLE,
            display,
            doc_start + reported_line + 1,
            line_text.as_bytes(),
            col,
            end_col,
            value_text.as_bytes(),
        ));
    }
    i
}

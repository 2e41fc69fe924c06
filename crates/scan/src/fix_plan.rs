//! The plan of `lockbox scan --fix` for one Compose project: which literal values become
//! lockbox secrets, and the new text of the Compose file and of every env file it touches.
//! Nothing here writes; `fix.rs` shows and applies the plan.
//!
//! Three places hold a literal the Docker guide says to move, for a variable `NAME` that the
//! service's official image also reads as `NAME_FILE`:
//!
//! * `NAME: value` in the service's `environment:` — the line becomes
//!   `NAME_FILE: /run/secrets/<key>`;
//! * `NAME: ${VAR}` in `environment:`, with `VAR=value` in the project's `.env` — the same
//!   line change, and `VAR=…` leaves `.env` (unless something else still uses `${VAR}`);
//! * `NAME=value` in an `env_file:` — that line becomes `NAME_FILE=/run/secrets/<key>`.
//!
//! Each moved value becomes the lockbox secret `<project>_<key>`, declared at the top level
//! as `<key>: {name: <project>_<key>, external: true}` and granted to the service, so
//! `lockbox compose` delivers it at `/run/secrets/<key>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::compose::{ServiceEnv, parse_env_line, parses, services_env};
use crate::finding::Redacted;
use crate::names::{is_placeholder, is_secret_name};

/// A value that becomes a lockbox secret.
pub(crate) struct NewSecret {
    /// The key in the Compose file, and the file name under `/run/secrets`.
    pub(crate) key: String,
    /// The lockbox secret's name: the key prefixed with the project name, so two projects
    /// with a `db` service do not share one secret.
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) services: Vec<String>,
}

/// A rewritten file: its new text, and the changed lines for display (values redacted).
pub(crate) struct FileEdit {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    /// (1-based line, redacted old line, new line or `None` when removed).
    pub(crate) shown: Vec<(usize, String, Option<String>)>,
    /// Lines added to the Compose file: (before this 1-based line, lines).
    pub(crate) added: Vec<(usize, Vec<String>)>,
}

/// Everything one Compose file's fix does.
pub(crate) struct Plan {
    pub(crate) secrets: Vec<NewSecret>,
    /// The Compose file first, then the env files, each at most once.
    pub(crate) edits: Vec<FileEdit>,
    /// Literals that stay, with why (shown to the user).
    pub(crate) left: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}; nothing was written")]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: String,
}

fn refuse(path: &Path, reason: impl Into<String>) -> Refusal {
    Refusal {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn indent_of(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// The line index just past the block that starts at `key` (lines indented deeper).
fn block_end(lines: &[String], key: usize) -> usize {
    let ind = indent_of(&lines[key]).len();
    let mut j = key + 1;
    while j < lines.len() {
        let l = &lines[j];
        if !l.trim().is_empty() && !l.trim_start().starts_with('#') && indent_of(l).len() <= ind {
            break;
        }
        j += 1;
    }
    j
}

fn secret_key(service: &str, var: &str, taken: &[String]) -> String {
    let base: String = format!("{service}_{var}")
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

/// Compose's default project name: the directory's name, lower case, only `[a-z0-9_-]`.
pub(crate) fn project_name(compose: &Path) -> String {
    let dir = compose.parent().unwrap_or(Path::new("."));
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let raw = abs
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let name = name.trim_start_matches(['_', '-']).to_string();
    if name.is_empty() {
        "project".to_string()
    } else {
        name
    }
}

/// `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR?err}`: the variable, when the whole value
/// is one reference.
fn whole_reference(value: &str) -> Option<&str> {
    let v = value.trim();
    let name = if let Some(inner) = v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        let end = inner.find([':', '-', '?', '+']).unwrap_or(inner.len());
        &inner[..end]
    } else {
        v.strip_prefix('$')?
    };
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    ok.then_some(name)
}

/// Whether `text` uses `${var…}` or `$var` anywhere.
fn references(text: &str, var: &str) -> bool {
    let braced = format!("${{{var}");
    let bare = format!("${var}");
    text.match_indices(&braced).any(|(i, _)| {
        text[i + braced.len()..]
            .chars()
            .next()
            .is_some_and(|c| matches!(c, '}' | ':' | '-' | '?' | '+'))
    }) || text.match_indices(&bare).any(|(i, _)| {
        !text[i + bare.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// An env file as lines, with the lines to replace or remove.
struct EnvFileText {
    path: PathBuf,
    lines: Vec<String>,
    changes: BTreeMap<usize, Option<String>>,
}

/// Reads a file the fix may rewrite: a regular file, not a symlink (the rename that
/// replaces it would replace the link, not what it points at).
pub(crate) fn read_regular(path: &Path) -> Result<String, Refusal> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| refuse(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(refuse(path, "is not a regular file (a symlink?)"));
    }
    std::fs::read_to_string(path).map_err(|e| refuse(path, e.to_string()))
}

/// Plans the fix of one Compose file. `Ok(None)` when there is nothing to move and nothing
/// to report.
pub(crate) fn plan(compose: &Path, text: &str) -> Result<Option<Plan>, Refusal> {
    let Some(services) = services_env(text) else {
        return Ok(None);
    };
    let dir = compose.parent().unwrap_or(Path::new("."));
    let project = project_name(compose);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut secrets: Vec<NewSecret> = Vec::new();
    let mut left = Vec::new();
    let mut shown = Vec::new();
    let top_secrets = lines.iter().position(|l| l.trim_end() == "secrets:");
    let mut taken: Vec<String> = match top_secrets {
        Some(t) => lines[t + 1..block_end(&lines, t)]
            .iter()
            .filter(|l| indent_of(l).len() == 2)
            .filter_map(|l| l.trim().strip_suffix(':').map(str::to_string))
            .collect(),
        None => Vec::new(),
    };
    let dotenv_path = dir.join(".env");
    let mut dotenv: Option<EnvFileText> = None;
    let mut env_files: BTreeMap<PathBuf, EnvFileText> = BTreeMap::new();

    // `environment:` entries: literals, and references to `.env`.
    for svc in &services {
        for e in &svc.vars {
            if !is_secret_name(&e.name) {
                continue;
            }
            let literal = !is_placeholder(&e.value);
            let from_dotenv = whole_reference(&e.value);
            if !literal && from_dotenv.is_none() {
                continue;
            }
            let idx = e.line - 1;
            let old = lines.get(idx).cloned().unwrap_or_default();
            if !old.contains(&e.name) {
                return Err(refuse(
                    compose,
                    format!("line {}: {} is not written on one line", e.line, e.name),
                ));
            }
            let value = if literal {
                if !svc.reads_file_variant(&e.name) {
                    left.push(hand_fix(compose, e.line, &e.name, svc));
                    continue;
                }
                if !old.contains(&e.value) {
                    return Err(refuse(
                        compose,
                        format!("line {}: {} is not written on one line", e.line, e.name),
                    ));
                }
                e.value.clone()
            } else {
                let var = from_dotenv.unwrap_or_default();
                if dotenv.is_none() && std::fs::symlink_metadata(&dotenv_path).is_ok() {
                    dotenv = Some(EnvFileText {
                        lines: read_regular(&dotenv_path)?
                            .lines()
                            .map(str::to_string)
                            .collect(),
                        path: dotenv_path.clone(),
                        changes: BTreeMap::new(),
                    });
                }
                let Some(de) = dotenv.as_mut() else { continue };
                // The last definition wins, as in Compose.
                let Some((at, v)) = de.lines.iter().enumerate().rev().find_map(|(i, l)| {
                    parse_env_line(l)
                        .filter(|(k, _)| *k == var)
                        .map(|(_, v)| (i, v.to_string()))
                }) else {
                    continue;
                };
                if is_placeholder(&v) {
                    continue;
                }
                if !svc.reads_file_variant(&e.name) {
                    left.push(hand_fix(compose, e.line, &e.name, svc));
                    continue;
                }
                de.changes.insert(at, None);
                v
            };
            let key = add_secret(
                &mut secrets,
                &mut taken,
                &project,
                vec![svc.service.clone()],
                &e.name,
                &value,
            );
            let ind = indent_of(&old);
            let new = if e.list_form {
                format!("{ind}- {}_FILE=/run/secrets/{key}", e.name)
            } else {
                format!("{ind}{}_FILE: /run/secrets/{key}", e.name)
            };
            let redacted = if literal {
                old.replace(&e.value, &Redacted::of(&e.value).to_string())
            } else {
                old.clone()
            };
            shown.push((e.line, redacted, Some(new.clone())));
            lines[idx] = new;
        }
    }

    // `env_file:` literals. A file several services read moves once, if every one of them
    // reads `NAME_FILE`.
    let mut readers: BTreeMap<PathBuf, Vec<&ServiceEnv>> = BTreeMap::new();
    for svc in &services {
        for f in &svc.env_files {
            let p = dir.join(f);
            let list = readers.entry(p).or_default();
            if !list.iter().any(|s| s.service == svc.service) {
                list.push(svc);
            }
        }
    }
    for (path, svcs) in &readers {
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        let body = read_regular(path)?;
        let mut ef = EnvFileText {
            path: path.clone(),
            lines: body.lines().map(str::to_string).collect(),
            changes: BTreeMap::new(),
        };
        for i in 0..ef.lines.len() {
            let Some((k, v)) = parse_env_line(&ef.lines[i]) else {
                continue;
            };
            if !is_secret_name(k) || is_placeholder(v) {
                continue;
            }
            let (k, v) = (k.to_string(), v.to_string());
            if let Some(no) = svcs.iter().find(|s| !s.reads_file_variant(&k)) {
                left.push(hand_fix(path, i + 1, &k, no));
                continue;
            }
            let services = svcs.iter().map(|s| s.service.clone()).collect();
            let key = add_secret(&mut secrets, &mut taken, &project, services, &k, &v);
            let ind = indent_of(&ef.lines[i]);
            let export = if ef.lines[i].trim_start().starts_with("export ") {
                "export "
            } else {
                ""
            };
            ef.changes
                .insert(i, Some(format!("{ind}{export}{k}_FILE=/run/secrets/{key}")));
        }
        if !ef.changes.is_empty() {
            env_files.insert(path.clone(), ef);
        }
    }

    if secrets.is_empty() {
        return Ok((!left.is_empty()).then_some(Plan {
            secrets,
            edits: Vec::new(),
            left,
        }));
    }

    // `.env` variables still referenced elsewhere stay, and so does their value: that is
    // left for a hand fix rather than a half-moved value.
    if let Some(de) = dotenv.as_mut() {
        let joined = lines.join("\n");
        let mut keep = Vec::new();
        for &at in de.changes.keys() {
            if let Some((k, _)) = parse_env_line(&de.lines[at])
                && references(&joined, k)
            {
                keep.push(at);
                left.push(format!(
                    "{}:{}: {k} stays: the Compose file still uses ${{{k}}} elsewhere",
                    de.path.display(),
                    at + 1
                ));
            }
        }
        for at in keep {
            de.changes.remove(&at);
        }
        if let Some(ef) = dotenv.take().filter(|d| !d.changes.is_empty()) {
            match env_files.get_mut(&ef.path) {
                Some(existing) => existing.changes.extend(ef.changes),
                None => {
                    env_files.insert(ef.path.clone(), ef);
                }
            }
        }
    }

    shown.sort_by_key(|s| s.0);
    let added = grants_and_declarations(compose, &lines, top_secrets, &secrets)?;
    let compose_text = with_inserts(&lines, &added);
    let mut edits = vec![FileEdit {
        path: compose.to_path_buf(),
        text: compose_text,
        shown,
        added,
    }];
    for ef in env_files.into_values() {
        let mut out = String::new();
        let mut shown = Vec::new();
        for (i, l) in ef.lines.iter().enumerate() {
            match ef.changes.get(&i) {
                None => {
                    out.push_str(l);
                    out.push('\n');
                }
                Some(new) => {
                    let redacted = match parse_env_line(l) {
                        Some((_, v)) if !v.is_empty() => l.replace(v, &Redacted::of(v).to_string()),
                        _ => l.clone(),
                    };
                    shown.push((i + 1, redacted, new.clone()));
                    if let Some(n) = new {
                        out.push_str(n);
                        out.push('\n');
                    }
                }
            }
        }
        edits.push(FileEdit {
            path: ef.path,
            text: out,
            shown,
            added: Vec::new(),
        });
    }
    check(&edits, &secrets)?;
    Ok(Some(Plan {
        secrets,
        edits,
        left,
    }))
}

/// Records a new secret for `var` of the first of `services`; returns its key.
fn add_secret(
    secrets: &mut Vec<NewSecret>,
    taken: &mut Vec<String>,
    project: &str,
    services: Vec<String>,
    var: &str,
    value: &str,
) -> String {
    let key = secret_key(services.first().map_or("", String::as_str), var, taken);
    taken.push(key.clone());
    secrets.push(NewSecret {
        name: format!("{project}_{key}"),
        key: key.clone(),
        value: value.to_string(),
        services,
    });
    key
}

fn hand_fix(path: &Path, line: usize, name: &str, svc: &ServiceEnv) -> String {
    format!(
        "{}:{line}: {name} of service {} left as is: its image is not known to read {name}_FILE; \
         move it by hand (lockbox secret create, then a /run/secrets file the entrypoint reads)",
        path.display(),
        svc.service
    )
}

/// The lines to add: each service's `secrets:` grants and the top-level declarations.
fn grants_and_declarations(
    compose: &Path,
    lines: &[String],
    top_secrets: Option<usize>,
    secrets: &[NewSecret],
) -> Result<Vec<(usize, Vec<String>)>, Refusal> {
    let services_line = lines
        .iter()
        .position(|l| l.trim_end() == "services:")
        .ok_or_else(|| refuse(compose, "no top-level `services:` line"))?;
    let mut inserts = Vec::new();
    let mut services: Vec<&str> = secrets
        .iter()
        .flat_map(|s| s.services.iter().map(String::as_str))
        .collect();
    services.sort_unstable();
    services.dedup();
    // Service keys sit at the indentation of the first line under `services:`.
    let service_indent = lines[services_line + 1..]
        .iter()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map_or(2, |l| indent_of(l).len());
    for svc in services {
        let key = (services_line + 1..lines.len())
            .find(|&i| {
                let l = &lines[i];
                indent_of(l).len() == service_indent && l.trim() == format!("{svc}:")
            })
            .ok_or_else(|| {
                refuse(
                    compose,
                    format!("service `{svc}` not found as a `{svc}:` line"),
                )
            })?;
        let end = block_end(lines, key);
        let child = (key + 1..end)
            .map(|i| indent_of(&lines[i]).to_string())
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{}  ", indent_of(&lines[key])));
        let names: Vec<String> = secrets
            .iter()
            .filter(|s| s.services.iter().any(|x| x == svc))
            .map(|s| format!("{child}  - {}", s.key))
            .collect();
        match (key + 1..end).find(|&i| lines[i] == format!("{child}secrets:")) {
            Some(at) => inserts.push((at + 1, names)),
            None => {
                let mut block = vec![format!("{child}secrets:")];
                block.extend(names);
                inserts.push((key + 1, block));
            }
        }
    }
    let mut top: Vec<String> = Vec::new();
    for s in secrets {
        top.push(format!("  {}:", s.key));
        top.push(format!("    name: {}", s.name));
        top.push("    external: true".to_string());
    }
    match top_secrets {
        Some(t) => inserts.push((t + 1, top)),
        None => {
            let mut block = vec![String::new(), "secrets:".to_string()];
            block.extend(top);
            inserts.push((lines.len(), block));
        }
    }
    inserts.sort_by_key(|i| i.0);
    // Stored 1-based, as shown.
    Ok(inserts.into_iter().map(|(at, l)| (at + 1, l)).collect())
}

fn with_inserts(lines: &[String], inserts: &[(usize, Vec<String>)]) -> String {
    let mut out = String::new();
    let mut next = inserts.iter().peekable();
    for (i, l) in lines.iter().enumerate() {
        while let Some((at, add)) = next.peek() {
            if *at != i + 1 {
                break;
            }
            for a in add {
                out.push_str(a);
                out.push('\n');
            }
            next.next();
        }
        out.push_str(l);
        out.push('\n');
    }
    for (_, add) in next {
        for a in add {
            out.push_str(a);
            out.push('\n');
        }
    }
    out
}

/// The rewritten files must hold none of the moved values, and the Compose file must still
/// parse with no moved variable left literal.
fn check(edits: &[FileEdit], secrets: &[NewSecret]) -> Result<(), Refusal> {
    for e in edits {
        if secrets.iter().any(|s| e.text.contains(s.value.as_str())) {
            return Err(refuse(
                &e.path,
                "a moved value would still appear in the rewritten file",
            ));
        }
    }
    if let Some(compose) = edits.first()
        && !parses(&compose.text)
    {
        return Err(refuse(
            &compose.path,
            "the rewritten file would not parse as the same project",
        ));
    }
    Ok(())
}

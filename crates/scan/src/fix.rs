//! `lockbox scan --fix`: turns what the Docker secrets guide forbids into what it recommends,
//! for the one case that can be rewritten mechanically. A literal secret in a Compose
//! service's `environment:`, for an official image that reads `NAME_FILE`, becomes
//!
//! * a file `secrets/<service>_<name>` beside the Compose file (mode 0600, directory 0700),
//!   holding the value read from the Compose file — never printed;
//! * a top-level `secrets: <secret>: file: ./secrets/<secret>` entry and the service's
//!   `secrets: [<secret>]` grant;
//! * `NAME_FILE: /run/secrets/<secret>` in place of `NAME: value`;
//! * `/secrets/` in the `.gitignore` beside the Compose file.
//!
//! The edits are shown first, with values redacted. Nothing is written when a check fails:
//! the rewritten file must parse, and must not contain any of the moved values. Secret files
//! are created, never overwritten, before the Compose file is replaced (write to a temporary
//! file, then rename), so a value is never lost. Variables of images that do not read
//! `NAME_FILE` are listed and left alone: moving them needs a change to the image.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::compose::{EnvLiteral, env_literals, is_compose_name, parses};
use crate::finding::Redacted;

#[derive(Debug, thiserror::Error)]
pub enum FixError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}; nothing was written")]
    Refused { path: PathBuf, reason: String },
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FixError + '_ {
    move |source| FixError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a run changed (or, in a dry run, would change).
#[derive(Debug, Default)]
pub struct FixSummary {
    pub files: usize,
    pub moved: usize,
    pub left: usize,
}

/// The Compose files directly in each root (a Compose project keeps them at its top), or
/// the roots themselves when they are Compose files.
fn compose_files(roots: &[PathBuf]) -> Result<Vec<PathBuf>, FixError> {
    let mut out = Vec::new();
    for root in roots {
        let meta = std::fs::symlink_metadata(root).map_err(io(root))?;
        if meta.is_file() {
            out.push(root.clone());
            continue;
        }
        if !meta.is_dir() {
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(io(root))?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| is_compose_name(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

fn secret_name(service: &str, var: &str, taken: &[String]) -> String {
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

fn indent_of(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// The planned rewrite of one Compose file.
struct Plan {
    lines: Vec<String>,
    /// (line index, redacted old line, new line) for display.
    replaced: Vec<(usize, String, String)>,
    /// (insert before this line index, new lines).
    inserts: Vec<(usize, Vec<String>)>,
    secrets: Vec<(String, String)>,
}

impl Plan {
    fn text(&self) -> String {
        let mut out = String::new();
        let mut inserts = self.inserts.clone();
        inserts.sort_by_key(|i| i.0);
        let mut next = inserts.iter().peekable();
        for (i, l) in self.lines.iter().enumerate() {
            while let Some((at, add)) = next.peek() {
                if *at != i {
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

fn plan(path: &Path, text: &str, fixable: &[EnvLiteral]) -> Result<Plan, FixError> {
    let refuse = |reason: String| FixError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut plan = Plan {
        lines,
        replaced: Vec::new(),
        inserts: Vec::new(),
        secrets: Vec::new(),
    };
    let top_secrets = plan.lines.iter().position(|l| l.trim_end() == "secrets:");
    let mut taken: Vec<String> = match top_secrets {
        Some(t) => plan.lines[t + 1..block_end(&plan.lines, t)]
            .iter()
            .filter(|l| indent_of(l).len() == 2)
            .filter_map(|l| l.trim().strip_suffix(':').map(str::to_string))
            .collect(),
        None => Vec::new(),
    };
    let services_line = plan
        .lines
        .iter()
        .position(|l| l.trim_end() == "services:")
        .ok_or_else(|| refuse("no top-level `services:` line".into()))?;
    let mut grants: Vec<(String, String)> = Vec::new();
    for lit in fixable {
        let idx = lit.line.checked_sub(1).filter(|&i| i < plan.lines.len());
        let Some(idx) = idx else {
            return Err(refuse(format!("line {} is outside the file", lit.line)));
        };
        let old = plan.lines[idx].clone();
        if !old.contains(&lit.name) || !old.contains(&lit.value) {
            return Err(refuse(format!(
                "line {}: {} is not written on one line",
                lit.line, lit.name
            )));
        }
        let secret = secret_name(&lit.service, &lit.name, &taken);
        taken.push(secret.clone());
        let ind = indent_of(&old);
        let new = if lit.list_form {
            format!("{ind}- {}_FILE=/run/secrets/{secret}", lit.name)
        } else {
            format!("{ind}{}_FILE: /run/secrets/{secret}", lit.name)
        };
        let shown = old.replace(&lit.value, &Redacted::of(&lit.value).to_string());
        plan.replaced.push((idx, shown, new.clone()));
        plan.lines[idx] = new;
        plan.secrets.push((secret.clone(), lit.value.clone()));
        grants.push((lit.service.clone(), secret));
    }
    // Grant each service its secrets: after its `secrets:` key if it has one, else as a
    // new key right under the service's name.
    let mut services: Vec<&str> = grants.iter().map(|g| g.0.as_str()).collect();
    services.dedup();
    // Service keys sit at the indentation of the first line under `services:`.
    let service_indent = plan.lines[services_line + 1..]
        .iter()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map_or(2, |l| indent_of(l).len());
    for svc in services {
        let key = (services_line + 1..plan.lines.len())
            .find(|&i| {
                let l = &plan.lines[i];
                indent_of(l).len() == service_indent && l.trim() == format!("{svc}:")
            })
            .ok_or_else(|| refuse(format!("service `{svc}` not found as a `{svc}:` line")))?;
        let end = block_end(&plan.lines, key);
        let child = (key + 1..end)
            .map(|i| indent_of(&plan.lines[i]).to_string())
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{}  ", indent_of(&plan.lines[key])));
        let names: Vec<String> = grants
            .iter()
            .filter(|g| g.0 == svc)
            .map(|g| format!("{child}  - {}", g.1))
            .collect();
        let existing = (key + 1..end).find(|&i| plan.lines[i] == format!("{child}secrets:"));
        match existing {
            Some(at) => plan.inserts.push((at + 1, names)),
            None => {
                let mut block = vec![format!("{child}secrets:")];
                block.extend(names);
                plan.inserts.push((key + 1, block));
            }
        }
    }
    let mut top: Vec<String> = Vec::new();
    for (secret, _) in &plan.secrets {
        top.push(format!("  {secret}:"));
        top.push(format!("    file: ./secrets/{secret}"));
    }
    match top_secrets {
        Some(t) => plan.inserts.push((t + 1, top)),
        None => {
            let mut block = vec![String::new(), "secrets:".to_string()];
            block.extend(top);
            plan.inserts.push((plan.lines.len(), block));
        }
    }
    let new_text = plan.text();
    for (_, value) in &plan.secrets {
        if new_text.contains(value.as_str()) {
            return Err(refuse(
                "a moved value would still appear in the rewritten file".into(),
            ));
        }
    }
    let still: Vec<String> = env_literals(&new_text)
        .into_iter()
        .filter(|l| l.file_variant)
        .map(|l| l.name)
        .collect();
    if !still.is_empty() || !parses(&new_text) {
        return Err(refuse(
            "the rewritten file would not parse as the same project".into(),
        ));
    }
    Ok(plan)
}

fn show(path: &Path, plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "--- {}", path.display())?;
    writeln!(out, "+++ {} (fixed)", path.display())?;
    for (idx, old, new) in &plan.replaced {
        writeln!(out, "@@ line {} @@", idx + 1)?;
        writeln!(out, "-{old}")?;
        writeln!(out, "+{new}")?;
    }
    let mut inserts = plan.inserts.clone();
    inserts.sort_by_key(|i| i.0);
    for (at, add) in &inserts {
        writeln!(out, "@@ before line {} @@", at + 1)?;
        for a in add {
            writeln!(out, "+{a}")?;
        }
    }
    for (secret, value) in &plan.secrets {
        writeln!(
            out,
            "new file secrets/{secret} (mode 0600, {} bytes; value not shown)",
            value.len()
        )?;
    }
    Ok(())
}

/// Creates `dir/secrets/` (0700) and one file per secret (0600). An existing file with the
/// same content is kept; one with other content refuses the fix.
fn write_secret_files(dir: &Path, secrets: &[(String, String)]) -> Result<(), FixError> {
    let sdir = dir.join("secrets");
    match std::fs::symlink_metadata(&sdir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(FixError::Refused {
                path: sdir,
                reason: "exists and is not a directory".into(),
            });
        }
        Err(_) => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&sdir)
            .map_err(io(&sdir))?,
    }
    for (name, value) in secrets {
        let p = sdir.join(name);
        // create_new (O_CREAT|O_EXCL) never follows a symlink at the final component.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(mut f) => f.write_all(value.as_bytes()).map_err(io(&p))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let same = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file())
                    && std::fs::read(&p).is_ok_and(|b| b == value.as_bytes());
                if !same {
                    return Err(FixError::Refused {
                        path: p,
                        reason: "exists with other content".into(),
                    });
                }
            }
            Err(e) => return Err(io(&p)(e)),
        }
    }
    Ok(())
}

fn ignore_secrets_dir(dir: &Path) -> Result<bool, FixError> {
    let p = dir.join(".gitignore");
    let existing = match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_file() => std::fs::read_to_string(&p).map_err(io(&p))?,
        Ok(_) => {
            return Err(FixError::Refused {
                path: p,
                reason: "is not a regular file".into(),
            });
        }
        Err(_) => String::new(),
    };
    if existing
        .lines()
        .any(|l| matches!(l.trim(), "secrets/" | "/secrets/" | "/secrets" | "secrets"))
    {
        return Ok(false);
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(&p)
        .map_err(io(&p))?;
    let sep = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(f, "{sep}/secrets/").map_err(io(&p))?;
    Ok(true)
}

fn replace_file(path: &Path, text: &str) -> Result<(), FixError> {
    let mode = std::fs::symlink_metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode()
        & 0o7777;
    let tmp = path.with_extension("lockbox-fix.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Plans (and with `write`, applies) the fix for every Compose file under `roots`.
pub fn run_fix(
    roots: &[PathBuf],
    write: bool,
    out: &mut dyn Write,
) -> Result<FixSummary, FixError> {
    let mut summary = FixSummary::default();
    for path in compose_files(roots)? {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let (fixable, left): (Vec<EnvLiteral>, Vec<EnvLiteral>) = env_literals(&text)
            .into_iter()
            .partition(|l| l.file_variant);
        for l in &left {
            writeln!(
                out,
                "{}:{}: {} of service {} left as is: its image is not known to read {}_FILE; \
                 move it by hand (lockbox secret create, then a /run/secrets file the entrypoint reads)",
                path.display(),
                l.line,
                l.name,
                l.service,
                l.name
            )?;
        }
        summary.left += left.len();
        if fixable.is_empty() {
            continue;
        }
        let p = plan(&path, &text, &fixable)?;
        show(&path, &p, out)?;
        summary.files += 1;
        summary.moved += p.secrets.len();
        if write {
            let dir = path.parent().unwrap_or(Path::new("."));
            write_secret_files(dir, &p.secrets)?;
            if ignore_secrets_dir(dir)? {
                writeln!(out, "{}: added /secrets/", dir.join(".gitignore").display())?;
            }
            replace_file(&path, &p.text())?;
        }
    }
    Ok(summary)
}

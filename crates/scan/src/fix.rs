//! `lockbox scan --fix`: turns what the Docker secrets guide forbids into what it recommends.
//! Literal secrets in a Compose service's `environment:`, in its `env_file:` files and in
//! the project's `.env` (through `${VAR}`) become lockbox secrets, created through the
//! daemon; the files are rewritten to reference them (`NAME_FILE=/run/secrets/<key>`, a
//! service grant, a top-level `external: true` declaration) for official images that read
//! `NAME_FILE` (see `fix_plan.rs`). No value is written to any file.
//!
//! The edits are shown first, values redacted. Writing is all or nothing as far as a
//! filesystem allows: the new texts are staged in temporary files beside the originals
//! (same mode, fsynced); then the secrets are created, and if one cannot be, the ones this
//! run created are removed again and the temporary files deleted, so the sources still hold
//! every value; only then are the staged files renamed over the originals. A value is
//! never lost: it is in lockbox before it leaves a file.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::compose::is_compose_name;
use crate::fix_plan::{FileEdit, Plan, Refusal, plan, read_regular};

/// Where `--fix` puts the values: the lockbox daemon, for the binary.
pub trait SecretStore {
    /// Creates the secret `name`; fails if it exists.
    fn create(&mut self, name: &str, value: &[u8]) -> Result<(), String>;
    /// Removes a secret this run created (undoing a fix that cannot complete).
    fn remove(&mut self, name: &str) -> Result<(), String>;
}

#[derive(Debug, thiserror::Error)]
pub enum FixError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("creating secret {name} in lockbox: {reason}; the files were left unchanged{undo}")]
    Create {
        name: String,
        reason: String,
        undo: String,
    },
    #[error(
        "--fix moves values into lockbox secrets, and this build of the scanner has no daemon to create them in: run `lockbox scan --fix`"
    )]
    NoStore,
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

fn show(plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    for edit in &plan.edits {
        writeln!(out, "--- {}", edit.path.display())?;
        writeln!(out, "+++ {} (fixed)", edit.path.display())?;
        for (line, old, new) in &edit.shown {
            writeln!(out, "@@ line {line} @@")?;
            writeln!(out, "-{old}")?;
            if let Some(new) = new {
                writeln!(out, "+{new}")?;
            }
        }
        for (at, add) in &edit.added {
            writeln!(out, "@@ before line {at} @@")?;
            for a in add {
                writeln!(out, "+{a}")?;
            }
        }
    }
    for s in &plan.secrets {
        writeln!(
            out,
            "new lockbox secret {} ({} bytes; value not shown), at /run/secrets/{} in {}",
            s.name,
            s.value.len(),
            s.key,
            s.services.join(", ")
        )?;
    }
    Ok(())
}

/// A rewritten file staged beside its original.
struct Staged {
    tmp: PathBuf,
    path: PathBuf,
}

fn stage(edit: &FileEdit) -> Result<Staged, FixError> {
    let path = &edit.path;
    let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
    let mode = meta.permissions().mode() & 0o7777;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.lockbox-fix.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let staged = Staged {
        tmp: tmp.clone(),
        path: path.clone(),
    };
    let written = f
        .write_all(edit.text.as_bytes())
        // The mode given to open() is filtered by the umask; the original's is what counts.
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    Ok(staged)
}

fn discard(staged: &[Staged]) {
    for s in staged {
        let _ = std::fs::remove_file(&s.tmp);
    }
}

/// Stages every file, creates every secret, then renames: see the module comment.
fn apply(plan: &Plan, store: &mut dyn SecretStore) -> Result<(), FixError> {
    let mut staged = Vec::new();
    for edit in &plan.edits {
        match stage(edit) {
            Ok(s) => staged.push(s),
            Err(e) => {
                discard(&staged);
                return Err(e);
            }
        }
    }
    let mut created: Vec<&str> = Vec::new();
    for s in &plan.secrets {
        if let Err(reason) = store.create(&s.name, s.value.as_bytes()) {
            discard(&staged);
            let mut undo = String::new();
            for name in &created {
                if let Err(e) = store.remove(name) {
                    undo.push_str(&format!("; could not remove {name} again: {e}"));
                }
            }
            if !created.is_empty() && undo.is_empty() {
                undo = format!(" and {} created now removed again", created.join(", "));
            }
            return Err(FixError::Create {
                name: s.name.clone(),
                reason,
                undo,
            });
        }
        created.push(&s.name);
    }
    for (i, s) in staged.iter().enumerate() {
        if let Err(e) = std::fs::rename(&s.tmp, &s.path) {
            discard(&staged[i..]);
            return Err(io(&s.path)(e));
        }
    }
    // The renames are durable once the directories are synced.
    for s in &staged {
        if let Some(dir) = s.path.parent()
            && let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Plans (and with `write`, applies through `store`) the fix for every Compose file under
/// `roots`.
pub fn run_fix(
    roots: &[PathBuf],
    write: bool,
    store: Option<&mut dyn SecretStore>,
    out: &mut dyn Write,
) -> Result<FixSummary, FixError> {
    let mut summary = FixSummary::default();
    let mut plans = Vec::new();
    for path in compose_files(roots)? {
        let text = read_regular(&path)?;
        if let Some(p) = plan(&path, &text)? {
            plans.push(p);
        }
    }
    for p in &plans {
        for l in &p.left {
            writeln!(out, "{l}")?;
        }
        summary.left += p.left.len();
        if p.secrets.is_empty() {
            continue;
        }
        show(p, out)?;
        summary.files += 1;
        summary.moved += p.secrets.len();
    }
    if write && summary.moved > 0 {
        let Some(store) = store else {
            return Err(FixError::NoStore);
        };
        for p in plans.iter().filter(|p| !p.secrets.is_empty()) {
            apply(p, store)?;
        }
    }
    Ok(summary)
}

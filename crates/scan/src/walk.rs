//! The parallel walk: `ignore`'s gitignore-aware walker on every core, one file per task,
//! dispatch by file kind, findings merged at the end.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ignore::{WalkBuilder, WalkState};

use crate::compose::{ComposeCtx, is_compose_name, scan_compose, scan_env_file};
use crate::content::{Engine, FileCtx, is_code_path};
use crate::content_rules::{CONTENT_RULES, Kind};
use crate::dockerfile::{DockerfileCtx, is_dockerfile_name, scan_dockerfile};
use crate::finding::{Finding, Redacted, Severity};
use crate::kubernetes::{holds_ciphertext, is_yaml_name, scan_manifests};
use crate::names::is_generic_allowlisted_path;
use crate::shell::{is_shellish, scan_shell};

/// Files up to this size are read whole (structural rules need the whole text); larger
/// ones are streamed in chunks.
const WHOLE_FILE_MAX: u64 = 4 << 20;

#[derive(Default)]
pub struct Stats {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub skipped_binary: AtomicU64,
}

pub struct WalkOutput {
    pub findings: Vec<Finding>,
    pub errors: Vec<String>,
}

fn display_path(root: &Path, path: &Path, multi_root: bool) -> String {
    let rel = if root.is_file() {
        root.to_path_buf()
    } else if multi_root {
        path.to_path_buf()
    } else {
        path.strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let s = rel.to_string_lossy().replace('\\', "/");
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

pub fn walk(roots: &[PathBuf], engine: &Engine, threads: usize, stats: &Stats) -> WalkOutput {
    let findings = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    let multi = roots.len() > 1;
    for root in roots {
        if !root.exists() {
            errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{}: no such file or directory", root.display()));
            continue;
        }
        let walker = WalkBuilder::new(root)
            .hidden(false)
            .git_ignore(true)
            .git_global(true)
            .git_exclude(true)
            .require_git(false)
            .parents(true)
            .follow_links(false)
            .threads(threads)
            // `.git` holds packed history, not the working tree we report on.
            .filter_entry(|e| e.file_name() != ".git")
            .build_parallel();
        walker.run(|| {
            let findings = &findings;
            let errors = &errors;
            Box::new(move |entry| {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(e.to_string());
                        return WalkState::Continue;
                    }
                };
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    return WalkState::Continue;
                }
                let display = display_path(root, entry.path(), multi);
                let mut local = Vec::new();
                if let Err(e) = scan_file(entry.path(), &display, engine, stats, &mut local) {
                    errors
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("{display}: {e}"));
                }
                if !local.is_empty() {
                    findings
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(local);
                }
                WalkState::Continue
            })
        });
    }
    WalkOutput {
        findings: findings.into_inner().unwrap_or_else(|e| e.into_inner()),
        errors: errors.into_inner().unwrap_or_else(|e| e.into_inner()),
    }
}

/// Scans one file with every rule that applies to its kind.
pub fn scan_file(
    path: &Path,
    display: &str,
    engine: &Engine,
    stats: &Stats,
    out: &mut Vec<Finding>,
) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ctx = FileCtx {
        display,
        generic_allowlisted: is_generic_allowlisted_path(display),
        is_code: is_code_path(display),
    };
    stats.files.fetch_add(1, Ordering::Relaxed);
    if len > 0 && is_pkcs12_name(&file_name) {
        out.push(pkcs12_finding(display));
    }
    if len > WHOLE_FILE_MAX {
        stats.bytes.fetch_add(len, Ordering::Relaxed);
        if !engine.scan_reader(f, &ctx, out)? {
            stats.skipped_binary.fetch_add(1, Ordering::Relaxed);
        }
        return Ok(());
    }
    let mut data = Vec::with_capacity(len as usize);
    f.read_to_end(&mut data)?;
    stats.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
    if memchr::memchr(0, &data[..data.len().min(8192)]).is_some() {
        stats.skipped_binary.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let first_finding = out.len();
    engine.scan_bytes(&data, &ctx, out);
    let Ok(text) = std::str::from_utf8(&data) else {
        return Ok(());
    };
    if is_compose_name(&file_name) {
        scan_compose(&ComposeCtx { path, display }, text, out);
    } else if is_dockerfile_name(&file_name) {
        scan_dockerfile(&DockerfileCtx { path, display }, text, out);
    } else if is_dotenv_name(&file_name) {
        scan_env_file(display, text, out);
    }
    if is_yaml_name(&file_name) {
        if holds_ciphertext(text) {
            let mine = out.split_off(first_finding);
            out.extend(mine.into_iter().filter(|f| !is_generic_rule(&f.rule)));
        } else if !ctx.generic_allowlisted {
            scan_manifests(display, text, out);
        }
    }
    if is_shellish(display, &data[..data.len().min(256)]) || is_dockerfile_name(&file_name) {
        scan_shell(display, text, out);
    }
    Ok(())
}

/// `.env`, `.env.production`, `app.env` — but not the templates meant to be committed.
fn is_dotenv_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let template = [
        "example", "sample", "template", "dist", "defaults", "tmpl", "tpl",
    ]
    .iter()
    .any(|t| lower.ends_with(t));
    !template && (lower == ".env" || lower.starts_with(".env.") || lower.ends_with(".env"))
}

/// PKCS#12 key stores are binary (the content scan skips them) and always hold a private
/// key, so the name is the finding.
fn is_pkcs12_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".p12") || lower.ends_with(".pfx")
}

fn pkcs12_finding(display: &str) -> Finding {
    const ID: &str = "content.pkcs12-file";
    let title = crate::rules::info(ID).map_or("PKCS#12 key store", |r| r.title);
    Finding {
        rule: ID.to_string(),
        severity: Severity::High,
        path: display.to_string(),
        line: 0,
        column: 0,
        end_column: 0,
        message: format!("{title}: {display}"),
        fix: crate::rules::fix_for(ID).to_string(),
        fingerprint: Finding::fingerprint_of(ID, display, display),
        secret: None::<Redacted>,
    }
}

/// Rules whose findings are heuristics (keyword assignments, entropy) rather than a token
/// format: what ciphertext files mute.
fn is_generic_rule(id: &str) -> bool {
    id == crate::content_rules::HIGH_ENTROPY_ID
        || CONTENT_RULES
            .iter()
            .any(|r| r.id == id && r.kind == Kind::Generic)
}

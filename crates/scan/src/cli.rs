//! `lockbox scan`: arguments and the entry point the binary calls.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::baseline::Baseline;
use crate::content::Engine;
use crate::finding::{Finding, Severity};
use crate::fix::SecretStore;
use crate::output::{Summary, to_json, to_sarif, write_text};
use crate::walk::{Stats, walk};

/// Examples for the `scan` subcommand's `after_help`.
pub const SCAN_AFTER_HELP: &str = "\
Examples:
  lockbox scan                                  scan the current directory
  lockbox scan deploy/ Dockerfile               scan some paths only
  lockbox scan --image myapp:latest             scan an image's Env, history and layer files
  lockbox scan --containers                     scan the environment of running containers
  lockbox scan --format sarif > lockbox.sarif   for GitHub code scanning (upload-sarif)
  lockbox scan --write-baseline .lockbox-baseline.json
  lockbox scan --baseline .lockbox-baseline.json --min-severity high

Silence one line with a comment containing `lockbox:ignore` (all rules) or
`lockbox:ignore RULE[,RULE]` (a rule id such as content.github-pat, or a family such as content).
Exit status: 0 clean, N (--exit-code, default 1) when findings remain, 2 on usage or I/O errors.
Rules are documented in docs/rules.md; `--list-rules` prints them.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

/// Find secret leaks: literal secrets in Compose files, Dockerfiles, shell/CI scripts and any
/// text file; secret build args and env in images; secret env in running containers.
#[derive(clap::Args, Debug, Clone)]
pub struct ScanArgs {
    /// Files or directories to scan (default: `.`, unless only --image/--containers are
    /// given). Directories are walked in parallel, honouring .gitignore; binary files are
    /// skipped.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Scan a local image: config Env, history (build-arg leaks) and the files of every
    /// layer. Repeatable.
    #[arg(long = "image", value_name = "REF")]
    pub images: Vec<String>,

    /// Scan the environment of every running container.
    #[arg(long)]
    pub containers: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Hide findings recorded in this baseline file (see --write-baseline).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Write the current findings to FILE as a baseline and exit 0.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,

    /// Report only findings at or above this severity.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = Severity::Info)]
    pub min_severity: Severity,

    /// Exit status when findings remain.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub exit_code: i32,

    /// Worker threads for the walk (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Never show progress, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,

    /// Print every rule (id, severity, title) and exit.
    #[arg(long)]
    pub list_rules: bool,

    /// Move literal secrets in Compose `environment:`, `env_file:` files and `.env` into
    /// lockbox secrets (created through the daemon), and rewrite the files to top-level
    /// `secrets:` (external) and `NAME_FILE=/run/secrets/…` (official images that read
    /// `NAME_FILE`). Shows the edits first, values redacted; on a terminal it writes
    /// nothing unless `--yes` is given.
    #[arg(long)]
    pub fix: bool,

    /// With `--fix`: show the edits, write nothing.
    #[arg(long, requires = "fix", conflicts_with = "yes")]
    pub dry_run: bool,

    /// With `--fix`: write the edits, also on a terminal.
    #[arg(long, requires = "fix")]
    pub yes: bool,
}

/// Runs `lockbox scan`. Returns the exit status: 0 clean, `--exit-code` when findings
/// remain, 2 on usage or I/O errors. `--fix` needs a store: see `run_with_store`.
pub fn run(args: &ScanArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    run_with_store(args, None, out, err)
}

/// `run`, with the secret store `--fix` creates the moved values in (the lockbox daemon).
pub fn run_with_store(
    args: &ScanArgs,
    store: Option<&mut dyn SecretStore>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    match run_inner(args, store, out, err) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "lockbox scan: {e}");
            2
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Engine(#[from] crate::content::EngineError),
    #[error(transparent)]
    Baseline(#[from] crate::baseline::BaselineError),
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Fix(#[from] crate::fix::FixError),
}

fn run_inner(
    args: &ScanArgs,
    store: Option<&mut dyn SecretStore>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, RunError> {
    if args.list_rules {
        for r in crate::rules::all_rules() {
            writeln!(out, "{:<44} {:<8} {}", r.id, r.severity.as_str(), r.title)?;
        }
        return Ok(0);
    }
    if args.fix {
        let roots = if args.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            args.paths.clone()
        };
        let write = !args.dry_run && (args.yes || !std::io::stdout().is_terminal());
        let s = crate::fix::run_fix(&roots, write, store, out)?;
        let verb = if write { "moved" } else { "would move" };
        writeln!(
            out,
            "{verb} {} value(s) from {} Compose project(s) into lockbox secrets; {} left for a hand fix{}",
            s.moved,
            s.files,
            s.left,
            if write || s.moved == 0 {
                ""
            } else {
                " (dry run: rerun with --yes to write)"
            }
        )?;
        return Ok(0);
    }
    if args.threads == Some(0) {
        return Err(RunError::Usage("--threads must be at least 1".into()));
    }
    let baseline = args.baseline.as_deref().map(Baseline::load).transpose()?;
    let engine = Engine::new()?;
    let mut roots = args.paths.clone();
    if roots.is_empty() && args.images.is_empty() && !args.containers {
        roots.push(PathBuf::from("."));
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let stats = Stats::default();
    let started = Instant::now();
    let show_progress = !args.no_progress && std::io::stderr().is_terminal();
    let done = AtomicBool::new(false);

    let walked = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let r = walk(&roots, &engine, threads, &stats);
            done.store(true, Ordering::Release);
            r
        });
        if show_progress {
            // The writer is not Send, so this thread draws while the walk runs elsewhere.
            let mut last = Instant::now();
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed() >= Duration::from_millis(200) {
                    last = Instant::now();
                    let _ = write!(
                        err,
                        "\r\x1b[Kscanning: {} files, {:.1} MB",
                        stats.files.load(Ordering::Relaxed),
                        stats.bytes.load(Ordering::Relaxed) as f64 / 1e6
                    );
                    let _ = err.flush();
                }
            }
            let _ = write!(err, "\r\x1b[K");
        }
        h.join()
    });
    let walked = walked.map_err(|_| RunError::Usage("a scanner thread panicked".into()))?;
    let mut findings = walked.findings;
    let mut had_errors = false;
    for e in &walked.errors {
        had_errors = true;
        writeln!(err, "lockbox scan: {e}")?;
    }

    for image in &args.images {
        if let Err(e) = crate::docker::scan_image(&engine, image, &mut findings) {
            writeln!(err, "lockbox scan: {e}")?;
            had_errors = true;
        }
    }
    if args.containers
        && let Err(e) = crate::docker::scan_containers(&engine, &mut findings)
    {
        writeln!(err, "lockbox scan: {e}")?;
        had_errors = true;
    }

    let mut findings = dedupe(findings);
    findings.retain(|f| f.severity >= args.min_severity);
    if let Some(path) = &args.write_baseline {
        Baseline::write(path, &findings)?;
        writeln!(
            err,
            "lockbox scan: wrote {} findings to baseline {}",
            findings.len(),
            path.display()
        )?;
        return Ok(if had_errors { 2 } else { 0 });
    }
    let before = findings.len();
    if let Some(b) = &baseline {
        findings.retain(|f| !b.contains(f));
    }
    let summary = Summary {
        files_scanned: stats.files.load(Ordering::Relaxed),
        bytes_scanned: stats.bytes.load(Ordering::Relaxed),
        suppressed_by_baseline: before - findings.len(),
    };
    match args.format {
        Format::Text => write_text(out, &findings, &summary)?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &to_json(&findings, &summary))
                .map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut *out, &to_sarif(&findings))
                .map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
    }
    if show_progress {
        let secs = started.elapsed().as_secs_f64();
        let _ = writeln!(
            err,
            "scanned {} files, {:.1} MB in {:.2} s",
            summary.files_scanned,
            summary.bytes_scanned as f64 / 1e6,
            secs
        );
    }
    Ok(if had_errors {
        2
    } else if findings.is_empty() {
        0
    } else {
        args.exit_code
    })
}

/// Generic heuristics that only restate what a specific rule on the same line says.
fn is_generic(rule: &str) -> bool {
    matches!(
        rule,
        "content.secret-assignment"
            | "content.high-entropy-string"
            | "content.kubernetes-secret-data"
    )
}

/// Sorts, drops exact duplicates (an env file reached twice) and generic findings on a line
/// that a specific rule already reports.
fn dedupe(mut v: Vec<Finding>) -> Vec<Finding> {
    v.sort_by(|a, b| {
        (&a.path, a.line, a.column, &a.rule).cmp(&(&b.path, b.line, b.column, &b.rule))
    });
    v.dedup_by(|a, b| {
        a.rule == b.rule && a.path == b.path && a.line == b.line && a.column == b.column
    });
    let specific: std::collections::BTreeSet<(String, usize)> = v
        .iter()
        .filter(|f| !is_generic(&f.rule))
        .map(|f| (f.path.clone(), f.line))
        .collect();
    let mut generic_seen: std::collections::BTreeSet<(String, usize)> = Default::default();
    v.retain(|f| {
        if !is_generic(&f.rule) {
            return true;
        }
        let key = (f.path.clone(), f.line);
        if f.line > 0 && specific.contains(&key) {
            return false;
        }
        // One generic finding per line is enough.
        f.line == 0 || generic_seen.insert(key)
    });
    v
}

//! Shell, CI and Makefile rules: `docker run -e NAME=value` with a literal secret, and
//! `docker build --build-arg SECRET_NAME…`. Lines are joined across `\` continuations and
//! split into words with shell quoting, so `-e "PASS=x"` and multi-line commands count.

use crate::content::inline_ignored;
use crate::finding::{Finding, Redacted, Severity};
use crate::names::{is_placeholder, is_secret_name};
use crate::rules::fix_for;

/// Is this a shell script, Makefile or CI definition (by name or shebang)?
pub fn is_shellish(rel_path: &str, head: &[u8]) -> bool {
    let lower = rel_path.to_ascii_lowercase();
    let file = lower.rsplit('/').next().unwrap_or(&lower);
    let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    if matches!(
        ext,
        "sh" | "bash" | "zsh" | "ksh" | "mk" | "ps1" | "bat" | "cmd" | "fish"
    ) {
        return true;
    }
    if matches!(
        file,
        "makefile"
            | "gnumakefile"
            | "justfile"
            | "jenkinsfile"
            | ".gitlab-ci.yml"
            | ".travis.yml"
            | ".drone.yml"
            | "azure-pipelines.yml"
            | "bitbucket-pipelines.yml"
            | "cloudbuild.yaml"
            | "cloudbuild.yml"
            | "taskfile.yml"
            | "taskfile.yaml"
            | "buildspec.yml"
            | ".envrc"
    ) {
        return true;
    }
    if lower.contains(".github/workflows/")
        || lower.contains(".circleci/")
        || lower.contains(".buildkite/")
    {
        return true;
    }
    head.starts_with(b"#!") && {
        let first = head.split(|&b| b == b'\n').next().unwrap_or(b"");
        let first = String::from_utf8_lossy(first);
        first.contains("sh")
    }
}

struct Word {
    text: String,
    /// Byte offset in the logical line of the first character of the word.
    start: usize,
}

fn words(s: &str) -> Vec<Word> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'#' {
            break;
        }
        let start = i;
        let mut text = String::new();
        let mut quote: Option<u8> = None;
        while i < b.len() {
            let c = b[i];
            match quote {
                Some(q) if c == q => quote = None,
                Some(b'"') if c == b'\\' && i + 1 < b.len() => {
                    i += 1;
                    text.push(b[i] as char);
                }
                Some(_) => text.push(c as char),
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None if c == b'\\' && i + 1 < b.len() => {
                    i += 1;
                    text.push(b[i] as char);
                }
                None if c.is_ascii_whitespace()
                    || c == b';'
                    || c == b'|'
                    || c == b'&'
                    || c == b')' =>
                {
                    break;
                }
                None => text.push(c as char),
            }
            i += 1;
        }
        out.push(Word { text, start });
        // Command separators start a new command; keep them as words so parsing stops there.
        if i < b.len() && matches!(b[i], b';' | b'|' | b'&' | b')') {
            out.push(Word {
                text: (b[i] as char).to_string(),
                start: i,
            });
            i += 1;
        }
    }
    out
}

fn is_docker_bin(w: &str) -> bool {
    let base = w.rsplit('/').next().unwrap_or(w);
    matches!(base, "docker" | "podman" | "nerdctl")
}

pub fn scan_shell(display: &str, text: &str, out: &mut Vec<Finding>) {
    let phys: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < phys.len() {
        // Join continuation lines, remembering where each physical line starts.
        let first = i;
        let mut logical = String::new();
        let mut starts: Vec<(usize, usize)> = Vec::new(); // (logical offset, physical index)
        loop {
            let l = phys[i];
            starts.push((logical.len(), i));
            match l.strip_suffix('\\') {
                Some(body) if i + 1 < phys.len() => {
                    logical.push_str(body);
                    logical.push(' ');
                    i += 1;
                }
                _ => {
                    logical.push_str(l);
                    i += 1;
                    break;
                }
            }
        }
        let _ = first;
        if !logical.contains("docker")
            && !logical.contains("podman")
            && !logical.contains("nerdctl")
        {
            continue;
        }
        let ws = words(&logical);
        let locate = |off: usize| -> (usize, usize) {
            let (lstart, pi) = starts
                .iter()
                .rev()
                .find(|(s, _)| *s <= off)
                .copied()
                .unwrap_or((0, first));
            (pi + 1, logical[lstart..off].chars().count() + 1)
        };
        let mut k = 0;
        while k < ws.len() {
            if !is_docker_bin(&ws[k].text) {
                k += 1;
                continue;
            }
            // Subcommand: skip global flags; `container run`, `buildx build`, `image build`,
            // `compose run`, `service create`.
            let mut j = k + 1;
            while j < ws.len() && ws[j].text.starts_with('-') {
                j += 1;
            }
            let mut sub = ws.get(j).map(|w| w.text.as_str()).unwrap_or("");
            if matches!(
                sub,
                "container" | "buildx" | "image" | "compose" | "service" | "builder"
            ) {
                j += 1;
                sub = ws.get(j).map(|w| w.text.as_str()).unwrap_or("");
            }
            let kind = match sub {
                "run" | "create" | "exec" | "up" => 'r',
                "build" | "bake" => 'b',
                _ => {
                    k = j.max(k + 1);
                    continue;
                }
            };
            j += 1;
            while j < ws.len() && !matches!(ws[j].text.as_str(), ";" | "|" | "&" | ")") {
                let w = &ws[j];
                let (flag_val, val_start) = match (kind, w.text.as_str()) {
                    ('r', "-e" | "--env") | ('b', "--build-arg") => {
                        j += 1;
                        match ws.get(j) {
                            Some(n) => (n.text.clone(), n.start),
                            None => break,
                        }
                    }
                    ('r', t) if t.starts_with("--env=") => {
                        (t["--env=".len()..].to_string(), w.start + 6)
                    }
                    ('r', t) if t.starts_with("-e") && t.len() > 2 && !t.starts_with("--") => {
                        (t[2..].to_string(), w.start + 2)
                    }
                    ('b', t) if t.starts_with("--build-arg=") => {
                        (t["--build-arg=".len()..].to_string(), w.start + 12)
                    }
                    _ => {
                        j += 1;
                        continue;
                    }
                };
                j += 1;
                let (name, value) = match flag_val.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (flag_val.clone(), None),
                };
                if !is_secret_name(&name) {
                    continue;
                }
                let (line, col) = locate(val_start);
                let line_text = phys.get(line - 1).copied().unwrap_or("");
                if kind == 'r' {
                    let Some(v) = value.filter(|v| !is_placeholder(v)) else {
                        continue;
                    };
                    if inline_ignored(line_text.as_bytes(), "shell.docker-run-env-secret") {
                        continue;
                    }
                    out.push(Finding {
                        rule: "shell.docker-run-env-secret".into(),
                        severity: Severity::High,
                        path: display.to_string(),
                        line,
                        column: col,
                        end_column: col + flag_val.chars().count(),
                        message: format!(
                            "`docker {sub} -e {name}=…` passes a literal secret: {}",
                            Redacted::of(&v)
                        ),
                        fix: fix_for("shell.docker-run-env-secret").to_string(),
                        fingerprint: Finding::fingerprint_of(
                            "shell.docker-run-env-secret",
                            display,
                            &v,
                        ),
                        secret: Some(Redacted::of(&v)),
                    });
                } else {
                    if inline_ignored(line_text.as_bytes(), "shell.docker-build-arg-secret") {
                        continue;
                    }
                    let literal = value.as_deref().filter(|v| !is_placeholder(v));
                    out.push(Finding {
                        rule: "shell.docker-build-arg-secret".into(),
                        severity: Severity::High,
                        path: display.to_string(),
                        line,
                        column: col,
                        end_column: col + flag_val.chars().count(),
                        message: match literal {
                            Some(v) => format!("`--build-arg {name}` with a literal value ({}) is recorded in the image history", Redacted::of(v)),
                            None => format!("`--build-arg {name}` puts a secret into the image history"),
                        },
                        fix: fix_for("shell.docker-build-arg-secret").to_string(),
                        fingerprint: Finding::fingerprint_of("shell.docker-build-arg-secret", display, literal.unwrap_or(&name)),
                        secret: literal.map(Redacted::of),
                    });
                }
            }
            k = j;
        }
    }
}

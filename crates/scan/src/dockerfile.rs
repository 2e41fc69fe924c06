//! Dockerfile rules, on parse-dockerfile's spans so findings point at `file:line:col`.

use std::collections::BTreeMap;
use std::path::Path;

use parse_dockerfile::{Command, Instruction, Source};

use crate::content::inline_ignored;
use crate::finding::{Finding, Redacted, Severity};
use crate::names::{is_placeholder, is_reference, is_secret_name};
use crate::rules::fix_for;

/// `Dockerfile`, `Containerfile`, `Dockerfile.prod`, `api.Dockerfile`.
pub fn is_dockerfile_name(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    lower == "dockerfile"
        || lower == "containerfile"
        || lower.starts_with("dockerfile.")
        || lower.starts_with("containerfile.")
        || lower.ends_with(".dockerfile")
        || lower.ends_with(".containerfile")
}

/// Does a file name (basename or path) look like it holds a secret? Returns why.
/// Shared with the image-layer rule. `strict` drops names that are as often public
/// (`*.pem`, `*.key`, `*.crt` bundles in images), which content rules check instead.
pub fn secret_file_reason(path: &str, strict: bool) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    let lower = lower.trim_end_matches('/');
    let base = lower.rsplit('/').next().unwrap_or(lower);
    let parent = lower.rsplit('/').nth(1).unwrap_or("");
    match base {
        "id_rsa" | "id_dsa" | "id_ecdsa" | "id_ed25519" | "id_ecdsa_sk" | "id_ed25519_sk" => {
            return Some("SSH private key");
        }
        ".env" | ".env.local" | ".env.production" | ".env.prod" | ".env.development"
        | ".env.dev" | ".env.staging" => {
            return Some("dotenv file");
        }
        ".pypirc" => return Some("PyPI credentials"),
        ".netrc" | "_netrc" => return Some("netrc credentials"),
        ".git-credentials" => return Some("git credentials store"),
        ".dockercfg" => return Some("Docker registry credentials"),
        ".pgpass" => return Some("PostgreSQL password file"),
        ".my.cnf" => return Some("MySQL client credentials"),
        ".htpasswd" => return Some("htpasswd file"),
        "credentials" | "credentials.json" | "credential.json" | "credentials.yml"
        | "credentials.yaml" => {
            return Some("credentials file");
        }
        "password.txt" | "passwords.txt" | "secret.txt" | "secrets.txt" => {
            return Some("password file");
        }
        "secret_token.rb" | "master.key" | "secrets.yml.key" => return Some("Rails secret"),
        "kubeconfig" => return Some("Kubernetes credentials"),
        "terraform.tfstate" => return Some("Terraform state (holds resource secrets)"),
        "vault-token" | ".vault-token" => return Some("Vault token"),
        _ => {}
    }
    if parent == ".docker" && base == "config.json" {
        return Some("Docker registry credentials");
    }
    if parent == ".kube" && base == "config" {
        return Some("Kubernetes credentials");
    }
    if (base.starts_with("client_secret")
        || base.starts_with("service-account")
        || base.starts_with("service_account"))
        && base.ends_with(".json")
    {
        return Some("cloud service-account key");
    }
    let ext = base.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "p12" | "pfx" | "jks" | "keystore" | "kdbx" | "ppk" | "ovpn" | "secret" | "private_key"
        | "keychain" | "psafe3" | "asc"
            if base != ".asc" =>
        {
            return Some("key or credential store");
        }
        "pem" | "key" if !strict => return Some("PEM key or certificate"),
        _ => {}
    }
    None
}

fn line_col(text: &str, off: usize) -> (usize, usize) {
    let before = &text[..off.min(text.len())];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let ls = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[ls..].chars().count() + 1)
}

/// Splits `A=1 B="two words"` / `NAME value` keeping the byte offset of each value.
fn split_assignments(s: &str) -> Vec<(String, Option<String>, usize)> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = s[start..i].to_string();
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            let vstart = i;
            let mut val = String::new();
            let mut quote = None;
            while i < bytes.len() {
                let c = bytes[i];
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => val.push(c as char),
                    None if c == b'"' || c == b'\'' => quote = Some(c),
                    None if c.is_ascii_whitespace() => break,
                    None if c == b'\\' && i + 1 < bytes.len() => {
                        i += 1;
                        val.push(bytes[i] as char);
                    }
                    None => val.push(c as char),
                }
                i += 1;
            }
            out.push((name, Some(val), vstart));
        } else {
            out.push((name, None, start));
        }
    }
    out
}

/// Does `cmd` reference `$NAME` or `${NAME…}`?
fn references_var(cmd: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = cmd[from..].find('$') {
        let at = from + i;
        let rest = &cmd[at + 1..];
        let rest = rest.strip_prefix('{').unwrap_or(rest);
        if let Some(after) = rest.strip_prefix(name)
            && !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

pub struct DockerfileCtx<'a> {
    pub path: &'a Path,
    pub display: &'a str,
}

pub fn scan_dockerfile(ctx: &DockerfileCtx<'_>, text: &str, out: &mut Vec<Finding>) {
    let Ok(df) = parse_dockerfile::parse(text) else {
        return;
    };
    let context_dir = ctx.path.parent().unwrap_or(Path::new("."));
    let lines: Vec<&str> = text.lines().collect();
    let mut push = |rule: &str,
                    sev: Severity,
                    off: usize,
                    len: usize,
                    message: String,
                    secret: Option<&str>,
                    key: &str| {
        let (line, column) = line_col(text, off);
        let lt = lines.get(line - 1).copied().unwrap_or("");
        if inline_ignored(lt.as_bytes(), rule) {
            return;
        }
        out.push(Finding {
            rule: rule.to_string(),
            severity: sev,
            path: ctx.display.to_string(),
            line,
            column,
            end_column: column + len,
            message,
            fix: fix_for(rule).to_string(),
            secret: secret.map(Redacted::of),
            fingerprint: Finding::fingerprint_of(rule, ctx.display, secret.unwrap_or(key)),
        });
    };
    // Secret ARGs in scope: name → where declared. Reset at each FROM, as Docker scopes them.
    let mut args: BTreeMap<String, usize> = BTreeMap::new();
    for inst in &df.instructions {
        match inst {
            Instruction::From(_) => args.clear(),
            Instruction::Arg(a) => {
                for (name, default, voff) in split_assignments(&a.arguments.value) {
                    if !is_secret_name(&name) {
                        continue;
                    }
                    let off = a.arguments.span.start;
                    args.insert(name.clone(), off);
                    match default.as_deref().filter(|d| !is_placeholder(d)) {
                        Some(d) => push(
                            "dockerfile.arg-secret",
                            Severity::High,
                            a.arguments.span.start + voff,
                            d.len(),
                            format!(
                                "ARG {name} has a secret-looking name and a literal default: {}",
                                Redacted::of(d)
                            ),
                            Some(d),
                            &name,
                        ),
                        None => push(
                            "dockerfile.arg-secret",
                            Severity::Medium,
                            off,
                            name.len(),
                            format!(
                                "ARG {name} has a secret-looking name; build args are recorded in the image history"
                            ),
                            None,
                            &name,
                        ),
                    }
                }
            }
            Instruction::Env(e) => {
                let raw = e.arguments.value.as_ref();
                let pairs = if raw
                    .split_whitespace()
                    .next()
                    .is_some_and(|t| t.contains('='))
                {
                    split_assignments(raw)
                } else {
                    // Legacy `ENV NAME value with spaces`.
                    let mut it = raw.splitn(2, char::is_whitespace);
                    let name = it.next().unwrap_or("").to_string();
                    let value = it.next().map(|v| v.trim().to_string());
                    let voff = raw.len() - value.as_deref().map_or(0, str::len);
                    vec![(name, value, voff)]
                };
                for (name, value, voff) in pairs {
                    if !is_secret_name(&name) {
                        continue;
                    }
                    let off = e.arguments.span.start;
                    match value.as_deref() {
                        Some(v) if !is_placeholder(v) => push(
                            "dockerfile.env-secret",
                            Severity::High,
                            off + voff,
                            v.len(),
                            format!(
                                "ENV {name} bakes a literal secret into the image: {}",
                                Redacted::of(v)
                            ),
                            Some(v),
                            &name,
                        ),
                        Some(v) if is_reference(v) => push(
                            "dockerfile.env-secret",
                            Severity::High,
                            off,
                            name.len(),
                            format!(
                                "ENV {name}={v} copies a build-time value into the image config and every container"
                            ),
                            None,
                            &name,
                        ),
                        _ => {}
                    }
                }
            }
            Instruction::Run(r) => {
                let (mut cmd, cmd_start) = match &r.arguments {
                    Command::Shell(s) => (s.value.to_string(), s.span.start),
                    Command::Exec(v) => (
                        v.value
                            .iter()
                            .map(|s| s.value.as_ref())
                            .collect::<Vec<_>>()
                            .join(" "),
                        v.span.start,
                    ),
                    // A future command form: nothing to look into.
                    _ => (String::new(), r.run.span.start),
                };
                for h in &r.here_docs {
                    cmd.push('\n');
                    cmd.push_str(&h.value);
                }
                for name in args.keys() {
                    if let Some(at) = references_var(&cmd, name) {
                        let off = if at < text.len().saturating_sub(cmd_start) {
                            cmd_start + at
                        } else {
                            r.run.span.start
                        };
                        push(
                            "dockerfile.arg-secret-in-run",
                            Severity::High,
                            off.min(text.len()),
                            name.len() + 1,
                            format!(
                                "RUN uses build arg ${name}; its value is recorded in the image history as `|N {name}=…`"
                            ),
                            None,
                            name,
                        );
                    }
                }
            }
            Instruction::Copy(c) => check_copy(&c.src, context_dir, &mut push),
            Instruction::Add(a) => check_copy(&a.src, context_dir, &mut push),
            _ => {}
        }
    }
}

fn check_copy(
    srcs: &[Source<'_>],
    context_dir: &Path,
    push: &mut impl FnMut(&str, Severity, usize, usize, String, Option<&str>, &str),
) {
    for s in srcs {
        let Source::Path(p) = s else { continue };
        let path = p.value.as_ref();
        let base = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(path);
        let reason = if base.eq_ignore_ascii_case(".npmrc") {
            // An .npmrc is only a secret when it carries a token; look at the build context.
            match std::fs::read_to_string(context_dir.join(path)) {
                Ok(body)
                    if !(body.contains("_authToken")
                        || body.contains("_auth=")
                        || body.contains("_password")) =>
                {
                    None
                }
                Ok(_) => Some(".npmrc with a registry token"),
                Err(_) => Some(".npmrc (may hold a registry token)"),
            }
        } else {
            secret_file_reason(path, false)
        };
        if let Some(reason) = reason {
            push(
                "dockerfile.copy-secret-file",
                Severity::High,
                p.span.start,
                path.len(),
                format!("`{path}` ({reason}) is copied into an image layer"),
                None,
                path,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files() {
        assert!(secret_file_reason("id_rsa", true).is_some());
        assert!(secret_file_reason("home/u/.ssh/id_ed25519", true).is_some());
        assert!(secret_file_reason("id_rsa.pub", true).is_none());
        assert!(secret_file_reason("certs/server.pem", false).is_some());
        assert!(secret_file_reason("etc/ssl/certs/ca.pem", true).is_none());
        assert!(secret_file_reason(".env.example", false).is_none());
        assert!(secret_file_reason("root/.docker/config.json", true).is_some());
        assert!(secret_file_reason("package.json", false).is_none());
    }

    #[test]
    fn var_references() {
        assert!(references_var("npm ci --token=$NPM_AUTH_TOKEN", "NPM_AUTH_TOKEN").is_some());
        assert!(references_var("echo ${TOKEN:-x}", "TOKEN").is_some());
        assert!(references_var("echo $TOKENS", "TOKEN").is_none());
    }
}

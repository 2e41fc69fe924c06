//! Images and containers, through the real `docker` CLI (the same client users run, so the
//! context, `DOCKER_HOST` and credentials behave as they expect).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use crate::content::{Engine, FileCtx, inline_ignored};
use crate::dockerfile::secret_file_reason;
use crate::finding::{Finding, Redacted, Severity};
use crate::names::{is_placeholder, is_secret_name};
use crate::rules::fix_for;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("running `docker {args}`: {source}")]
    Spawn {
        args: String,
        source: std::io::Error,
    },
    #[error("`docker {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("unexpected output from `docker {args}`: {detail}")]
    Parse { args: String, detail: String },
    #[error("reading the image archive of {image}: {source}")]
    Archive {
        image: String,
        source: std::io::Error,
    },
}

fn docker_bin() -> String {
    std::env::var("LOCKBOX_DOCKER").unwrap_or_else(|_| "docker".to_string())
}

fn docker_output(args: &[&str]) -> Result<Vec<u8>, DockerError> {
    let joined = args.join(" ");
    let out = Command::new(docker_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DockerError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(DockerError::Failed {
            args: joined,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

fn env_finding(
    rule: &str,
    path: &str,
    line: usize,
    name: &str,
    value: &str,
    what: &str,
) -> Finding {
    let r = Redacted::of(value);
    Finding {
        rule: rule.to_string(),
        severity: crate::rules::info(rule).map_or(Severity::High, |i| i.severity),
        path: path.to_string(),
        line,
        column: name.len() + 2,
        end_column: name.len() + 2 + value.chars().count(),
        message: format!("{what} {name}: {r}"),
        fix: fix_for(rule).to_string(),
        fingerprint: Finding::fingerprint_of(rule, path, value),
        secret: Some(r),
    }
}

/// Content rules on a one-line record (an `Env` entry, a history line).
fn content_on(engine: &Engine, path: &str, line_no: usize, text: &str, out: &mut Vec<Finding>) {
    let ctx = FileCtx {
        display: path,
        generic_allowlisted: false,
        is_code: false,
    };
    let mut tmp = Vec::new();
    engine.scan_bytes(text.as_bytes(), &ctx, &mut tmp);
    for mut f in tmp {
        f.line = line_no;
        out.push(f);
    }
}

/// Scans one local image: config `Env`, history `CreatedBy` (build-arg leaks), and the
/// files of every layer (streamed from `docker save`, never written to disk).
pub fn scan_image(engine: &Engine, image: &str, out: &mut Vec<Finding>) -> Result<(), DockerError> {
    let raw = docker_output(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        image,
    ])?;
    let env: Option<Vec<String>> =
        serde_json::from_slice(&raw).map_err(|e| DockerError::Parse {
            args: format!("image inspect {image}"),
            detail: e.to_string(),
        })?;
    let env_path = format!("docker-image:{image}#config.Env");
    for (i, kv) in env.unwrap_or_default().iter().enumerate() {
        if let Some((k, v)) = kv.split_once('=')
            && is_secret_name(k)
            && !is_placeholder(v)
        {
            out.push(env_finding(
                "image.env-secret",
                &env_path,
                i + 1,
                k,
                v,
                "image config Env sets",
            ));
        } else {
            content_on(engine, &env_path, i + 1, kv, out);
        }
    }

    // History: newest first from docker; numbered oldest-first so numbers are stable when
    // layers are added on top.
    let raw = docker_output(&[
        "history",
        "--no-trunc",
        "--format",
        "{{json .CreatedBy}}",
        image,
    ])?;
    let mut lines: Vec<String> = Vec::new();
    for l in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let s: String = serde_json::from_slice(l).map_err(|e| DockerError::Parse {
            args: format!("history {image}"),
            detail: e.to_string(),
        })?;
        lines.push(s);
    }
    lines.reverse();
    let hist_path = format!("docker-image:{image}#history");
    for (i, created_by) in lines.iter().enumerate() {
        let mut flagged = false;
        for (k, v) in build_args_in_history(created_by) {
            if is_secret_name(&k) && !is_placeholder(&v) {
                flagged = true;
                out.push(env_finding(
                    "image.history-build-arg",
                    &hist_path,
                    i + 1,
                    &k,
                    &v,
                    "history records build arg",
                ));
            }
        }
        if !flagged {
            content_on(engine, &hist_path, i + 1, created_by, out);
        }
    }

    scan_layers(engine, image, out)
}

/// `RUN |2 TOKEN=abc OTHER=x /bin/sh -c …` → [(TOKEN, abc), (OTHER, x)].
pub fn build_args_in_history(created_by: &str) -> Vec<(String, String)> {
    let s = created_by.trim_start();
    let s = s.strip_prefix("RUN ").unwrap_or(s).trim_start();
    let Some(rest) = s.strip_prefix('|') else {
        return Vec::new();
    };
    let mut it = rest.split_whitespace();
    let n: usize = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    it.take(n)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn scan_layers(engine: &Engine, image: &str, out: &mut Vec<Finding>) -> Result<(), DockerError> {
    let mut child = Command::new(docker_bin())
        .args(["save", image])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| DockerError::Spawn {
            args: format!("save {image}"),
            source,
        })?;
    let stdout = child.stdout.take().ok_or_else(|| DockerError::Parse {
        args: format!("save {image}"),
        detail: "no stdout".into(),
    })?;
    let io_err = |source| DockerError::Archive {
        image: image.to_string(),
        source,
    };
    let mut outer = tar::Archive::new(stdout);
    let result = (|| -> Result<(), DockerError> {
        for entry in outer.entries().map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry.path().map_err(io_err)?.to_string_lossy().into_owned();
            // Layers are `<id>/layer.tar` (docker format) or `blobs/sha256/<digest>` (OCI);
            // the magic bytes tell layers from JSON configs and manifests.
            if !(name.ends_with("layer.tar") || name.starts_with("blobs/")) {
                continue;
            }
            let mut br = BufReader::with_capacity(64 << 10, entry);
            let head = br.fill_buf().map_err(io_err)?;
            let gz = head.starts_with(&[0x1f, 0x8b]);
            let is_tar = head.len() > 262 && &head[257..262] == b"ustar";
            if gz {
                scan_layer_tar(engine, image, flate2::read::GzDecoder::new(br), out)
                    .map_err(io_err)?;
            } else if is_tar {
                scan_layer_tar(engine, image, br, out).map_err(io_err)?;
            }
        }
        Ok(())
    })();
    // Drain and reap the child whatever happened, so no zombie is left behind.
    let mut rest = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut rest);
    }
    let status = child.wait().map_err(io_err)?;
    result?;
    if !status.success() {
        return Err(DockerError::Failed {
            args: format!("save {image}"),
            stderr: String::from_utf8_lossy(&rest).trim().to_string(),
        });
    }
    Ok(())
}

fn scan_layer_tar<R: Read>(
    engine: &Engine,
    image: &str,
    r: R,
    out: &mut Vec<Finding>,
) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let base = path.rsplit('/').next().unwrap_or(&path);
        if base.starts_with(".wh.") {
            continue;
        }
        let display = format!("docker-image:{image}!/{}", path.trim_start_matches("./"));
        if let Some(reason) = secret_file_reason(&path, true) {
            out.push(Finding {
                rule: "image.secret-file".into(),
                severity: Severity::High,
                path: display.clone(),
                line: 0,
                column: 0,
                end_column: 0,
                message: format!(
                    "layer file /{} looks like a {reason}",
                    path.trim_start_matches("./")
                ),
                fix: fix_for("image.secret-file").to_string(),
                fingerprint: Finding::fingerprint_of("image.secret-file", &display, &path),
                secret: None,
            });
        }
        let ctx = FileCtx {
            display: &display,
            generic_allowlisted: crate::names::is_generic_allowlisted_path(&path),
            is_code: crate::content::is_code_path(&path),
        };
        engine.scan_reader(entry, &ctx, out)?;
    }
    Ok(())
}

/// Running containers whose environment holds secret-looking values.
pub fn scan_containers(engine: &Engine, out: &mut Vec<Finding>) -> Result<(), DockerError> {
    let ids = docker_output(&["ps", "-q", "--no-trunc"])?;
    let ids: Vec<String> = String::from_utf8_lossy(&ids)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let mut args = vec!["inspect", "--type", "container"];
    args.extend(ids.iter().map(String::as_str));
    let raw = docker_output(&args)?;
    let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| DockerError::Parse {
        args: "inspect".into(),
        detail: e.to_string(),
    })?;
    for c in v.as_array().into_iter().flatten() {
        let name = c["Name"].as_str().unwrap_or("?").trim_start_matches('/');
        let path = format!("docker-container:{name}#Env");
        let env = c["Config"]["Env"].as_array().cloned().unwrap_or_default();
        for (i, kv) in env.iter().filter_map(|e| e.as_str()).enumerate() {
            if inline_ignored(kv.as_bytes(), "container.env-secret") {
                continue;
            }
            if let Some((k, val)) = kv.split_once('=')
                && is_secret_name(k)
                && !is_placeholder(val)
            {
                out.push(env_finding(
                    "container.env-secret",
                    &path,
                    i + 1,
                    k,
                    val,
                    "container environment sets",
                ));
            } else {
                content_on(engine, &path, i + 1, kv, out);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_build_args() {
        assert_eq!(
            build_args_in_history("RUN |2 TOKEN=abc OTHER=x /bin/sh -c echo # buildkit"),
            vec![
                ("TOKEN".to_string(), "abc".to_string()),
                ("OTHER".to_string(), "x".to_string())
            ]
        );
        assert_eq!(
            build_args_in_history("|1 TOKEN=cb-1 /bin/sh -c echo"),
            vec![("TOKEN".to_string(), "cb-1".to_string())]
        );
        assert!(build_args_in_history("/bin/sh -c #(nop) ENV A=b").is_empty());
    }
}

//! `lockbox build` and `lockbox compose -- build`: lockbox secrets handed to BuildKit for
//! `RUN --mount=type=secret,id=…`.
//!
//! A build is a workload like a container: the daemon makes a tmpfs, writes one file per
//! secret (audited hand-out), and the build gets `--secret id=ID,src=<tmpfs file>`. The
//! workload is released when the build ends; since no container carries its label, the
//! daemon removes the tmpfs at once. If this process dies instead, the daemon sees the
//! workload's stream close and does the same: the files go whatever way the build ends.
//!
//! Which client: BuildKit secrets need either the `docker buildx` plugin, or a Docker CLI
//! older than 23.0 with `DOCKER_BUILDKIT=1` (its `docker build` talks to the engine's
//! embedded BuildKit). From 23.0 on, `docker build` hands BuildKit builds to buildx and fails
//! without it; the legacy builder has no secrets at all.
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use clap::Args;
use lockbox_compose::{Kind, Model, Project};
use lockbox_proto::exit_codes;

use crate::Exit;
use crate::client::Client;
use crate::compose::{ComposeBin, Resolved, WorkloadSpec, resolve_all, run_child};

/// `lockbox build`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  lockbox build --secret id=npm_token -- -t app:1 .\n  lockbox build --secret id=pip,src=pip_conf --docker /usr/bin/docker -- -t app:1 -f Dockerfile .\n\nIn the Dockerfile: RUN --mount=type=secret,id=npm_token cat /run/secrets/npm_token\nThe value is never a build argument, so it stays out of the image's history, config and layers."
)]
pub(crate) struct BuildArgs {
    /// A lockbox secret for the build: id=ID (as the Dockerfile names it), src=NAME (the lockbox secret, default ID)
    #[arg(long = "secret", value_name = "id=ID[,src=NAME]")]
    secrets: Vec<String>,
    /// The docker client to use [default: docker with buildx, else a docker older than 23.0 with DOCKER_BUILDKIT=1]
    #[arg(long, env = "LOCKBOX_BUILD_DOCKER", value_name = "BIN")]
    docker: Option<String>,
    /// docker build arguments
    #[arg(last = true, required = true, value_name = "ARGS")]
    args: Vec<OsString>,
}

fn fail(msg: impl Into<String>) -> anyhow::Error {
    Exit(exit_codes::FAILURE, msg.into()).into()
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    Exit(exit_codes::USAGE, msg.into()).into()
}

/// `id=ID[,src=NAME]` (also `source=`); `src` defaults to the id.
pub(crate) fn parse_build_secret(raw: &str) -> anyhow::Result<(String, String)> {
    let mut id = None;
    let mut src = None;
    for part in raw.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_owned()),
            Some(("src" | "source", v)) => src = Some(v.to_owned()),
            _ => {
                return Err(usage(format!(
                    "invalid --secret {raw:?}: expected id=ID[,src=NAME]"
                )));
            }
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| usage(format!("invalid --secret {raw:?}: id is required")))?;
    if id.starts_with('.') || id.contains('/') || id.chars().any(char::is_whitespace) {
        return Err(usage(format!(
            "invalid --secret {raw:?}: the id names a file: no '/', no leading '.', no spaces"
        )));
    }
    let src = src.unwrap_or_else(|| id.clone());
    Ok((id, src))
}

/// A client that can drive BuildKit.
#[derive(Debug, Clone)]
pub(crate) struct BuildClient {
    program: String,
    buildx: bool,
}

impl BuildClient {
    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        if self.buildx {
            cmd.args(["buildx", "build", "--load"]);
        } else {
            cmd.env("DOCKER_BUILDKIT", "1").arg("build");
        }
        cmd
    }
}

/// Runs a short probe (`docker version`, `docker-compose version`…) and returns its trimmed
/// stdout when it succeeds; `None` when it cannot run or fails.
pub(crate) fn probe_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Tries `choice`, else `docker` on PATH then `/usr/bin/docker`; says why each cannot.
pub(crate) fn pick_client(choice: Option<&str>) -> anyhow::Result<BuildClient> {
    let candidates: Vec<String> = match choice {
        Some(c) => vec![c.to_owned()],
        None => vec!["docker".into(), "/usr/bin/docker".into()],
    };
    let mut reasons = Vec::new();
    for c in &candidates {
        if probe_output(c, &["buildx", "version"]).is_some() {
            return Ok(BuildClient {
                program: c.clone(),
                buildx: true,
            });
        }
        match probe_output(c, &["version", "--format", "{{.Client.Version}}"]) {
            Some(v) => {
                let major: u32 = v
                    .split('.')
                    .next()
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(0);
                if (18..23).contains(&major) {
                    return Ok(BuildClient {
                        program: c.clone(),
                        buildx: false,
                    });
                }
                reasons.push(format!(
                    "{c} {v} has no buildx plugin, and from 23.0 on docker build needs buildx for BuildKit"
                ));
            }
            None => reasons.push(format!("{c} does not run")),
        }
    }
    Err(fail(format!(
        "build: no client here can drive BuildKit: {}. Install the docker buildx plugin, or name a Docker CLI older than 23.0 with --docker (it is used with DOCKER_BUILDKIT=1)",
        reasons.join("; ")
    )))
}

/// Opens the build's workload and returns it with the `--secret` arguments for BuildKit.
async fn open_build_workload(
    socket: &Path,
    spec: WorkloadSpec,
    ids: &[String],
) -> anyhow::Result<(crate::compose::Workload, Vec<OsString>)> {
    let w = spec.open(socket).await?;
    let mut args = Vec::new();
    for id in ids {
        args.push(OsString::from("--secret"));
        let mut a = OsString::from(format!("id={id},src="));
        a.push(w.published.join(id));
        args.push(a);
    }
    Ok((w, args))
}

/// `lockbox build`.
pub(crate) async fn build(socket: &Path, a: BuildArgs) -> anyhow::Result<i32> {
    let client = pick_client(a.docker.as_deref())?;
    let mut spec = WorkloadSpec::default();
    let mut ids = Vec::new();
    for raw in &a.secrets {
        let (id, src) = parse_build_secret(raw)?;
        if ids.contains(&id) {
            return Err(usage(format!("duplicate --secret id {id:?}")));
        }
        // BuildKit's own default for a secret mount: 0400, root.
        spec.lockbox(&src, &id, 0, 0, 0o400);
        ids.push(id);
    }
    let (w, secret_args) = if ids.is_empty() {
        (None, Vec::new())
    } else {
        let (w, args) = open_build_workload(socket, spec, &ids).await?;
        (Some(w), args)
    };
    let mut cmd = client.command();
    cmd.args(&secret_args).args(&a.args);
    let code = run_child(cmd).await;
    if let Some(w) = w {
        w.release(socket, false).await;
    }
    code
}

fn str_of(n: Option<&lockbox_compose::Node>) -> Option<String> {
    n.and_then(lockbox_compose::Node::scalar_string)
}

/// `lockbox compose -- build [flags] [services]` when some service has `build.secrets`:
/// those services are built here with BuildKit (Compose v1 has no build secrets, and v2
/// would read the values itself), the others by Compose.
pub(crate) async fn compose_build(
    socket: &Path,
    c: &Client,
    bin: &ComposeBin,
    project: &Project,
    model: &Model,
    args: &[OsString],
) -> anyhow::Result<i32> {
    let client = pick_client(std::env::var("LOCKBOX_BUILD_DOCKER").ok().as_deref())?;
    let after: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .skip_while(|a| a != "build")
        .skip(1)
        .collect();
    let named: Vec<&String> = after.iter().filter(|a| !a.starts_with('-')).collect();
    let flags: Vec<&String> = after.iter().filter(|a| a.starts_with('-')).collect();
    let services = model.services.clone();
    let values = resolve_all(c, project, model).await?;
    let all_services = project
        .model
        .get("services")
        .and_then(lockbox_compose::Node::as_map)
        .unwrap_or_default();
    let wanted = |name: &str| named.is_empty() || named.iter().any(|n| *n == name);
    let mut ours = Vec::new();
    for s in services.iter().filter(|s| !s.build_secrets.is_empty()) {
        if wanted(&s.service) {
            ours.push(s.service.clone());
            let svc = project
                .model
                .get("services")
                .and_then(|m| m.get(&s.service))
                .ok_or_else(|| fail(format!("no service {}", s.service)))?;
            let b = svc.get("build");
            let context = str_of(b.and_then(|b| b.get("context"))).unwrap_or_else(|| ".".into());
            let context = project.directory.join(context);
            let image = str_of(svc.get("image")).unwrap_or_else(|| {
                let sep = if bin.is_v1() { "_" } else { "-" };
                format!("{}{sep}{}", project.name, s.service)
            });
            let mut spec = WorkloadSpec::default();
            let mut ids = Vec::new();
            for bs in &s.build_secrets {
                match values.get(&(Kind::Secret, bs.source.clone())) {
                    Some(Resolved::Lockbox(name)) => spec.lockbox(name, &bs.id, 0, 0, 0o400),
                    Some(Resolved::Local(data)) => spec.inline(&bs.id, 0, 0, 0o400, data),
                    None => continue,
                }
                ids.push(bs.id.clone());
            }
            let (w, secret_args) = open_build_workload(socket, spec, &ids).await?;
            let mut cmd = client.command();
            cmd.args(&secret_args).arg("-t").arg(&image);
            if let Some(f) = str_of(b.and_then(|b| b.get("dockerfile"))) {
                cmd.arg("-f").arg(context.join(f));
            }
            if let Some(t) = str_of(b.and_then(|b| b.get("target"))) {
                cmd.arg("--target").arg(t);
            }
            for (k, v) in b
                .and_then(|b| b.get("args"))
                .and_then(lockbox_compose::Node::as_map)
                .unwrap_or_default()
            {
                match v.scalar_string() {
                    Some(v) => cmd.arg("--build-arg").arg(format!("{}={v}", k.name)),
                    None => cmd.arg("--build-arg").arg(&k.name),
                };
            }
            for f in &flags {
                if matches!(f.as_str(), "--no-cache" | "--pull" | "-q" | "--quiet") {
                    cmd.arg(f);
                }
            }
            cmd.arg(&context);
            eprintln!("Building {} with lockbox build secrets", s.service);
            let code = run_child(cmd).await;
            w.release(socket, false).await;
            let code = code?;
            if code != 0 {
                return Ok(code);
            }
        }
    }
    drop(values);
    // The rest is Compose's, on the rewritten project (no secrets in it).
    let rest: Vec<String> = all_services
        .iter()
        .filter(|(k, v)| v.get("build").is_some() && !ours.contains(&k.name) && wanted(&k.name))
        .map(|(k, _)| k.name.clone())
        .collect();
    if rest.is_empty() {
        return Ok(0);
    }
    let rewritten = lockbox_compose::rewrite(project, &BTreeMap::new());
    let dir = std::env::temp_dir();
    let mut file = tempfile::Builder::new()
        .prefix("lockbox-compose-")
        .suffix(".json")
        .tempfile_in(&dir)?;
    serde_json::to_writer_pretty(&mut file, &rewritten)?;
    let mut cmd = bin.command();
    cmd.arg("-f")
        .arg(file.path())
        .arg("-p")
        .arg(&project.name)
        .arg("--project-directory")
        .arg(&project.directory)
        .arg("build")
        .args(flags)
        .args(rest);
    let code = run_child(cmd).await;
    drop(file);
    code
}

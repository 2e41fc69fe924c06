//! `lockbox compose`: the user's Compose command on their unchanged files, with secrets and
//! configs delivered the lockbox way.
//!
//! 1. Load the project as Compose would (`lockbox-compose`): files, `.env`, interpolation,
//!    merge, project name; a YAML or schema error stops here with file:line:column.
//! 2. Resolve every secret and config a service uses: from lockbox (`external`, or a name
//!    lockbox has), or from its file/variable/inline content, read into memory. An unknown
//!    external secret stops here, before anything is started.
//! 3. For commands that create containers (`up`, `run`, `create`, `scale`): one container
//!    workload per service with the daemon's workload API, the same one `lockbox docker run`
//!    uses: the daemon makes the service's tmpfs, writes the files with their uid/gid/mode,
//!    follows rotations, and reaps the tmpfs when the containers are destroyed.
//! 4. Write the rewritten project (binds of the tmpfs, a label per service, no values) to a
//!    0600 temporary file and run Compose on it with `-p` and `--project-directory`, so
//!    relative paths and the project's identity are what they would have been.
//!
//! Why a temporary file and not `-f -`: `compose run` and `up` in the foreground may need
//! standard input for the container. The file holds only paths and the user's own settings,
//! and is removed when Compose exits.
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use hyper::Method;
use lockbox_compose::{Kind, LoadOptions, Model, Project, Reference, ServiceDelivery, Source};
use lockbox_proto::{Object, exit_codes};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::Exit;
use crate::client::{Client, Lines, open_lines};

/// `lockbox compose`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  lockbox compose -- up -d\n  lockbox compose -f compose.yaml -f compose.prod.yaml -p shop -- up -d\n  lockbox compose -- -p shop --profile web up -d          # Compose's own options work too\n  lockbox compose -- run --rm app cat /run/secrets/db_password\n  lockbox compose -- down\n  lockbox compose --compose docker-compose -- up -d        # Compose v1\n\nTested with Compose v2 (docker compose 2.26) and v1 (docker-compose 1.29).\n\nSecrets (external: true, or any name lockbox has, else file:/environment:) and configs land on\na per-service tmpfs, read-only, with uid/gid/mode honoured; Compose never sees a value.\nRotations reach running containers. Everything else in your files is passed on unchanged."
)]
pub(crate) struct ComposeArgs {
    /// Compose file (repeatable, merged in order) [default: COMPOSE_FILE, or compose.yaml / docker-compose.yml]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Project name [default: COMPOSE_PROJECT_NAME, name:, or the directory's name]
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    project_name: Option<String>,
    /// Environment file for interpolation [default: .env in the project directory]
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Project directory [default: the first file's directory]
    #[arg(long, value_name = "DIR")]
    project_directory: Option<PathBuf>,
    /// The Compose to run: 'docker compose' (v2), docker-compose (v1), or a path [default: docker compose if the plugin is installed, else docker-compose]
    #[arg(long, env = "LOCKBOX_COMPOSE", value_name = "BIN")]
    compose: Option<String>,
    /// The Compose command and its arguments
    #[arg(last = true, required = true, value_name = "ARGS")]
    args: Vec<OsString>,
}

fn fail(msg: impl Into<String>) -> anyhow::Error {
    Exit(exit_codes::FAILURE, msg.into()).into()
}

/// How to run Compose: program and the arguments before Compose's own.
#[derive(Debug, Clone)]
pub(crate) struct ComposeBin {
    program: String,
    prefix: Vec<String>,
    v1: bool,
}

fn compose_bin(choice: Option<&str>) -> anyhow::Result<ComposeBin> {
    let from = |program: &str, prefix: Vec<String>| {
        let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
        args.extend(["version", "--short"]);
        let version = crate::build::probe_output(program, &args);
        version.map(|v| ComposeBin {
            program: program.to_owned(),
            v1: v.trim_start_matches('v').starts_with("1."),
            prefix: prefix.clone(),
        })
    };
    match choice {
        Some(c) => {
            let mut words = c.split_whitespace();
            let program = words.next().unwrap_or_default().to_owned();
            let mut prefix: Vec<String> = words.map(str::to_owned).collect();
            if prefix.is_empty() && Path::new(&program).file_name().is_some_and(|n| n == "docker") {
                prefix.push("compose".into());
            }
            from(&program, prefix.clone()).ok_or_else(|| {
                fail(format!(
                    "compose: {c} does not run (tried '{program} {}version --short')",
                    prefix.iter().map(|p| format!("{p} ")).collect::<String>()
                ))
            })
        }
        None => from("docker", vec!["compose".into()])
            .or_else(|| from("docker-compose", Vec::new()))
            .ok_or_else(|| {
                fail("compose: no Compose found: install the docker compose plugin (v2) or docker-compose (v1), or name one with --compose")
            }),
    }
}

/// A workload's stream from the daemon (one JSON object a line). Held open for as long as
/// Compose runs; its end tells the daemon the CLI is done with the workload.
type Stream = Lines;

/// One service's workload, open.
pub(crate) struct Workload {
    pub(crate) id: String,
    pub(crate) published: PathBuf,
    /// (host path, container path) of each absolute target.
    pub(crate) absolute: Vec<(PathBuf, String)>,
    stream: Stream,
}

/// What a workload should contain: lockbox references, and values lockbox read itself.
#[derive(Default)]
pub(crate) struct WorkloadSpec {
    pub(crate) refs: Vec<Value>,
    pub(crate) inline: Vec<Value>,
}

impl WorkloadSpec {
    pub(crate) fn lockbox(&mut self, name: &str, target: &str, uid: u32, gid: u32, mode: u32) {
        self.reference(Kind::Secret, name, target, (uid, gid, mode));
    }

    /// A lockbox secret or config, delivered by the daemon: a templated one is rendered
    /// there, for this consumer, and again when a secret it includes rotates.
    pub(crate) fn reference(
        &mut self,
        kind: Kind,
        name: &str,
        target: &str,
        (uid, gid, mode): (u32, u32, u32),
    ) {
        let kind = match kind {
            Kind::Secret => "secret",
            Kind::Config => "config",
        };
        self.refs.push(json!({
            "SecretName": name, "Kind": kind,
            "File": {"Name": target, "UID": uid.to_string(), "GID": gid.to_string(), "Mode": mode},
        }));
    }

    pub(crate) fn inline(&mut self, target: &str, uid: u32, gid: u32, mode: u32, data: &[u8]) {
        self.inline.push(json!({
            "Target": target, "UID": uid, "GID": gid, "Mode": mode,
            "Data": STANDARD.encode(data),
        }));
    }

    pub(crate) async fn open(self, socket: &Path) -> anyhow::Result<Workload> {
        let body = json!({"Kind": "container", "Secrets": self.refs, "Inline": self.inline});
        let mut stream = open_lines(socket, Method::POST, "/v1/workloads", Some(&body)).await?;
        drop(body);
        let first = stream
            .next()
            .await
            .ok_or_else(|| fail("the daemon closed the workload stream"))?;
        let v: Value =
            serde_json::from_slice(&first).context("undecodable answer from the daemon")?;
        let absolute = v["Absolute"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    PathBuf::from(m["Source"].as_str().unwrap_or_default()),
                    m["Target"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        Ok(Workload {
            id: v["Workload"].as_str().unwrap_or_default().to_owned(),
            published: PathBuf::from(v["Published"].as_str().unwrap_or_default()),
            absolute,
            stream,
        })
    }
}

impl Workload {
    /// Done with it: the daemon keeps the tmpfs while a container with the workload's label
    /// runs, and removes it otherwise.
    pub(crate) async fn release(self, socket: &Path, foreground: bool) {
        let _ = crate::delivery::release_workload(socket, &self.id, foreground).await;
        drop(self.stream);
    }
}

/// Names of lockbox's secrets and configs.
pub(crate) async fn lockbox_names(c: &Client, kind: &str) -> anyhow::Result<Vec<String>> {
    let list: Vec<Object> = c.get(&format!("/v1/{kind}")).await?;
    Ok(list.into_iter().map(|o| o.spec.name).collect())
}

fn print_warnings(project: &Project, model: &Model) {
    for w in project.warnings.iter().chain(&model.warnings) {
        eprintln!("WARNING: {w}");
    }
}

/// Where a service's reference comes from, with the value when it is local.
pub(crate) enum Resolved {
    Lockbox(String),
    Local(Zeroizing<Vec<u8>>),
}

/// Resolves every resource a service uses; nothing is started if one fails.
pub(crate) async fn resolve_all(
    c: &Client,
    project: &Project,
    model: &Model,
) -> anyhow::Result<BTreeMap<(Kind, String), Resolved>> {
    let secrets = lockbox_names(c, "secrets").await?;
    let configs = lockbox_names(c, "configs").await?;
    let in_lockbox = |k: Kind, n: &str| match k {
        Kind::Secret => secrets.iter().any(|s| s == n),
        Kind::Config => configs.iter().any(|s| s == n),
    };
    let mut used: Vec<(Kind, String)> = Vec::new();
    for s in &model.services {
        for r in &s.references {
            used.push((r.kind, r.source.clone()));
        }
        for b in &s.build_secrets {
            used.push((Kind::Secret, b.source.clone()));
        }
    }
    used.sort();
    used.dedup();
    let mut out = BTreeMap::new();
    for (kind, key) in used {
        let res = model
            .resource(kind, &key)
            .ok_or_else(|| fail(format!("{} {key} is not declared", kind.noun())))?;
        let source = lockbox_compose::resolve(res, &in_lockbox).map_err(|e| fail(e.to_string()))?;
        let v = match source {
            Source::Lockbox { name } => Resolved::Lockbox(name),
            other => Resolved::Local(
                lockbox_compose::read_local(project, res, &other)
                    .map_err(|e| fail(e.to_string()))?,
            ),
        };
        out.insert((kind, key), v);
    }
    Ok(out)
}

pub(crate) fn add_reference(
    spec: &mut WorkloadSpec,
    values: &BTreeMap<(Kind, String), Resolved>,
    r: &Reference,
) {
    // The daemon's relative targets land in the directory bound at /run/secrets; absolute
    // ones get a file bind of their own.
    let target = r.target.strip_prefix("/run/secrets/").unwrap_or(&r.target);
    match values.get(&(r.kind, r.source.clone())) {
        Some(Resolved::Lockbox(name)) => {
            spec.reference(r.kind, name, target, (r.uid, r.gid, r.mode));
        }
        Some(Resolved::Local(data)) => spec.inline(target, r.uid, r.gid, r.mode, data),
        None => {}
    }
}

/// Workload ids of the project's containers (for `down`).
fn project_workloads(docker: &str, project: &str) -> Vec<String> {
    let filter = format!("label={}={project}", lockbox_compose::PROJECT_LABEL);
    let format = format!("{{{{.Label \"{}\"}}}}", lockbox_compose::WORKLOAD_LABEL);
    let mut ids: Vec<String> = crate::build::probe_output(
        docker,
        &["ps", "-a", "--filter", &filter, "--format", &format],
    )
    .unwrap_or_default()
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_owned)
    .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// `start`/`restart` reuse the containers as they are, bound to their workload's tmpfs. Once
/// that workload has ended (its containers stopped after a foreground run), the binds would
/// show an empty `/run/secrets`: refused, pointing at `up`, which recreates them with fresh
/// secrets.
async fn refuse_reaped(c: &Client, docker: &str, project: &str, sub: &str) -> anyhow::Result<()> {
    let live: Vec<Value> = c.get("/v1/workloads").await?;
    let ended: Vec<String> = project_workloads(docker, project)
        .into_iter()
        .filter(|id| !live.iter().any(|w| w["ID"].as_str() == Some(id.as_str())))
        .collect();
    if ended.is_empty() {
        return Ok(());
    }
    Err(fail(format!(
        "compose: the secrets of project {project}'s stopped containers were removed when they stopped (workload {}); `{sub}` would run them without: use lockbox compose -- up, which recreates them with their secrets",
        ended.join(", ")
    )))
}

/// Runs a child, passing ^C/TERM on as `docker run` users expect, and returns its exit code.
pub(crate) async fn run_child(mut cmd: tokio::process::Command) -> anyhow::Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    // ^C reaches the child (same process group); we stay to clean up.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let pid = child.id();
    let status = loop {
        tokio::select! {
            st = child.wait() => break st?,
            _ = int.recv() => {}
            _ = term.recv() => {
                if let Some(p) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
                }
            }
        }
    };
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// A private file for the rewritten project: on /run (tmpfs on most hosts) when we may write
/// there, else the temp dir; 0600 either way, removed on drop.
fn project_file(json: &Value) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = ["/run/lockbox", "/run"]
        .iter()
        .map(PathBuf::from)
        .find(|d| rustix::fs::access(d, rustix::fs::Access::WRITE_OK).is_ok())
        .unwrap_or_else(std::env::temp_dir);
    let mut f = tempfile::Builder::new()
        .prefix("lockbox-compose-")
        .suffix(".json")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    serde_json::to_writer_pretty(&mut f, json)?;
    f.flush()?;
    Ok(f)
}

pub(crate) fn load_project(
    files: &[PathBuf],
    project_name: Option<String>,
    env_file: Option<PathBuf>,
    project_directory: Option<PathBuf>,
) -> anyhow::Result<(Project, Model)> {
    let opts = LoadOptions {
        files: files.to_vec(),
        project_name,
        env_file,
        project_directory,
        working_dir: std::env::current_dir()?,
        environ: std::env::vars().collect(),
    };
    let project = lockbox_compose::load(&opts).map_err(|e| fail(e.to_string()))?;
    let model = lockbox_compose::model(&project).map_err(|e| fail(e.to_string()))?;
    print_warnings(&project, &model);
    Ok((project, model))
}

/// `lockbox compose`.
pub(crate) async fn compose(socket: &Path, mut a: ComposeArgs) -> anyhow::Result<i32> {
    let bin = compose_bin(a.compose.as_deref())?;
    // Compose's project options written after `--` choose the project as they would for
    // Compose itself; lockbox loads that project and hands them to Compose once.
    let line = crate::compose_args::read(&a.args).map_err(fail)?;
    a.files.extend(line.files.iter().cloned());
    a.project_name =
        crate::compose_args::merge("-p", a.project_name.take(), line.project_name.clone())
            .map_err(fail)?;
    a.project_directory = crate::compose_args::merge(
        "--project-directory",
        a.project_directory.take(),
        line.project_directory.clone(),
    )
    .map_err(fail)?;
    a.env_file = crate::compose_args::merge("--env-file", a.env_file.take(), line.env_file.clone())
        .map_err(fail)?;
    a.args = line.rest.clone();
    let (project, model) = load_project(
        &a.files,
        a.project_name.clone(),
        a.env_file.clone(),
        a.project_directory.clone(),
    )?;
    let sub = line.command.clone().unwrap_or_default();
    let c = Client::new(socket);
    let docker = std::env::var("LOCKBOX_DOCKER").unwrap_or_else(|_| "docker".into());

    let build_secrets = model.services.iter().any(|s| !s.build_secrets.is_empty());
    if sub == "build" && build_secrets {
        return crate::build::compose_build(socket, &c, &bin, &project, &model, &a.args).await;
    }
    // `up --build` with build secrets: build first (ours with BuildKit, the rest by Compose),
    // then `up` without `--build`, which would build again without the secrets.
    let mut args = a.args.clone();
    if sub == "up" && build_secrets && args.iter().any(|x| x == "--build") {
        let build: Vec<OsString> = vec!["build".into()];
        let code = crate::build::compose_build(socket, &c, &bin, &project, &model, &build).await?;
        if code != 0 {
            return Ok(code);
        }
        args.retain(|x| x != "--build");
    }

    let creates = line.creates();
    let mut workloads: Vec<Workload> = Vec::new();
    let mut deliveries = BTreeMap::new();
    if creates {
        let values = resolve_all(&c, &project, &model).await?;
        for s in &model.services {
            if s.references.is_empty() {
                continue;
            }
            let mut spec = WorkloadSpec::default();
            for r in &s.references {
                add_reference(&mut spec, &values, r);
            }
            let w = match spec.open(socket).await {
                Ok(w) => w,
                Err(e) => {
                    for w in workloads {
                        w.release(socket, false).await;
                    }
                    return Err(e);
                }
            };
            deliveries.insert(
                s.service.clone(),
                ServiceDelivery::new(&w.id, &w.published, &s.references, &w.absolute),
            );
            workloads.push(w);
        }
        drop(values);
    }
    if matches!(sub.as_str(), "start" | "restart") {
        refuse_reaped(&c, &docker, &project.name, &sub).await?;
    }
    let before_down = if sub == "down" {
        project_workloads(&docker, &project.name)
    } else {
        Vec::new()
    };

    let rewritten = lockbox_compose::rewrite(&project, &deliveries);
    let file = project_file(&rewritten)?;
    let mut cmd = tokio::process::Command::new(&bin.program);
    cmd.args(&bin.prefix)
        .arg("-f")
        .arg(file.path())
        .arg("-p")
        .arg(&project.name)
        .arg("--project-directory")
        .arg(&project.directory);
    if let Some(e) = &a.env_file {
        cmd.arg("--env-file").arg(e);
    }
    cmd.args(&args);
    let code = run_child(cmd).await;
    drop(file);
    // A foreground `up`/`run` has returned, so its containers have stopped.
    let foreground = creates && !crate::delivery::detached(&args);
    for w in workloads {
        w.release(socket, foreground).await;
    }
    // `down` removed the containers; the daemon's event follower reaps their tmpfs too, but
    // asking here means it is gone when `down` returns.
    for id in before_down {
        let _ = crate::delivery::release_workload(socket, &id, false).await;
    }
    code
}

impl ComposeBin {
    pub(crate) fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.prefix);
        cmd
    }
    pub(crate) fn is_v1(&self) -> bool {
        self.v1
    }
}

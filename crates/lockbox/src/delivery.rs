//! Delivery commands: `lockbox service …`, `lockbox run`, `lockbox docker run`.
//!
//! Glue like the rest of the CLI: the daemon resolves, audits and (for containers) writes;
//! this side parses Docker's `--secret` syntax, holds the workload's stream open, and for a
//! process applies what the daemon pushes through the tmpfs crate's supervisor.
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use hyper::Method;
use lockbox_proto::exit_codes;
use lockbox_proto::reference::{SecretEnv, SecretRef, check_targets};
use lockbox_tmpfs::{RunOptions, SecretFile, ShimCommand, Supervisor, parse_user_spec};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::Exit;
use crate::client::{Client, ClientError, Lines, enc, open_lines};
use crate::format::{ObjectFormat, own_listing, pretty_json, table};

fn label(raw: &str) -> Result<(String, String), String> {
    let (k, v) = raw.split_once('=').unwrap_or((raw, ""));
    if k.is_empty() {
        return Err(format!("invalid label '{raw}': empty name"));
    }
    Ok((k.to_string(), v.to_string()))
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCmd {
    /// Create a service: a named set of secret references with a rotation policy
    #[command(
        after_help = "Examples:\n  lockbox service create web --secret db_pw --secret source=tls_key,target=/etc/tls/key,uid=101,mode=0400 --on-rotate signal:HUP\n  lockbox service create db --secret source=db_pw,target=pw,version=3   # pinned: rotations do not move it"
    )]
    Create {
        /// Secret reference: NAME or source=NAME,target=PATH,uid=N,gid=N,mode=0400,version=N
        #[arg(long = "secret", value_name = "REF")]
        secrets: Vec<String>,
        /// Placement constraint (node.labels.KEY==VALUE)
        #[arg(long = "constraint", value_name = "EXPR")]
        constraints: Vec<String>,
        /// What running workloads get after a rotation: none, signal:SIG, restart
        #[arg(long, value_name = "POLICY", default_value = "none")]
        on_rotate: String,
        /// Service label (KEY=VALUE)
        #[arg(short, long = "label", value_parser = label, value_name = "KEY=VALUE")]
        labels: Vec<(String, String)>,
        /// The service's name
        name: String,
    },
    /// Change a service's references or policy; its running workloads follow at once
    #[command(
        after_help = "Examples:\n  lockbox service update web --secret-rm db_pw --secret-add source=db_pw_v2,target=db_pw\n  lockbox service update web --on-rotate restart"
    )]
    Update {
        /// Add a secret reference
        #[arg(long = "secret-add", value_name = "REF")]
        add: Vec<String>,
        /// Remove every reference to this secret name
        #[arg(long = "secret-rm", value_name = "NAME")]
        rm: Vec<String>,
        /// Add a placement constraint
        #[arg(long = "constraint-add", value_name = "EXPR")]
        constraint_add: Vec<String>,
        /// Remove a placement constraint
        #[arg(long = "constraint-rm", value_name = "EXPR")]
        constraint_rm: Vec<String>,
        /// none, signal:SIG, restart
        #[arg(long, value_name = "POLICY")]
        on_rotate: Option<String>,
        /// Add or update a label (KEY=VALUE)
        #[arg(long = "label-add", value_parser = label, value_name = "KEY=VALUE")]
        label_add: Vec<(String, String)>,
        /// The service's name or ID
        name: String,
    },
    /// List services
    #[command(alias = "list")]
    Ls {
        /// Only IDs
        #[arg(short, long)]
        quiet: bool,
        /// json, or a Go template over each service ({{.ID}} {{.Spec.Name}}…), 'table …' for columns
        #[arg(long)]
        format: Option<String>,
    },
    /// Show services in detail
    Inspect {
        /// Human-readable
        #[arg(long)]
        pretty: bool,
        /// json, or a Go template over each service as docker's inspect runs it ({{.Spec.Name}} {{json .Spec.Secrets}}…)
        #[arg(short, long)]
        format: Option<String>,
        /// Service names or IDs
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove services
    #[command(alias = "remove")]
    Rm {
        /// Service names or IDs
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `lockbox run`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  lockbox run --secret db_pw -- ./server          # /run/secrets/db_pw\n  lockbox run --service web --user 1000 -- nginx -g 'daemon off;'\n  lockbox run --secret-env MYSQL_PASSWORD=db_pw -- ./start   # MYSQL_PASSWORD_FILE=/run/secrets/db_pw\n\nThe command sees its secrets read-only on a private tmpfs; nothing appears in the host's\nmount table, environment or arguments. Needs root (it makes a mount namespace)."
)]
pub(crate) struct RunArgs {
    /// Take the references and rotation policy of this service
    #[arg(long, value_name = "SERVICE")]
    service: Option<String>,
    /// Secret reference (Docker's --secret syntax, plus version=N to pin)
    #[arg(long = "secret", value_name = "REF")]
    secrets: Vec<String>,
    /// Deliver a secret as a file and set VAR_FILE to its path (never the value)
    #[arg(long = "secret-env", value_name = "VAR=REF")]
    secret_env: Vec<String>,
    /// Where relative targets appear
    #[arg(long, value_name = "DIR", default_value = "/run/secrets")]
    secrets_dir: PathBuf,
    /// Run the command as UID[:GID] (numeric)
    #[arg(short, long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DockerCmd {
    /// Run `docker run` with secrets bound read-only at /run/secrets
    #[command(
        after_help = "Examples:\n  lockbox docker run --secret db_pw -- --rm lockbox-test/busybox cat /run/secrets/db_pw\n  lockbox docker run --service web -- -d --name web nginx\n\nEvery docker run flag after -- passes through untouched. The secrets live on a host tmpfs that\nis removed with the container (or when a foreground run ends)."
    )]
    Run(DockerRunArgs),
}

/// `lockbox docker run`.
#[derive(Debug, Args)]
pub(crate) struct DockerRunArgs {
    /// Take the references and rotation policy of this lockbox service
    #[arg(long, value_name = "SERVICE")]
    service: Option<String>,
    /// Secret reference: NAME or source=NAME,target=PATH,uid=N,gid=N,mode=0400 (Docker's --secret syntax), plus version=N to pin
    #[arg(long = "secret", value_name = "REF")]
    secrets: Vec<String>,
    /// Deliver a secret as a file and set VAR_FILE in the container to its path (never the value)
    #[arg(long = "secret-env", value_name = "VAR=REF")]
    secret_env: Vec<String>,
    /// The docker CLI to run
    #[arg(long, value_name = "BIN", default_value = "docker")]
    docker: String,
    /// docker run arguments (flags, image, command)
    #[arg(last = true, required = true, value_name = "ARGS")]
    args: Vec<OsString>,
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    Exit(exit_codes::USAGE, msg.into()).into()
}

/// `VAR_FILE` variables and the paths they point at.
type EnvPaths = Vec<(String, PathBuf)>;

/// Parses `--secret` and `--secret-env`, refusing duplicate targets like the docker client.
fn parse_refs(
    secrets: &[String],
    envs: &[String],
    dir: &Path,
) -> anyhow::Result<(Vec<SecretRef>, EnvPaths)> {
    let mut refs = Vec::new();
    for s in secrets {
        refs.push(SecretRef::from_str(s).map_err(|e| {
            usage(format!(
                "invalid argument \"{s}\" for \"--secret\" flag: {e}"
            ))
        })?);
    }
    let mut env = Vec::new();
    for s in envs {
        let e = SecretEnv::from_str(s).map_err(|e| usage(e.to_string()))?;
        env.push((e.env_name(), e.env_value(dir)));
        // The same secret at the same target through --secret too is one file, not a clash.
        if !refs.contains(&e.reference) {
            refs.push(e.reference);
        }
    }
    check_targets(&refs, dir).map_err(|e| usage(e.to_string()))?;
    Ok((refs, env))
}

fn ref_json(r: &SecretRef) -> Value {
    let mut v = json!({
        "SecretName": r.source,
        "File": {"Name": r.target, "UID": r.uid.to_string(), "GID": r.gid.to_string(), "Mode": r.mode},
    });
    if let Some(n) = r.version {
        v["Version"] = n.into();
    }
    v
}

fn refs_json(items: &[String]) -> anyhow::Result<Vec<Value>> {
    let (refs, _) = parse_refs(items, &[], Path::new("/run/secrets"))?;
    Ok(refs.iter().map(ref_json).collect())
}

pub(crate) async fn service(c: &Client, cmd: ServiceCmd) -> anyhow::Result<i32> {
    match cmd {
        ServiceCmd::Create {
            secrets,
            constraints,
            on_rotate,
            labels,
            name,
        } => {
            let body = json!({
                "Name": name,
                "Labels": labels.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                "Secrets": refs_json(&secrets)?,
                "Constraints": constraints,
                "OnRotate": on_rotate,
            });
            let r: Value = c.post("/v1/services/create", &body).await?;
            println!("{}", r["ID"].as_str().unwrap_or_default());
            Ok(0)
        }
        ServiceCmd::Update {
            add,
            rm,
            constraint_add,
            constraint_rm,
            on_rotate,
            label_add,
            name,
        } => {
            let body = json!({
                "SecretAdd": refs_json(&add)?,
                "SecretRm": rm,
                "ConstraintAdd": constraint_add,
                "ConstraintRm": constraint_rm,
                "OnRotate": on_rotate,
                "LabelAdd": label_add.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            });
            let _: Value = c
                .post(&format!("/v1/services/{}/update", enc(&name)), &body)
                .await?;
            println!("{name}");
            Ok(0)
        }
        ServiceCmd::Ls { quiet, format } => {
            let all: Vec<Value> = c.get("/v1/services").await?;
            if quiet {
                for s in &all {
                    println!("{}", s["ID"].as_str().unwrap_or_default());
                }
                return Ok(0);
            }
            if format.as_deref() == Some("json") {
                for s in &all {
                    println!("{s}");
                }
                return Ok(0);
            }
            if let Some(f) = format.filter(|f| f != "table") {
                print!("{}", own_listing(&f, &all).map_err(usage)?);
                return Ok(0);
            }
            let mut rows = vec![vec![
                "ID".to_string(),
                "NAME".into(),
                "SECRETS".into(),
                "ON ROTATE".into(),
            ]];
            for s in &all {
                let id = s["ID"].as_str().unwrap_or_default();
                let names: Vec<&str> = s["Spec"]["Secrets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["SecretName"].as_str())
                    .collect();
                rows.push(vec![
                    id.chars().take(12).collect(),
                    s["Spec"]["Name"].as_str().unwrap_or_default().into(),
                    names.join(","),
                    s["Spec"]["OnRotate"].as_str().unwrap_or_default().into(),
                ]);
            }
            print!("{}", table(&rows));
            Ok(0)
        }
        ServiceCmd::Inspect {
            pretty,
            format,
            names,
        } => {
            let tpl = match format.as_deref().filter(|f| *f != "json") {
                Some(t) => Some(ObjectFormat::parse(t).map_err(usage)?),
                None => None,
            };
            let mut out = Vec::new();
            let mut failed = false;
            for n in &names {
                match c.get::<Value>(&format!("/v1/services/{}", enc(n))).await {
                    Ok(v) => out.push(v),
                    Err(ClientError::Api { status: 404, .. }) => {
                        eprintln!("Error: no such service: {n}");
                        failed = true;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if pretty {
                for s in &out {
                    print_pretty(s);
                }
            } else if let Some(tpl) = tpl {
                for s in &out {
                    match tpl.render(s) {
                        Ok(line) => println!("{line}"),
                        Err(e) => {
                            eprintln!("{e}");
                            failed = true;
                        }
                    }
                }
            } else {
                println!("{}", pretty_json(&Value::Array(out)));
            }
            Ok(if failed { exit_codes::FAILURE } else { 0 })
        }
        ServiceCmd::Rm { names } => {
            let mut failed = false;
            for n in &names {
                match c.delete(&format!("/v1/services/{}", enc(n))).await {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { exit_codes::FAILURE } else { 0 })
        }
    }
}

fn print_pretty(s: &Value) {
    let spec = &s["Spec"];
    println!();
    println!("ID:\t\t{}", s["ID"].as_str().unwrap_or_default());
    println!("Name:\t\t{}", spec["Name"].as_str().unwrap_or_default());
    if let Some(l) = spec["Labels"].as_object().filter(|l| !l.is_empty()) {
        println!("Labels:");
        for (k, v) in l {
            println!(" {k}={}", v.as_str().unwrap_or_default());
        }
    }
    println!(
        "On rotate:\t{}",
        spec["OnRotate"].as_str().unwrap_or_default()
    );
    if let Some(c) = spec["Placement"]["Constraints"]
        .as_array()
        .filter(|c| !c.is_empty())
    {
        println!(
            "Placement:\n Constraints:\t{}",
            c.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("Secrets:");
    for r in spec["Secrets"].as_array().into_iter().flatten() {
        let f = &r["File"];
        let mode = f["Mode"].as_u64().unwrap_or(0);
        let pin = r["Version"]
            .as_u64()
            .map(|v| format!(" (pinned to version {v})"))
            .unwrap_or_default();
        println!(
            " Target:\t{}\n  Source:\t{}{pin}\n  UID: {}  GID: {}  Mode: {:04o}",
            f["Name"].as_str().unwrap_or_default(),
            r["SecretName"].as_str().unwrap_or_default(),
            f["UID"].as_str().unwrap_or_default(),
            f["GID"].as_str().unwrap_or_default(),
            mode
        );
    }
}

async fn open_workload(socket: &Path, body: &Value) -> Result<Lines, ClientError> {
    open_lines(socket, Method::POST, "/v1/workloads", Some(body)).await
}

/// Registers a workload and reads the daemon's first line (its ID and initial files).
async fn start_workload(
    socket: &Path,
    body: &Value,
) -> anyhow::Result<(Lines, Zeroizing<Vec<u8>>)> {
    let mut lines = open_workload(socket, body).await?;
    let first = lines
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("the daemon closed the workload stream"))?;
    Ok((lines, first))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    None,
    Signal(i32),
    Restart,
}

/// A pushed file set: the files and the policy to run once they are visible.
fn decode_files(line: &[u8]) -> anyhow::Result<(String, Vec<SecretFile>, Policy)> {
    let v: Value = serde_json::from_slice(line).context("undecodable line from the daemon")?;
    let mut files = Vec::new();
    for f in v["Files"].as_array().into_iter().flatten() {
        let data = Zeroizing::new(
            STANDARD
                .decode(f["Data"].as_str().unwrap_or_default())
                .context("undecodable secret from the daemon")?,
        );
        files.push(
            SecretFile::new(f["Target"].as_str().unwrap_or_default(), data)
                .owner(
                    f["UID"].as_u64().unwrap_or(0) as u32,
                    f["GID"].as_u64().unwrap_or(0) as u32,
                )
                .mode(f["Mode"].as_u64().unwrap_or(0o444) as u32),
        );
    }
    let policy = match v["Policy"].as_str() {
        Some("signal") => Policy::Signal(v["Signal"].as_i64().unwrap_or(1) as i32),
        Some("restart") => Policy::Restart,
        _ => Policy::None,
    };
    Ok((
        v["Workload"].as_str().unwrap_or_default().to_owned(),
        files,
        policy,
    ))
}

fn same_files(a: &[SecretFile], b: &[SecretFile]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.target == y.target
                && x.uid == y.uid
                && x.gid == y.gid
                && x.mode == y.mode
                && x.data == y.data
        })
}

/// Resolves when the shim exits, without reaping it (the supervisor's `wait` does that).
/// A blocking thread on purpose: tokio's safe `AsyncFd` constructor is deprecated and the
/// replacement is `unsafe`, which this workspace forbids.
fn exit_watch(pid: u32) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use rustix::process::{PidfdFlags, WaitId, WaitIdOptions, pidfd_open, waitid};
    let pid = rustix::process::Pid::from_raw(pid as i32).context("no shim pid")?;
    let fd: OwnedFd = pidfd_open(pid, PidfdFlags::empty()).context("pidfd_open")?;
    Ok(tokio::task::spawn_blocking(move || {
        let _ = waitid(
            WaitId::PidFd(std::os::fd::AsFd::as_fd(&fd)),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        );
    }))
}

/// Stops the command (TERM, then KILL after 10 s) and returns its supervisor's exit code.
async fn stop(sup: Supervisor, exited: &mut tokio::task::JoinHandle<()>) -> anyhow::Result<i32> {
    let _ = sup.signal(rustix::process::Signal::TERM);
    if tokio::time::timeout(std::time::Duration::from_secs(10), &mut *exited)
        .await
        .is_err()
    {
        let _ = sup.kill();
    }
    Ok(sup.wait()?)
}

/// `lockbox run`.
pub(crate) async fn run(socket: &Path, a: RunArgs) -> anyhow::Result<i32> {
    let (refs, env) = parse_refs(&a.secrets, &a.secret_env, &a.secrets_dir)?;
    let user = a
        .user
        .as_deref()
        .map(parse_user_spec)
        .transpose()
        .map_err(|e| usage(e.to_string()))?;
    if !rustix::process::geteuid().is_root() {
        return Err(Exit(
            exit_codes::FAILURE,
            "lockbox run needs root: it mounts the secrets on a tmpfs in a private mount namespace, which an unprivileged user cannot create. Run it with sudo (add --user UID[:GID] to run the command itself unprivileged); a user with a grant (lockbox policy) uses lockbox docker run or lockbox compose instead.".into(),
        )
        .into());
    }
    let mut body = json!({
        "Kind": "process",
        "Service": a.service,
        "Secrets": refs.iter().map(ref_json).collect::<Vec<_>>(),
    });
    let (lines, first) = start_workload(socket, &body).await?;
    let (id, mut current, _) = decode_files(&first)?;
    drop(first);
    body["Workload"] = id.clone().into();

    let shim = ShimCommand::current_exe_subcommand("__shim")?;
    let mut opts = RunOptions::new(a.command);
    opts.secrets_dir = a.secrets_dir;
    opts.user = user;
    opts.env = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    let mut sup = Supervisor::spawn(&shim, opts.clone(), current.clone())?;
    let mut exited = exit_watch(sup.shim_pid())?;
    let mut stream = Some(lines);
    let mut rotation_failed = false;
    loop {
        let pushed = tokio::select! {
            _ = &mut exited => break,
            line = async {
                match stream.as_mut() {
                    Some(l) => l.next().await,
                    None => std::future::pending().await,
                }
            } => line,
            // The daemon went away: re-register under the same workload ID.
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)), if stream.is_none() => {
                if let Ok(mut l) = open_workload(socket, &body).await {
                    let first = l.next().await;
                    stream = Some(l);
                    first
                } else {
                    continue;
                }
            }
        };
        let Some(line) = pushed else {
            stream = None;
            continue;
        };
        let (_, files, policy) = decode_files(&line)?;
        drop(line);
        if same_files(&files, &current) {
            continue;
        }
        // The set counts as delivered only once the rotation succeeded: after a failure the
        // next push (even of the same files) is tried again instead of skipped as unchanged.
        if let Err(e) = sup.rotate(files.clone()) {
            eprintln!("lockbox run: rotation failed, the command keeps the previous files: {e}");
            // The daemon logs, audits and shows it (`GET /v1/workloads`, `/events`): the
            // workload's stderr must not be the only trace of a value that did not arrive.
            report_rotation(socket, &id, Some(e.to_string())).await;
            rotation_failed = true;
            continue;
        }
        if std::mem::take(&mut rotation_failed) {
            report_rotation(socket, &id, None).await;
        }
        current = files;
        match policy {
            Policy::None => {}
            Policy::Signal(n) => {
                if let Some(sig) = rustix::process::Signal::from_named_raw(n) {
                    let _ = sup.signal(sig);
                }
            }
            Policy::Restart => {
                stop(sup, &mut exited).await?;
                sup = Supervisor::spawn(&shim, opts.clone(), current.clone())?;
                exited = exit_watch(sup.shim_pid())?;
            }
        }
    }
    let code = sup.wait()?;
    drop(stream);
    Ok(code)
}

/// Tells the daemon how a rotation into this `lockbox run` ended (`error: None` once one
/// succeeds after a failure). Best effort: a daemon that is away gets the next report.
async fn report_rotation(socket: &Path, workload: &str, error: Option<String>) {
    let body = json!({"Ok": error.is_none(), "Error": error.unwrap_or_default()});
    if let Err(e) = Client::new(socket)
        .post_empty(&format!("/v1/workloads/{}/rotation", enc(workload)), &body)
        .await
    {
        eprintln!("lockbox run: cannot report the rotation to the daemon: {e}");
    }
}

/// Whether `docker run`'s arguments ask for a detached container (`-d`, `--detach`, or a
/// cluster of boolean short flags with `d` in it, such as `-itd`). A container command's own
/// `-d` reads as detached too; that only keeps the secrets until the container is removed.
pub(crate) fn detached(args: &[OsString]) -> bool {
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        matches!(a.as_ref(), "-d" | "--detach" | "--detach=true")
            || a.strip_prefix('-').is_some_and(|f| {
                f.contains('d') && f.chars().all(|c| matches!(c, 'd' | 'i' | 't' | 'P' | 'q'))
            })
    })
}

/// Tells the daemon the CLI is done with a container workload. `foreground`: the run it
/// started has returned, so its containers have exited (the daemon waits out the engine's
/// listing lag before it decides); otherwise the daemon keeps the tmpfs while a container
/// with the workload's label runs.
pub(crate) async fn release_workload(
    socket: &Path,
    id: &str,
    foreground: bool,
) -> Result<(), ClientError> {
    let body = json!({ "Foreground": foreground }).to_string().into_bytes();
    Client::new(socket)
        .raw(
            Method::POST,
            &format!("/v1/workloads/{}/release", enc(id)),
            Some(body),
        )
        .await
        .map(drop)
}

/// `lockbox docker run`.
pub(crate) async fn docker_run(socket: &Path, a: DockerRunArgs) -> anyhow::Result<i32> {
    let (refs, env) = parse_refs(&a.secrets, &a.secret_env, Path::new("/run/secrets"))?;
    let body = json!({
        "Kind": "container",
        "Service": a.service,
        "Secrets": refs.iter().map(ref_json).collect::<Vec<_>>(),
    });
    let (lines, first) = start_workload(socket, &body).await?;
    let v: Value = serde_json::from_slice(&first).context("undecodable answer")?;
    let id = v["Workload"].as_str().unwrap_or_default().to_owned();
    let published = v["Published"].as_str().unwrap_or_default().to_owned();
    let mut args: Vec<OsString> = vec!["run".into()];
    args.push("--mount".into());
    args.push(format!("type=bind,source={published},target=/run/secrets,readonly").into());
    for m in v["Absolute"].as_array().into_iter().flatten() {
        args.push("--mount".into());
        args.push(
            format!(
                "type=bind,source={},target={},readonly",
                m["Source"].as_str().unwrap_or_default(),
                m["Target"].as_str().unwrap_or_default()
            )
            .into(),
        );
    }
    args.push("--label".into());
    args.push(format!("lockbox.workload={id}").into());
    // A user's files are theirs alone (the daemon makes them so): run the container as that
    // user, so the files are readable inside it. Root's containers keep the image's user.
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    if !uid.is_root() {
        args.push("--user".into());
        args.push(format!("{}:{}", uid.as_raw(), gid.as_raw()).into());
    }
    for (k, p) in &env {
        args.push("-e".into());
        args.push(format!("{k}={}", p.display()).into());
    }
    args.extend(a.args);

    // ^C reaches docker (same process group) which stops the container; we stay to clean up.
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut child = tokio::process::Command::new(&a.docker)
        .args(&args)
        .spawn()
        .with_context(|| format!("cannot run {}", a.docker))?;
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
    // Keeps the staging for a container that runs on (detached), reaps it otherwise.
    release_workload(socket, &id, !detached(&args)).await?;
    drop(lines);
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn detached_runs_are_told_apart() {
        for d in [
            "run -d img",
            "run --detach img",
            "run -itd img",
            "run --detach=true img",
        ] {
            assert!(detached(&args(d)), "{d}");
        }
        for f in [
            "run -it img sh",
            "run --rm img",
            "run --name dd img",
            "run -e D=1 img",
        ] {
            assert!(!detached(&args(f)), "{f}");
        }
    }
}

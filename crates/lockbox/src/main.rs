//! `lockbox`: the command line. Glue only — parsing, talking to the daemon, printing. The
//! daemon's logic lives in `lockbox-daemon`, the scanner in `lockbox-scan`.
#![forbid(unsafe_code)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backup;
mod build;
mod cli;
mod client;
mod cluster;
mod compose;
mod compose_args;
mod delivery;
mod format;
mod policy;
mod scan_store;

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{CommandFactory as _, Parser as _};
use lockbox_proto::{
    AuditRecord, AuditVerify, IdResponse, Info, Object, RollbackRequest, RotateRequest, Spec,
    UnlockKeyResponse, UnlockRequest, VersionInfo, VersionResponse, exit_codes,
};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::cli::{
    AuditCmd, AutolockCmd, Cli, Command, ConfigCmd, CreateArgs, InspectArgs, KekCmd, LsArgs,
    SecretCmd,
};
use crate::client::{Client, ClientError, enc};
use crate::format::{
    CONFIG_COLUMNS, ObjectFormat, SECRET_COLUMNS, ago, as_go_struct, go_time, listing,
    listing_json, ls_row, natural_cmp, own_listing, pretty_json, table,
};

/// An error that already knows its exit code.
#[derive(Debug)]
struct Exit(i32, String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}
impl std::error::Error for Exit {}

fn main() -> ExitCode {
    // Hidden helpers first, before anything starts a thread: both need a single-threaded
    // process (unshare / setns of the mount namespace).
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(a) if a == "__shim" => lockbox_tmpfs::shim_main(args.collect()),
        Some(a) if a == "__nsbind" => lockbox_tmpfs::nsbind_main(args.collect()),
        _ => {}
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            let code = if let Some(c) = e.downcast_ref::<ClientError>() {
                eprintln!("{c}");
                c.exit_code()
            } else if let Some(Exit(code, msg)) = e.downcast_ref::<Exit>() {
                if !msg.is_empty() {
                    eprintln!("{msg}");
                }
                *code
            } else {
                eprintln!("Error: {e:#}");
                exit_codes::FAILURE
            };
            ExitCode::from(code as u8)
        }
    }
}

fn socket_path(host: &Option<String>) -> PathBuf {
    match host {
        Some(h) => PathBuf::from(h.strip_prefix("unix://").unwrap_or(h)),
        None => lockbox_daemon::paths::default_socket(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let socket = socket_path(&cli.host);
    match cli.command {
        Command::Daemon(args) => run_daemon(args, socket),
        Command::Scan(args) => {
            let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
            let mut store = scan_store::DaemonStore::new(Client::new(&socket));
            Ok(lockbox_scan::run_with_store(
                &args,
                Some(&mut store),
                &mut out,
                &mut err,
            ))
        }
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            let sh = match shell {
                cli::Shell::Bash => clap_complete::Shell::Bash,
                cli::Shell::Zsh => clap_complete::Shell::Zsh,
                cli::Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(sh, &mut cmd, "lockbox", &mut std::io::stdout());
            Ok(0)
        }
        Command::Run(a) => runtime()?.block_on(delivery::run(&socket, a)),
        Command::Docker(delivery::DockerCmd::Run(a)) => {
            runtime()?.block_on(delivery::docker_run(&socket, a))
        }
        Command::Service(cmd) => runtime()?.block_on(delivery::service(&Client::new(&socket), cmd)),
        Command::Policy(cmd) => runtime()?.block_on(policy::policy(&Client::new(&socket), cmd)),
        Command::Cluster(cmd) => runtime()?.block_on(cluster::cluster(&Client::new(&socket), cmd)),
        Command::Node(cmd) => runtime()?.block_on(cluster::node(&Client::new(&socket), cmd)),
        Command::Compose(a) => runtime()?.block_on(compose::compose(&socket, a)),
        Command::Build(a) => runtime()?.block_on(build::build(&socket, a)),
        Command::Backup(a) => runtime()?.block_on(backup::backup(&socket, a)),
        Command::Restore(a) => runtime()?.block_on(backup::restore(a)),
        other => {
            let c = Client::new(&socket);
            runtime()?.block_on(client_command(other, &c))
        }
    }
}

fn run_daemon(args: cli::DaemonArgs, socket: PathBuf) -> anyhow::Result<i32> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&args.log_level).map_err(|e| {
        Exit(
            exit_codes::USAGE,
            format!("invalid --log-level {:?}: {e}", args.log_level),
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => builder.init(),
    }
    let docker_api = match args.docker_api.as_deref() {
        Some("none") => None,
        Some(a) if a.starts_with("tcp://") => {
            return Err(Exit(
                exit_codes::USAGE,
                format!("--docker-api {a}: TCP needs TLS, which lockbox does not serve yet; use a unix socket"),
            )
            .into());
        }
        Some(a) => Some(PathBuf::from(a.strip_prefix("unix://").unwrap_or(a))),
        None => Some(socket.with_file_name("docker.sock")),
    };
    let plugins_dir = std::path::Path::new("/run/docker/plugins");
    let (volume_driver, volume_driver_by_default) = match args.volume_driver.as_deref() {
        Some("none") => (None, false),
        Some("") => {
            return Err(Exit(
                exit_codes::USAGE,
                "--volume-driver: give a socket path (e.g. /run/docker/plugins/lockbox.sock) or 'none'".into(),
            )
            .into());
        }
        Some(p) => (Some(PathBuf::from(p)), false),
        None if rustix::process::geteuid().is_root() && plugins_dir.is_dir() => {
            (Some(plugins_dir.join("lockbox.sock")), true)
        }
        None => (None, false),
    };
    let cfg = lockbox_daemon::DaemonConfig {
        data_dir: args
            .data_dir
            .unwrap_or_else(lockbox_daemon::paths::default_data_dir),
        socket,
        autolock: args.autolock,
        keep_versions: args.keep_versions,
        docker_api,
        swarm_driver: args.swarm_driver,
        volume_driver,
        volume_driver_by_default,
        group: args.group,
        admin_group: args.admin_group,
        autolock_key_file: args.autolock_key_file,
        cache_size: args.cache_size,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match rt.block_on(lockbox_daemon::run(cfg)) {
        Ok(()) => Ok(0),
        Err(e) => Err(Exit(exit_codes::FAILURE, format!("lockbox daemon: {e}")).into()),
    }
}

/// Reads a value from FILE or `-` (stdin), with docker's messages. Docker reads up to twice
/// the limit and lets the server enforce it; so do we.
fn read_value(src: &str, limit: usize) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    let label = if src == "-" {
        "STDIN".to_string()
    } else {
        src.to_string()
    };
    let res = if src == "-" {
        std::io::stdin()
            .lock()
            .take(limit as u64 * 2)
            .read_to_end(&mut buf)
    } else {
        std::fs::File::open(src).and_then(|f| f.take(limit as u64 * 2).read_to_end(&mut buf))
    };
    res.map_err(|e| {
        Exit(
            exit_codes::FAILURE,
            format!("error reading from {label}: {e}"),
        )
    })?;
    if buf.is_empty() {
        return Err(Exit(
            exit_codes::FAILURE,
            format!("error reading from {label}: data is empty"),
        )
        .into());
    }
    Ok(buf)
}

fn b64(data: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(STANDARD.encode(data))
}

fn filters_json(filters: &[String]) -> anyhow::Result<Option<String>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut m: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in filters {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            Exit(
                exit_codes::USAGE,
                format!("bad format of filter (expected name=value): {f}"),
            )
        })?;
        m.entry(k.to_lowercase())
            .or_default()
            .insert(v.to_string(), true);
    }
    Ok(Some(serde_json::to_string(&m)?))
}

async fn create(c: &Client, kind: &str, a: CreateArgs) -> anyhow::Result<i32> {
    let limit = if kind == "secrets" {
        512_000
    } else {
        1_024_000
    };
    let data = read_value(&a.file, limit)?;
    let spec = Spec {
        name: a.name,
        labels: a.labels.into_iter().collect(),
        data: Some(b64(&data).to_string()),
        driver: None,
        templating: a.template_driver.map(|name| lockbox_proto::api::Driver {
            name,
            options: None,
        }),
    };
    let r: IdResponse = c.post(&format!("/v1/{kind}/create"), &spec).await?;
    println!("{}", r.id);
    Ok(0)
}

async fn ls(c: &Client, kind: &str, a: LsArgs) -> anyhow::Result<i32> {
    let path = match filters_json(&a.filters)? {
        Some(f) => format!("/v1/{kind}?filters={}", enc(&f)),
        None => format!("/v1/{kind}"),
    };
    let mut objs: Vec<Object> = c.get(&path).await?;
    objs.sort_by(|x, y| natural_cmp(&x.spec.name, &y.spec.name));
    let mut out = String::new();
    if a.quiet {
        for o in &objs {
            out.push_str(&o.id);
            out.push('\n');
        }
    } else {
        match a.format.as_deref() {
            Some("json") => {
                for o in &objs {
                    let mut row = ls_row(o);
                    if kind != "secrets" {
                        row.as_object_mut().map(|m| m.remove("Driver"));
                    }
                    out.push_str(&listing_json(&row));
                    out.push('\n');
                }
            }
            Some(t) if t != "table" => {
                let rows: Vec<_> = objs
                    .iter()
                    .map(|o| {
                        let mut row = ls_row(o);
                        if kind != "secrets" {
                            row.as_object_mut().map(|m| m.remove("Driver"));
                        }
                        (row, o.spec.labels.clone().into_iter().collect())
                    })
                    .collect();
                let columns = if kind == "secrets" {
                    &SECRET_COLUMNS
                } else {
                    &CONFIG_COLUMNS
                };
                out = listing(t, &rows, columns).map_err(|e| Exit(exit_codes::USAGE, e))?;
            }
            _ => {
                let mut rows = vec![vec!["ID".into(), "NAME".into()]];
                if kind == "secrets" {
                    rows[0].push("DRIVER".into());
                }
                rows[0].extend(["CREATED".into(), "UPDATED".into()]);
                for o in &objs {
                    let r = ls_row(o);
                    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                    let mut row = vec![s("ID"), s("Name")];
                    if kind == "secrets" {
                        row.push(s("Driver"));
                    }
                    row.extend([s("CreatedAt"), s("UpdatedAt")]);
                    rows.push(row);
                }
                out = table(&rows);
            }
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(0)
}

fn pretty(kind: &str, o: &Object) -> String {
    let mut s = format!(
        "ID:              {}\nName:              {}\n",
        o.id, o.spec.name
    );
    if !o.spec.labels.is_empty() {
        s.push_str("Labels:\n");
        for (k, v) in &o.spec.labels {
            if v.is_empty() {
                s.push_str(&format!(" - {k}\n"));
            } else {
                s.push_str(&format!(" - {k}={v}\n"));
            }
        }
    }
    if kind == "secrets" {
        s.push_str(&format!(
            "Driver:            {}\n",
            o.spec
                .driver
                .as_ref()
                .map(|d| d.name.as_str())
                .unwrap_or("")
        ));
    }
    s.push_str(&format!(
        "Created at:        {}\nUpdated at:        {}\n",
        go_time(&o.created_at),
        go_time(&o.updated_at)
    ));
    if kind == "configs" {
        let data = o
            .spec
            .data
            .as_deref()
            .and_then(|d| STANDARD.decode(d).ok())
            .unwrap_or_default();
        s.push_str(&format!("Data:\n{}\n", String::from_utf8_lossy(&data)));
    }
    s
}

async fn inspect(c: &Client, kind: &str, a: InspectArgs) -> anyhow::Result<i32> {
    let mut found = Vec::new();
    let mut failed = Vec::new();
    for n in &a.names {
        match c.get::<Object>(&format!("/v1/{kind}/{}", enc(n))).await {
            Ok(o) => found.push(o),
            Err(e @ ClientError::Api { .. }) => failed.push(e),
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = String::new();
    let mut template_failures = Vec::new();
    if a.pretty {
        for (i, o) in found.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&pretty(kind, o));
        }
    } else if let Some(t) = a.format.as_deref().filter(|t| *t != "json") {
        let tpl = ObjectFormat::parse(t).map_err(|e| Exit(exit_codes::USAGE, e))?;
        // As docker's inspect: an object the template fails on is reported and skipped; if
        // nothing printed, an empty line still does.
        for o in &found {
            match tpl.render(&as_go_struct(kind, o)?) {
                Ok(s) => {
                    out.push_str(&s);
                    out.push('\n');
                }
                Err(e) => template_failures.push(e),
            }
        }
        if out.is_empty() {
            out.push('\n');
        }
    } else {
        out = pretty_json(&serde_json::to_value(&found)?) + "\n";
    }
    std::io::stdout().write_all(out.as_bytes())?;
    for e in &failed {
        eprintln!("{e}");
    }
    for e in &template_failures {
        eprintln!("{e}");
    }
    Ok(if !template_failures.is_empty() {
        exit_codes::USAGE
    } else if failed.is_empty() {
        0
    } else {
        exit_codes::FAILURE
    })
}

async fn rm(c: &Client, kind: &str, names: &[String]) -> anyhow::Result<i32> {
    let mut code = 0;
    for n in names {
        match c.delete(&format!("/v1/{kind}/{}", enc(n))).await {
            Ok(()) => println!("{n}"),
            Err(e @ ClientError::Api { .. }) => {
                eprintln!("{e}");
                code = exit_codes::FAILURE;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(code)
}

/// `lockbox unlock` and `lockbox cluster unlock`: reads the key (prompting on a terminal)
/// and sends it.
async fn unlock(c: &Client) -> anyhow::Result<i32> {
    let mut key = Zeroizing::new(String::new());
    if std::io::stdin().is_terminal() {
        eprint!("Enter unlock key: ");
        let _ = std::io::stderr().flush();
    }
    std::io::stdin().read_line(&mut key)?;
    c.post_empty(
        "/v1/unlock",
        &UnlockRequest {
            unlock_key: key.trim().to_string(),
            shares: Vec::new(),
        },
    )
    .await?;
    Ok(0)
}

async fn client_command(cmd: Command, c: &Client) -> anyhow::Result<i32> {
    match cmd {
        Command::Secret(s) => match s {
            SecretCmd::Create(a) => create(c, "secrets", a).await,
            SecretCmd::Ls(a) => ls(c, "secrets", a).await,
            SecretCmd::Inspect(a) => inspect(c, "secrets", a).await,
            SecretCmd::Rm { names } => rm(c, "secrets", &names).await,
            SecretCmd::Update(a) => {
                let o: Object = c.get(&format!("/v1/secrets/{}", enc(&a.name))).await?;
                let mut spec = o.spec.clone();
                spec.data = None;
                for k in &a.rm {
                    spec.labels.remove(k);
                }
                for (k, v) in a.add {
                    spec.labels.insert(k, v);
                }
                c.post_empty(
                    &format!(
                        "/v1/secrets/{}/update?version={}",
                        enc(&o.id),
                        o.version.index
                    ),
                    &spec,
                )
                .await?;
                println!("{}", a.name);
                Ok(0)
            }
            SecretCmd::Rotate { keep, name, file } => {
                let data = read_value(&file, 512_000)?;
                let req = RotateRequest {
                    data: b64(&data).to_string(),
                    keep,
                };
                let r: VersionResponse = c
                    .post(&format!("/v1/secrets/{}/rotate", enc(&name)), &req)
                    .await?;
                println!("{name} now at version {}", r.version);
                Ok(0)
            }
            SecretCmd::Versions { name, format } => {
                let vs: Vec<VersionInfo> = c
                    .get(&format!("/v1/secrets/{}/versions", enc(&name)))
                    .await?;
                match format.as_deref() {
                    Some("json") => println!("{}", pretty_json(&serde_json::to_value(&vs)?)),
                    Some(t) => {
                        let rows = vs
                            .iter()
                            .map(serde_json::to_value)
                            .collect::<Result<Vec<_>, _>>()?;
                        print!(
                            "{}",
                            own_listing(t, &rows).map_err(|e| Exit(exit_codes::USAGE, e))?
                        );
                    }
                    None => {
                        let mut rows = vec![
                            ["VERSION", "CREATED", "SIZE", "CREATED BY", "CURRENT"]
                                .map(String::from)
                                .to_vec(),
                        ];
                        for v in &vs {
                            let note = match v.rollback_of {
                                Some(o) => format!(" (rollback of {o})"),
                                None => String::new(),
                            };
                            rows.push(vec![
                                format!("{}{note}", v.version),
                                ago(&v.created_at),
                                format!("{}B", v.size),
                                v.created_by.clone(),
                                if v.current { "*".into() } else { String::new() },
                            ]);
                        }
                        print!("{}", table(&rows));
                    }
                }
                Ok(0)
            }
            SecretCmd::Rollback { name, version } => {
                let r: VersionResponse = c
                    .post(
                        &format!("/v1/secrets/{}/rollback", enc(&name)),
                        &RollbackRequest { version },
                    )
                    .await?;
                println!(
                    "{name} now at version {} (the value of version {version})",
                    r.version
                );
                Ok(0)
            }
        },
        Command::Config(s) => match s {
            ConfigCmd::Create(a) => create(c, "configs", a).await,
            ConfigCmd::Ls(a) => ls(c, "configs", a).await,
            ConfigCmd::Inspect(a) => inspect(c, "configs", a).await,
            ConfigCmd::Rm { names } => rm(c, "configs", &names).await,
        },
        Command::Audit(a) => match a {
            AuditCmd::Ls { since, format } => {
                let path = match since {
                    Some(s) => format!("/v1/audit?since={}", enc(&s)),
                    None => "/v1/audit".into(),
                };
                let recs: Vec<AuditRecord> = c.get(&path).await?;
                let mut out = String::new();
                if format.as_deref() == Some("json") {
                    for r in &recs {
                        out.push_str(&serde_json::to_string(r)?);
                        out.push('\n');
                    }
                } else if let Some(t) = format.as_deref().filter(|t| *t != "table") {
                    let rows = recs
                        .iter()
                        .map(serde_json::to_value)
                        .collect::<Result<Vec<_>, _>>()?;
                    out = own_listing(t, &rows).map_err(|e| Exit(exit_codes::USAGE, e))?;
                } else {
                    let mut rows = vec![
                        [
                            "SEQ", "TIME", "ACTION", "OBJECT", "VERSION", "ACTOR", "DETAIL",
                        ]
                        .map(String::from)
                        .to_vec(),
                    ];
                    for r in &recs {
                        let object = match (&r.kind, &r.name) {
                            (Some(k), Some(n)) => format!("{k}/{n}"),
                            _ => String::new(),
                        };
                        let detail: Vec<String> =
                            r.detail.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        rows.push(vec![
                            r.seq.to_string(),
                            r.time.clone(),
                            r.action.clone(),
                            object,
                            r.version.map(|v| v.to_string()).unwrap_or_default(),
                            r.actor.clone(),
                            detail.join(","),
                        ]);
                    }
                    out = table(&rows);
                }
                std::io::stdout().write_all(out.as_bytes())?;
                Ok(0)
            }
            AuditCmd::Verify => {
                let v: AuditVerify = c.get("/v1/audit/verify").await?;
                if v.ok {
                    println!(
                        "audit log intact: {} records, hash chain verified",
                        v.records
                    );
                    Ok(0)
                } else {
                    Err(Exit(
                        exit_codes::AUDIT_BROKEN,
                        format!("audit log broken: {}", v.problem.unwrap_or_default()),
                    )
                    .into())
                }
            }
        },
        Command::Unlock => unlock(c).await,
        Command::UnlockKey { rotate, quiet } => {
            let r: UnlockKeyResponse = if rotate {
                c.post("/v1/unlockkey/rotate", &serde_json::json!({}))
                    .await?
            } else {
                c.get("/v1/unlockkey").await?
            };
            if quiet {
                println!("{}", r.unlock_key);
            } else {
                println!(
                    "{}To unlock lockbox after a restart, run 'lockbox unlock' and give this key:\n\n    {}\n\nKeep it in a password manager: lockbox cannot recover it.",
                    if rotate {
                        "Successfully rotated the unlock key.\n\n"
                    } else {
                        ""
                    },
                    r.unlock_key
                );
            }
            Ok(0)
        }
        Command::Autolock(a) => {
            let enable = matches!(a, AutolockCmd::Enable);
            let r: Value = c
                .post("/v1/autolock", &serde_json::json!({"Enable": enable}))
                .await?;
            match r.get("UnlockKey").and_then(Value::as_str) {
                Some(k) => println!(
                    "Autolock is on. To unlock lockbox after a restart, run 'lockbox unlock' and give this key:\n\n    {k}\n\nKeep it in a password manager: lockbox cannot recover it."
                ),
                None => println!(
                    "Autolock is off: the key-encryption key is kept in a 0600 file next to the store, which protects against a stolen store file only."
                ),
            }
            Ok(0)
        }
        Command::Kek(KekCmd::Rotate) => {
            let r: Value = c.post("/v1/kek/rotate", &serde_json::json!({})).await?;
            println!(
                "key-encryption key rotated: now KEK {} ({} data keys rewrapped)",
                r["KekID"], r["Rewrapped"]
            );
            Ok(0)
        }
        Command::Info { format } => {
            let i: Info = c.get("/v1/info").await?;
            match format.as_deref() {
                Some("json") => println!("{}", serde_json::to_string(&i)?),
                Some(t) => {
                    let tpl = ObjectFormat::parse(t).map_err(|e| Exit(exit_codes::USAGE, e))?;
                    println!(
                        "{}",
                        tpl.render(&serde_json::to_value(&i)?)
                            .map_err(|e| Exit(exit_codes::USAGE, e))?
                    );
                }
                None => {
                    let mut s = format!(
                        "Server:\n Version: {}\n Node ID: {}\n Cluster ID: {}\n Data dir: {}\n Socket: {}\n Lock state: {}\n Key mode: {}\n Secrets: {}\n Configs: {}\n Store index: {}\n Audit records: {}\n",
                        i.version,
                        i.node_id,
                        i.cluster_id,
                        i.data_dir,
                        i.socket,
                        i.lock_state,
                        i.key_mode,
                        i.secrets,
                        i.configs,
                        i.raft_index,
                        i.audit_records
                    );
                    if let Some(w) = &i.key_warning {
                        s.push_str(&format!("\nWARNING: {w}\n"));
                    }
                    print!("{s}");
                }
            }
            Ok(0)
        }
        Command::Version { format: Some(t) } => {
            let server = c.get::<Value>("/v1/version").await?;
            let v = serde_json::json!({
                "Client": {"Version": env!("CARGO_PKG_VERSION")},
                "Server": server,
            });
            if t == "json" {
                println!("{v}");
            } else {
                let tpl = ObjectFormat::parse(&t).map_err(|e| Exit(exit_codes::USAGE, e))?;
                println!(
                    "{}",
                    tpl.render(&v).map_err(|e| Exit(exit_codes::USAGE, e))?
                );
            }
            Ok(0)
        }
        Command::Version { format: None } => {
            println!("Client:\n Version: {}", env!("CARGO_PKG_VERSION"));
            match c.get::<Value>("/v1/version").await {
                Ok(v) => println!(
                    "\nServer:\n Version: {}",
                    v["Version"].as_str().unwrap_or("")
                ),
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(e.exit_code());
                }
            }
            Ok(0)
        }
        Command::Events { format } => {
            events(c, format.as_deref()).await?;
            Ok(0)
        }
        Command::Daemon(_)
        | Command::Completion { .. }
        | Command::Scan(_)
        | Command::Service(_)
        | Command::Policy(_)
        | Command::Cluster(_)
        | Command::Node(_)
        | Command::Run(_)
        | Command::Docker(_)
        | Command::Compose(_)
        | Command::Build(_)
        | Command::Backup(_)
        | Command::Restore(_) => {
            unreachable!("handled before connecting")
        }
    }
}

async fn events(c: &Client, format: Option<&str>) -> anyhow::Result<()> {
    let tpl = match format.filter(|f| *f != "json") {
        Some(t) => Some(ObjectFormat::parse(t).map_err(|e| Exit(exit_codes::USAGE, e))?),
        None => None,
    };
    // Events arrive as JSON lines, not necessarily one a chunk.
    let mut pending = Vec::new();
    c.stream("/v1/events", |chunk| {
        let mut out = std::io::stdout().lock();
        let Some(tpl) = &tpl else {
            out.write_all(chunk)?;
            return out.flush();
        };
        pending.extend_from_slice(chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            match tpl.render(&ev) {
                Ok(s) => writeln!(out, "{s}")?,
                Err(e) => eprintln!("{e}"),
            }
        }
        out.flush()
    })
    .await?;
    Ok(())
}

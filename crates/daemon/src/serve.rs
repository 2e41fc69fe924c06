//! Startup, serving and shutdown.
use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use lockbox_audit::{AuditLog, Event};
use lockbox_keyring::{KeyMode, KeyRing, RingFile, UnlockKey};
use lockbox_replication::{Replica, ReplicaConfig};
use lockbox_store::Reader;
use tokio::net::UnixListener;

use crate::DaemonError;
use crate::http::router;
use crate::workloads::WorkloadsState;
use lockbox_core::close_store;
use lockbox_core::{Daemon, Keys, NodeStore};

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    /// On first start, seal the new key ring with an unlock key (printed once).
    pub autolock: bool,
    /// Old versions kept per secret besides the current one.
    pub keep_versions: u32,
    /// Where to serve the Docker Engine API subset (`None`: not at all).
    pub docker_api: Option<PathBuf>,
    /// Where to serve the Swarm secret-driver plugin protocol (`None`: not at all).
    pub swarm_driver: Option<PathBuf>,
    /// Where to serve the volume driver (`None`: not at all); the plugin's name is the
    /// socket's file name without `.sock`. The same path as `swarm_driver` serves both.
    pub volume_driver: Option<PathBuf>,
    /// The volume driver was not asked for but is on by default (root, and
    /// `/run/docker/plugins` exists): a socket another daemon holds is a warning, not an
    /// error.
    pub volume_driver_by_default: bool,
    /// `--group`: the group (name or gid) whose members may connect to the sockets (mode
    /// 0660); they are members, not administrators. `None`: owner only (0600).
    pub group: Option<String>,
    /// `--admin-group`: the group (name or gid) whose members administer the daemon.
    pub admin_group: Option<String>,
    /// `--autolock-key-file`: on a first start with autolock, where the unlock key is written
    /// (created new, 0600). Without it the key is only shown to an administrator's client
    /// (`lockbox unlock-key`), never on the daemon's output.
    pub autolock_key_file: Option<PathBuf>,
    /// `--cache-size`: the store's page cache in bytes ([`crate::budget`]).
    pub cache_size: u64,
}

/// What `run` reports once it listens (for the foreground message and tests).
fn say(msg: &str) {
    eprintln!("{msg}");
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::DataDir {
        path: path.display().to_string(),
        source,
    }
}

/// The data directory must be this daemon's own (not reached through a symlink): a
/// directory another user owns could be read or swapped under the daemon.
fn check_own_dir(dir: &Path) -> Result<(), DaemonError> {
    let st = rustix::fs::lstat(dir).map_err(|e| DaemonError::DataDir {
        path: dir.display().to_string(),
        source: e.into(),
    })?;
    let me = rustix::process::geteuid().as_raw();
    let refuse = |why: String| {
        Err(DaemonError::Other(format!(
            "data directory {}: {why}",
            dir.display()
        )))
    };
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return refuse("not a directory (a symlink is refused; give the real path)".into());
    }
    if st.st_uid != me {
        return refuse(format!(
            "it belongs to uid {}, not to this daemon's user (uid {me}); use a directory of your own",
            st.st_uid
        ));
    }
    Ok(())
}

/// Holds the data directory's lock file for the daemon's lifetime, so a second daemon on
/// the same directory refuses to start instead of corrupting it.
fn lock_data_dir(dir: &Path) -> Result<fs::File, DaemonError> {
    let path = dir.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            Err(DaemonError::AlreadyRunning(dir.display().to_string()))
        }
        Err(e) => Err(DaemonError::DataDir {
            path: path.display().to_string(),
            source: e.into(),
        }),
    }
}

/// The socket's directory: made 0755 if missing (whatever the umask), and refused when
/// someone else owns it or others may write to it — whoever can write there can swap the
/// socket for their own and receive the values clients send.
fn socket_dir(path: &Path) -> Result<(), DaemonError> {
    let sock_err = |reason: String| DaemonError::Socket {
        path: path.display().to_string(),
        reason,
    };
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| sock_err(format!("cannot create its directory: {e}")))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| sock_err(format!("cannot set its directory's mode: {e}")))?;
    }
    let st = rustix::fs::lstat(dir).map_err(|e| sock_err(format!("its directory: {e}")))?;
    let me = rustix::process::geteuid().as_raw();
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return Err(sock_err(format!(
            "{} is not a directory (a symlink is refused)",
            dir.display()
        )));
    }
    if st.st_uid != me && st.st_uid != 0 {
        return Err(sock_err(format!(
            "its directory {} belongs to uid {}, not to this daemon's user (uid {me}) or root; remove it or choose another socket path",
            dir.display(),
            st.st_uid
        )));
    }
    if st.st_mode & 0o022 != 0 && st.st_mode & 0o1000 == 0 {
        return Err(sock_err(format!(
            "its directory {} is writable by others (mode {:o}); make it 0755 or choose another socket path",
            dir.display(),
            st.st_mode & 0o7777
        )));
    }
    Ok(())
}

fn bind_socket(path: &Path, group: Option<u32>) -> Result<UnixListener, DaemonError> {
    let sock_err = |reason: String| DaemonError::Socket {
        path: path.display().to_string(),
        reason,
    };
    socket_dir(path)?;
    if path.exists() {
        // We hold the data-dir lock, but the socket may belong to a daemon on another data
        // directory: only a socket nobody answers on is stale.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(sock_err("another daemon is listening on it".into()));
        }
        fs::remove_file(path)
            .map_err(|e| sock_err(format!("cannot remove the stale socket: {e}")))?;
    }
    let l = UnixListener::bind(path).map_err(|e| sock_err(e.to_string()))?;
    // Owner only, unless a group was named: its members may connect (and are members to
    // the gate, never administrators by that alone).
    if let Some(gid) = group {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
            .map_err(|e| sock_err(format!("cannot give it to group {gid}: {e}")))?;
    }
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| sock_err(e.to_string()))?;
    Ok(l)
}

/// Opens or creates the key ring. Returns the key state and, on a first start with
/// autolock, the unlock key to show once.
fn open_keys(ring_path: &Path, autolock: bool) -> Result<(Keys, Option<UnlockKey>), DaemonError> {
    match RingFile::read(ring_path)? {
        Some(file) => match file.mode() {
            KeyMode::File => Ok((
                Keys::Unlocked {
                    ring: file.open_plain()?,
                    mode: KeyMode::File,
                    unlock: None,
                },
                None,
            )),
            KeyMode::Autolock => Ok((Keys::Locked { file }, None)),
        },
        None => {
            let ring = KeyRing::generate()?;
            if autolock {
                let key = UnlockKey::generate()?;
                RingFile::write(ring_path, &ring, Some(&key))?;
                let shown = UnlockKey::parse(&key.to_text())?;
                Ok((
                    Keys::Unlocked {
                        ring,
                        mode: KeyMode::Autolock,
                        unlock: Some(key),
                    },
                    Some(shown),
                ))
            } else {
                RingFile::write(ring_path, &ring, None)?;
                Ok((
                    Keys::Unlocked {
                        ring,
                        mode: KeyMode::File,
                        unlock: None,
                    },
                    None,
                ))
            }
        }
    }
}

fn read_or_make_id(path: &Path) -> Result<String, DaemonError> {
    if let Ok(s) = fs::read_to_string(path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| DaemonError::Other(format!("no randomness: {e}")))?;
    let id = lockbox_store::object_id(b);
    fs::write(path, &id).map_err(io_err(path))?;
    Ok(id)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(cfg: DaemonConfig) -> Result<(), DaemonError> {
    // Every file and directory the daemon (and the crates under it) creates is private
    // unless given a mode on purpose, whatever umask the daemon was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let hardening = crate::harden::harden();
    let group_of = |flag: &str, name: Option<&str>| {
        name.map(crate::identity::resolve_group)
            .transpose()
            .map_err(|e| DaemonError::Other(format!("{flag}: {e}")))
    };
    let group = group_of("--group", cfg.group.as_deref())?;
    let admin_group = group_of("--admin-group", cfg.admin_group.as_deref())?;
    fs::create_dir_all(&cfg.data_dir).map_err(io_err(&cfg.data_dir))?;
    check_own_dir(&cfg.data_dir)?;
    fs::set_permissions(&cfg.data_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(&cfg.data_dir))?;
    let _lock = lock_data_dir(&cfg.data_dir)?;

    let ring_path = cfg.data_dir.join("keyring.json");
    let (keys, shown) = open_keys(&ring_path, cfg.autolock)?;
    if let Some(k) = shown {
        // Never on the daemon's output: under a service manager that is the journal, on the
        // same disk the key protects. An administrator reads it with a client, or the
        // operator named a file for it.
        match &cfg.autolock_key_file {
            Some(path) => {
                write_new_private(path, k.to_text().as_bytes()).map_err(|e| {
                    DaemonError::Other(format!(
                        "--autolock-key-file {}: {e} (it must not exist yet)",
                        path.display()
                    ))
                })?;
                say(&format!(
                    "Autolock is on. The unlock key was written to {} (mode 0600): move it to a password manager and delete the file.",
                    path.display()
                ));
            }
            None => say(
                "Autolock is on. Read the unlock key once with 'lockbox unlock-key' (administrators only) and keep it in a password manager: lockbox cannot recover it.",
            ),
        }
    }
    let locked = matches!(keys, Keys::Locked { .. });
    // A cluster member opens its store on the cluster transport (a worker holds none).
    let membership = crate::cluster::load(&cfg.data_dir)
        .map_err(DaemonError::Other)?
        .map(|(node, tls)| (node, crate::peers::TlsState::new(tls)));
    let cache_size = usize::try_from(cfg.cache_size).map_err(|_| {
        DaemonError::Other(format!(
            "--cache-size {}: too large for this machine",
            cfg.cache_size
        ))
    })?;
    let store = match &membership {
        None => {
            let replica = Replica::open(
                &cfg.data_dir.join("store.redb"),
                ReplicaConfig {
                    cache_size,
                    ..ReplicaConfig::default()
                },
            )
            .await?;
            Some(NodeStore {
                reader: Reader::new(replica.db()),
                replica,
            })
        }
        Some((node, _)) if node.role == lockbox_store::NodeRole::Worker => None,
        Some((node, tls)) => Some(
            crate::cluster::open_store(
                &cfg.data_dir,
                node,
                tls,
                lockbox_replication::Bootstrap::Join,
                cache_size,
            )
            .await?,
        ),
    };
    let audit = AuditLog::open(&cfg.data_dir.join("audit.log"))?;
    let torn_tail = audit.torn_tail();
    if torn_tail > 0 {
        tracing::warn!(
            bytes = torn_tail,
            "the audit log ended in a record cut short by a crash; it was never acknowledged and was dropped"
        );
    }
    let node_id = read_or_make_id(&cfg.data_dir.join("node-id"))?;
    let cluster_id = read_or_make_id(&cfg.data_dir.join("cluster-id"))?;
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let daemon = Arc::new(Daemon {
        store: RwLock::new(store.map(Arc::new)),
        keys: RwLock::new(keys),
        audit: lockbox_audit::GroupCommit::start(audit),
        ring_path,
        data_dir: cfg.data_dir.clone(),
        socket: cfg.socket.clone(),
        keep: cfg.keep_versions,
        node_id,
        cluster_id,
        events,
        extensions: lockbox_core::Extensions::default(),
    });
    install_features(&daemon);
    daemon
        .extensions
        .insert(Arc::new(crate::budget::CacheBudget(cache_size)));
    daemon.extensions.insert(Arc::new(crate::gate::Admins {
        daemon_uid: rustix::process::geteuid().as_raw(),
        group: admin_group,
    }));
    daemon.audit.append(
        Event::new("daemon-start", "daemon")
            .detail("pid", &std::process::id().to_string())
            .detail("torn_audit_tail_bytes", &torn_tail.to_string()),
    )?;

    if let Some((node, tls)) = membership {
        let listen = node.listen_addr.clone();
        crate::cluster::activate(&daemon, node, tls)
            .await
            .map_err(|e| DaemonError::Other(e.message))?;
        say(&format!("cluster traffic (mutual TLS) on {listen}"));
    }
    crate::workloads::start(daemon.clone()).await;
    let listener = bind_socket(&cfg.socket, group)?;
    tracing::info!(
        socket = %cfg.socket.display(),
        data_dir = %cfg.data_dir.display(),
        locked,
        mlocked = hardening.mlocked,
        "lockbox daemon listening"
    );
    if !hardening.mlocked {
        tracing::warn!(
            "could not lock memory (mlockall); secrets may reach swap if the machine swaps"
        );
    }
    say(&format!(
        "lockbox daemon listening on {}{}",
        cfg.socket.display(),
        if locked {
            " (locked: run 'lockbox unlock')"
        } else {
            ""
        }
    ));

    // Every listener stops on the same signal; long-lived streams (events) get a grace
    // period rather than holding shutdown forever.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let mut serve_on = |listener: UnixListener, app: axum::Router| {
        servers.spawn(crate::listen::serve(listener, app, stop_rx.clone()));
    };
    serve_on(listener, router(daemon.clone()));
    let mut extra_sockets = Vec::new();
    if let Some(path) = &cfg.docker_api {
        serve_on(
            bind_socket(path, group)?,
            crate::docker::router(daemon.clone()),
        );
        say(&format!(
            "Docker Engine API (secrets, configs) on unix://{}",
            path.display()
        ));
        extra_sockets.push(path.clone());
    }
    let shared = cfg.swarm_driver.is_some() && cfg.swarm_driver == cfg.volume_driver;
    if let Some(path) = &cfg.swarm_driver {
        let roles = crate::docker::PluginRoles {
            secret_driver: true,
            volume_driver: shared,
        };
        serve_on(
            // dockerd (root) is the plugin socket's one client: never the socket group.
            bind_socket(path, None)?,
            crate::docker::plugin_router(daemon.clone(), roles),
        );
        say(&format!(
            "Swarm secret-driver plugin{} on {}",
            if shared { " and volume driver" } else { "" },
            path.display()
        ));
        extra_sockets.push(path.clone());
    }
    if let Some(path) = cfg.volume_driver.as_ref().filter(|_| !shared) {
        let roles = crate::docker::PluginRoles {
            secret_driver: false,
            volume_driver: true,
        };
        match bind_socket(path, None) {
            Ok(l) => {
                serve_on(l, crate::docker::plugin_router(daemon.clone(), roles));
                say(&format!("volume driver on {}", path.display()));
                extra_sockets.push(path.clone());
            }
            Err(e) if cfg.volume_driver_by_default => tracing::warn!(
                "volume driver not served ({e}); give --volume-driver PATH to serve it elsewhere, or --volume-driver none"
            ),
            Err(e) => return Err(e),
        }
    }
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    // Each listener drains its own connections with a deadline (see listen.rs).
    while servers.join_next().await.is_some() {}
    daemon.workloads().keep_for_restart().await;
    for p in &extra_sockets {
        let _ = fs::remove_file(p);
    }

    tracing::info!("shutting down");
    let _ = fs::remove_file(&cfg.socket);
    let store = daemon.store.write().ok().and_then(|mut s| s.take());
    drop(daemon);
    if let Some(store) = store {
        close_store(store).await;
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    let mut int = signal(SignalKind::interrupt()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// Wires the features that are called back by the ones beneath them: the cluster starts and
/// stops the worker agent and mounts its node-API routes, a worker's workloads fetch their
/// values through the agent, and a changed service moves its workloads to the new files.
/// Only this composition root names both sides.
fn install_features(d: &Daemon) {
    d.extensions.insert(Arc::new(crate::cluster::AgentHooks {
        start: crate::agent::start,
        stop: crate::agent::stop,
        connected: crate::agent::agent_connected,
        node_routes: crate::agent::node_routes,
    }));
    d.extensions.insert(Arc::new(crate::cluster::NodeGate {
        layer: crate::node_gate::layer,
    }));
    d.extensions
        .insert(Arc::new(crate::workloads::RemoteHandouts {
            acquire: |d, workload, service| Box::pin(crate::agent::acquire(d, workload, service)),
        }));
    d.extensions
        .insert(Arc::new(crate::services::ServiceChanged(|d, service| {
            Box::pin(async move { d.workloads().sync_service(&d, &service).await })
        })));
}

/// Creates `path` new (never through a symlink, never over an existing file) with mode
/// 0600 and writes `bytes` to it.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

//! Startup, serving and shutdown.
use std::fs;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use lockbox_audit::{AuditLog, Event};
use lockbox_keyring::{KeyMode, KeyRing, RingFile, UnlockKey};
use lockbox_replication::{Replica, ReplicaConfig};
use lockbox_store::Reader;
use tokio::net::UnixListener;

use crate::DaemonError;
use crate::http::router;
use crate::ops::close_store;
use crate::ops::{Daemon, Keys, NodeStore};

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

fn bind_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    let sock_err = |reason: String| DaemonError::Socket {
        path: path.display().to_string(),
        reason,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| sock_err(format!("cannot create its directory: {e}")))?;
    }
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
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))
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
    let hardening = crate::harden::harden();
    fs::create_dir_all(&cfg.data_dir).map_err(io_err(&cfg.data_dir))?;
    fs::set_permissions(&cfg.data_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(&cfg.data_dir))?;
    let _lock = lock_data_dir(&cfg.data_dir)?;

    let ring_path = cfg.data_dir.join("keyring.json");
    let (keys, shown) = open_keys(&ring_path, cfg.autolock)?;
    if let Some(k) = shown {
        // Shown once, on the daemon's own terminal; never logged.
        println!(
            "Autolock is on. To unlock lockbox after a restart, run 'lockbox unlock' and give this key:\n\n    {}\n\nKeep it in a password manager: lockbox cannot recover it.",
            &*k.to_text()
        );
    }
    let locked = matches!(keys, Keys::Locked { .. });
    // A cluster member opens its store on the cluster transport (a worker holds none).
    let membership = crate::cluster::load(&cfg.data_dir)
        .map_err(DaemonError::Other)?
        .map(|(node, tls)| (node, crate::peers::TlsState::new(tls)));
    let store = match &membership {
        None => {
            let replica =
                Replica::open(&cfg.data_dir.join("store.redb"), ReplicaConfig::default()).await?;
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
        extensions: crate::ops::Extensions::default(),
    });
    install_features(&daemon);
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
    let listener = bind_socket(&cfg.socket)?;
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
        serve_on(bind_socket(path)?, crate::docker::router(daemon.clone()));
        say(&format!(
            "Docker Engine API (secrets, configs) on unix://{}",
            path.display()
        ));
        extra_sockets.push(path.clone());
    }
    if let Some(path) = &cfg.swarm_driver {
        serve_on(
            bind_socket(path)?,
            crate::docker::plugin_router(daemon.clone()),
        );
        say(&format!("Swarm secret-driver plugin on {}", path.display()));
        extra_sockets.push(path.clone());
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
    d.extensions
        .insert(Arc::new(crate::workloads::RemoteHandouts {
            acquire: |d, workload, service| Box::pin(crate::agent::acquire(d, workload, service)),
        }));
    d.extensions
        .insert(Arc::new(crate::services::ServiceChanged(|d, service| {
            Box::pin(async move { d.workloads().sync_service(&d, &service).await })
        })));
}

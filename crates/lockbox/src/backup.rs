//! `lockbox backup` and `lockbox restore`: glue over `POST /v1/backup` and
//! `lockbox_daemon::backup::restore` (the file format is documented there).
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use clap::Args;

use hyper::Method;
use hyper::body::Bytes;

use lockbox_daemon::backup::{self as core, BackupHeader, KEY_BACKUP, KEY_HEADER};
use lockbox_proto::exit_codes;
use zeroize::Zeroizing;

use crate::Exit;
use crate::client::ClientError;

pub(crate) const BACKUP_AFTER_HELP: &str = "Examples:\n  lockbox backup /srv/backups/lockbox-$(date +%F).lbx\n  lockbox backup - | ssh backup-host 'cat > lockbox.lbx'\n\nThe file is sealed with the unlock key when autolock is on; otherwise with a new backup key,\nprinted once on standard error: keep it apart from the file. Restore with 'lockbox restore'.";

pub(crate) const RESTORE_AFTER_HELP: &str = "Examples:\n  lockbox restore lockbox.lbx --data-dir /var/lib/lockbox      # prompts for the key\n  lockbox restore lockbox.lbx --data-dir /srv/lockbox --key-file key.txt\n  lockbox daemon --data-dir /srv/lockbox                        # then start a daemon on it\n\nThe directory must be new or empty. The restored node is a single node: cluster membership\nis not restored ('lockbox cluster init' starts a new cluster from it).";

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// Where to write the backup (- for standard output)
    pub(crate) file: String,
    /// Replace FILE if it exists
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The backup file (- for standard input, which then needs --key-file)
    pub(crate) file: String,
    /// The new data directory (must not exist or be empty) [default: /var/lib/lockbox for root, $XDG_DATA_HOME/lockbox otherwise]
    #[arg(long, env = "LOCKBOX_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Read the key (unlock key or backup key) from this file instead of standard input
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
}

fn fail(msg: impl Into<String>) -> anyhow::Error {
    Exit(exit_codes::FAILURE, format!("Error: {}", msg.into())).into()
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    Exit(exit_codes::USAGE, msg.into()).into()
}

/// `POST /v1/backup`: the file's bytes and, without autolock, the new backup key.
async fn fetch(socket: &Path) -> Result<(Bytes, Option<Zeroizing<String>>), ClientError> {
    let (_, headers, bytes) = crate::client::Client::new(socket)
        .raw_with_headers(Method::POST, "/v1/backup", None)
        .await?;
    let key = headers
        .get(KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| Zeroizing::new(v.to_string()));
    Ok((bytes, key))
}

/// Writes `bytes` to `path` atomically: a 0600 temp file in the same directory, fsync,
/// rename (refusing an existing file unless `force`), fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".lockbox-backup-")
        .tempfile_in(dir)
        .map_err(|e| fail(format!("cannot write in {}: {e}", dir.display())))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
    let persisted = if force {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    persisted.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            fail(format!(
                "{} already exists; pass --force to replace it",
                path.display()
            ))
        } else {
            fail(format!("cannot write {}: {}", path.display(), e.error))
        }
    })?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn counts(h: &BackupHeader) -> String {
    format!(
        "{} secrets, {} configs, {} services ({} versions)",
        h.secrets, h.configs, h.services, h.versions
    )
}

pub(crate) async fn backup(socket: &Path, a: BackupArgs) -> anyhow::Result<i32> {
    let to_stdout = a.file == "-";
    let path = PathBuf::from(&a.file);
    if !to_stdout && !a.force && path.symlink_metadata().is_ok() {
        // Checked before asking, so a refused overwrite does not make (and audit) a backup.
        return Err(fail(format!(
            "{} already exists; pass --force to replace it",
            path.display()
        )));
    }
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(usage(
            "refusing to write a backup to a terminal; redirect standard output or give a file",
        ));
    }
    let (bytes, key) = fetch(socket).await?;
    let header =
        core::read_header(&bytes).map_err(|e| fail(format!("the daemon's answer: {e}")))?;
    if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)?;
        out.flush()?;
    } else {
        write_atomically(&path, &bytes, a.force)?;
    }
    let what = if to_stdout {
        "Backup written to standard output".to_string()
    } else {
        format!("Backup written to {}", path.display())
    };
    eprintln!("{what}: {}.", counts(&header));
    match (&key, header.key.as_str()) {
        (Some(k), KEY_BACKUP) => eprintln!(
            "\nAutolock is off, so the backup is sealed with a new backup key, shown only now:\n\n    {}\n\nKeep it apart from the backup file: 'lockbox restore' needs it, and anyone holding both can read every secret.",
            k.as_str()
        ),
        _ => eprintln!(
            "The backup is sealed with the unlock key ('lockbox unlock-key'); 'lockbox restore' needs it."
        ),
    }
    Ok(0)
}

fn read_key(key_file: Option<&Path>) -> anyhow::Result<Zeroizing<String>> {
    let mut key = Zeroizing::new(String::new());
    match key_file {
        Some(p) => {
            std::fs::File::open(p)
                .and_then(|mut f| f.read_to_string(&mut key))
                .map_err(|e| fail(format!("{}: {e}", p.display())))?;
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprint!(
                    "Enter the backup key (the unlock key if the backup was made under autolock): "
                );
                let _ = std::io::stderr().flush();
            }
            std::io::stdin().read_line(&mut key)?;
        }
    }
    Ok(Zeroizing::new(key.trim().to_string()))
}

pub(crate) async fn restore(a: RestoreArgs) -> anyhow::Result<i32> {
    let data_dir = a
        .data_dir
        .unwrap_or_else(lockbox_daemon::paths::default_data_dir);
    if a.file == "-" && a.key_file.is_none() {
        return Err(usage(
            "restoring from standard input needs --key-file: standard input cannot carry both the backup and its key",
        ));
    }
    // Cheap refusals first, before asking for a key.
    core::check_target(&data_dir).map_err(|e| fail(e.to_string()))?;
    let mut file = Vec::new();
    if a.file == "-" {
        std::io::stdin().read_to_end(&mut file)?;
    } else {
        std::fs::File::open(&a.file)
            .and_then(|mut f| f.read_to_end(&mut file))
            .map_err(|e| fail(format!("{}: {e}", a.file)))?;
    }
    core::read_header(&file).map_err(|e| fail(e.to_string()))?;
    let key = read_key(a.key_file.as_deref())?;
    let s = core::restore(&file, &data_dir, &key)
        .await
        .map_err(|e| fail(e.to_string()))?;
    println!(
        "Restored the backup of {} into {}: {} secrets, {} configs, {} services ({} versions).",
        s.header.created_at,
        s.data_dir.display(),
        s.secrets,
        s.configs,
        s.services,
        s.versions
    );
    println!(
        "Key ring: {}. Cluster membership was not restored: this is a single node.\nStart it with: lockbox daemon --data-dir {}",
        match s.key_mode {
            core::KeyMode::Autolock =>
                "sealed with the same unlock key (autolock: run 'lockbox unlock' after the daemon starts)",
            _ => "file mode (autolock off, as when the backup was made)",
        },
        s.data_dir.display()
    );
    Ok(0)
}
